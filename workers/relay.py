"""The outbox relay: hand work the API committed to the queue.

The API writes outbox rows and answers without touching Redis, so a webhook is accepted (and
nothing accepted is lost) even while Redis is down. Workers run this relay in a thread: it
claims rows never handed over (`dispatched_at IS NULL`), enqueues them and marks them, in one
transaction. On PostgreSQL `SKIP LOCKED` lets every worker relay without stepping on another;
a crash between enqueue and commit only enqueues a row twice, and every job is idempotent.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from refundbridge.store.db import DATABASE_ERROR

if TYPE_CHECKING:
    from refundbridge.workers.deps import WorkerDeps

log = logging.getLogger("refundbridge.relay")


def relay_once(container: WorkerDeps, limit: int = 500) -> int:
    return container.outbox.relay_new_work(datetime.now(UTC), container.dispatcher, limit)


class Relay(threading.Thread):
    def __init__(self, container: WorkerDeps, idle_wait: float = 0.05) -> None:
        super().__init__(name="outbox-relay", daemon=True)
        self.container = container
        self.idle_wait = idle_wait
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                moved = relay_once(self.container)
            except (DATABASE_ERROR, RedisError):
                # The database or Redis is away; what is not relayed stays in the outbox.
                log.exception("outbox relay failed; trying again in a second")
                moved = 0
                self.stopped.wait(1.0)
            if not moved:
                self.stopped.wait(self.idle_wait)
