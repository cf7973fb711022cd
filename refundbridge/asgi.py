"""ASGI entry for multi-process uvicorn: settings come from the environment."""

from __future__ import annotations

from fastapi import FastAPI

from refundbridge import telemetry
from refundbridge.api.app import create_app
from refundbridge.bootstrap import bootstrap
from refundbridge.config.settings import load_settings
from refundbridge.process import freeze_startup_objects


def make_app() -> FastAPI:
    settings = load_settings()
    # Each process of `serve --workers N` sets up its own logging and tracing.
    telemetry.configure_logging(settings.log_format)
    if settings.tracing:
        telemetry.setup_tracing("refundbridge-api")
    app = create_app(bootstrap(settings))
    if settings.tracing:
        telemetry.instrument_app(app)
    freeze_startup_objects()
    return app


def __getattr__(name: str) -> FastAPI:
    # Built on first access by uvicorn's import, never as a side effect of importing us.
    if name == "app":
        return make_app()
    raise AttributeError(name)
