"""The customer's status page: `/status/{token}` behind the signed link in every message,
and `/status/{shop}/lookup` for a fresh link; `/status/recall/{token}` where a
consignee of a recall campaign answers its notice. No login; server-rendered, no script.

`pages` holds the routes, `view` the whitelist of what a page may show of a case, `web`
the templates, languages and headers, `throttle` the look-up form's limits.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from refundbridge.api.console.web import SecurityHeaders
from refundbridge.api.status import pages, recall
from refundbridge.api.status.web import HERE, PREFIX, NoReferrer, error_page


def install(app: FastAPI) -> None:
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="status-static")
    # Before `pages`: `/status/recall/{token}` must not be read as a shop's look-up form.
    app.include_router(recall.router)
    app.include_router(pages.router)
    app.state.html_errors = {**getattr(app.state, "html_errors", {}), PREFIX + "/": error_page}
    # Inner first: NoReferrer's header is there when SecurityHeaders adds what is missing
    # (CSP without inline script, frame-ancestors 'none', nosniff, no-store).
    app.add_middleware(NoReferrer, prefix=PREFIX)
    app.add_middleware(SecurityHeaders, prefixes=(PREFIX + "/",))
