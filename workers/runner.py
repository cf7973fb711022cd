"""Running RQ workers, and the periodic reconciler beside them."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from redis.exceptions import LockError
from rq import SimpleWorker
from rq.timeouts import TimerDeathPenalty

from workers import runtime
from workers.reconcile import reconcile

if TYPE_CHECKING:
    from refundbridge.bootstrap import Container

log = logging.getLogger("refundbridge.worker")

RECONCILE_LOCK = "refundbridge:reconcile-lock"


class ThreadWorker(SimpleWorker):
    """A SimpleWorker that can run off the main thread (the embedded demo): no signal
    handlers, and job timeouts by timer instead of SIGALRM."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass


def make_worker(container: Container, *, threaded: bool = False) -> SimpleWorker:
    # SimpleWorker runs jobs in the worker process: the forking Worker costs ~10 ms a job on
    # these machines, more than our jobs themselves. Crash isolation comes from the database:
    # every job is idempotent and the reconciler re-enqueues what a dead worker dropped.
    cls = ThreadWorker if threaded else SimpleWorker
    return cls([container.dispatcher.queue], connection=container.redis)


def reconcile_once(container: Container, stale_after: float | None = None) -> Any:
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
    def __init__(self, container: Container, interval: float) -> None:
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


def run_worker(container: Container, *, burst: bool = False, reconcile_every: float | None = None
               ) -> None:
    runtime.install(container)
    reconciler = None
    interval = container.settings.reconcile_interval_seconds if reconcile_every is None else (
        reconcile_every)
    if not burst and interval > 0:
        reconciler = PeriodicReconciler(container, interval)
        reconciler.start()
    try:
        make_worker(container).work(burst=burst, with_scheduler=False)
    finally:
        if reconciler is not None:
            reconciler.stopped.set()
