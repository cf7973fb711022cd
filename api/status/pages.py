"""`/status/{token}`: where a customer's request stands; `/status/{shop}/lookup`: a fresh
link for an order, sent to the email address on file.

Nothing of a case is read before its token verifies. A token that expired (410) or that we
did not sign (404) gets a page that says so, with the look-up form. The form's answer is
the same page whether or not the order exists and the address matches: the look-up and the
email happen after the answer has gone (a background task), so not even its timing tells.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from refundbridge.api.deps import ApiDeps, AppDeps
from refundbridge.api.status.throttle import LookupThrottle
from refundbridge.api.status.view import StatusView
from refundbridge.api.status.web import PREFIX, choose_locale, error_page, render, shop_name
from refundbridge.core.errors import NotFound
from refundbridge.core.status_links import (
    LinkExpired,
    LinkForged,
    StatusLinkMessage,
    StatusLinks,
    StatusLinkSender,
)
from refundbridge.store.status_reads import link_target

log = logging.getLogger("refundbridge.api.status")
router = APIRouter(prefix=PREFIX, include_in_schema=False)

CSRF_COOKIE = "rb_status_csrf"
CSRF_AGE = 60 * 60
ORDER_MAX = 128
EMAIL_MAX = 254
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _links(deps: ApiDeps) -> StatusLinks | None:
    return deps.api_services.status_links


def _shop(deps: ApiDeps, shop_id: str | None) -> str | None:
    return shop_id if shop_id is not None and shop_id in deps.shop_ids else None


def _link_days(deps: ApiDeps, shop_id: str | None) -> int:
    shop = _shop(deps, shop_id)
    return deps.shop_policy(shop).status_link_days if shop is not None else 90


def _form_page(request: Request, deps: ApiDeps, template: str, *, shop_id: str | None,
               status: int = 200, error: str = "", order: str = "", email: str = "",
               locale: str | None = None) -> Response:
    """A page with the look-up form (for `shop_id`, if it is a shop of ours), and its
    double-submit CSRF cookie."""
    token = secrets.token_urlsafe(32)
    shop = _shop(deps, shop_id)
    response = render(request, template, locale=locale or choose_locale(request),
                      shop=shop_name(deps, shop), status=status, shop_id=shop,
                      csrf_token=token, error=error, order=order, email=email,
                      link_days=_link_days(deps, shop))
    if shop is not None:
        response.set_cookie(CSRF_COOKIE, token, max_age=CSRF_AGE, path=PREFIX,
                            httponly=True, samesite="strict",
                            secure=request.url.scheme == "https"
                            or deps.settings.console.secure_cookies)
    return response


@router.get("/{token}")
async def status_page(token: str, request: Request, deps: AppDeps) -> Response:
    links = _links(deps)
    if links is None:
        return _form_page(request, deps, "link_invalid.html", shop_id=None, status=404)
    try:
        case_id = await run_in_threadpool(
            links.read, token, lambda shop: _link_days(deps, shop))
        shop_id = links.shop_of(token)
        if _shop(deps, shop_id) is None:
            raise LinkForged("a shop we do not have")
        detail = await run_in_threadpool(deps.reads.case_detail, case_id)
        if detail["shop_id"] != shop_id:
            raise LinkForged("not this shop's case")
    except LinkExpired as exc:
        return _form_page(request, deps, "link_expired.html", shop_id=exc.shop_id,
                          status=410)
    except (LinkForged, NotFound):
        hint = links.shop_hint(token)
        only = deps.shop_ids[0] if len(deps.shop_ids) == 1 else None
        return _form_page(request, deps, "link_invalid.html",
                          shop_id=hint if _shop(deps, hint) else only, status=404)
    view = StatusView.of(detail, deps.shop_policy(shop_id))
    return render(request, "status.html", locale=choose_locale(request, view.locale),
                  shop=shop_name(deps, shop_id), case=view,
                  lookup_url=f"{PREFIX}/{shop_id}/lookup")


@router.get("/{shop_id}/lookup")
async def lookup_form(shop_id: str, request: Request, deps: AppDeps) -> Response:
    if _shop(deps, shop_id) is None or _links(deps) is None:
        return error_page(request, 404, "Not Found", "")
    return _form_page(request, deps, "lookup.html", shop_id=shop_id)


@router.post("/{shop_id}/lookup")
async def lookup(shop_id: str, request: Request, deps: AppDeps, background: BackgroundTasks,
                 order: Annotated[str, Form(max_length=ORDER_MAX)] = "",
                 email: Annotated[str, Form(max_length=EMAIL_MAX)] = "",
                 csrf_token: Annotated[str, Form(max_length=128)] = "") -> Response:
    links = _links(deps)
    if _shop(deps, shop_id) is None or links is None:
        return error_page(request, 404, "Not Found", "")
    order, email = order.strip(), email.strip()
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), csrf_token.encode()):
        return _form_page(request, deps, "lookup.html", shop_id=shop_id, status=403,
                          order=order, email=email,
                          error="The form expired. Please send it again.")
    if not order or not EMAIL.match(email):
        return _form_page(request, deps, "lookup.html", shop_id=shop_id, status=422,
                          order=order, email=email,
                          error="Enter your order number and the email address you used.")
    address = request.client.host if request.client else "-"
    throttle = LookupThrottle(deps.redis)
    allowed = await run_in_threadpool(throttle.try_lookup, address, shop_id, order)
    if not allowed:
        return _form_page(request, deps, "lookup.html", shop_id=shop_id, status=429,
                          order=order, email=email,
                          error="Too many look-ups. Please try again in an hour.")
    background.add_task(run_in_threadpool, send_fresh_link, deps, links, shop_id, order,
                        email)
    response = render(request, "lookup_sent.html", locale=choose_locale(request),
                      shop=shop_name(deps, shop_id), shop_id=shop_id)
    response.delete_cookie(CSRF_COOKIE, path=PREFIX)
    return response


def send_fresh_link(deps: ApiDeps, links: StatusLinks, shop_id: str, order: str,
                    email: str) -> bool:
    """If `email` is the address on file for a case of the order, email a fresh link there.
    Runs after the answer has gone; a failure is logged, never shown."""
    try:
        target = link_target(deps.reads.engine, shop_id, order, email)
        if target is None:
            return False
        notifier = deps.api_services.gateways(shop_id).notifier
        if not isinstance(notifier, StatusLinkSender):
            log.warning("shop %s: its notifier cannot email a status link", shop_id)
            return False
        notifier.send_status_link(StatusLinkMessage(
            shop_id=shop_id, case_id=target.case_id, order_id=order, email=target.email,
            locale=target.locale, status_url=links.link_for(target.case_id, shop_id),
            message_id=f"{target.case_id}.status-link.{secrets.token_hex(8)}"))
        return True
    except Exception:  # after the answer: nobody to tell but the log
        log.exception("shop %s: sending a fresh status link failed", shop_id)
        return False
