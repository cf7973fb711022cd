"""The status page's plumbing: templates in the customer's language, the headers that keep
the token in the address bar only, and error pages.

There is no login: a page is either the case a verified token names, or a page about the
link (expired, not valid) with the look-up form. Pages have no script at all.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_date
from babel.numbers import format_currency
from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from refundbridge.api.deps import ApiDeps
from refundbridge.api.i18n import Catalog
from refundbridge.core.money import Money

HERE = Path(__file__).parent
PREFIX = "/status"
LOCALES = ("en", "zh-CN")


# ---- languages --------------------------------------------------------------------------

CATALOG = Catalog(HERE / "i18n")


def catalog() -> dict[str, str]:
    return CATALOG.texts


def translator(locale: str) -> Callable[..., str]:
    return CATALOG.translator(locale)


def page_locale(tag: str | None) -> str:
    """One of our two languages for a locale tag (`zh`, `zh_TW`, `en-GB`, …)."""
    tag = (tag or "").strip().replace("_", "-").lower()
    return "zh-CN" if tag.startswith("zh") else "en"


def choose_locale(request: Request, default: str | None = None) -> str:
    """`?lang=` (the page's language switch), else the case's language, else the
    browser's first choice."""
    asked = request.query_params.get("lang")
    if asked in LOCALES:
        return asked
    if default:
        return page_locale(default)
    first = request.headers.get("accept-language", "").split(",")[0].split(";")[0]
    return page_locale(first)


# ---- templates --------------------------------------------------------------------------

@cache
def environment() -> Environment:
    return Environment(loader=FileSystemLoader(HERE / "templates"),
                       autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True)


def shop_name(deps: ApiDeps, shop_id: str | None) -> str:
    if shop_id is None:
        return ""
    shop = deps.settings.shops.get(shop_id)
    return str(getattr(shop, "name", "") or shop_id) if shop is not None else ""


def render(request: Request, template: str, *, locale: str, shop: str = "",
           status: int = 200, **values: Any) -> HTMLResponse:
    """The page `template` in `locale`. Every template gets `_`, `locale`, `path` (for the
    language switch), `shop_name`, `day` (a date in words) and `money`."""
    babel = Locale.parse(locale, sep="-")

    def day(value: date | None) -> str:
        return format_date(value, format="long", locale=babel) if value else "—"

    def money(value: Money) -> str:
        return str(format_currency(value.amount, value.currency, locale=babel))

    html = environment().get_template(template).render(
        _=translator(locale), locale=locale, path=request.url.path, shop_name=shop,
        day=day, money=money, **values)
    return HTMLResponse(html, status_code=status)


def error_page(request: Request, status: int, title: str, detail: str) -> Response:
    """Any other error under /status (a 404 path, a 405, a 422 form): a page, never the
    problem+json of the API, and nothing of the detail (it may name a case)."""
    return render(request, "error.html", locale=choose_locale(request), status=status,
                  code=status)


# ---- headers ----------------------------------------------------------------------------

class NoReferrer:
    """The token is the page's address: no request the page makes (its stylesheet, a link
    the customer follows) may carry it away in a Referer. Set here, inside the console's
    `SecurityHeaders`, which then keeps it (it adds only what is missing)."""

    def __init__(self, app: ASGIApp, prefix: str = PREFIX) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or not (path == self.prefix
                                           or path.startswith(self.prefix + "/")):
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in (b"referrer-policy", b"x-robots-tag")]
                headers += [(b"referrer-policy", b"no-referrer"),
                            (b"x-robots-tag", b"noindex, nofollow")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_header)
