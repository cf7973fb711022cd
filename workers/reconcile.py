"""Find work whose queue job was lost, and enqueue it again.

RQ is at-least-once with gaps (a flushed Redis, a killed worker and work-horse): the database
is the source of truth. Two passes:
1. outbox rows not done whose job is no longer waiting in the queue and that were last handed
   over more than `stale_after` seconds ago get a new job;
2. cases that are still moving (not final, not waiting for a person or for goods), untouched
   for `stale_after` seconds and with no open outbox row, get the step their state needs;
   a refund the provider left pending is polled this way once it has waited
   `pending_refund_poll_seconds`.
Every step is idempotent, so enqueueing something that was only slow costs a no-op run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy import and_, exists, or_, select, update

from core.lifecycle import CaseState
from core.model import RefundCase, Step
from store import tables as t
from store.uow import Work
from workers.relay import relay_once

if TYPE_CHECKING:
    from refundbridge.bootstrap import Container

WAITING = {JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED}
MOVING_STATES = (CaseState.RECEIVED, CaseState.EVALUATING, CaseState.APPROVED,
                 CaseState.REFUNDING, CaseState.REFUNDED, CaseState.RECEIVED_GOODS)


@dataclass
class ReconcileReport:
    relayed: int = 0
    requeued: list[str] = field(default_factory=list)
    revived: list[str] = field(default_factory=list)


def steps_needed(case: RefundCase) -> list[Step]:
    steps: list[Step] = []
    if case.state in {CaseState.RECEIVED, CaseState.EVALUATING}:
        steps.append(Step.EVALUATE)
    if case.state is CaseState.REFUNDING:
        steps.append(Step.REFUND)
    if case.state in {CaseState.REFUNDED, CaseState.RECEIVED_GOODS} and not case.erp_booked:
        steps.append(Step.STOCK)
    if case.pending_notifications():
        steps.append(Step.NOTIFY)
    if case.pending_write_backs():
        steps.append(Step.WRITE_BACK)
    return steps


def reconcile(container: Container, stale_after: float | None = None,
              now: datetime | None = None,
              pending_after: float | None = None) -> ReconcileReport:
    """`stale_after`: seconds without progress before work counts as lost; `pending_after`:
    seconds a provider may leave a refund pending before we ask it (each defaults to its
    setting)."""
    now = now or datetime.now(UTC)
    settings = container.settings
    stale = settings.stale_after_seconds if stale_after is None else stale_after
    pending = settings.pending_refund_poll_seconds if pending_after is None else pending_after
    cutoff = now - timedelta(seconds=stale)
    report = ReconcileReport()
    report.relayed = relay_once(container)
    _requeue_lost_jobs(container, cutoff, now, report)
    _revive_idle_cases(container, cutoff, now - timedelta(seconds=pending), report)
    return report


def _job_waiting(container: Container, job_id: str) -> bool:
    try:
        job = Job.fetch(job_id, connection=container.redis)
    except NoSuchJobError:
        return False
    return job.get_status(refresh=False) in WAITING


def _requeue_lost_jobs(container: Container, cutoff: datetime, now: datetime,
                       report: ReconcileReport) -> None:
    o = t.outbox.c
    with container.engine.connect() as conn:
        rows = conn.execute(
            select(o.id, o.case_id, o.step, o.dispatch_count)
            .where(o.done_at.is_(None), o.dispatched_at <= cutoff)
            .order_by(o.id).limit(5000)
        ).all()
    for row in rows:
        work = Work(int(row.id), row.case_id, Step(row.step))
        suffix = "" if row.dispatch_count <= 1 else f"-r{row.dispatch_count}"
        if _job_waiting(container, work.job_id + suffix):
            continue
        with container.engine.begin() as conn:
            conn.execute(update(t.outbox).where(o.id == row.id)
                         .values(dispatched_at=now, dispatch_count=row.dispatch_count + 1))
        container.dispatcher.enqueue([work], suffix=f"-r{row.dispatch_count + 1}")
        report.requeued.append(work.job_id)


def _revive_idle_cases(container: Container, cutoff: datetime, pending_cutoff: datetime,
                       report: ReconcileReport) -> None:
    c, o = t.cases.c, t.outbox.c
    open_work = exists().where(and_(o.case_id == c.id, o.done_at.is_(None)))
    # A refund the provider left pending is polled on its own clock: the payment connector's
    # status read settles it, and a notification that arrives first makes the poll a no-op.
    idle = or_(and_(c.state == CaseState.REFUNDING.value, c.updated_at <= pending_cutoff),
               and_(c.state.in_([s.value for s in MOVING_STATES
                                 if s is not CaseState.REFUNDING]),
                    c.updated_at <= cutoff))
    with container.engine.connect() as conn:
        case_ids = conn.execute(
            select(c.id).where(idle, ~open_work).limit(5000)
        ).scalars().all()
    for case_id in case_ids:
        with container.uow() as uow:
            case = uow.cases.get(case_id)
            steps = steps_needed(case)
            if not steps:
                continue
            case.new_steps.extend(steps)
            uow.commit()
        report.revived.append(case_id)
