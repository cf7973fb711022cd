"""The console's plumbing: templates in two languages, the logged-in operator, CSRF, the
security headers, and error pages.

Every page is rendered on the server and works without JavaScript; htmx (vendored) only
saves a reload here and there. A page handler asks for `ConsoleUser` (any logged-in
operator) or `ConsoleWriter` (a logged-in operator whose POST carries the session's CSRF
token) and calls `render`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from babel import Locale, UnknownLocaleError
from babel.core import negotiate_locale
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from refundbridge.api.console import labels
from refundbridge.api.deps import AppDeps
from refundbridge.api.i18n import Catalog
from refundbridge.core.access import Permission, Principal
from refundbridge.core.errors import Forbidden

HERE = Path(__file__).parent
SESSION_COOKIE = "rb_session"
LANG_COOKIE = "rb_lang"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
LOCALES = ("en", "zh-CN")
PREFIX = "/console"


# ---- languages --------------------------------------------------------------------------

CATALOG = Catalog(HERE / "i18n")


def catalog() -> dict[str, str]:
    return CATALOG.texts


def translator(locale: str) -> Callable[..., str]:
    return CATALOG.translator(locale)


def choose_locale(request: Request) -> str:
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LOCALES:
        return chosen
    offered = []
    for part in request.headers.get("accept-language", "").split(","):
        tag = part.split(";")[0].strip().replace("_", "-")
        if tag:
            offered.append(tag)
    best = negotiate_locale(offered, ["en", "zh-CN", "zh"], sep="-")
    return "zh-CN" if best and best.startswith("zh") else "en"


def _babel_locale(locale: str) -> Locale:
    try:
        return Locale.parse(locale, sep="-")
    except (UnknownLocaleError, ValueError):
        return Locale("en")


# ---- templates --------------------------------------------------------------------------

@cache
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["urlquote"] = lambda value: quote(str(value), safe="")
    env.globals["label"] = labels.label
    env.globals["badge"] = labels.badge
    return env


@dataclass(frozen=True)
class ConsoleContext:
    principal: Principal
    csrf_token: str
    locale: str
    expires_at: datetime

    def may(self, permission: Permission) -> bool:
        return self.principal.may(permission)


NAV: tuple[tuple[str, str, Permission], ...] = (
    ("/console/review", "Review queue", Permission.DECIDE),
    ("/console/receive", "Receive goods", Permission.RECEIVE),
    ("/console/cases", "Cases", Permission.READ),
    ("/console/jobs", "Jobs", Permission.OPERATE),
    ("/console/kpis", "KPIs", Permission.READ),
    ("/console/recalls", "Recalls", Permission.READ),
    ("/console/signals", "Signals", Permission.READ),
    ("/console/capa", "CAPA", Permission.READ),
    ("/console/evidence", "Evidence", Permission.EXPORT),
)


def render(request: Request, template: str, user: ConsoleContext | None, *,
           status: int = 200, headers: Mapping[str, str] | None = None,
           **values: Any) -> HTMLResponse:
    """The page `template` with `values`, in the operator's language.

    Every template gets `_` (translate), `user`, `csrf_token` (for its forms), `nav`,
    `locale`, `path` and `babel_locale` (for dates and money)."""
    locale = user.locale if user else choose_locale(request)
    nav = [(href, label) for href, label, needs in NAV if user and user.may(needs)]
    html = environment().get_template(template).render(
        _=translator(locale), user=user, csrf_token=user.csrf_token if user else "",
        nav=nav, locale=locale, babel_locale=_babel_locale(locale),
        path=request.url.path, query=str(request.url.query), **values)
    return HTMLResponse(html, status_code=status, headers=dict(headers or {}))


# ---- who is logged in -------------------------------------------------------------------

class LoginRequired(Exception):
    """No live session: the browser is sent to the login page, and back afterwards."""


def current_user(request: Request, deps: AppDeps) -> ConsoleContext:
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id or len(session_id) > 128:
        raise LoginRequired
    session = deps.operators.session(session_id, datetime.now(UTC))
    if session is None:
        raise LoginRequired
    return ConsoleContext(session.principal, session.csrf_token, choose_locale(request),
                          session.expires_at)


ConsoleUser = Annotated[ConsoleContext, Depends(current_user)]


class CsrfRejected(Forbidden):
    pass


async def check_csrf(request: Request, user: ConsoleUser) -> ConsoleContext:
    """The request carries this session's CSRF token: a form field, or the header htmx
    sends (`hx-headers` on the page's body)."""
    offered = request.headers.get(CSRF_HEADER)
    if offered is None:
        form = await request.form()
        field = form.get(CSRF_FIELD)
        offered = field if isinstance(field, str) else None
    if not offered or not hmac.compare_digest(offered.encode(), user.csrf_token.encode()):
        raise CsrfRejected("csrf_token: missing or not this session's; reload the page "
                           "and send the form again")
    return user


ConsoleWriter = Annotated[ConsoleContext, Depends(check_csrf)]


def safe_next(target: str | None) -> str:
    """Where to go after logging in: only a console path of ours, never another site."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") \
            and "\\" not in target and "\n" not in target and "\r" not in target:
        return target
    return PREFIX + "/"


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = f"{PREFIX}/login?next={quote(safe_next(target), safe='')}"
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return redirect(url)


def error_page(request: Request, status: int, title: str, detail: str) -> Response:
    return render(request, "error.html", None, status=status, code=status, title=title,
                  detail=detail)


# ---- security headers -------------------------------------------------------------------

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "object-src 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


class SecurityHeaders:
    """Adds the headers above to every response under the given prefixes, and keeps pages
    with a customer's or an operator's data out of shared caches."""

    def __init__(self, app: ASGIApp, prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope["path"]).startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        static = "/static/" in str(scope["path"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                # A response may set a stricter or narrower policy of its own (an SVG
                # chart's styles); every other header of ours is added where it is missing.
                headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
