"""What every request passes before any route: a request id, a bounded body, a path and
query free of control characters, and a problem+json answer for any error nobody expected.

A pure ASGI middleware (no `BaseHTTPMiddleware`): it must see the body as it streams, so a
100 MB post is refused after the first megabyte instead of after it has all been read.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from refundbridge.api.errors import BodyTooLarge, answer, too_large
from refundbridge.core import log_context

log = logging.getLogger("refundbridge.api")

REQUEST_ID_HEADER = "x-request-id"
# A caller's own id is kept when it is short and plain; anything else is replaced.
_CALLER_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def scope_headers(scope: Scope) -> dict[str, str]:
    """An ASGI request's headers by lower-case name (the last of a repeated one wins)."""
    return {k.decode("latin-1").lower(): v.decode("latin-1")
            for k, v in scope.get("headers", [])}


class Hardening:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope_headers(scope)
        offered = headers.get(REQUEST_ID_HEADER, "")
        request_id = offered if _CALLER_ID.fullmatch(offered) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        # Every line logged for this request names it (each request runs in its own task).
        log_context.bind(request_id=request_id)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []),
                                      (b"x-request-id", request_id.encode())]
            await send(message)

        refusal = self._refusal(Request(scope), headers)
        if refusal is not None:
            await refusal(scope, receive, send_with_id)
            return
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # Stop reading here: the rest of the body is never asked for.
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        try:
            await self.app(scope, bounded_receive, send_with_id)
        except BodyTooLarge as exc:
            if started:
                raise
            await too_large(Request(scope), exc.limit)(scope, receive, send_with_id)
        except Exception:
            # Logged with the id the caller is given, so one can be found from the other.
            log.exception("unexpected error in %s %s [request %s]", scope.get("method"),
                          scope.get("path"), request_id)
            if started:
                raise
            response = answer(Request(scope), 500, "Internal error",
                              f"something went wrong on our side; quote request {request_id}",
                              request_id=request_id)
            await response(scope, receive, send_with_id)

    def _refusal(self, request: Request, headers: dict[str, str]) -> Any:
        scope = request.scope
        length = headers.get("content-length")
        if length is not None:
            if not length.isascii() or not length.isdigit():
                return answer(request, 400, "Bad request", "Content-Length is not a number",
                              errors=[{"field": "Content-Length", "message": "not a number"}])
            if int(length) > self.max_body_bytes:
                return too_large(request, self.max_body_bytes)
        path = scope.get("path", "")
        if _CONTROL.search(path):
            return _unreadable(request, "path", "contains a control character")
        raw_query = scope.get("query_string", b"")
        if raw_query:
            try:
                pairs = parse_qsl(raw_query.decode("latin-1"), keep_blank_values=True,
                                  encoding="utf-8", errors="strict")
            except UnicodeDecodeError:
                return _unreadable(request, "query", "is not UTF-8")
            for name, value in pairs:
                if _CONTROL.search(name) or _CONTROL.search(value):
                    # A parameter's name is printed only when it is itself clean.
                    field = "query" if _CONTROL.search(name) else f"query.{name}"
                    return _unreadable(request, field, "contains a control character")
        return None


def _unreadable(request: Request, field: str, message: str) -> Any:
    return answer(request, 422, "Invalid request", f"{field}: {message}",
                  errors=[{"field": field, "message": message}])

