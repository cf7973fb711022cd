"""The outbox's own queries, for the relay and the reconciler (the unit of work writes rows).

An outbox row is one step to run for a case. `dispatched_at` says when it was last handed
to the queue (NULL: never), `dispatch_count` how often, `done_at` when its step finished.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, and_, exists, or_, select, update

from refundbridge.core.campaigns import CampaignStep
from refundbridge.core.lifecycle import MOVING_STATES, CaseState
from refundbridge.core.model import Step
from refundbridge.store import tables as t
from refundbridge.store.mapping import aware

WorkStep = Step | CampaignStep


def work_step(value: str) -> WorkStep:
    """A stored step's name as the step: a case's, or a recall campaign's (`rc_…`)."""
    return CampaignStep(value) if value.startswith("rc_") else Step(value)


@dataclass(frozen=True, slots=True)
class Work:
    """One outbox row: a step to run for a case (or, for a `CampaignStep`, a campaign:
    `case_id` then holds the campaign's id)."""

    outbox_id: int
    case_id: str
    step: WorkStep


# Hands committed work to the queue (`workers.queue.RqDispatcher` in workers).
Dispatch = Callable[[Sequence[Work]], None]

MAX_BACKOFF = 64  # the longest wait between hand-overs, in multiples of `stale_after`


def redispatch_wait(stale_after: float, dispatch_count: int) -> float:
    """Seconds an open row waits after its last hand-over before the reconciler hands it out
    again: `stale_after`, twice as long after each hand-over, at most 64 times as long."""
    return stale_after * float(min(2 ** (dispatch_count - 1), MAX_BACKOFF))


@dataclass(frozen=True, slots=True)
class OpenWork:
    """An outbox row handed out but not done: its job may have been lost."""

    work: Work
    dispatched_at: datetime
    dispatch_count: int


def relay_new_work(engine: Engine, now: datetime, hand_over: Callable[[list[Work]], None],
                   limit: int = 500) -> int:
    """Claim rows never handed over, give them to `hand_over` and mark them, in one
    transaction; on PostgreSQL `SKIP LOCKED` lets several relays run side by side."""
    o = t.outbox.c
    with engine.begin() as conn:
        query = select(o.id, o.case_id, o.step).where(o.dispatched_at.is_(None)).order_by(
            o.id).limit(limit)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        rows = conn.execute(query).all()
        if not rows:
            return 0
        conn.execute(update(t.outbox).where(o.id.in_([r.id for r in rows]))
                     .values(dispatched_at=now))
        hand_over([Work(int(r.id), r.case_id, work_step(r.step)) for r in rows])
    return len(rows)


def open_work(engine: Engine, handed_out_before: datetime, limit: int = 5000) -> list[OpenWork]:
    o = t.outbox.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(o.id, o.case_id, o.step, o.dispatched_at, o.dispatch_count)
            .where(o.done_at.is_(None), o.dispatched_at <= handed_out_before)
            .order_by(o.id).limit(limit)
        ).all()
    return [OpenWork(Work(int(r.id), r.case_id, work_step(r.step)), aware(r.dispatched_at),
                     int(r.dispatch_count)) for r in rows]


def mark_dispatched(engine: Engine, outbox_id: int, now: datetime, count: int) -> None:
    with engine.begin() as conn:
        conn.execute(update(t.outbox).where(t.outbox.c.id == outbox_id)
                     .values(dispatched_at=now, dispatch_count=count))


def mark_done(engine: Engine, outbox_ids: Sequence[int], now: datetime) -> None:
    """Close rows whose step was given up on (the case already says so)."""
    with engine.begin() as conn:
        conn.execute(update(t.outbox).where(t.outbox.c.id.in_(list(outbox_ids)),
                                            t.outbox.c.done_at.is_(None))
                     .values(done_at=now))


def idle_cases(engine: Engine, untouched_since: datetime, pending_untouched_since: datetime,
               limit: int = 5000) -> list[str]:
    """Cases still moving, with no open outbox row, untouched since the cut-off (a refund
    the provider left pending: since its own cut-off, so it is polled on its own clock)."""
    c, o = t.cases.c, t.outbox.c
    open_row = exists().where(and_(o.case_id == c.id, o.done_at.is_(None)))
    moving = [s.value for s in MOVING_STATES if s is not CaseState.REFUNDING]
    idle = or_(and_(c.state == CaseState.REFUNDING.value,
                    c.updated_at <= pending_untouched_since),
               and_(c.state.in_(moving), c.updated_at <= untouched_since))
    with engine.connect() as conn:
        return list(conn.execute(select(c.id).where(idle, ~open_row).limit(limit))
                    .scalars().all())


class OutboxStore:
    """The outbox queries bound to one database, for the relay and the reconciler."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def relay_new_work(self, now: datetime, hand_over: Callable[[list[Work]], None],
                       limit: int = 500) -> int:
        return relay_new_work(self._engine, now, hand_over, limit)

    def open_work(self, handed_out_before: datetime) -> list[OpenWork]:
        return open_work(self._engine, handed_out_before)

    def mark_dispatched(self, outbox_id: int, now: datetime, count: int) -> None:
        mark_dispatched(self._engine, outbox_id, now, count)

    def mark_done(self, outbox_ids: Sequence[int], now: datetime) -> None:
        mark_done(self._engine, outbox_ids, now)

    def idle_cases(self, untouched_since: datetime, pending_untouched_since: datetime
                   ) -> list[str]:
        return idle_cases(self._engine, untouched_since, pending_untouched_since)
