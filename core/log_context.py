"""What a log line is about: the request, shop, case, step and connector at hand.

Kept in context variables, so every line logged while handling one request or running one
job carries them without each call passing them on (the API's middleware and the job runner
set them; `refundbridge.telemetry` adds them to each record). A context variable follows a
request into the thread pool and back out with the task, so nothing leaks between requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

FIELDS = ("request_id", "shop", "connector", "case_id", "campaign_id", "step")

_VARS: dict[str, ContextVar[str | None]] = {
    name: ContextVar(f"refundbridge.log.{name}", default=None) for name in FIELDS}


def _checked(fields: dict[str, str | None]) -> None:
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise TypeError(f"unknown log context field(s): {', '.join(sorted(unknown))}")


def bind(**fields: str | None) -> None:
    """Set fields for the rest of the current context (one request's task, one job)."""
    _checked(fields)
    for name, value in fields.items():
        _VARS[name].set(value)


@contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """Set fields for the `with` block, then put back what was there."""
    _checked(fields)
    tokens: list[tuple[ContextVar[str | None], Token[str | None]]] = [
        (_VARS[name], _VARS[name].set(value)) for name, value in fields.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current() -> dict[str, str]:
    """The fields that are set, by name."""
    return {name: value for name, var in _VARS.items() if (value := var.get()) is not None}
