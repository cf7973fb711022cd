"""Errors become HTTP answers here and only here, as `application/problem+json` (RFC 9457)."""

from __future__ import annotations

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
    WebhookRejected,
)

PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


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

    @app.exception_handler(WebhookRejected)
    async def _rejected(_: Request, exc: WebhookRejected) -> JSONResponse:
        return problem(401, "Webhook rejected", exc.message)

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return problem(404, "Not found", str(exc))

    @app.exception_handler(NotSupported)
    async def _unsupported(_: Request, exc: NotSupported) -> JSONResponse:
        return problem(404, "Not supported", str(exc))

    @app.exception_handler(DuplicateDelivery)
    async def _conflict(_: Request, exc: DuplicateDelivery) -> JSONResponse:
        return problem(409, "External id already used", str(exc), case_id=exc.case_id,
                       case_url=f"/v1/cases/{exc.case_id}")

    @app.exception_handler(IllegalTransition)
    async def _illegal(_: Request, exc: IllegalTransition) -> JSONResponse:
        return problem(409, "Not allowed in this state", str(exc), state=exc.state)

    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        return problem(409, "Not allowed", str(exc))

    @app.exception_handler(ConcurrencyConflict)
    async def _concurrent(_: Request, exc: ConcurrencyConflict) -> JSONResponse:
        return problem(409, "Changed concurrently; try again", str(exc))

    @app.exception_handler(ConfigError)
    async def _config(_: Request, exc: ConfigError) -> JSONResponse:
        return problem(500, "Configuration error", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail))
