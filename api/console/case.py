"""Case `/console/cases/{id}`: one timeline of everything that happened to a case, its lines
and where each unit goes, what the shop owes and by when, the audit chain with its check,
and the actions an operator's role allows.

The timeline is the case's audit trail: every decision (with the rules' messages), every
operator action (with who), each refund attempt and the provider's answer, the ERP booking,
each message and how its delivery went, the storefront's write-backs and the webhook that
opened the case are events of that hash-chained trail, so nothing shows here that an
auditor's export would not hold. Actions are POST forms (CSRF-checked), each answered with
a redirect back to the page; exporting evidence is a POST too, as it is recorded on the case.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from refundbridge.api.console.capa import case_capas
from refundbridge.api.console.formatting import due_badge, money_text
from refundbridge.api.console.web import (
    PREFIX,
    ConsoleContext,
    ConsoleUser,
    ConsoleWriter,
    redirect,
    render,
)
from refundbridge.api.deps import AppDeps
from refundbridge.core import services
from refundbridge.core.access import Permission
from refundbridge.core.errors import DomainError
from refundbridge.core.evidence import EXPORT_EVENT, Scope
from refundbridge.core.lifecycle import FINAL_STATES, CaseState, Transition, allows
from refundbridge.core.model import NotificationKind
from refundbridge.core.money import Money

router = APIRouter(prefix=PREFIX, include_in_schema=False)

REASON_MAX = 1000
# The kinds whose goods come back to the warehouse: a return, and the exchanges.
RETURN_KINDS = frozenset({"return_and_refund", "exchange", "return_and_exchange"})

# What each audit event is called on the page (English; zh-CN in i18n/case.json), and the
# kind of thing it is (a CSS class and a filter word).
EVENTS: dict[str, tuple[str, str]] = {
    "received": ("Request received (webhook)", "intake"),
    "start_evaluation": ("Rules evaluation started", "system"),
    "approve": ("Approved", "decision"),
    "deny": ("Denied", "decision"),
    "send_to_review": ("Sent to review", "decision"),
    "review_proposed": ("Decision proposed (awaits a second reviewer)", "decision"),
    "review_rejected": ("Proposed decision sent back", "decision"),
    "claimed": ("Claimed", "operator"),
    "released": ("Released to the queue", "operator"),
    "shipments_looked_up": ("Shipments looked up in the ERP", "erp"),
    "await_return": ("Awaiting the returned goods", "system"),
    "receive_goods": ("Goods received and inspected", "goods"),
    "reassessed": ("Dispositions reassessed after inspection", "goods"),
    "start_refund": ("Refund started", "payment"),
    "refund_attempt_reserved": ("Refund attempt reserved", "payment"),
    "confirm_refund": ("Refund confirmed by the provider", "payment"),
    "refund_status_changed": ("Provider changed the refund's status", "payment"),
    "refund_status_unknown": ("Provider sent an unknown refund status", "payment"),
    "refund_reversed": ("Refund reversed by the provider", "payment"),
    "stock_booking_claimed": ("ERP booking started", "erp"),
    "stock_booked": ("Stock booked in the ERP", "erp"),
    "start_replacement": ("Replacement started", "erp"),
    "replacement_claimed": ("Replacement order reserved (key committed)", "erp"),
    "confirm_replacement": ("Replacement ordered in the ERP", "erp"),
    "replacement_shipped": ("Replacement shipped", "erp"),
    "replacement_recorded": ("Replacement order recorded", "erp"),
    "replacement_attempt_failed": ("Replacement call failed; will look it up and retry",
                                   "erp"),
    "notification_sent": ("Message sent", "message"),
    "notification_failed": ("Message failed", "message"),
    "notification_attempt_failed": ("Message attempt failed; will retry", "message"),
    "notification_waived": ("Message waived", "message"),
    "notification_resend_requested": ("Message resend requested", "message"),
    "write_back_sent": ("Storefront told", "storefront"),
    "write_back_failed": ("Storefront update failed", "storefront"),
    "fail": ("Failed", "failure"),
    "step_failed": ("Step failed", "failure"),
    "revived": ("Revived by the reconciler", "system"),
    "retry": ("Retried", "operator"),
    "cancel": ("Cancelled", "operator"),
    "close": ("Closed", "system"),
    EXPORT_EVENT: ("Evidence exported", "evidence"),
}

# The facts an event's data may hold, in the order shown, with their labels.
FACTS: tuple[tuple[str, str], ...] = (
    ("reason", "Reason given"),
    ("internal_note", "Internal note"),
    ("customer_message", "Message to the customer"),
    ("step", "Step"),
    ("message", "Message"),
    ("previous_error", "Previous error"),
    ("code", "Code"),
    ("attempt", "Attempt"),
    ("idempotency_key", "Idempotency key"),
    ("provider_ref", "Provider reference"),
    ("status", "Status"),
    ("raw_status", "Provider's status"),
    ("erp_reference", "ERP reference"),
    ("document", "ERP document"),
    ("delivery", "Delivery note"),
    ("progress", "Progress"),
    ("claim", "Claim"),
    ("kind", "Kind"),
    ("outcome", "Outcome"),
    ("assignee", "Assignee"),
    ("external_id", "External id"),
    ("lot", "Lot"),
    ("cases", "Cases in the package"),
)


# Facts whose values are words of ours (a step, a status, a kind): shown translated.
WORDS = frozenset({"step", "status", "kind", "outcome"})


@dataclass
class Entry:
    """One line of the timeline."""

    seq: int
    at: datetime
    title: str
    kind: str
    actor: str
    who: str
    who_kind: str
    from_state: str | None
    to_state: str | None
    # (English label, value, whether the value is a word of ours to translate)
    facts: list[tuple[str, str, bool]] = field(default_factory=list)
    rules: list[dict[str, Any]] = field(default_factory=list)
    # Units moved, inspected or placed, and obligations: (kind, the item's fields).
    items: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def who(actor: str) -> tuple[str, str]:
    """(display name, kind) of an audit actor: `operator:li.na` -> ("li.na", "operator")."""
    kind, _, name = actor.partition(":")
    if not name:
        return actor, actor  # "system", "rules", "reconciler"
    return name, kind


def _money(value: object, locale: str) -> str | None:
    if isinstance(value, Mapping) and "amount" in value and "currency" in value:
        try:
            return money_text(Money.parse(str(value["amount"]), str(value["currency"])),
                              locale)
        except (DomainError, ValueError):  # shown as stored
            return f"{value['amount']} {value['currency']}"
    return None


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def entry(event: Mapping[str, Any], locale: str) -> Entry:
    name = str(event["name"])
    title, kind = EVENTS.get(name, (name.replace("_", " ").capitalize(), "system"))
    actor = str(event["actor"])
    display, who_kind = who(actor)
    if who_kind == "operator" and kind == "system":
        kind = "operator"
    data = event.get("data") or {}
    facts: list[tuple[str, str, bool]] = []
    amount = None
    if "refund_amount" in data and "currency" in data:
        amount = _money({"amount": data["refund_amount"], "currency": data["currency"]}, locale)
    for key in ("amount", "requested"):
        amount = amount or _money(data.get(key), locale)
    if amount:
        facts.append(("Amount", amount, False))
    for key, label in FACTS:
        value = data.get(key)
        if value is None or value == "" or isinstance(value, (dict, list)):
            continue
        facts.append((label, _text(value), key in WORDS))
    if name == EXPORT_EVENT:
        facts = [("Scope" if label == "Kind" else label, value, words)
                 for label, value, words in facts]
    rules = [{"id": r.get("id"), "outcome": r.get("outcome"), "line": r.get("line"),
              "message": r.get("message")}
             for r in data.get("rules", []) if isinstance(r, Mapping)]
    items = _items(data)
    return Entry(seq=int(event["seq"]), at=_when(str(event["at"])), title=title, kind=kind,
                 actor=actor, who=display, who_kind=who_kind,
                 from_state=event.get("from_state"), to_state=event.get("to_state"),
                 facts=facts, rules=rules, items=items)


def _items(data: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    items: list[tuple[str, dict[str, Any]]] = []
    for key, kind in (("moves", "move"), ("inspections", "inspection"), ("lines", "placed"),
                      ("obligations", "obligation")):
        for item in data.get(key) or []:
            if isinstance(item, Mapping) and (kind != "placed" or item.get("disposition")):
                items.append((kind, dict(item)))
    return items


def _when(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    return at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)


def timeline(chain: list[dict[str, Any]], locale: str) -> list[Entry]:
    """Every event, in time order (the chain's order when two share a moment)."""
    return sorted((entry(e, locale) for e in chain), key=lambda e: (e.at, e.seq))


def lines(detail: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request's lines with the unit details and the disposition the rules gave."""
    placed = {d.get("line"): d for d in detail.get("dispositions", [])}
    inspected = {i.get("line"): i for i in detail.get("inspections", [])}
    moved: dict[Any, list[dict[str, Any]]] = {}
    for move in detail.get("stock_moves", []):
        moved.setdefault(move.get("line"), []).append(move)
    rows = []
    for index, line in enumerate(detail.get("lines", [])):
        disposition = placed.get(index, {})
        rows.append({
            "index": index, "sku": line.get("sku"), "name": line.get("name"),
            "quantity": line.get("quantity"), "device_class": line.get("device_class"),
            "lot": disposition.get("lot") or line.get("lot"),
            "serial": disposition.get("serial") or line.get("serial"),
            "expiry_date": line.get("expiry_date"), "udi": line.get("udi"),
            "gtin": line.get("gtin"),
            "sterile": line.get("sterile"), "cold_chain": line.get("cold_chain"),
            "disposition": disposition.get("disposition"), "rule": disposition.get("rule"),
            "inspection": inspected.get(index), "moves": moved.get(index, []),
        })
    return rows


def obligations(detail: Mapping[str, Any], today: date) -> list[dict[str, Any]]:
    settled = detail.get("state") in {s.value for s in FINAL_STATES}
    rows = []
    for obligation in detail.get("obligations", []):
        due_text = obligation.get("due")
        due = date.fromisoformat(due_text) if due_text else None
        badge, label = due_badge(due, today, settled and obligation.get("kind")
                                 == "refund_deadline")
        rows.append({**obligation, "badge": badge, "badge_label": label})
    return rows


def money(value: Mapping[str, str] | None, locale: str) -> str:
    return _money(value, locale) or "—"


async def _case_shop(deps: AppDeps, user: ConsoleContext, case_id: str,
                     permission: Permission) -> str:
    """The case's shop, if it is one of the operator's (else 404, as for no case) and the
    role may do this (else 403)."""
    shop = await run_in_threadpool(deps.reads.case_shop, case_id)
    user.principal.require_shop(shop, f"case {case_id}")
    user.principal.require(permission)
    return shop


NOTICES = {
    "retried": "Retry recorded; the case's work is queued again.",
    "cancelled": "The case is cancelled.",
    "resent": "The message is queued to be sent again.",
}


def _page(request: Request, user: ConsoleContext, detail: dict[str, Any],
          evidence: dict[str, Any], *, notice: str = "", error: str = "",
          reason: str = "", status: int = 200,
          capas: list[dict[str, Any]] | None = None) -> Response:
    locale = user.locale
    state = CaseState(detail["state"])
    may_operate = user.may(Permission.OPERATE)
    # A resend is of the email (the record); an SMS beside it is never sent again by hand.
    resendable = [n for n in detail.get("notifications", [])
                  if n.get("status") in {"failed", "waived"}
                  and n.get("channel", "email") == "email"]
    return render(
        request, "case.html", user, status=status, case=detail, evidence=evidence,
        entries=timeline(evidence["chain"], locale), lines=lines(detail),
        obligations=obligations(detail, datetime.now(UTC).date()),
        money=lambda value: money(value, locale), who=who,
        notice=NOTICES.get(notice, ""), error=error, reason=reason,
        can_retry=may_operate and detail.get("failure") is not None
        and state is CaseState.FAILED,
        can_cancel=may_operate and allows(state, Transition.CANCEL),
        can_resend=may_operate, resendable=resendable,
        can_receive=user.may(Permission.RECEIVE) and detail.get("kind") in RETURN_KINDS
        and state is CaseState.AWAITING_RETURN,
        can_export=user.may(Permission.EXPORT), reason_max=REASON_MAX,
        capas=capas or [], can_open_capa=user.may(Permission.CAPA))


async def _load(deps: AppDeps, case_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    detail = await run_in_threadpool(deps.reads.case_detail, case_id)
    evidence = await run_in_threadpool(deps.reads.case_evidence, case_id)
    return detail, evidence


@router.get("/cases/{case_id}")
async def case_page(case_id: str, request: Request, user: ConsoleUser, deps: AppDeps,
                    done: str = "") -> Response:
    await _case_shop(deps, user, case_id, Permission.READ)
    detail, evidence = await _load(deps, case_id)
    capas = await run_in_threadpool(case_capas, deps, case_id)
    return _page(request, user, detail, evidence, notice=done, capas=capas)


def _back(case_id: str, done: str) -> Response:
    return redirect(f"{PREFIX}/cases/{case_id}?done={done}")


@router.post("/cases/{case_id}/retry")
async def retry(case_id: str, user: ConsoleWriter, deps: AppDeps) -> Response:
    await _case_shop(deps, user, case_id, Permission.OPERATE)
    await run_in_threadpool(services.retry, deps.api_services, case_id, user.principal.actor)
    return _back(case_id, "retried")


@router.post("/cases/{case_id}/cancel")
async def cancel(case_id: str, request: Request, user: ConsoleWriter, deps: AppDeps,
                 reason: Annotated[str, Form(max_length=REASON_MAX)] = "") -> Response:
    await _case_shop(deps, user, case_id, Permission.OPERATE)
    if not reason.strip():
        detail, evidence = await _load(deps, case_id)
        return _page(request, user, detail, evidence, status=422,
                     error="Say why the case is cancelled.")
    await run_in_threadpool(services.cancel, deps.api_services, case_id,
                            user.principal.actor, reason.strip())
    return _back(case_id, "cancelled")


@router.post("/cases/{case_id}/notifications/{kind}/resend")
async def resend(case_id: str, kind: NotificationKind, user: ConsoleWriter,
                 deps: AppDeps) -> Response:
    await _case_shop(deps, user, case_id, Permission.OPERATE)
    await run_in_threadpool(services.resend_notification, deps.api_services, case_id, kind,
                            user.principal.actor)
    return _back(case_id, "resent")


def zip_response(data: bytes, filename: str) -> Response:
    return Response(data, media_type="application/zip", headers={
        "content-disposition": f'attachment; filename="{filename}"'})


@router.post("/cases/{case_id}/evidence.zip")
async def export_case(case_id: str, user: ConsoleWriter, deps: AppDeps) -> Response:
    """The case's evidence package, its export recorded on the case first (so it is in
    the package)."""
    await _case_shop(deps, user, case_id, Permission.EXPORT)
    data = await run_in_threadpool(
        services.export_evidence, deps.api_services, deps.reads.evidence, [case_id],
        user.principal.actor, Scope.case(case_id))
    return zip_response(data, f"evidence-{case_id}.zip")
