"""Errors become HTTP answers here and only here, as `application/problem+json` (RFC 9457)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus
from math import ceil
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from refundbridge.core.errors import (
    ConcurrencyConflict,
    ConfigError,
    DomainError,
    DuplicateDelivery,
    Forbidden,
    IllegalTransition,
    InvalidRequest,
    NotFound,
    NotSupported,
    PermanentProviderError,
    StoreUnavailable,
    TransientProviderError,
    WebhookRejected,
)
from refundbridge.store.db import DATABASE_UNAVAILABLE

log = logging.getLogger("refundbridge.api")

PROBLEM = "application/problem+json"
RETRY_AFTER = 30  # seconds, when a briefly unavailable provider named no time
STORE_RETRY_AFTER = 5  # seconds: a database restart or fail-over


class BodyTooLarge(StarletteHTTPException):
    """The request's body is longer than `max_body_bytes`. An HTTPException, so that FastAPI
    passes it on as it is when it is raised while FastAPI reads a body for a model."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"body: larger than {limit} bytes")
        self.limit = limit


def problem(status: int, title: str, detail: str, headers: Mapping[str, str] | None = None,
            **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    headers = dict(headers or {})
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def too_large(request: Request, limit: int) -> Response:
    message = f"larger than {limit} bytes"
    return answer(request, 413, "Request body too large", f"body: {message}",
                  errors=[{"field": "body", "message": message}])


# Our errors, most specific first: status, title, and what else the client gets to see.
STATUS: list[tuple[type[Exception], int, str]] = [
    (WebhookRejected, 401, "Webhook rejected"),
    (NotFound, 404, "Not found"),
    (Forbidden, 403, "Forbidden"),
    (NotSupported, 404, "Not supported"),
    (DuplicateDelivery, 409, "External id already used"),
    (IllegalTransition, 409, "Not allowed in this state"),
    (DomainError, 409, "Not allowed"),
    (ConcurrencyConflict, 409, "Changed concurrently; try again"),
    # A provider we had to ask (a storefront's order look-up) is briefly unavailable: the
    # sender keeps the webhook and delivers it again.
    (TransientProviderError, 503, "Provider unavailable; send again later"),
    (StoreUnavailable, 503, "Database unavailable; send again later"),
    (PermanentProviderError, 502, "Provider refused"),
    (ConfigError, 500, "Configuration error"),
]


def _extra(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, DuplicateDelivery):
        return {"case_id": exc.case_id, "case_url": f"/v1/cases/{exc.case_id}"}
    if isinstance(exc, IllegalTransition):
        return {"state": exc.state}
    return {}


# Pages for people (the console, the customer's status page) answer errors with a page, not
# problem+json: the console installs its renderer for the paths it owns.
HtmlErrors = Callable[[Request, int, str, str], Response]


def _html_errors(request: Request) -> HtmlErrors | None:
    for prefix, render in getattr(request.app.state, "html_errors", {}).items():
        if request.url.path.startswith(prefix):
            return render  # type: ignore[no-any-return]
    return None


def answer(request: Request, status: int, title: str, detail: str,
           headers: Mapping[str, str] | None = None, **extra: Any) -> Response:
    """An error as the caller reads it: a page on the pages for people, else problem+json."""
    html = _html_errors(request)
    if html is not None:
        page = html(request, status, title, detail)
        for name, value in (headers or {}).items():
            page.headers[name] = value
        return page
    return problem(status, title, detail, headers, **extra)


def install(app: FastAPI) -> None:
    @app.exception_handler(InvalidRequest)
    async def _invalid(request: Request, exc: InvalidRequest) -> Response:
        return answer(request, 422, "Invalid request", str(exc),
                      errors=[{"field": f, "message": m} for f, m in exc.errors])

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = [{"field": ".".join(str(p) for p in e["loc"] if p != "body") or "body",
                   "message": str(e["msg"])} for e in exc.errors()]
        return answer(request, 422, "Invalid request",
                      "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors)

    async def _ours(request: Request, exc: Exception) -> Response:
        status, title = next((s, t) for kind, s, t in STATUS if isinstance(exc, kind))
        detail = exc.message if isinstance(exc, WebhookRejected) else str(exc)
        response = answer(request, status, title, detail, **_extra(exc))
        if isinstance(exc, TransientProviderError):
            # The provider's own Retry-After when it gave one, else half a minute.
            response.headers["Retry-After"] = str(ceil(exc.retry_after or RETRY_AFTER))
        if isinstance(exc, StoreUnavailable):
            response.headers["Retry-After"] = str(STORE_RETRY_AFTER)
        return response

    for kind, _status, _title in STATUS:
        app.add_exception_handler(kind, _ours)

    async def _store(request: Request, exc: Exception) -> Response:
        # The driver's message names hosts and ports: it goes to the log, not the caller.
        log.warning("database unavailable [request %s]: %s",
                    getattr(request.state, "request_id", "-"), exc)
        unavailable = StoreUnavailable("the database cannot be reached; nothing was stored")
        return await _ours(request, unavailable)

    for unavailable in DATABASE_UNAVAILABLE:
        app.add_exception_handler(unavailable, _store)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if isinstance(exc, BodyTooLarge):
            return too_large(request, exc.limit)
        try:
            title = HTTPStatus(exc.status_code).phrase
        except ValueError:
            title = str(exc.detail)
        return answer(request, exc.status_code, title, str(exc.detail), headers=exc.headers)
