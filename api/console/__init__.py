"""The operator console: server-rendered pages for a shop's reviewers, warehouse inspectors,
quality manager and auditor, under `/console`.

One module per page (its router, its template, its zh-CN texts in `i18n/<page>.json`);
`web` holds what they share (templates, the logged-in operator, CSRF, headers).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from refundbridge.api.console import (
    auth,
    capa,
    case,
    cases,
    evidence,
    jobs,
    kpis,
    recalls,
    receive,
    review,
    signals,
)
from refundbridge.api.console.web import (
    HERE,
    PREFIX,
    LoginRequired,
    SecurityHeaders,
    error_page,
    login_redirect,
)


def install(app: FastAPI) -> None:
    for module in (auth, review, case, cases, receive, jobs, kpis, recalls, capa,
                   signals, evidence):
        app.include_router(module.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.add_exception_handler(LoginRequired, lambda request, _: login_redirect(request))
    app.state.html_errors = {**getattr(app.state, "html_errors", {}), PREFIX: error_page}
    app.add_middleware(SecurityHeaders, prefixes=(PREFIX,))
