"""Running RQ workers, and the periodic reconciler beside them."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from redis.exceptions import LockError
from rq import SimpleWorker
from rq.timeouts import TimerDeathPenalty

from refundbridge.workers import runtime
from refundbridge.workers.reconcile import reconcile
from refundbridge.workers.relay import Relay, relay_once

if TYPE_CHECKING:
    from refundbridge.workers.deps import WorkerDeps

log = logging.getLogger("refundbridge.worker")

RECONCILE_LOCK = "refundbridge:reconcile-lock"


class ThreadWorker(SimpleWorker):
    """A SimpleWorker that can run off the main thread (the embedded demo): no signal
    handlers, and job timeouts by timer instead of SIGALRM."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass


def make_worker(container: WorkerDeps, *, threaded: bool = False) -> SimpleWorker:
    # SimpleWorker runs jobs in the worker process: the forking Worker costs ~10 ms a job on
    # these machines, more than our jobs themselves. Crash isolation comes from the database:
    # every job is idempotent and the reconciler re-enqueues what a dead worker dropped.
    cls = ThreadWorker if threaded else SimpleWorker
    return cls([container.dispatcher.queue], connection=container.redis)


def reconcile_once(container: WorkerDeps, stale_after: float | None = None) -> Any:
    """Run the reconciler unless another process holds the lock right now."""
    lock = container.redis.lock(RECONCILE_LOCK, timeout=300, blocking=False)
    if not lock.acquire(blocking=False):
        return None
    try:
        return reconcile(container, stale_after)
    finally:
        try:
            lock.release()
        except LockError:
            log.warning("reconcile lock expired before release")


class PeriodicReconciler(threading.Thread):
    def __init__(self, container: WorkerDeps, interval: float) -> None:
        super().__init__(name="reconciler", daemon=True)
        self.container = container
        self.interval = interval
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            report = reconcile_once(self.container)
            if report is not None and (report.requeued or report.revived):
                log.info("reconciler requeued %d jobs, revived %d cases",
                         len(report.requeued), len(report.revived))


def drain(container: WorkerDeps, worker: SimpleWorker | None = None,
          max_jobs: int | None = None) -> None:
    """Relay and work until neither the outbox nor the queue has anything left."""
    runtime.install(container)
    worker = worker or make_worker(container)
    while True:
        relayed = relay_once(container)
        worker.work(burst=True, with_scheduler=False, max_jobs=max_jobs)
        if max_jobs is not None or (not relayed and not worker.queues[0].count):
            return


def run_worker(container: WorkerDeps, *, burst: bool = False, reconcile_every: float | None = None
               ) -> None:
    runtime.install(container)
    if burst:
        drain(container)
        return
    interval = container.settings.reconcile_interval_seconds if reconcile_every is None else (
        reconcile_every)
    helpers: list[Relay | PeriodicReconciler] = [Relay(container)]
    if interval > 0:
        helpers.append(PeriodicReconciler(container, interval))
    for helper in helpers:
        helper.start()
    try:
        make_worker(container).work(with_scheduler=False)
    finally:
        for helper in helpers:
            helper.stopped.set()
