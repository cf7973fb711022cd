"""Review queue `/console/review`: the cases waiting for a person, oldest due first, with the
rules that sent each one there, its deadlines and their SLA badges, the customer's history;
claim and release; and one case's decision form at `/console/review/{case_id}`.

A decision needs an internal note (kept, never sent) and may carry a message to the
customer. Where four eyes apply (an amount above the shop's `four_eyes_above`, a possible
adverse event) the decision is only proposed, and another reviewer confirms it or sends it
back. Every action needs the DECIDE permission; another shop's case is a 404.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from refundbridge.api.console.formatting import money_text
from refundbridge.api.console.web import (
    PREFIX,
    ConsoleContext,
    ConsoleUser,
    ConsoleWriter,
    redirect,
    render,
    translator,
)
from refundbridge.api.deps import AppDeps
from refundbridge.api.routes.cases import TEXT
from refundbridge.core import services
from refundbridge.core.access import Permission
from refundbridge.core.errors import ClaimedByAnother, DomainError, InvalidRequest, SameReviewer
from refundbridge.core.lifecycle import CaseState
from refundbridge.core.model import Outcome
from refundbridge.core.money import Money
from refundbridge.store.review_queue import Assigned, QueueFilters, ReasonGroup, ReviewItem

router = APIRouter(prefix=PREFIX, include_in_schema=False)

NOTE_MAX = 4000
MESSAGE_MAX = 2000
FREE_TEXT = re.compile(TEXT)
RULE_ID = re.compile(r"^[A-Z][A-Z0-9]{0,15}$")
CASE_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")

GROUP_LABELS = {
    ReasonGroup.ADVERSE_EVENT: "Possible adverse event",
    ReasonGroup.QUALITY: "Defect or quality",
    ReasonGroup.NO_REASON: "No reason",
    ReasonGroup.RECALL: "Recall",
    ReasonGroup.OTHER: "Other",
}
ASSIGNED_LABELS = {Assigned.ANYONE: "Anyone", Assigned.ME: "Assigned to me",
                   Assigned.UNASSIGNED: "Unassigned"}
BADGE_LABELS = {"breached": "Breached", "at_risk": "At risk", "ok": "On time"}
REASON_LABELS = {"amount": "the amount is above the shop's four-eyes limit",
                 "adverse_event": "a possible adverse event"}
# After a POST the queue says what happened (a fixed text, never one from the URL).
NOTICES = {
    "claimed": "You claimed case {case}.",
    "released": "You released case {case}.",
    "approved": "Case {case} approved.",
    "denied": "Case {case} denied.",
    "proposed": "Your decision on case {case} waits for a second reviewer.",
    "sent_back": "The proposal on case {case} was sent back.",
}


def _today(deps: AppDeps) -> Callable[[str], date]:
    """Today in each shop's own calendar: the day its deadlines are counted in."""
    def today(shop: str) -> date:
        return datetime.now(ZoneInfo(deps.shop_policy(shop).timezone)).date()
    return today


async def _shop_checked(deps: AppDeps, user: ConsoleContext, case_id: str) -> str:
    """The case's shop, if the operator may decide it (else 404, or 403 for the role; the
    shop first, so that a role check never tells that another shop's case exists)."""
    shop = await run_in_threadpool(deps.reads.case_shop, case_id)
    user.principal.require_shop(shop, f"case {case_id}")
    user.principal.require(Permission.DECIDE)
    return shop


def _amount(item: ReviewItem, locale: str) -> str:
    return money_text(Money.parse(item.amount, item.currency), locale)


@router.get("/review")
async def review_queue(
    request: Request, user: ConsoleUser, deps: AppDeps,
    shop: Annotated[str, Query(max_length=64)] = "",
    rule: Annotated[str, Query(max_length=16)] = "",
    group: Annotated[str, Query(max_length=32)] = "",
    due_before: Annotated[str, Query(max_length=10)] = "",
    assigned: Annotated[str, Query(max_length=16)] = "",
    notice: Annotated[str, Query(max_length=16)] = "",
    case: Annotated[str, Query(max_length=40)] = "",
) -> Response:
    user.principal.require(Permission.DECIDE)
    errors: list[str] = []
    shops = user.principal.visible(deps.shop_ids)
    if shop and shop not in shops:
        errors.append("shop")
    if rule and not RULE_ID.match(rule):
        errors.append("rule")
    groups = {g.value: g for g in ReasonGroup}
    if group and group not in groups:
        errors.append("group")
    due: date | None = None
    if due_before:
        try:
            due = date.fromisoformat(due_before)
        except ValueError:
            errors.append("due_before")
    choices = {a.value: a for a in Assigned}
    if assigned not in choices:
        errors.append("assigned")
    filters = QueueFilters(
        shop=shop if shop in shops else None,
        rule=rule if rule and "rule" not in errors else None,
        group=groups.get(group), due_before=due,
        assigned=choices.get(assigned, Assigned.ANYONE))
    queue = await run_in_threadpool(
        deps.reads.review_desk.queue, shops=user.principal.shops,
        actor=user.principal.actor, today=_today(deps), filters=filters)
    shown_notice = ""
    if notice in NOTICES and CASE_ID.match(case):
        shown_notice = notice
    return render(request, "review.html", user, queue=queue, filters=filters, shops=shops,
                  groups=GROUP_LABELS, assigned_labels=ASSIGNED_LABELS,
                  badge_labels=BADGE_LABELS, errors=errors, notice=shown_notice,
                  notices=NOTICES, notice_case=case, amount=_amount,
                  actor=user.principal.actor, due_before=due_before,
                  status=422 if errors else 200)


async def _case_page(request: Request, user: ConsoleContext, deps: AppDeps, case_id: str,
                     *, status: int = 200, error: str = "", field: str = "",
                     form: dict[str, str] | None = None) -> Response:
    shop = await _shop_checked(deps, user, case_id)
    item, case = await run_in_threadpool(deps.reads.review_desk.item, case_id, _today(deps))
    reasons = services.four_eyes_reasons(deps.shop_policy(shop), case)
    actor = user.principal.actor
    proposal = item.proposal
    return render(
        request, "review_case.html", user, status=status, item=item,
        in_review=item.state == CaseState.AWAITING_REVIEW.value,
        four_eyes=[REASON_LABELS[r.value] for r in reasons],
        proposal=proposal, own_proposal=proposal is not None and proposal.proposed_by == actor,
        actor=actor, amount=_amount(item, user.locale), badge_labels=BADGE_LABELS,
        groups=GROUP_LABELS, error=error, field=field,
        form={"decision": "", "internal_note": "", "customer_message": "",
              "confirm_note": "", **(form or {})},
        note_max=NOTE_MAX, message_max=MESSAGE_MAX)


@router.get("/review/{case_id}")
async def review_case(case_id: str, request: Request, user: ConsoleUser,
                      deps: AppDeps) -> Response:
    return await _case_page(request, user, deps, case_id)


def _done(notice: str, case_id: str) -> Response:
    return redirect(f"{PREFIX}/review?" + urlencode({"notice": notice, "case": case_id}))


FIELD_LABELS = {"decision": "Decision", "internal_note": "Internal note",
                "customer_message": "Message to the customer", "agree": "Decision"}


def _field_error(user: ConsoleContext, field: str, why: str) -> str:
    _ = translator(user.locale)
    return f"{_(FIELD_LABELS.get(field, field))}: {_(why)}"


def _refused(user: ConsoleContext, exc: DomainError) -> tuple[int, str, str]:
    """(status, message in the operator's language, field) for a refusal shown on the
    case's page."""
    _ = translator(user.locale)
    if isinstance(exc, InvalidRequest):
        return 422, _field_error(user, exc.field, exc.message), exc.field
    if isinstance(exc, SameReviewer):
        return 409, _("You proposed this decision: another reviewer must confirm it."), ""
    if isinstance(exc, ClaimedByAnother):
        return 409, _("Claimed by {assignee}.", assignee=exc.assignee), ""
    return 409, str(exc), ""


@router.post("/review/{case_id}/claim")
async def claim(case_id: str, request: Request, user: ConsoleWriter, deps: AppDeps,
                take_over: Annotated[str, Form(max_length=3)] = "") -> Response:
    await _shop_checked(deps, user, case_id)
    try:
        await run_in_threadpool(services.claim_case, deps.api_services, case_id,
                                user.principal.actor, take_over == "yes")
    except DomainError as exc:
        status, message, _field = _refused(user, exc)
        return await _case_page(request, user, deps, case_id, status=status, error=message)
    return _done("claimed", case_id)


@router.post("/review/{case_id}/release")
async def release(case_id: str, request: Request, user: ConsoleWriter,
                  deps: AppDeps) -> Response:
    await _shop_checked(deps, user, case_id)
    try:
        await run_in_threadpool(services.release_case, deps.api_services, case_id,
                                user.principal.actor)
    except DomainError as exc:
        status, message, _field = _refused(user, exc)
        return await _case_page(request, user, deps, case_id, status=status, error=message)
    return _done("released", case_id)


def _text_problem(value: str, limit: int, required: bool) -> str:
    if required and not value.strip():
        return "required"
    if len(value) > limit:
        return "too long"
    if not FREE_TEXT.match(value):
        return "control characters are not allowed"
    return ""


@router.post("/review/{case_id}/decide")
async def decide(case_id: str, request: Request, user: ConsoleWriter, deps: AppDeps,
                 decision: Annotated[str, Form(max_length=16)] = "",
                 internal_note: Annotated[str, Form(max_length=NOTE_MAX * 2)] = "",
                 customer_message: Annotated[str, Form(max_length=MESSAGE_MAX * 2)] = "",
                 ) -> Response:
    await _shop_checked(deps, user, case_id)
    form = {"decision": decision, "internal_note": internal_note,
            "customer_message": customer_message}
    problem: tuple[str, str] | None = None
    if decision not in {Outcome.APPROVE.value, Outcome.DENY.value}:
        problem = ("decision", "choose approve or deny")
    elif found := _text_problem(internal_note, NOTE_MAX, required=True):
        problem = ("internal_note", found)
    elif found := _text_problem(customer_message, MESSAGE_MAX, required=False):
        problem = ("customer_message", found)
    if problem is not None:
        return await _case_page(request, user, deps, case_id, status=422, field=problem[0],
                                error=_field_error(user, *problem), form=form)
    try:
        proposed = await run_in_threadpool(
            services.review, deps.api_services, case_id, Outcome(decision),
            user.principal.actor, internal_note, customer_message)
    except DomainError as exc:
        status, message, field = _refused(user, exc)
        return await _case_page(request, user, deps, case_id, status=status, error=message,
                                field=field, form=form)
    if proposed is not None:
        return _done("proposed", case_id)
    return _done("approved" if decision == Outcome.APPROVE.value else "denied", case_id)


@router.post("/review/{case_id}/confirm")
async def confirm(case_id: str, request: Request, user: ConsoleWriter, deps: AppDeps,
                  agree: Annotated[str, Form(max_length=3)] = "",
                  internal_note: Annotated[str, Form(max_length=NOTE_MAX * 2)] = "",
                  ) -> Response:
    await _shop_checked(deps, user, case_id)
    form = {"confirm_note": internal_note}
    agreed = agree == "yes"
    found = _text_problem(internal_note, NOTE_MAX, required=not agreed)
    if agree not in {"yes", "no"} or found:
        field, why = ("agree", "confirm or send back") if agree not in {"yes", "no"} \
            else ("internal_note", found)
        return await _case_page(request, user, deps, case_id, status=422, field=field,
                                error=_field_error(user, field, why), form=form)
    try:
        await run_in_threadpool(services.confirm_review, deps.api_services, case_id,
                                user.principal.actor, agreed, internal_note)
    except DomainError as exc:
        status, message, field = _refused(user, exc)
        return await _case_page(request, user, deps, case_id, status=status, error=message,
                                field=field, form=form)
    if not agreed:
        return _done("sent_back", case_id)
    detail: dict[str, Any] = await run_in_threadpool(deps.reads.case_detail, case_id)
    last = detail["decisions"][-1]["outcome"] if detail["decisions"] else ""
    return _done("approved" if last == Outcome.APPROVE.value else "denied", case_id)
