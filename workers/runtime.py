"""The running process's container, installed once by whoever starts a worker."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from refundbridge.bootstrap import Container

_current: Container | None = None


def install(container: Container) -> None:
    global _current
    _current = container


def current() -> Container:
    if _current is None:
        raise RuntimeError("no container installed: start workers with `refundbridge worker`")
    return _current
