"""Handing outbox work to RQ, with deterministic job ids."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from redis import Redis
from rq import Queue

from refundbridge.core.model import Step
from refundbridge.store.outbox import Work

JOB_FUNCTION = "refundbridge.workers.jobs.run_step"


def job_id(work: Work, dispatch: int = 1) -> str:
    """The RQ job id of one hand-over of an outbox row: stable, so the same row handed out
    twice in a row is one job, and suffixed after the first, so a re-dispatch never collides
    with a job of the same row still known to Redis."""
    base = f"{work.step.value}-{work.case_id}-{work.outbox_id}"
    return base if dispatch <= 1 else f"{base}-r{dispatch}"


class ChainedWork:
    """What a job has been handed to run itself: its case's next step, then the other steps
    of its case that were handed out with it, then the notifications the steps asked for."""

    def __init__(self) -> None:
        self.next_steps: list[Work] = []
        self.handed: list[Work] = []
        self.held: list[Work] = []

    def __bool__(self) -> bool:
        return bool(self.next_steps or self.handed or self.held)

    def take(self, work: Sequence[Work]) -> None:
        """Steps of the job's case enqueued together with its first one."""
        self.handed.extend(w for w in work if w.step is not Step.NOTIFY)
        self.held.extend(w for w in work if w.step is Step.NOTIFY)

    def left(self) -> list[Work]:
        return [*self.next_steps, *self.handed, *self.held]

    def pop(self) -> Work:
        if self.next_steps:
            return self.next_steps.pop()
        if self.handed:
            return self.handed.pop(0)
        first = self.held.pop(0)
        # One notify of a case completes all of its open notify rows.
        self.held[:] = [w for w in self.held if w.case_id != first.case_id]
        return first


class RqDispatcher:
    """Enqueue outbox work. Job ids are derived from the outbox row, so a re-dispatch of the
    same row by the reconciler gets a new suffix and never collides with a live job.

    Inside `chain()`, a job keeps the next step of its own case to run itself instead of
    sending it round the queue: evaluate → refund → stock then cost one job, not three.
    Each step is still its own transaction with its own outbox row, so a crash mid-chain
    leaves the rest to the reconciler. Notifications are held until the other steps are
    done and then run once per case, last in the same job: one notify sends every message
    due by then, however many steps asked for one.
    """

    def __init__(self, redis: Redis, queue_name: str, job_timeout: int) -> None:
        self.queue = Queue(queue_name, connection=redis)
        self.job_timeout = job_timeout
        self._local = threading.local()

    @contextmanager
    def chain(self) -> Iterator[ChainedWork]:
        work = ChainedWork()
        self._local.chained, self._local.held = work.next_steps, work.held
        try:
            yield work
        finally:
            self._local.chained = self._local.held = None
            # Held notifications, and a step left over when one raised: don't strand them.
            if work:
                self.enqueue(work.left())

    def __call__(self, work: Sequence[Work]) -> None:
        pending = list(work)
        chained: list[Work] | None = getattr(self._local, "chained", None)
        held: list[Work] | None = getattr(self._local, "held", None)
        if chained is not None and held is not None:
            held.extend(w for w in pending if w.step is Step.NOTIFY)
            pending = [w for w in pending if w.step is not Step.NOTIFY]
            if pending and not chained:
                chained.append(pending.pop(0))
        if pending:
            self.enqueue(pending)

    def enqueue(self, work: Sequence[Work], dispatch: int = 1) -> None:
        """`dispatch`: how often this work has been handed out, this time included.

        A case's steps handed out together are one job, named after the first (a received
        return's stock booking, refund and message: one job, not three that two workers
        would run at once, the second waiting on the first's lock on the case)."""
        jobs = [
            Queue.prepare_data(
                JOB_FUNCTION, args=job_args(first, rest), job_id=job_id(first, dispatch),
                timeout=self.job_timeout, result_ttl=0, failure_ttl=7 * 24 * 3600,
            )
            for first, rest in by_case(work)
        ]
        self.queue.enqueue_many(jobs)


def by_case(work: Sequence[Work]) -> list[tuple[Work, list[Work]]]:
    """Each case's first step with its other steps, in the order handed out, except that
    notifications go last (one notify then sends what every step asked for). A campaign's
    steps stay one job each: they are the campaign's parallel parts."""
    groups: dict[str, list[Work]] = {}
    jobs: list[list[Work]] = []
    for w in work:
        group = groups.get(w.case_id) if isinstance(w.step, Step) else None
        if group is not None:
            group.append(w)
            continue
        jobs.append([w])
        if isinstance(w.step, Step):
            groups[w.case_id] = jobs[-1]
    ordered = [sorted(job, key=lambda w: w.step is Step.NOTIFY) for job in jobs]  # stable
    return [(first, rest) for first, *rest in ordered]


def job_args(first: Work, rest: Sequence[Work]) -> tuple[Any, ...]:
    """`run_step`'s arguments: the case and its step, then (outbox id, step) of the others."""
    if not rest:
        return (first.case_id, first.step.value)
    return (first.case_id, first.step.value, [(w.outbox_id, w.step.value) for w in rest])
