"""The RQ dashboard at /ops/rq, behind the operator token.

rq-dashboard has no auth and no CSRF protection (a plain GET can requeue a whole registry),
so an ASGI guard in front of it requires the bearer token, lets only GET and HEAD reach its
pages and only POST its action endpoints, and requires its own `X-Requested-With` header on
those POSTs (a cross-site form can't
set it). See shared/design/runtime.md.
"""

from __future__ import annotations

import os
from typing import Any, cast

from starlette.types import ASGIApp, Receive, Scope, Send

from refundbridge.api.errors import problem
from refundbridge.api.middleware import scope_headers

MUTATING_SEGMENTS = ("/requeue", "/delete", "/empty", "/compact", "/cancel", "/enqueue")
READ_METHODS = ("GET", "HEAD")


def is_action(path: str) -> bool:
    """rq-dashboard's action endpoints, matched loosely: a read path that looks like one is
    refused to GET (harmless), an action that looked like a read would run on a GET."""
    return any(segment in path for segment in MUTATING_SEGMENTS)


def refusal(method: str, path: str, requested_with: str | None) -> Any:
    """Reads take GET or HEAD (Starlette answers a HEAD by running the GET, so HEAD is a read
    only where GET is); actions take only POST, with the header a cross-site form cannot set."""
    if is_action(path):
        if method != "POST":
            return problem(405, "Method not allowed", "actions must be POSTed",
                           headers={"Allow": "POST"})
        if requested_with != "XMLHttpRequest":
            return problem(403, "Forbidden", "POSTs need X-Requested-With: XMLHttpRequest")
        return None
    if method not in READ_METHODS:
        return problem(405, "Method not allowed", "this page is read-only",
                       headers={"Allow": "GET, HEAD"})
    return None


def _relative(scope: Scope) -> str:
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def build_dashboard(redis_url: str | None, redis: Any) -> ASGIApp:
    import rq_dashboard
    from a2wsgi import WSGIMiddleware
    from flask import Flask, current_app

    static = os.path.join(os.path.dirname(rq_dashboard.__file__), "static")
    flask_app = Flask("rq_dashboard_host", static_folder=static)
    flask_app.config.from_object(rq_dashboard.default_settings)
    # Embedded mode has no URL to connect to; the dashboard gets the in-process client.
    flask_app.config["RQ_DASHBOARD_REDIS_URL"] = redis_url or "redis://127.0.0.1:6379"
    flask_app.config["REFUNDBRIDGE_REDIS"] = redis
    if not getattr(rq_dashboard.blueprint, "_refundbridge_hooked", False):
        # Runs after the blueprint's own connection hook, which would reconnect by URL;
        # it must be added before the blueprint's first registration.
        @rq_dashboard.blueprint.before_request  # type: ignore[untyped-decorator]
        def _use_our_client() -> None:
            current_app.redis_conn = current_app.config["REFUNDBRIDGE_REDIS"]  # type: ignore[attr-defined]

        rq_dashboard.blueprint._refundbridge_hooked = True
    flask_app.register_blueprint(rq_dashboard.blueprint, url_prefix="")
    rq_dashboard.web.setup_rq_connection(flask_app)
    flask_app.redis_conn = redis  # type: ignore[attr-defined]
    return cast(ASGIApp, WSGIMiddleware(flask_app))  # type: ignore[arg-type]


class OperatorGuard:
    """Authenticate and de-CSRF every request before it reaches the wrapped app."""

    def __init__(self, app: ASGIApp, is_operator: Any) -> None:
        self.app = app
        self.is_operator = is_operator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope_headers(scope)
        response = None
        if not self.is_operator(headers.get("authorization")):
            response = problem(401, "Unauthorized", "an operator bearer token is required")
        else:
            response = refusal(scope.get("method", "GET"), _relative(scope),
                               headers.get("x-requested-with"))
        if response is not None:
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
