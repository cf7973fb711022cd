"""The review queue's read model: cases waiting for a person, oldest due first.

Each item carries what a reviewer decides by: the rules that sent the case to review (with
their messages, as the rules wrote them for the customer's language), the deadlines it runs
against with an SLA badge, who claimed it, a proposal waiting for a second reviewer, and the
customer's history in the shop. Works on PostgreSQL and SQLite (the demo).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, and_, exists, or_, select

from refundbridge.core.errors import NotFound
from refundbridge.core.lifecycle import CaseState
from refundbridge.core.model import Outcome, RefundCase
from refundbridge.core.money import Money
from refundbridge.core.policy import ADVERSE_EVENT_CODES, NO_REASON_CODES, QUALITY_CODES
from refundbridge.core.request import ReasonCode
from refundbridge.store import tables as t
from refundbridge.store.mapping import aware, case_from_row

# A deadline this close (in days, today included) is at risk.
AT_RISK_DAYS = 2


class ReasonGroup(StrEnum):
    """How the queue groups the customer's reasons (core/request.py `ReasonCode`)."""

    ADVERSE_EVENT = "adverse_event"  # injury, harm, or R14 read one in the text
    QUALITY = "quality"  # defective, damaged, wrong item, not as described
    NO_REASON = "no_reason"  # changed mind, no longer needed, ordered by mistake
    RECALL = "recall"
    OTHER = "other"


GROUP_CODES: dict[ReasonGroup, frozenset[ReasonCode]] = {
    ReasonGroup.ADVERSE_EVENT: ADVERSE_EVENT_CODES,
    ReasonGroup.QUALITY: QUALITY_CODES,
    ReasonGroup.NO_REASON: NO_REASON_CODES,
    ReasonGroup.RECALL: frozenset({ReasonCode.RECALL}),
    ReasonGroup.OTHER: frozenset({ReasonCode.OTHER}),
}


class Badge(StrEnum):
    BREACHED = "breached"  # due before today
    AT_RISK = "at_risk"  # due within AT_RISK_DAYS
    OK = "ok"


class Assigned(StrEnum):
    ANYONE = ""
    ME = "me"
    UNASSIGNED = "unassigned"


def badge(due: date, today: date) -> Badge:
    if due < today:
        return Badge.BREACHED
    if due <= today + timedelta(days=AT_RISK_DAYS):
        return Badge.AT_RISK
    return Badge.OK


@dataclass(frozen=True, slots=True)
class QueueFilters:
    shop: str | None = None
    rule: str | None = None
    group: ReasonGroup | None = None
    due_before: date | None = None  # due on or before this day
    assigned: Assigned = Assigned.ANYONE


@dataclass(frozen=True, slots=True)
class RuleNote:
    rule_id: str
    outcome: str
    message: str
    line: int | None


@dataclass(frozen=True, slots=True)
class Deadline:
    kind: str
    due: date | None
    detail: str
    rule: str
    badge: Badge | None  # None: the clock has not started


@dataclass(frozen=True, slots=True)
class Proposal:
    outcome: str
    proposed_by: str
    at: datetime
    internal_note: str
    customer_message: str
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class History:
    earlier: int  # the customer's cases in this shop opened before this one
    refunded: int  # … of which money went back


@dataclass(frozen=True, slots=True)
class ReviewItem:
    id: str
    shop_id: str
    state: str
    order_id: str
    amount: str
    currency: str
    created_at: datetime
    reason_code: str
    reason_text: str
    group: ReasonGroup
    rules: tuple[RuleNote, ...]
    deadlines: tuple[Deadline, ...]
    badge: Badge | None  # the worst of its deadlines
    due_on: date | None
    assignee: str | None
    proposal: Proposal | None
    history: History


@dataclass(frozen=True, slots=True)
class ReviewQueue:
    items: tuple[ReviewItem, ...]
    more: bool  # more cases match than were returned
    rules: tuple[str, ...] = field(default=())  # rule ids seen on the queue, for the filter


def _group_condition(group: ReasonGroup) -> ColumnElement[bool]:
    c = t.cases.c
    code = c.request["reason"]["code"].as_string()
    r14 = exists().where(t.case_rules.c.case_id == c.id, t.case_rules.c.rule_id == "R14",
                         t.case_rules.c.outcome == Outcome.REVIEW.value)
    adverse = or_(code.in_(sorted(ADVERSE_EVENT_CODES)), r14)
    if group is ReasonGroup.ADVERSE_EVENT:
        return adverse
    return and_(code.in_(sorted(GROUP_CODES[group])), ~adverse)


def _group_of(code: str, rules: Sequence[RuleNote]) -> ReasonGroup:
    if any(r.rule_id == "R14" and r.outcome == Outcome.REVIEW.value for r in rules):
        return ReasonGroup.ADVERSE_EVENT
    for group, codes in GROUP_CODES.items():
        if code in codes:
            return group
    return ReasonGroup.OTHER


def _rules(details: dict[str, Any]) -> tuple[RuleNote, ...]:
    """The rules that sent the case here: the latest decision's reviews and denials."""
    decisions = details.get("decisions") or []
    if not decisions:
        return ()
    return tuple(RuleNote(r["id"], r["outcome"], r["message"], r.get("line"))
                 for r in decisions[-1]["rules"]
                 if r["outcome"] in {Outcome.REVIEW.value, Outcome.DENY.value})


def _deadlines(details: dict[str, Any], today: date) -> tuple[Deadline, ...]:
    found = []
    for o in details.get("obligations", ()):
        due = date.fromisoformat(o["due"]) if o.get("due") else None
        found.append(Deadline(o["kind"], due, o["detail"], o["rule"],
                              None if due is None else badge(due, today)))
    return tuple(sorted(found, key=lambda d: (d.due is None, d.due or today)))


def _proposal(data: dict[str, Any] | None) -> Proposal | None:
    if not data:
        return None
    return Proposal(data["outcome"], data["proposed_by"], datetime.fromisoformat(data["at"]),
                    data["internal_note"], data.get("customer_message", ""),
                    tuple(data.get("reasons", ())))


QUEUE_COLUMNS = (t.cases.c.id, t.cases.c.shop_id, t.cases.c.state, t.cases.c.order_id,
                 t.cases.c.customer_id, t.cases.c.currency, t.cases.c.requested_minor,
                 t.cases.c.created_at, t.cases.c.due_on, t.cases.c.assignee,
                 t.cases.c.request, t.cases.c.details)
SPOKE = (Outcome.REVIEW.value, Outcome.DENY.value)


def review_queue(engine: Engine, *, shops: frozenset[str] | None, actor: str,
                 today: Callable[[str], date], filters: QueueFilters = QueueFilters(),
                 limit: int = 100) -> ReviewQueue:
    """Cases in `awaiting_review` of `shops` (None: every shop), the earliest deadline
    first (cases without one last), then the oldest. `actor` is who "assigned to me"
    means; `today(shop)` the day in that shop's calendar, for the SLA badges."""
    c = t.cases.c
    where: list[ColumnElement[bool]] = [c.state == CaseState.AWAITING_REVIEW.value]
    if shops is not None:
        where.append(c.shop_id.in_(sorted(shops)))
    waiting = select(c.id).where(*where)
    if filters.shop:
        where.append(c.shop_id == filters.shop)
    if filters.rule:
        where.append(exists().where(
            t.case_rules.c.case_id == c.id, t.case_rules.c.rule_id == filters.rule,
            t.case_rules.c.outcome.in_(SPOKE)))
    if filters.group is not None:
        where.append(_group_condition(filters.group))
    if filters.due_before is not None:
        where.append(c.due_on <= filters.due_before)
    if filters.assigned is Assigned.ME:
        where.append(c.assignee == actor)
    elif filters.assigned is Assigned.UNASSIGNED:
        where.append(c.assignee.is_(None))
    query = (select(*QUEUE_COLUMNS).where(*where)
             .order_by(c.due_on.is_(None), c.due_on, c.created_at, c.seq)
             .limit(limit + 1))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        page = rows[:limit]
        items = _items(conn, page, today)
        rules = _seen_rules(conn, conn.execute(waiting).scalars().all())
    return ReviewQueue(items, len(rows) > limit, rules)


def _seen_rules(conn: Connection, case_ids: Sequence[str]) -> tuple[str, ...]:
    """The rules that spoke on any of these cases, for the queue's rule filter. Read by the
    cases' keys, a few at a time: joined in one statement, PostgreSQL hash-joined the whole
    of `case_rules` (every case ever decided) to find the few hundred that wait."""
    seen: set[str] = set()
    r = t.case_rules.c
    for start in range(0, len(case_ids), RULES_CHUNK):
        seen.update(conn.execute(
            select(r.rule_id).distinct()
            .where(r.case_id.in_(case_ids[start:start + RULES_CHUNK]), r.outcome.in_(SPOKE))
        ).scalars())
    return tuple(sorted(seen))


RULES_CHUNK = 1000  # well under SQLite's bound-parameter limit


def review_item(engine: Engine, case_id: str, today: Callable[[str], date]
                ) -> tuple[ReviewItem, RefundCase]:
    """One case as the queue shows it, in whatever state, with its aggregate (read without
    a lock, for what the page works out from it); `NotFound` if there is no such case."""
    with engine.connect() as conn:
        row = conn.execute(select(t.cases).where(t.cases.c.id == case_id)).first()
        if row is None:
            raise NotFound(f"no case {case_id}")
        (item,) = _items(conn, [row], today)
    return item, case_from_row(row)


def _items(conn: Connection, rows: Sequence[Any], today: Callable[[str], date]
           ) -> tuple[ReviewItem, ...]:
    history = _histories(conn, rows)
    items = []
    for row in rows:
        details = row.details
        notes = _rules(details)
        deadlines = _deadlines(details, today(row.shop_id))
        badges = [d.badge for d in deadlines if d.badge is not None]
        reason = row.request.get("reason", {})
        items.append(ReviewItem(
            id=row.id, shop_id=row.shop_id, state=row.state, order_id=row.order_id,
            amount=str(Money.from_minor(row.requested_minor, row.currency).amount),
            currency=row.currency, created_at=aware(row.created_at),
            reason_code=reason.get("code", ""), reason_text=reason.get("text") or "",
            group=_group_of(reason.get("code", ""), notes), rules=notes,
            deadlines=deadlines,
            badge=min(badges, key=list(Badge).index) if badges else None,
            due_on=row.due_on, assignee=row.assignee,
            proposal=_proposal(details.get("proposal")),
            history=history.get(row.id, History(0, 0))))
    return tuple(items)


class ReviewDesk:
    """The review queue's reads, bound to one database (`CaseReads.review_desk`)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def queue(self, *, shops: frozenset[str] | None, actor: str,
              today: Callable[[str], date], filters: QueueFilters = QueueFilters(),
              limit: int = 100) -> ReviewQueue:
        return review_queue(self._engine, shops=shops, actor=actor, today=today,
                            filters=filters, limit=limit)

    def item(self, case_id: str, today: Callable[[str], date]
             ) -> tuple[ReviewItem, RefundCase]:
        return review_item(self._engine, case_id, today)


def _histories(conn: Connection, rows: Sequence[Any]) -> dict[str, History]:
    """Per case, the customer's earlier cases in the same shop and how many were refunded
    (one query per shop over `ix_cases_shop_customer`)."""
    c = t.cases.c
    wanted: dict[str, set[str]] = {}
    for row in rows:
        if row.customer_id:
            wanted.setdefault(row.shop_id, set()).add(row.customer_id)
    earlier: dict[tuple[str, str], list[tuple[datetime, bool]]] = {}
    for shop, customers in wanted.items():
        found = conn.execute(
            select(c.customer_id, c.created_at, c.refunded_minor)
            .where(c.shop_id == shop, c.customer_id.in_(sorted(customers)))).all()
        for f in found:
            earlier.setdefault((shop, f.customer_id), []).append(
                (aware(f.created_at), f.refunded_minor > 0))
    result: dict[str, History] = {}
    for row in rows:
        before = [refunded for at, refunded in earlier.get((row.shop_id, row.customer_id), ())
                  if at < aware(row.created_at)]
        result[row.id] = History(len(before), sum(before))
    return result
