"""The FastAPI application, built around the ports in `api.deps` (the composition root,
`refundbridge.bootstrap`, provides them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from anyio import to_thread
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from refundbridge.api import console, docs, errors, metrics, status
from refundbridge.api.deps import ApiDeps, token_principal
from refundbridge.api.middleware import Hardening
from refundbridge.api.ops import OperatorGuard, build_dashboard
from refundbridge.api.routes import (
    campaign_reports,
    campaigns,
    capa,
    cases,
    evaluate,
    health,
    recalls,
    signals,
    webhooks,
)
from refundbridge.core.access import Permission, Principal


def _may_run_jobs(principal: Principal | None) -> bool:
    # The queue holds every shop's jobs: only a caller who sees every shop may work it.
    return principal is not None and principal.shops is None and principal.may(
        Permission.OPERATE)


def create_app(deps: ApiDeps, *, dashboard: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        to_thread.current_default_thread_limiter().total_tokens = (
            deps.settings.api_threads)
        app.state.intake = deps.async_intake()
        try:
            yield
        finally:
            intake, app.state.intake = app.state.intake, None
            if intake is not None:
                await intake.aclose()

    app = FastAPI(
        lifespan=lifespan,
        title="RefundBridge",
        version="0.1.0",
        description="Refund and return middleware for shops that sell medical devices. "
                    "Webhooks are authenticated by their signatures; `/v1` and `/ops` need "
                    "an operator bearer token.",
        docs_url=None,  # api/docs.py serves both pages from the package, not a CDN
        redoc_url=None,
        # Our own: Prometheus metrics (api/metrics.py) and, opted in, OpenTelemetry spans
        # (telemetry.instrument_app). FastAPI's built-in telemetry would otherwise look up
        # OpenTelemetry's providers, environment included, on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False,
                   "operation_spans": False},
    )
    app.state.deps = deps
    errors.install(app)
    app.add_middleware(Hardening, max_body_bytes=deps.settings.max_body_bytes)
    metrics.install(app, deps)  # GET /metrics; its middleware goes around Hardening
    app.include_router(health.router)
    app.include_router(webhooks.router)
    app.include_router(cases.router)
    app.include_router(recalls.router)
    app.include_router(campaigns.router)
    app.include_router(campaign_reports.router)
    app.include_router(capa.router)
    app.include_router(signals.router)
    app.include_router(evaluate.router)
    docs.install(app)
    console.install(app)
    status.install(app)  # the customer's status page, /status
    if dashboard:
        guard = OperatorGuard(
            build_dashboard(deps.settings.redis_url, deps.redis),
            lambda authorization: _may_run_jobs(token_principal(deps.settings, authorization)),
        )
        app.mount("/ops/rq", guard)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                webhooks.openapi_schemas())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
