"""Handing outbox work to RQ, with deterministic job ids."""

from __future__ import annotations

from collections.abc import Sequence

from redis import Redis
from rq import Queue

from store.uow import Work

JOB_FUNCTION = "workers.jobs.run_step"


class RqDispatcher:
    """Enqueue outbox work. Job ids are derived from the outbox row, so a re-dispatch of the
    same row by the reconciler gets a new suffix and never collides with a live job."""

    def __init__(self, redis: Redis, queue_name: str, job_timeout: int) -> None:
        self.queue = Queue(queue_name, connection=redis)
        self.job_timeout = job_timeout

    def __call__(self, work: Sequence[Work], suffix: str = "") -> None:
        jobs = [
            Queue.prepare_data(
                JOB_FUNCTION, args=(w.case_id, w.step.value), job_id=w.job_id + suffix,
                timeout=self.job_timeout, result_ttl=0, failure_ttl=7 * 24 * 3600,
            )
            for w in work
        ]
        self.queue.enqueue_many(jobs)
