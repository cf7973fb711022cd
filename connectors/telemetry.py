"""What the connectors count for `/metrics`: every provider call (by shop, connector,
outcome and HTTP status, with its latency), the retry policy's retries, and each message
sent to a customer (by channel and what became of it).

Provider calls are seen at the one HTTP client every connector builds
(`ConnectorContext.http_client`): an event hook stamps each request and records its
answer; a call that got no answer (a timeout, a refused connection) is recorded by `send`,
which sorts it into transient. Nothing here reads a body or a header.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from prometheus_client import Counter, Histogram

from refundbridge.core.errors import (
    PermanentProviderError,
    SendDeferred,
    TransientProviderError,
)
from refundbridge.core.ports import OutgoingMessage, SmsReceipt

PROVIDER_CALLS = Counter(
    "refundbridge_provider_calls", "HTTP calls to providers, by outcome and HTTP status "
    "(outcome: ok, refused (4xx), transient (409, 429, 5xx), error (no answer))",
    ["shop", "connector", "outcome", "status"])
PROVIDER_LATENCY = Histogram(
    "refundbridge_provider_call_seconds", "Time from sending a provider call to its answer "
    "(or to giving up on one)", ["connector", "outcome"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
RETRIES = Counter(
    "refundbridge_provider_retries", "Provider calls tried again after a transient error "
    "(the shared RetryPolicy)", ["connector"])
MESSAGES = Counter(
    "refundbridge_messages", "Messages to customers by channel and what became of the send "
    "(sent, queued, delivered, deferred, transient, failed)", ["shop", "channel", "state"])

T = TypeVar("T")

_STAMP = "refundbridge.call"  # request.extensions: (shop, connector, monotonic start)


def outcome_of(status: int) -> str:
    if status in (409, 429) or status >= 500:
        return "transient"
    return "refused" if status >= 400 else "ok"


def event_hooks(shop: str, connector: str) -> dict[str, list[Callable[..., Any]]]:
    """httpx event hooks that time every request of one connector's client."""

    def started(request: httpx.Request) -> None:
        request.extensions[_STAMP] = (shop, connector, time.monotonic())

    def answered(response: httpx.Response) -> None:
        stamp = response.request.extensions.get(_STAMP)
        if stamp is not None:
            record(stamp, outcome_of(response.status_code), str(response.status_code))

    return {"request": [started], "response": [answered]}


def record(stamp: tuple[str, str, float], outcome: str, status: str) -> None:
    shop, connector, start = stamp
    PROVIDER_CALLS.labels(shop, connector, outcome, status).inc()
    PROVIDER_LATENCY.labels(connector, outcome).observe(time.monotonic() - start)


def unanswered(request: httpx.Request) -> None:
    """A request that got no answer (the transport failed)."""
    stamp = request.extensions.pop(_STAMP, None)
    if stamp is not None:
        record(stamp, "error", "none")


_METERED = "_refundbridge_metered"


def retried(connector: str) -> None:
    RETRIES.labels(connector).inc()


def meter_messages(connector: T, shop: str) -> T:
    """Count what becomes of each message the connector sends (`send`: email, `send_sms`).

    The connector's own methods are wrapped on the instance, so it stays what it is to
    everyone who checks its type or its other capabilities (a status-link sender, say)."""
    for method, channel in (("send", "email"), ("send_sms", "sms")):
        inner = getattr(connector, method, None)
        if callable(inner) and not getattr(inner, _METERED, False):
            setattr(connector, method, _metered(inner, shop, channel))
    return connector


def _metered(inner: Callable[..., Any], shop: str, channel: str) -> Callable[..., Any]:
    @functools.wraps(inner)
    def send(message: OutgoingMessage) -> Any:
        with _counted(shop, channel) as outcome:
            result = inner(message)
            if isinstance(result, SmsReceipt):
                outcome.append(result.state.value)
        return result

    setattr(send, _METERED, True)
    return send


class _counted:
    """Counts one send once: the state the body appended, else what its error means."""

    def __init__(self, shop: str, channel: str) -> None:
        self.shop, self.channel = shop, channel
        self.outcome: list[str] = []

    def __enter__(self) -> list[str]:
        return self.outcome

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: Any) -> None:
        if exc is None:
            state = self.outcome[-1] if self.outcome else "sent"
        elif isinstance(exc, SendDeferred):
            state = "deferred"
        elif isinstance(exc, TransientProviderError):
            state = "transient"
        elif isinstance(exc, PermanentProviderError):
            state = "failed"
        else:
            state = "error"
        MESSAGES.labels(self.shop, self.channel, state).inc()
