"""What the workers need from the process that runs them, as ports: the composition root
(`refundbridge.bootstrap.Container`) provides them, and nothing here imports it."""

from __future__ import annotations

from typing import Protocol

from redis import Redis

from refundbridge.core.services import Services
from refundbridge.store.outbox import OutboxStore
from refundbridge.workers.queue import RqDispatcher


class WorkerSettings(Protocol):
    @property
    def stale_after_seconds(self) -> float: ...

    @property
    def pending_refund_poll_seconds(self) -> float: ...

    @property
    def max_dispatches(self) -> int: ...

    @property
    def max_revivals(self) -> int: ...

    @property
    def reconcile_interval_seconds(self) -> float: ...


class WorkerDeps(Protocol):
    """The services jobs run steps with, the queue, Redis (RQ's own and the reconciler's
    lock), the outbox and the reconciler's settings."""

    @property
    def services(self) -> Services: ...

    @property
    def dispatcher(self) -> RqDispatcher: ...

    @property
    def redis(self) -> Redis: ...

    @property
    def outbox(self) -> OutboxStore: ...

    @property
    def settings(self) -> WorkerSettings: ...

    @property
    def shop_ids(self) -> list[str]: ...  # every shop, for the quality-signal run
