"""The console's KPIs, read from the cases and their audit trails.

For the shops asked and a period of days (UTC, both ends included):

- the cases opened in the period: how many per state; how many were decided (approved or
  denied, by anyone) and how many of those the rules approved on their own; the time from
  the first event to the first approval or denial, and to the refund's confirmation
  (p50/p90); the rules that sent them to review or denied them; their reasons (the
  request's reason code); and per step the share of them on which that step failed (a
  `fail` transition naming the step, `step_failed`, a message or a write-back marked
  failed, a refund reversed);
- the money refunded in the period, per currency and day of the refund's confirmation;
- the deadlines due in the period that were breached: a refund deadline met after its day,
  or any deadline past due and still open (a refund not made; an adverse-event report or a
  recall notice, whose completion RefundBridge does not record);
- the deadlines due in the seven days from today that are still open.

Everything is computed from rows of the period (the `(shop, created_at)` and `due_on`
indexes find them), in Python, so SQLite and PostgreSQL give the same figures.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select

from refundbridge.core.lifecycle import CaseState, Transition
from refundbridge.core.model import ObligationKind, Outcome, Step
from refundbridge.core.money import Money
from refundbridge.store import tables as t

DECIDING = (Transition.APPROVE.value, Transition.DENY.value)
FAILURE_EVENTS = ("fail", "step_failed", "notification_failed", "write_back_failed",
                  "refund_reversed")
WANTED_EVENTS = (*DECIDING, Transition.CONFIRM_REFUND.value, *FAILURE_EVENTS)
# How far apart one case's deadlines can be: a case whose earliest deadline is older than
# this before the window is not looked at for the window's deadlines.
DEADLINE_SPREAD = timedelta(days=90)
NOT_OWED = frozenset({CaseState.CANCELLED.value, CaseState.DENIED.value})
OWING_STATES = sorted(s.value for s in CaseState if s is not CaseState.CANCELLED)


@dataclass(frozen=True, slots=True)
class Percentiles:
    count: int
    p50: timedelta | None
    p90: timedelta | None


@dataclass(frozen=True, slots=True)
class Deadline:
    case_id: str
    shop_id: str
    kind: str
    due: date
    met_on: date | None  # only refund deadlines are met in RefundBridge (the refund)
    rule: str


@dataclass
class KpiReport:
    shops: list[str]
    start: date
    end: date
    today: date
    cases: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    decided: int = 0
    auto_approved: int = 0
    to_decision: Percentiles = Percentiles(0, None, None)
    to_refund: Percentiles = Percentiles(0, None, None)
    # currency -> day -> refunded that day
    refunds: dict[str, dict[date, Money]] = field(default_factory=dict)
    # (rule, outcome "review" | "deny") -> cases
    rules: dict[tuple[str, str], int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    # (shop, step) -> (cases on which the step failed, cases of the shop in the period)
    failed_steps: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    breaches: list[Deadline] = field(default_factory=list)
    due_this_week: list[Deadline] = field(default_factory=list)

    @property
    def auto_approval_rate(self) -> Decimal | None:
        if not self.decided:
            return None
        return (Decimal(self.auto_approved) / Decimal(self.decided)).quantize(Decimal("0.001"))


def _start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _at(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def percentiles(values: Sequence[timedelta]) -> Percentiles:
    """Nearest-rank p50 and p90."""
    if not values:
        return Percentiles(0, None, None)
    ordered = sorted(values)

    def rank(p: int) -> timedelta:
        index = max(0, -(-p * len(ordered) // 100) - 1)  # ceil(p/100 * n) - 1
        return ordered[index]

    return Percentiles(len(ordered), rank(50), rank(90))


def _failed_step(name: str, data: dict[str, Any]) -> str | None:
    if name in ("fail", "step_failed"):
        step = data.get("step")
        # A refund the provider refused fails the case with the attempt's data, no step.
        return str(step) if step else Step.REFUND.value
    return {"notification_failed": Step.NOTIFY.value, "write_back_failed":
            Step.WRITE_BACK.value, "refund_reversed": Step.REFUND.value}.get(name)


def _deadlines(rows: Iterable[Any], met: dict[str, date]) -> list[Deadline]:
    found = []
    for row in rows:
        for item in (row.obligations or ()):
            if not item.get("due"):
                continue
            kind = str(item["kind"])
            met_on = met.get(row.id) if kind == ObligationKind.REFUND_DEADLINE.value else None
            if kind == ObligationKind.REFUND_DEADLINE.value and row.state in NOT_OWED:
                continue  # no refund is owed any more
            found.append(Deadline(row.id, row.shop_id, kind, date.fromisoformat(item["due"]),
                                  met_on, str(item.get("rule", ""))))
    return found


def _refund_days(conn: Any, case_ids: Iterable[str]) -> dict[str, date]:
    """The day each case's refund was first confirmed."""
    ids = sorted(set(case_ids))
    if not ids:
        return {}
    e = t.case_events.c
    met: dict[str, date] = {}
    # The name is checked here, not in SQL: there, PostgreSQL would AND the cases' trails
    # with the whole partial index of confirmations (`ix_case_events_refunded`, one entry
    # per refund ever made) instead of just reading these few trails by their key.
    for case_id, name, at in conn.execute(
            select(e.case_id, e.name, e.at).where(e.case_id.in_(ids))
            .order_by(e.case_id, e.seq)):
        if name == Transition.CONFIRM_REFUND.value:
            met.setdefault(case_id, _at(at).date())
    return met


def kpi_report(engine: Engine, shops: Sequence[str], start: date, end: date,
               today: date) -> KpiReport:
    report = KpiReport(sorted(shops), start, end, today)
    if not shops or end < start:
        return report
    c, e = t.cases.c, t.case_events.c
    in_period = (c.shop_id.in_(report.shops), c.created_at >= _start(start),
                 c.created_at < _start(end + timedelta(days=1)))
    with engine.connect() as conn:
        cases = conn.execute(select(c.id, c.shop_id, c.state,
                                    c.request[("reason", "code")].as_string().label("reason"))
                             .where(*in_period)).all()
        events = conn.execute(
            select(e.case_id, e.seq, e.name, e.at, e.actor, e.data)
            .join(t.cases, c.id == e.case_id)
            .where(*in_period, e.name.in_((*WANTED_EVENTS, "received")))
            .order_by(e.case_id, e.seq)).all()
        spoke = conn.execute(
            select(t.case_rules.c.rule_id, t.case_rules.c.outcome,
                   t.case_rules.c.case_id)
            .join(t.cases, c.id == t.case_rules.c.case_id)
            .where(*in_period, t.case_rules.c.outcome.in_(
                (Outcome.REVIEW.value, Outcome.DENY.value)))).all()
        refunded = conn.execute(
            select(e.case_id, e.at, e.data, c.currency, c.details["attempts"].label("attempts"))
            .join(t.cases, c.id == e.case_id)
            .where(c.shop_id.in_(report.shops), e.name == Transition.CONFIRM_REFUND.value,
                   e.at >= _start(start).isoformat(),
                   e.at < _start(end + timedelta(days=1)).isoformat())).all()
        window_low = min(start, today) - DEADLINE_SPREAD
        window_high = max(end, today + timedelta(days=6))
        # The states named rather than "not cancelled": then (shop, state, due_on) finds the
        # window's rows, where "!=" had the planner read every case of the shops.
        owing = conn.execute(
            select(c.id, c.shop_id, c.state, c.details["obligations"].label("obligations"))
            .where(c.shop_id.in_(report.shops), c.due_on >= window_low,
                   c.due_on <= window_high, c.state.in_(OWING_STATES))).all()
        met = _refund_days(conn, (row.id for row in owing))

    report.cases = len(cases)
    report.by_state = dict(Counter(row.state for row in cases))
    report.reasons = dict(Counter(row.reason or "" for row in cases))
    per_shop = Counter(row.shop_id for row in cases)
    shop_of = {row.id: row.shop_id for row in cases}

    first_at: dict[str, datetime] = {}
    decided_at: dict[str, datetime] = {}
    refunded_at: dict[str, datetime] = {}
    first_decision: dict[str, tuple[str, str]] = {}
    failed: dict[tuple[str, str], set[str]] = defaultdict(set)
    for ev in events:
        at = _at(ev.at)
        first_at.setdefault(ev.case_id, at)
        if ev.name in DECIDING:
            decided_at.setdefault(ev.case_id, at)
            first_decision.setdefault(ev.case_id, (ev.name, ev.actor))
        elif ev.name == Transition.CONFIRM_REFUND.value:
            refunded_at.setdefault(ev.case_id, at)
        else:
            step = _failed_step(ev.name, ev.data or {})
            if step:
                failed[(shop_of[ev.case_id], step)].add(ev.case_id)
    report.decided = len(first_decision)
    report.auto_approved = sum(1 for name, actor in first_decision.values()
                               if name == Transition.APPROVE.value and actor == "rules")
    report.to_decision = percentiles([at - first_at[cid] for cid, at in decided_at.items()])
    report.to_refund = percentiles([at - first_at[cid] for cid, at in refunded_at.items()])
    report.failed_steps = {key: (len(ids), per_shop[key[0]]) for key, ids in failed.items()}

    rules: dict[tuple[str, str], set[str]] = defaultdict(set)
    for row in spoke:
        rules[(row.rule_id, row.outcome)].add(row.case_id)
    report.rules = {key: len(ids) for key, ids in sorted(rules.items())}

    money: dict[str, dict[date, Money]] = defaultdict(dict)
    for paid in refunded:
        number = (paid.data or {}).get("attempt")
        attempt = next((a for a in paid.attempts or () if a.get("number") == number), None)
        if attempt is None:
            continue
        amount = Money.parse(attempt["amount"]["amount"], attempt["amount"]["currency"])
        day = _at(paid.at).date()
        days = money[amount.currency]
        days[day] = days.get(day, Money.zero(amount.currency)) + amount
    report.refunds = {cur: dict(sorted(days.items())) for cur, days in sorted(money.items())}

    deadlines = _deadlines(owing, met)
    report.breaches = sorted(
        (d for d in deadlines if start <= d.due <= end and (
            (d.met_on is not None and d.met_on > d.due)
            or (d.met_on is None and d.due < today))),
        key=lambda d: (d.due, d.case_id))
    report.due_this_week = sorted(
        (d for d in deadlines if d.met_on is None
         and today <= d.due <= today + timedelta(days=6)),
        key=lambda d: (d.due, d.case_id))
    return report
