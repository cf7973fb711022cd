"""Read models for the API: rows straight to JSON-ready dicts, no aggregate needed."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select, text

from refundbridge.core.audit import verify_chain
from refundbridge.core.errors import NotFound
from refundbridge.core.model import Step
from refundbridge.core.money import Money
from refundbridge.store import tables as t
from refundbridge.store.mapping import aware, event_from_row
from refundbridge.store.outbox import redispatch_wait
from refundbridge.store.review_queue import ReviewDesk

if TYPE_CHECKING:
    from refundbridge.store.evidence import EvidenceReads


def _money(minor: int | None, currency: str) -> dict[str, str] | None:
    return None if minor is None else Money.from_minor(minor, currency).as_json()


def _summary(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "shop_id": row.shop_id,
        "source": row.source,
        "external_id": row.external_id,
        "order_id": row.order_id,
        "kind": row.kind,
        "state": row.state,
        "requested": _money(row.requested_minor, row.currency),
        "approved": _money(row.approved_minor, row.currency),
        "refunded": _money(row.refunded_minor, row.currency),
        "created_at": aware(row.created_at).isoformat(),
        "updated_at": aware(row.updated_at).isoformat(),
    }


def _case_and_events(engine: Engine, case_id: str) -> tuple[Any, list[Any]]:
    with engine.connect() as conn:
        row = conn.execute(select(t.cases).where(t.cases.c.id == case_id)).first()
        if row is None:
            raise NotFound(f"no case {case_id}")
        events = conn.execute(
            select(t.case_events).where(t.case_events.c.case_id == case_id)
            .order_by(t.case_events.c.seq)
        ).all()
    return row, list(events)


# The reconciler's wait before it hands out a step's work again, in multiples of
# `stale_after`: doubling per hand-over, at most this (workers/reconcile.py).
def _notifications(engine: Engine, case_id: str, stored: list[dict[str, Any]],
                   stale_after: float | None, max_dispatches: int | None
                   ) -> list[dict[str, Any]]:
    """The case's messages, each pending one that failed before with its next try: when
    the reconciler will hand the open notify step out again (None: not known, or no tries
    left, after which the message is marked failed). Each says its channel ("email",
    "sms"), the provider's id and delivery state, attempts and last error; an SMS keeps its
    own next try (deferred: quiet hours, a provider's limit)."""
    stored = [_message_view(n) for n in stored]
    emails_waiting = any(n["channel"] == "email" and n["status"] == "pending"
                         and n.get("attempts") for n in stored)
    if stale_after is None or not emails_waiting:
        return [n if n["channel"] == "sms" else {**n, "next_attempt_at": None}
                for n in stored]
    o = t.outbox.c
    with engine.connect() as conn:
        work = conn.execute(
            select(o.dispatched_at, o.dispatch_count)
            .where(o.case_id == case_id, o.step == Step.NOTIFY.value, o.done_at.is_(None))
            .order_by(o.id.desc()).limit(1)).first()
    next_at: str | None = None
    if work is not None and work.dispatched_at is not None and (
            max_dispatches is None or work.dispatch_count < max_dispatches):
        wait = redispatch_wait(stale_after, work.dispatch_count)
        next_at = (aware(work.dispatched_at) + timedelta(seconds=wait)).isoformat()
    return [n if n["channel"] == "sms" else
            {**n, "next_attempt_at": next_at if n["status"] == "pending" and n.get("attempts")
             else None} for n in stored]


def _message_view(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored message with every field the case shows (older rows predate SMS: email)."""
    view = {"channel": "email", "provider_id": None, "state": None, "attempts": 0,
            "last_error": None, **stored}
    if view.pop("in_flight", False) and view["status"] == "pending":
        view["state"] = "sending"  # marked before the provider's call, not answered yet
    view.pop("sending_since", None)
    return view


def case_detail(engine: Engine, case_id: str, *, stale_after: float | None = None,
                max_dispatches: int | None = None) -> dict[str, Any]:
    """`stale_after` and `max_dispatches`: the reconciler's settings, to show when a message
    that failed for now is tried next."""
    row, events = _case_and_events(engine, case_id)
    details = row.details
    request = row.request
    return {
        **_summary(row),
        "order": request["order"],
        "customer": request["customer"],
        "lines": request["lines"],
        # An exchange's: what goes out, and how far its order in the ERP has got.
        "replacements": request.get("replacements", []),
        "replacement": details.get("replacement"),
        "reason": request["reason"],
        "requested_at": request["requested_at"],
        "decisions": details["decisions"],
        "refund_attempts": details["attempts"],
        "notifications": _notifications(engine, case_id, details["notifications"],
                                        stale_after, max_dispatches),
        "inspections": details["inspections"],
        "stock_moves": details["stock_moves"],
        "dispositions": details.get("dispositions", []),
        "obligations": details.get("obligations", []),
        "shipments": details.get("shipments"),
        "storefront_updates": details.get("write_backs", []),
        "erp_reference": row.erp_reference,
        "stock_booking": details.get("stock_booking"),
        "revivals": details.get("revivals", 0),
        "failure": details["failure"],
        "assignee": row.assignee,
        "pending_review": details.get("proposal"),
        "timeline": [
            {"seq": e.seq, "at": e.at, "name": e.name, "from_state": e.from_state,
             "to_state": e.to_state, "actor": e.actor}
            for e in events
        ],
    }


def case_evidence(engine: Engine, case_id: str) -> dict[str, Any]:
    _, rows = _case_and_events(engine, case_id)
    events = [event_from_row(r) for r in rows]
    check = verify_chain(events)
    return {
        "case_id": case_id,
        "verifies": check.verifies,
        "events": len(events),
        "first_broken_seq": check.first_broken_seq,
        "problem": check.problem,
        "head": events[-1].hash if events else None,
        "chain": [e.as_json() for e in events],
    }


def list_cases(engine: Engine, *, shop: str | None, state: str | None, limit: int,
               cursor: int | None, shops: frozenset[str] | None = None) -> dict[str, Any]:
    """`shops`: the only shops the caller may see (None: every shop)."""
    c = t.cases.c
    query = select(t.cases).order_by(c.seq.desc()).limit(limit + 1)
    if shop:
        query = query.where(c.shop_id == shop)
    if shops is not None:
        query = query.where(c.shop_id.in_(sorted(shops)))
    if state:
        query = query.where(c.state == state)
    if cursor is not None:
        query = query.where(c.seq < cursor)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    page = rows[:limit]
    return {
        "items": [_summary(r) for r in page],
        "next_cursor": str(page[-1].seq) if len(rows) > limit else None,
    }


def totals(engine: Engine) -> dict[str, Any]:
    """Figures for the demo's closing table: cases per state, money, stock moves, emails."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(t.cases.c.state, t.cases.c.currency, t.cases.c.refunded_minor,
                   t.cases.c.details)
        ).all()
    states: Counter[str] = Counter()
    refunded: dict[str, Money] = {}
    moves: Counter[str] = Counter()
    emails: Counter[str] = Counter()
    for row in rows:
        states[row.state] += 1
        if row.refunded_minor:
            amount = Money.from_minor(row.refunded_minor, row.currency)
            refunded[row.currency] = refunded.get(row.currency, Money.zero(row.currency)) + amount
        for move in row.details["stock_moves"]:
            moves[move["disposition"]] += move["quantity"]
        for note in row.details["notifications"]:
            if note.get("channel", "email") == "email":  # what the demo counts: emails
                emails[note["status"]] += 1
    return {"states": dict(states), "refunded": refunded, "stock_moves": dict(moves),
            "notifications": dict(emails)}


class CaseReads:
    """The operator API's reads, bound to one database."""

    def __init__(self, engine: Engine, *, stale_after: float, max_dispatches: int) -> None:
        self._engine = engine
        self._stale_after = stale_after
        self._max_dispatches = max_dispatches

    @property
    def engine(self) -> Engine:
        """The database, for the console's read models (store/console_reads.py, store/kpis.py)."""
        return self._engine

    def case_detail(self, case_id: str) -> dict[str, Any]:
        return case_detail(self._engine, case_id, stale_after=self._stale_after,
                           max_dispatches=self._max_dispatches)

    def case_evidence(self, case_id: str) -> dict[str, Any]:
        return case_evidence(self._engine, case_id)

    @property
    def evidence(self) -> EvidenceReads:
        """What evidence packages are built from: lots' cases, cases' audit trails."""
        from refundbridge.store.evidence import EvidenceReads

        return EvidenceReads(self._engine, stale_after=self._stale_after,
                             max_dispatches=self._max_dispatches)

    def list_cases(self, *, shop: str | None, state: str | None, limit: int,
                   cursor: int | None, shops: frozenset[str] | None = None) -> dict[str, Any]:
        return list_cases(self._engine, shop=shop, state=state, limit=limit, cursor=cursor,
                          shops=shops)

    @property
    def review_desk(self) -> ReviewDesk:
        """The console's review queue (store/review_queue.py)."""
        return ReviewDesk(self._engine)

    def case_shop(self, case_id: str) -> str:
        """The shop a case belongs to; `NotFound` if there is no such case."""
        with self._engine.connect() as conn:
            shop = conn.execute(select(t.cases.c.shop_id)
                                .where(t.cases.c.id == case_id)).scalar()
        if shop is None:
            raise NotFound(f"no case {case_id}")
        return str(shop)

    def ping(self) -> None:
        """Raise the store's error if the database does not answer."""
        with self._engine.connect() as conn:
            conn.execute(text("SELECT 1"))
