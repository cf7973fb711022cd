"""`GET /metrics` (Prometheus text format) and what the API counts for it: webhooks by shop,
connector and status, and how long intake took.

`/metrics` has a bearer token of its own (`metrics_token`), not an operator's: a scraper
holding it may read counts and nothing else. Without the setting the path answers 404.

`Telemetry` is a pure ASGI middleware around everything else (the 413s and 422s that
`Hardening` answers before any route are webhooks refused too). It names the shop and
connector of a webhook in the log context, once it knows both are configured: a label or a
field never takes a value the caller made up, so neither can grow without bound.

A webhook gets one log line, ours: it carries what uvicorn's access line does (client,
method, path, status) plus the shop, connector, request id and duration, so uvicorn's line
for it is dropped (`WebhookAccessFilter`). The two lines cost 5-7 % of intake's CPU in the
last profile; one of them is saved.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import time
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from refundbridge.api.deps import ApiDeps
from refundbridge.core import log_context
from refundbridge.core.errors import NotFound

log = logging.getLogger("refundbridge.api")

WEBHOOKS = Counter("refundbridge_webhooks", "Webhooks and SMS callbacks answered, by shop, "
                   "connector, kind (webhook, sms_callback) and HTTP status (unknown: no "
                   "such shop or connector)", ["shop", "connector", "kind", "status"])
INTAKE_SECONDS = Histogram("refundbridge_webhook_intake_seconds", "From a webhook's arrival "
                           "to its answer (stored before a 202), by shop and connector",
                           ["shop", "connector"],
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0))

_WEBHOOK = re.compile(r"/webhooks/([^/]+)/([^/]+)(/callback(?:/[^/]*)?)?")
UNKNOWN = "unknown"


def _known(deps: ApiDeps, shop: str, connector: str, callback: bool) -> bool:
    if not callback:
        return deps.webhook_receiver(shop, connector) is not None
    try:
        sms = deps.api_services.gateways(shop).sms
    except NotFound:
        return False
    return sms is not None and sms.name == connector


def _webhook_match(method: object, path: object) -> re.Match[str] | None:
    if method != "POST" or not isinstance(path, str):
        return None
    return _WEBHOOK.fullmatch(path.partition("?")[0])


class WebhookAccessFilter(logging.Filter):
    """Drops uvicorn's access line for a request `Telemetry` logs itself. uvicorn's args
    are (client, method, path with query, http version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (isinstance(args, tuple) and len(args) == 5
                    and _webhook_match(args[1], args[2]) is not None)


_ACCESS_FILTER = WebhookAccessFilter()


class Telemetry:
    def __init__(self, app: ASGIApp, deps: ApiDeps) -> None:
        self.app = app
        self.deps = deps
        # One instance: `addFilter` adds it once however many apps a process builds.
        logging.getLogger("uvicorn.access").addFilter(_ACCESS_FILTER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _webhook_match(scope.get("method"), scope.get("path")) if (
            scope["type"] == "http") else None
        if match is None:
            await self.app(scope, receive, send)
            return
        shop, connector, callback = match.group(1), match.group(2), match.group(3)
        kind = "sms_callback" if callback else "webhook"
        if _known(self.deps, shop, connector, bool(callback)):
            log_context.bind(shop=shop, connector=connector)
        else:
            shop = connector = UNKNOWN
        status = 500  # what an error that escapes everything becomes
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - started
            WEBHOOKS.labels(shop, connector, kind, str(status)).inc()
            if kind == "webhook":
                INTAKE_SECONDS.labels(shop, connector).observe(seconds)
            host, port = scope.get("client") or ("-", 0)
            client = f"{host}:{port}"
            path = quote(scope["path"])  # as uvicorn logs it: a hostile path has no newline
            log.info("%s POST %s from %s answered %d in %.1f ms", kind, path, client,
                     status, seconds * 1000,
                     extra={"status": status, "duration_ms": round(seconds * 1000, 1),
                            "method": "POST", "path": path, "client": client})


router = APIRouter(include_in_schema=False)


def _authorised(expected: str, authorization: str | None) -> bool:
    scheme, _, offered = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        offered.strip().encode(), expected.encode())


@router.get("/metrics")
def metrics(request: Request) -> Response:
    deps: ApiDeps = request.app.state.deps
    token = deps.settings.metrics_token
    if token is None:
        raise HTTPException(404, "Not Found")
    if not request.headers.get("authorization"):
        raise HTTPException(401, "Unauthorized")
    if not _authorised(token.get_secret_value(), request.headers.get("authorization")):
        raise HTTPException(403, "Forbidden")
    return Response(exposition(request.app, deps), media_type=CONTENT_TYPE_LATEST)


def exposition(app: FastAPI, deps: ApiDeps) -> bytes:
    """This process's counters (every process's, in multi-process mode), then the gauges
    read from the database."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # `serve --workers N`: each process writes its counters to files there.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        counters = generate_latest(registry)
    else:
        counters = generate_latest(REGISTRY)
    gauges: CollectorRegistry | None = getattr(app.state, "metrics_gauges", None)
    if gauges is None:
        gauges = CollectorRegistry(auto_describe=False)
        gauges.register(deps.store_gauges)
        app.state.metrics_gauges = gauges
    return counters + generate_latest(gauges)


def install(app: FastAPI, deps: ApiDeps) -> None:
    app.include_router(router)
    app.add_middleware(Telemetry, deps=deps)


__all__ = ["INTAKE_SECONDS", "WEBHOOKS", "Telemetry", "WebhookAccessFilter", "install"]
