"""Translate a `RefundCase` to and from its row. Pure data shuffling, no queries."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from refundbridge.core.audit import AuditEvent
from refundbridge.core.lifecycle import CaseState
from refundbridge.core.model import (
    Channel,
    Decision,
    DeliveryState,
    DeliveryStatus,
    Disposition,
    Failure,
    FourEyesReason,
    Inspection,
    LineDisposition,
    Notification,
    NotificationKind,
    Obligation,
    ObligationKind,
    Outcome,
    RefundAttempt,
    RefundCase,
    RefundStatus,
    ReviewProposal,
    RuleResult,
    ShippedUnit,
    StatusOutcome,
    Step,
    StockBooking,
    StockMove,
    WriteBack,
)
from refundbridge.core.money import Money
from refundbridge.core.replacement import CaseReplacement, ReplacementTiming
from refundbridge.core.request import NormalizedRefundRequest


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def case_to_row(case: RefundCase, now: datetime) -> dict[str, Any]:
    attempt = case.current_attempt
    return {
        "id": case.id,
        "shop_id": case.shop_id,
        "source": case.source,
        "external_id": case.request.external_id,
        "order_id": case.request.order.id,
        "customer_id": case.request.customer.id,
        "kind": case.request.kind.value,
        "state": case.state.value,
        "currency": case.currency,
        "requested_minor": case.requested.minor,
        "approved_minor": case.approved.minor if case.approved else None,
        "refunded_minor": case.refunded.minor if case.refunded else 0,
        "refund_timing": case.refund_timing,
        "refund_key": attempt.idempotency_key if attempt else None,
        "refund_ref": attempt.provider_ref if attempt else None,
        "erp_reference": case.erp_reference,
        "request": case.request.model_dump(mode="json"),
        "details": details_to_json(case),
        "version": case.version + 1,
        "audit_seq": case.audit_seq,
        "audit_head": case.audit_head,
        "created_at": case.created_at,
        "updated_at": now,
        "due_on": min((o.due for o in case.obligations if o.due is not None), default=None),
        "assignee": case.assignee,
    }


def units_to_rows(case: RefundCase) -> list[dict[str, Any]]:
    return [{"case_id": case.id, "line": index, "shop_id": case.shop_id, "sku": line.sku,
             "gtin": line.gtin or "", "lot": line.lot or "", "serial": line.serial or ""}
            for index, line in enumerate(case.request.lines)]


def rules_to_rows(case: RefundCase) -> list[dict[str, Any]]:
    """The rules that said anything but "pass" in any of the case's decisions, once each
    per outcome (the `case_rules` table)."""
    spoke = dict.fromkeys((r.rule_id, r.outcome.value) for d in case.decisions
                          for r in d.rules if r.outcome is not Outcome.PASS)
    return [{"case_id": case.id, "rule_id": rule, "outcome": outcome}
            for rule, outcome in spoke]


def details_to_json(case: RefundCase) -> dict[str, Any]:
    return {
        "decisions": [
            {"outcome": d.outcome.value, "amount": d.amount.as_json(),
             "rules": [r.as_json() for r in d.rules], "decided_by": d.decided_by,
             "at": d.at.isoformat(), "internal_note": d.internal_note,
             "customer_message": d.customer_message,
             "lines": [x.as_json() for x in d.lines],
             "obligations": [o.as_json() for o in d.obligations],
             **({"proposed_by": d.proposed_by, "confirm_note": d.confirm_note}
                if d.proposed_by else {})}
            for d in case.decisions
        ],
        "proposal": None if case.proposal is None else case.proposal.as_json(),
        "dispositions": [x.as_json() for x in case.dispositions],
        "obligations": [o.as_json() for o in case.obligations],
        "shipments": None if case.shipments is None else [
            u.as_json() for u in case.shipments],
        "writes_back": case.writes_back,
        "write_backs": [
            {"outcome": w.outcome.value, "status": w.status.value, "message": w.message}
            for w in case.write_backs
        ],
        "attempts": [
            {"number": a.number, "key": a.idempotency_key, "amount": a.amount.as_json(),
             "status": a.status.value, "provider_ref": a.provider_ref, "message": a.message}
            for a in case.attempts
        ],
        "notifications": [n.as_json() for n in case.notifications],
        "inspections": [i.as_json() for i in case.inspections],
        "stock_moves": [
            {"line": m.line, "sku": m.sku, "quantity": m.quantity,
             "disposition": m.disposition.value, "lot": m.lot, "serial": m.serial}
            for m in case.stock_moves
        ],
        "stock_booking": None if case.stock_booking is None else case.stock_booking.as_json(),
        # Exchanges only: kept off the other cases' rows.
        **({"replacement_timing": case.replacement_timing,
            "replacement": None if case.replacement is None else case.replacement.as_json()}
           if case.is_exchange else {}),
        "revivals": case.revivals,
        "failure": None if case.failure is None else {
            "step": case.failure.step.value, "message": case.failure.message,
            "resume_state": case.failure.resume_state.value, "code": case.failure.code,
        },
    }


def _money(data: dict[str, str]) -> Money:
    return Money.parse(data["amount"], data["currency"])


def _line(data: dict[str, Any]) -> LineDisposition:
    return LineDisposition(data["line"], data["sku"], Disposition(data["disposition"]),
                           data["rule"], data.get("lot"), data.get("serial"))


def _obligation(data: dict[str, Any]) -> Obligation:
    due = data.get("due")
    return Obligation(ObligationKind(data["kind"]), date.fromisoformat(due) if due else None,
                      data["detail"], data["rule"])


def _shipped(data: dict[str, Any]) -> ShippedUnit:
    expiry = data.get("expiry_date")
    return ShippedUnit(data["sku"], data["quantity"], data.get("lot"), data.get("serial"),
                       date.fromisoformat(expiry) if expiry else None, data.get("gtin"))


def _stock_booking(data: dict[str, Any] | None) -> StockBooking | None:
    if data is None:
        return None
    return StockBooking(data["claims"], datetime.fromisoformat(data["claimed_at"]),
                        data.get("held", True))


def _notification(data: dict[str, Any]) -> Notification:
    last = data.get("last_attempt_at")
    state, next_at, sending = (data.get("state"), data.get("next_attempt_at"),
                               data.get("sending_since"))
    return Notification(
        NotificationKind(data["kind"]), DeliveryStatus(data["status"]),
        data.get("last_error", data.get("message")),  # "message": stored before attempts
        data.get("attempts", 0), datetime.fromisoformat(last) if last else None,
        data.get("waived_by"), data.get("waive_reason"),
        # Stored before SMS: every message was an email.
        channel=Channel(data.get("channel", Channel.EMAIL.value)),
        state=DeliveryState(state) if state else None,
        provider_id=data.get("provider_id"),
        next_attempt_at=datetime.fromisoformat(next_at) if next_at else None,
        sending_since=datetime.fromisoformat(sending) if sending else None,
        in_flight=bool(data.get("in_flight", False)))


def _proposal(data: dict[str, Any] | None) -> ReviewProposal | None:
    if data is None:
        return None
    return ReviewProposal(Outcome(data["outcome"]), data["proposed_by"],
                          datetime.fromisoformat(data["at"]), data["internal_note"],
                          data.get("customer_message", ""),
                          tuple(FourEyesReason(r) for r in data.get("reasons", ())))


@lru_cache(maxsize=4096)
def _request(case_id: str, raw: str) -> NormalizedRefundRequest:
    # A case's request never changes after it is stored, so one parse per process will do.
    return NormalizedRefundRequest.model_validate_json(raw)


def case_from_row(row: Any) -> RefundCase:
    request = _request(row.id, json.dumps(row.request, separators=(",", ":")))
    details = row.details
    currency = row.currency
    failure = details.get("failure")
    return RefundCase(
        id=row.id,
        shop_id=row.shop_id,
        source=row.source,
        request=request,
        state=CaseState(row.state),
        created_at=aware(row.created_at),
        refund_timing=row.refund_timing,
        approved=None if row.approved_minor is None else Money.from_minor(row.approved_minor,
                                                                          currency),
        refunded=Money.from_minor(row.refunded_minor, currency),
        decisions=[
            Decision(Outcome(d["outcome"]), _money(d["amount"]),
                     tuple(RuleResult(r["id"], Outcome(r["outcome"]), r["message"], r["line"])
                           for r in d["rules"]),
                     # "note": a case stored before the note was split in two
                     d["decided_by"], datetime.fromisoformat(d["at"]),
                     d.get("internal_note", d.get("note", "")),
                     tuple(_line(x) for x in d.get("lines", ())),
                     tuple(_obligation(o) for o in d.get("obligations", ())),
                     d.get("customer_message", ""), d.get("proposed_by", ""),
                     d.get("confirm_note", ""))
            for d in details["decisions"]
        ],
        dispositions=[_line(x) for x in details.get("dispositions", ())],
        obligations=[_obligation(o) for o in details.get("obligations", ())],
        shipments=None if details.get("shipments") is None else [
            _shipped(u) for u in details["shipments"]],
        writes_back=details.get("writes_back", False),
        write_backs=[
            WriteBack(StatusOutcome(w["outcome"]), DeliveryStatus(w["status"]), w["message"])
            for w in details.get("write_backs", ())
        ],
        attempts=[
            RefundAttempt(a["number"], a["key"], _money(a["amount"]), RefundStatus(a["status"]),
                          a["provider_ref"], a["message"])
            for a in details["attempts"]
        ],
        notifications=[_notification(n) for n in details["notifications"]],
        inspections=[Inspection(**i) for i in details["inspections"]],
        stock_moves=[
            StockMove(m["line"], m["sku"], m["quantity"], Disposition(m["disposition"]),
                      m["lot"], m["serial"])
            for m in details["stock_moves"]
        ],
        erp_reference=row.erp_reference,
        stock_booking=_stock_booking(details.get("stock_booking")),
        replacement_timing=details.get("replacement_timing", ReplacementTiming.ON_RECEIPT.value),
        replacement=(CaseReplacement.from_json(details["replacement"])
                     if details.get("replacement") else None),
        revivals=details.get("revivals", 0),
        assignee=row.assignee,
        proposal=_proposal(details.get("proposal")),
        failure=None if failure is None else Failure(
            Step(failure["step"]), failure["message"], CaseState(failure["resume_state"]),
            failure["code"]),
        version=row.version,
        audit_seq=row.audit_seq,
        audit_head=row.audit_head,
    )


def event_to_row(case_id: str, event: AuditEvent) -> dict[str, Any]:
    return {
        "case_id": case_id, "seq": event.seq, "at": event.at.isoformat(), "actor": event.actor,
        "name": event.name, "from_state": event.from_state, "to_state": event.to_state,
        "data": event.data, "prev_hash": event.prev_hash, "hash": event.hash,
    }


def event_from_row(row: Any) -> AuditEvent:
    return AuditEvent(row.seq, datetime.fromisoformat(row.at), row.actor, row.name,
                      row.from_state, row.to_state, row.data, row.prev_hash, row.hash)
