"""The periodic quality-signal run as an RQ job (core/services/signals.py does the work).

The reconciler asks for a run at most once per `SIGNAL_INTERVAL`, across every worker
process: a Redis key set only if absent, with that interval as its lifetime, decides who
enqueues it, and the job id is the interval's bucket, so a run asked twice is one job. The
run itself is idempotent in the database (a signal's id is derived from what it is about),
so a second run, or two racing, raises nothing twice and notifies no one twice.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from refundbridge.core.services.signals import SignalRunReport, run_signals

if TYPE_CHECKING:
    from refundbridge.workers.deps import WorkerDeps

log = logging.getLogger("refundbridge.signals")

SIGNAL_INTERVAL = 900  # seconds between runs: returns pile up over days, not minutes
SIGNAL_JOB = "refundbridge.workers.jobs.run_signals"
SCHEDULE_KEY = "refundbridge:signals:scheduled"


def signal_job_id(now: datetime, interval: int = SIGNAL_INTERVAL) -> str:
    return f"signals-{int(now.timestamp()) // interval}"


def schedule_signal_run(container: WorkerDeps, now: datetime,
                        interval: int = SIGNAL_INTERVAL) -> str | None:
    """Enqueue the run of this interval unless one was already asked for; its job id."""
    if not container.redis.set(SCHEDULE_KEY, signal_job_id(now, interval), nx=True,
                               ex=interval):
        return None
    job_id = signal_job_id(now, interval)
    container.dispatcher.queue.enqueue(SIGNAL_JOB, job_id=job_id, result_ttl=0,
                                       failure_ttl=7 * 24 * 3600)
    return job_id


def run_signal_job(container: WorkerDeps, shop_ids: list[str] | None = None,
                   now: datetime | None = None) -> SignalRunReport:
    store = container.services.signals
    if store is None:
        raise RuntimeError("the container has no signal store")
    report = run_signals(container.services, store,
                         shop_ids if shop_ids is not None else container.shop_ids, now)
    if report.raised or report.problems:
        log.info("signal run: raised %d, notified %d, problems %d", len(report.raised),
                 len(report.notified), len(report.problems))
    return report
