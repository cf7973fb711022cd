"""Errors become HTTP answers here and only here, as `application/problem+json` (RFC 9457)."""

from __future__ import annotations

from math import ceil
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import (
    ConcurrencyConflict,
    ConfigError,
    DomainError,
    DuplicateDelivery,
    IllegalTransition,
    InvalidRequest,
    NotFound,
    NotSupported,
    PermanentProviderError,
    TransientProviderError,
    WebhookRejected,
)

PROBLEM = "application/problem+json"
RETRY_AFTER = 30  # seconds, when a briefly unavailable provider named no time


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


# Our errors, most specific first: status, title, and what else the client gets to see.
STATUS: list[tuple[type[Exception], int, str]] = [
    (WebhookRejected, 401, "Webhook rejected"),
    (NotFound, 404, "Not found"),
    (NotSupported, 404, "Not supported"),
    (DuplicateDelivery, 409, "External id already used"),
    (IllegalTransition, 409, "Not allowed in this state"),
    (DomainError, 409, "Not allowed"),
    (ConcurrencyConflict, 409, "Changed concurrently; try again"),
    # A provider we had to ask (a storefront's order look-up) is briefly unavailable: the
    # sender keeps the webhook and delivers it again.
    (TransientProviderError, 503, "Provider unavailable; send again later"),
    (PermanentProviderError, 502, "Provider refused"),
    (ConfigError, 500, "Configuration error"),
]


def _extra(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, DuplicateDelivery):
        return {"case_id": exc.case_id, "case_url": f"/v1/cases/{exc.case_id}"}
    if isinstance(exc, IllegalTransition):
        return {"state": exc.state}
    return {}


def install(app: FastAPI) -> None:
    @app.exception_handler(InvalidRequest)
    async def _invalid(_: Request, exc: InvalidRequest) -> JSONResponse:
        return problem(422, "Invalid request", str(exc),
                       errors=[{"field": f, "message": m} for f, m in exc.errors])

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": ".".join(str(p) for p in e["loc"] if p != "body") or "body",
                   "message": str(e["msg"])} for e in exc.errors()]
        return problem(422, "Invalid request",
                       "; ".join(f"{e['field']}: {e['message']}" for e in errors), errors=errors)

    async def _ours(_: Request, exc: Exception) -> JSONResponse:
        status, title = next((s, t) for kind, s, t in STATUS if isinstance(exc, kind))
        detail = exc.message if isinstance(exc, WebhookRejected) else str(exc)
        response = problem(status, title, detail, **_extra(exc))
        if isinstance(exc, TransientProviderError):
            # The provider's own Retry-After when it gave one, else half a minute.
            response.headers["Retry-After"] = str(ceil(exc.retry_after or RETRY_AFTER))
        return response

    for kind, _status, _title in STATUS:
        app.add_exception_handler(kind, _ours)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail))
