"""`/status/recall/{token}`: where a consignee of a recall campaign reads the notice, sees
the units they received and answers (stopped using them, how many they hold, whether to
return them for a refund, passed the notice on).

The token names one consignee of one campaign of one shop; nothing is read before it
verifies, and the page shows only what `RecallPage` copies: the notice, and this
consignee's own units and answer. The first answer stands (`acknowledge` says whether this
one was recorded); a repeat shows the first. Every bad input comes back as the form, with
what was typed and a message naming the field, never as an error page.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from refundbridge.api.deps import ApiDeps, AppDeps
from refundbridge.api.status.throttle import FormThrottle
from refundbridge.api.status.web import PREFIX, choose_locale, render, shop_name
from refundbridge.core.campaigns import (
    ACK_NOTE_MAX,
    Acknowledgement,
    CampaignRepository,
    ConsigneeRecord,
    RecallAction,
    RecallCampaign,
)
from refundbridge.core.errors import ConcurrencyConflict, InvalidRequest, NotFound
from refundbridge.core.recalls import RecallClass
from refundbridge.core.services.campaigns import CampaignClosed, acknowledge
from refundbridge.core.status_links import LinkForged, StatusLinks

router = APIRouter(prefix=f"{PREFIX}/recall", include_in_schema=False)

CSRF_COOKIE = "rb_recall_csrf"  # its own: a look-up form open in another tab keeps its own
CSRF_AGE = 60 * 60
CSRF_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")  # what `secrets.token_urlsafe(32)` makes
NOTE_MAX = ACK_NOTE_MAX  # what `acknowledge` takes
QUANTITY = re.compile(r"^[0-9]{1,6}$")  # a whole number, nothing a float or int() would bend
POSTS_PER_ADDRESS = 30  # answers sent from one address per 15 minutes (a repeat counts too)

# The manufacturer's actions, as sentences for the consignee (the template translates).
ACTION_SENTENCES = {
    RecallAction.STOP_USE: "Stop using these units now.",
    RecallAction.RETURN: "Return these units to us: we refund them.",
    RecallAction.DESTROY: "Dispose of these units safely, as the instructions below say.",
    RecallAction.AWAIT_CORRECTION: "Keep these units aside until the correction from the "
                                   "manufacturer reaches you.",
}
CLASS_SENTENCES = {
    RecallClass.I: "Class I: using the product could cause serious harm.",
    RecallClass.II: "Class II: using the product could cause temporary or reversible harm.",
    RecallClass.III: "Class III: using the product is unlikely to cause harm, but it does "
                     "not meet its requirements.",
}
# What the form says about a field it cannot take (the template translates). `{total}` is
# the consignee's number of units.
FIELD_MESSAGES = {
    "quantity_held": "How many units do you still hold? Enter a whole number from 0 to "
                     "{total}.",
    "wants_return": "Please choose whether you want to return the units for a refund.",
    "return_nothing": "You hold no units, so there is nothing to return: choose No, or "
                      "correct the number of units you hold.",
    "note": "Your note is too long: please keep it to {limit} characters or fewer.",
    "csrf": "The form expired. Please check your answer and send it again.",
    "busy": "Too many answers were sent from here. Please try again in 15 minutes.",
    "conflict": "We could not save your answer just now. Please send it again.",
}
FIELD_LABELS = {
    "quantity_held": "Units I still hold",
    "wants_return": "I want to return them for a refund",
    "return_nothing": "I want to return them for a refund",
    "note": "Note (optional)",
}


@dataclass(frozen=True, slots=True)
class Unit:
    sku: str
    lot: str | None
    serial: str | None
    quantity: int
    document: str
    shipped_on: date | None


@dataclass(frozen=True, slots=True)
class Answer:
    stopped_use: bool
    quantity_held: int
    wants_return: bool
    passed_on: bool
    note: str
    at: date | None


@dataclass(frozen=True, slots=True)
class RecallPage:
    """What the page may show: the notice, and this one consignee's name, units and answer.
    Nothing of other consignees, nothing of the campaign's trail or counts, no notice
    states, no internal reason why a case could not be opened."""

    reference: str
    class_sentence: str
    notice_date: date
    product_sku: str | None
    product_gtin: str | None
    actions: tuple[str, ...]
    instructions: str
    name: str
    units: tuple[Unit, ...]
    total: int
    closed: bool
    answer: Answer | None
    case_path: str | None  # the recall case's status page, once it is open
    by_hand: bool  # no case could be opened: the shop arranges the return itself
    locale: str | None

    @classmethod
    def of(cls, campaign: RecallCampaign, record: ConsigneeRecord, links: StatusLinks,
           timezone: str) -> RecallPage:
        notice = campaign.notice
        ack = record.acknowledgement
        answer = None
        if ack is not None:
            at = record.acknowledged_at
            answer = Answer(ack.stopped_use, ack.quantity_held, ack.wants_return,
                            ack.passed_on, ack.note, _day(at, timezone))
        case_path = None
        if record.case_id:
            # The same token `link_for` puts in its emails, as a path: the page is served
            # wherever this one is.
            case_path = f"{PREFIX}/{links.token_for(record.case_id, campaign.shop_id)}"
        return cls(
            reference=notice.reference,
            class_sentence=CLASS_SENTENCES[notice.recall_class],
            notice_date=notice.notice_date, product_sku=notice.sku,
            product_gtin=notice.gtin,
            actions=tuple(ACTION_SENTENCES[a] for a in notice.actions),
            instructions=notice.instructions, name=record.name,
            units=tuple(Unit(u.sku, u.lot, u.serial, u.quantity, u.document, u.shipped_on)
                        for u in record.units),
            total=record.quantity, closed=not campaign.is_open, answer=answer,
            case_path=case_path,
            by_hand=record.case_id is None and record.case_problem is not None,
            locale=record.locale)


def _day(moment: datetime | None, timezone: str) -> date | None:
    if moment is None:
        return None
    return moment.astimezone(ZoneInfo(timezone)).date() if moment.tzinfo else moment.date()


@dataclass(frozen=True, slots=True)
class _Found:
    campaign: RecallCampaign
    record: ConsigneeRecord
    shop_id: str
    links: StatusLinks


def _repo(deps: ApiDeps) -> CampaignRepository | None:
    return deps.api_services.campaigns


def _find(deps: ApiDeps, token: str) -> _Found | None:
    """The campaign and consignee a verified token names; None for any other token."""
    links = deps.api_services.status_links
    repo = _repo(deps)
    if links is None or repo is None:
        return None
    try:
        campaign_id, consignee_id, shop_id = links.read_recall(token)
        if shop_id not in deps.shop_ids:
            return None
        campaign = repo.get(campaign_id)
        record = repo.consignee(campaign_id, consignee_id)
    except (LinkForged, NotFound):
        return None
    if campaign.shop_id != shop_id or record.campaign_id != campaign.id:
        return None
    return _Found(campaign, record, shop_id, links)


def _invalid(request: Request) -> Response:
    """A token we did not sign, or one naming nothing we have: the status page's own
    "not valid" page. No look-up form: a recall link is not found by order number."""
    return render(request, "link_invalid.html", locale=choose_locale(request), status=404,
                  shop_id=None)


def _page(request: Request, deps: ApiDeps, found: _Found) -> RecallPage:
    return RecallPage.of(found.campaign, found.record, found.links,
                         deps.shop_policy(found.shop_id).timezone)


def _answer_page(request: Request, deps: ApiDeps, found: _Found, *, recorded: bool,
                 status: int = 200) -> Response:
    page = _page(request, deps, found)
    template = "recall_closed.html" if page.closed and not recorded else "recall_done.html"
    return render(request, template, locale=choose_locale(request, page.locale),
                  shop=shop_name(deps, found.shop_id), status=status, recall=page,
                  recorded=recorded)


def _form(request: Request, deps: ApiDeps, found: _Found, *, status: int = 200,
          error: str = "", field: str = "", values: dict[str, str] | None = None
          ) -> Response:
    """The notice with the form, a fresh double-submit CSRF token in a cookie, and what the
    consignee typed (if anything) filled back in."""
    page = _page(request, deps, found)
    # One token per browser, not per form: two tabs of the form (or the form and a repeat)
    # must not make each other's answers "expired".
    kept = request.cookies.get(CSRF_COOKIE, "")
    token = kept if CSRF_TOKEN.match(kept) else secrets.token_urlsafe(32)
    typed = {"stopped_use": "", "quantity_held": "", "wants_return": "", "passed_on": "",
             "note": "", **(values or {})}
    message = FIELD_MESSAGES[error] if error else ""
    response = render(request, "recall_ack.html", locale=choose_locale(request, page.locale),
                      shop=shop_name(deps, found.shop_id), status=status, recall=page,
                      csrf_token=token, error=message, field=field,
                      field_label=FIELD_LABELS.get(error, ""), typed=typed,
                      note_max=NOTE_MAX)
    response.set_cookie(CSRF_COOKIE, token, max_age=CSRF_AGE, path=f"{PREFIX}/recall",
                        httponly=True, samesite="strict",
                        secure=request.url.scheme == "https"
                        or deps.settings.console.secure_cookies)
    return response


@router.get("/{token}")
async def recall_page(token: str, request: Request, deps: AppDeps) -> Response:
    found = await run_in_threadpool(_find, deps, token)
    if found is None:
        return _invalid(request)
    if found.record.acknowledged_at is not None or not found.campaign.is_open:
        return _answer_page(request, deps, found, recorded=False)
    return _form(request, deps, found)


def _yes(value: str | None) -> bool:
    return (value or "").strip().lower() in ("yes", "on", "true", "1")


@router.post("/{token}")
async def recall_answer(
        token: str, request: Request, deps: AppDeps,
        # Plain optional strings, checked below: a missing or odd field is the form again
        # with a message, not FastAPI's validation error page.
        csrf_token: Annotated[str | None, Form()] = None,
        stopped_use: Annotated[str | None, Form()] = None,
        quantity_held: Annotated[str | None, Form()] = None,
        wants_return: Annotated[str | None, Form()] = None,
        passed_on: Annotated[str | None, Form()] = None,
        note: Annotated[str | None, Form()] = None) -> Response:
    found = await run_in_threadpool(_find, deps, token)
    if found is None:
        return _invalid(request)
    values = {"stopped_use": "yes" if _yes(stopped_use) else "",
              "quantity_held": (quantity_held or "").strip()[:12],
              "wants_return": (wants_return or "").strip().lower()[:3],
              "passed_on": "yes" if _yes(passed_on) else "",
              "note": (note or "").replace("\r\n", "\n")}
    if values["wants_return"] not in ("yes", "no"):
        values["wants_return"] = ""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    offered = (csrf_token or "").encode()
    settled = found.record.acknowledged_at is not None or not found.campaign.is_open
    if not cookie or not hmac.compare_digest(cookie.encode(), offered):
        if settled:
            return _answer_page(request, deps, found, recorded=False, status=403)
        return _form(request, deps, found, status=403, error="csrf", values=values)
    address = request.client.host if request.client else "-"
    throttle = FormThrottle(deps.redis, "recall-answer", POSTS_PER_ADDRESS, 15 * 60)
    if not await run_in_threadpool(throttle.try_count, address):
        if settled:
            return _answer_page(request, deps, found, recorded=False, status=429)
        return _form(request, deps, found, status=429, error="busy", values=values)
    if settled:
        # The first answer stands; a closed recall takes none. Neither needs the input.
        return _answer_page(request, deps, found, recorded=False,
                            status=200 if found.campaign.is_open else 409)
    total = found.record.quantity
    problem = _check(values, total)
    if problem:
        return _form(request, deps, found, status=422, error=problem,
                     field="wants_return" if problem == "return_nothing" else problem,
                     values=values)
    ack = Acknowledgement(stopped_use=values["stopped_use"] == "yes",
                          quantity_held=int(values["quantity_held"]),
                          wants_return=values["wants_return"] == "yes",
                          passed_on=values["passed_on"] == "yes", note=values["note"].strip())
    try:
        result = await run_in_threadpool(acknowledge, deps.api_services, found.campaign.id,
                                         found.record.id, ack)
    except InvalidRequest as exc:
        # The service's own checks, should they ever be stricter than ours above.
        error = exc.field if exc.field in FIELD_MESSAGES else "quantity_held"
        if exc.field == "wants_return":
            error = "return_nothing"
        return _form(request, deps, found, status=422, error=error,
                     field="wants_return" if error == "return_nothing" else error,
                     values=values)
    except CampaignClosed:
        closed = await run_in_threadpool(_find, deps, token)
        return _answer_page(request, deps, closed or found, recorded=False, status=409)
    except ConcurrencyConflict:
        return _form(request, deps, found, status=409, error="conflict", values=values)
    record = result.consignee
    return _answer_page(request, deps, _Found(found.campaign, record, found.shop_id,
                                              found.links), recorded=result.recorded)


def _check(values: dict[str, str], total: int) -> str:
    """The first field the form cannot take, as a key of FIELD_MESSAGES; "" if none."""
    quantity = values["quantity_held"]
    if not QUANTITY.match(quantity) or int(quantity) > total:
        return "quantity_held"
    if not values["wants_return"]:
        return "wants_return"
    if values["wants_return"] == "yes" and int(quantity) == 0:
        return "return_nothing"
    if len(values["note"].strip()) > NOTE_MAX:
        return "note"
    return ""
