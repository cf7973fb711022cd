"""ASGI entry for multi-process uvicorn: settings come from the environment."""

from __future__ import annotations

from fastapi import FastAPI

from refundbridge.api.app import create_app
from refundbridge.bootstrap import bootstrap
from refundbridge.config.settings import load_settings


def make_app() -> FastAPI:
    return create_app(bootstrap(load_settings()))


def __getattr__(name: str) -> FastAPI:
    # Built on first access by uvicorn's import, never as a side effect of importing us.
    if name == "app":
        return make_app()
    raise AttributeError(name)
