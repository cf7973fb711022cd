"""Find work whose queue job was lost, and enqueue it again; give up on work that never ends.

RQ is at-least-once with gaps (a flushed Redis, a killed worker and work-horse): the database
is the source of truth. Two passes:
1. outbox rows not done whose job is no longer waiting in the queue get a new job once they
   have waited `stale_after` seconds, twice as long after each hand-over. After
   `max_dispatches` hand-overs the step is given up: the case fails with the reason (a
   message or write-back is marked failed instead), and the row is closed;
2. cases that are still moving (not final, not waiting for a person or for goods), untouched
   for `stale_after` seconds and with no open outbox row, get the steps their state needs
   (`RefundCase.steps_needed`); after `max_revivals` revivals without a change of state the
   case fails instead. A refund the provider left pending is polled this way once it has
   waited `pending_refund_poll_seconds`.
Every step is idempotent, so enqueueing something that was only slow costs a no-op run.
Nothing is handed out forever.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from refundbridge.core import services
from refundbridge.core.campaigns import CampaignStep
from refundbridge.core.services.campaigns import campaign_tick, fail_campaign_step
from refundbridge.store.outbox import OpenWork, redispatch_wait
from refundbridge.workers import metrics
from refundbridge.workers.queue import job_id
from refundbridge.workers.relay import relay_once
from refundbridge.workers.signals import schedule_signal_run

if TYPE_CHECKING:
    from refundbridge.workers.deps import WorkerDeps

log = logging.getLogger("refundbridge.reconcile")

WAITING = {JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED}


@dataclass
class ReconcileReport:
    relayed: int = 0
    requeued: list[str] = field(default_factory=list)
    revived: list[str] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)
    campaigns: list[str] = field(default_factory=list)  # recall campaigns asked to go on


def reconcile(container: WorkerDeps, stale_after: float | None = None,
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
    _requeue_lost_jobs(container, stale, now, report)
    _revive_idle_cases(container, cutoff, now - timedelta(seconds=pending), report)
    campaigns = container.services.campaigns
    if campaigns is not None:
        # Reminders fall due, and a dead job's claims expire, without anyone asking.
        report.campaigns = campaign_tick(
            container.services, [c for _, c in campaigns.open_campaigns()])
    # Quality signals: one run per interval, whichever reconciler asks first.
    schedule_signal_run(container, now)
    metrics.reconciled(report)
    return report


def _job(container: WorkerDeps, job_id: str) -> Job | None:
    try:
        return Job.fetch(job_id, connection=container.redis)
    except NoSuchJobError:
        return None


def _requeue_lost_jobs(container: WorkerDeps, stale: float, now: datetime,
                       report: ReconcileReport) -> None:
    limit = container.settings.max_dispatches
    due = [row for row in container.outbox.open_work(now - timedelta(seconds=stale))
           if row.dispatched_at <= now - timedelta(
               seconds=redispatch_wait(stale, row.dispatch_count))]
    jobs = {row.work.outbox_id: _job(container, job_id(row.work, row.dispatch_count))
            for row in due}
    waiting = {outbox_id for outbox_id, job in jobs.items()
               if job is not None and job.get_status(refresh=False) in WAITING}
    # A case's rows handed out together wait in the job named after the first of them.
    waiting.update(outbox_id for job_key in list(waiting)
                   for outbox_id in _handed_with(jobs[job_key]))
    for row in due:
        if row.work.outbox_id in waiting:
            continue
        job = jobs[row.work.outbox_id]
        work = row.work
        if row.dispatch_count >= limit:
            _give_up(container, row, job, now)
            report.given_up.append(job_id(work))
            continue
        count = row.dispatch_count + 1
        container.outbox.mark_dispatched(work.outbox_id, now, count)
        container.dispatcher.enqueue([work], dispatch=count)
        report.requeued.append(job_id(work))


def _handed_with(job: Job | None) -> list[int]:
    """The outbox ids a job runs after its own (`workers.queue.job_args`)."""
    args = job.args if job is not None else ()
    return [int(outbox_id) for outbox_id, _ in args[2]] if len(args) > 2 else []


def _give_up(container: WorkerDeps, row: OpenWork, job: Job | None, now: datetime) -> None:
    result = job.latest_result() if job is not None else None
    last_error = _last_line(result.exc_string if result is not None else None)
    message = (f"gave up on the {row.work.step.value} step after {row.dispatch_count} tries"
               + (f"; last error: {last_error}" if last_error else ""))
    log.error("case %s: %s", row.work.case_id, message)
    if isinstance(row.work.step, CampaignStep):
        fail_campaign_step(container.services, row.work.case_id, row.work.step, message)
    else:
        services.fail_step(container.services, row.work.case_id, row.work.step, message,
                           code="gave_up")
    # The step's own row, and any copy of it, is done with: nothing is handed out forever.
    container.outbox.mark_done([row.work.outbox_id], now)


def _last_line(text: str | None) -> str | None:
    if not text:
        return None
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else None


def _revive_idle_cases(container: WorkerDeps, cutoff: datetime, pending_cutoff: datetime,
                       report: ReconcileReport) -> None:
    limit = container.settings.max_revivals
    for case_id in container.outbox.idle_cases(cutoff, pending_cutoff):
        if services.revive(container.services, case_id, limit):
            report.revived.append(case_id)
