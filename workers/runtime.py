"""The running process's container, installed once by whoever starts a worker."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from refundbridge.workers.deps import WorkerDeps

_current: WorkerDeps | None = None


def install(container: WorkerDeps) -> None:
    global _current
    _current = container


def current() -> WorkerDeps:
    if _current is None:
        raise RuntimeError("no container installed: start workers with `refundbridge worker`")
    return _current
