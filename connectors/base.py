"""What all connectors share: how they are built from settings, and one retry policy."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar, assert_never

import httpx
import tenacity
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from refundbridge.connectors import telemetry
from refundbridge.core.errors import (
    ConfigError,
    ConnectorError,
    NotSupported,
    PermanentProviderError,
    TransientProviderError,
    WebhookRejected,
)
from refundbridge.core.model import Disposition, RefundStatus
from refundbridge.core.ports import (
    Capability,
    ConsigneePage,
    OrderSnapshot,
    QuarantineOrder,
    QuarantineResult,
    RecallScope,
    ReplacementOrder,
    ReplacementResult,
    Role,
    ShippedUnit,
    StatusUpdate,
    WebhookAck,
)
from refundbridge.core.request import field_path
from refundbridge.core.request import validation_error as validation_error

T = TypeVar("T")

log = logging.getLogger(__name__)

PLACEHOLDER_MARKERS = ("changeme", "change-me", "change_me", "placeholder", "example", "xxxx",
                       "demo", "sandbox-secret", "todo")


class ConfigProblems(ConfigError):
    """Several refused settings, raised together so that one run names every one of them
    (a newcomer fixing example.toml should not meet its placeholders one per start)."""

    problems: tuple[ConfigError, ...]

    def __init__(self, problems: Sequence[ConfigError]) -> None:
        flat = tuple(p for problem in problems
                     for p in (problem.problems if isinstance(problem, ConfigProblems)
                               else (problem,)))
        if not flat:
            raise ValueError("ConfigProblems needs at least one problem")
        Exception.__init__(self, "\n".join(str(p) for p in flat))
        self.key = flat[0].key
        self.problems = flat

    @classmethod
    def combine(cls, problems: Sequence[ConfigError]) -> ConfigError:
        """The one problem as itself, several as one `ConfigProblems`."""
        return problems[0] if len(problems) == 1 else cls(problems)


def http_address(value: str, example: str) -> str:
    """A setting that must be a server's http(s) address; kept without its trailing slash
    so that paths join onto it one way."""
    if not value.startswith(("https://", "http://")):
        raise ValueError(f"must be the {example}")
    return value.rstrip("/")


def is_placeholder(secret: SecretStr | str | None) -> bool:
    """Secrets nobody should run a real shop with: empty, short, or obviously a sample."""
    if secret is None:
        return True
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    if value.lstrip().startswith("-----BEGIN"):
        return False  # key material: its random base64 may spell a marker by chance
    lowered = value.lower()
    return len(value) < 12 or any(marker in lowered for marker in PLACEHOLDER_MARKERS)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter for transient provider errors only."""

    attempts: int = 5
    initial_wait: float = 0.25
    max_wait: float = 8.0
    max_retry_after: float = 30.0

    def wait(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, TransientProviderError) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_retry_after)
        backoff = self.initial_wait * 2.0 ** (retry_state.attempt_number - 1)
        return min(self.max_wait, backoff) * (0.5 + random.random() / 2)

    def call(self, fn: Callable[[], T]) -> T:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientProviderError),
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=self.wait,
            reraise=True,
            before_sleep=_count_retry,
        )
        return retrying(fn)

    def call_once(self, fn: Callable[[], T], find_existing: Callable[[], T | None]) -> T:
        """`call` for a call that creates or changes something and carries no idempotency
        key: before each retry, ask `find_existing` for what an earlier attempt made.

        A 5xx or a timeout may come after the provider committed; calling again blindly
        would book the same document twice.
        """
        retrying = False

        def attempt() -> T:
            nonlocal retrying
            if retrying and (found := find_existing()) is not None:
                return found
            retrying = True
            return fn()

        return self.call(attempt)


def _count_retry(retry_state: tenacity.RetryCallState) -> None:
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    if isinstance(exc, TransientProviderError):
        telemetry.retried(exc.connector)


@dataclass(frozen=True, slots=True)
class ConnectorContext:
    """What the composition root hands every connector it builds."""

    shop_id: str
    demo: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    transport: httpx.BaseTransport | None = None  # tests may pass one; respx patches anyway
    timeout: float = 10.0
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    connector: str | None = None  # set by `ConnectorBase` for the connector it builds

    def http_client(self, base_url: str, **kwargs: Any) -> httpx.Client:
        # Every call is counted and timed for /metrics (connectors.telemetry), per connector.
        hooks = telemetry.event_hooks(self.shop_id, self.connector or "unknown")
        for kind, extra in kwargs.pop("event_hooks", {}).items():
            hooks.setdefault(kind, []).extend(extra)
        return httpx.Client(base_url=base_url, timeout=self.timeout, transport=self.transport,
                            event_hooks=hooks, **kwargs)


class ConnectorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


S = TypeVar("S", bound=ConnectorSettings)


class ConnectorBase:
    """Convenience base: validate the shop's table for this connector into `Settings`, and
    answer every optional flow the connector does not declare with `NotSupported`."""

    name: ClassVar[str]
    roles: ClassVar[frozenset[Role]]
    capabilities: ClassVar[frozenset[Capability]]
    Settings: ClassVar[type[ConnectorSettings]] = ConnectorSettings
    # The exact answer a provider wants to its notifications, where it wants one.
    acknowledgement: ClassVar[WebhookAck | None] = None
    # A payment connector that may refund what any provider took (the sandbox).
    plays_any_provider: ClassVar[bool] = False

    def lookup_order(self, order_id: str) -> OrderSnapshot:
        raise NotSupported(self.name, Capability.LOOKUP_ORDER.value)

    def write_back(self, update: StatusUpdate) -> None:
        raise NotSupported(self.name, Capability.WRITE_BACK.value)

    def shipped_units(self, order_id: str) -> list[ShippedUnit]:
        raise NotSupported(self.name, Capability.SHIPPED_UNITS.value)

    def consignees(self, scope: RecallScope, cursor: str | None,
                   limit: int) -> ConsigneePage:
        raise NotSupported(self.name, Capability.CONSIGNEES.value)

    def quarantine_stock(self, order: QuarantineOrder) -> QuarantineResult:
        raise NotSupported(self.name, Capability.QUARANTINE.value)

    def create_replacement(self, order: ReplacementOrder) -> ReplacementResult:
        raise NotSupported(self.name, Capability.REPLACEMENT.value)

    def find_replacement(self, order: ReplacementOrder) -> ReplacementResult | None:
        raise NotSupported(self.name, Capability.REPLACEMENT.value)

    @classmethod
    def parse_settings(cls, raw: Mapping[str, Any], ctx: ConnectorContext) -> ConnectorSettings:
        prefix = f"shops.{ctx.shop_id}.{cls.name}"
        try:
            settings = cls.Settings.model_validate(dict(raw))
        except ValidationError as exc:
            raise ConfigProblems.combine([
                ConfigError(f"{prefix}.{'.'.join(str(p) for p in error['loc'])}",
                            error["msg"]) for error in exc.errors()]) from exc
        placeholders = [] if ctx.demo else [
            ConfigError(f"{prefix}.{key}", "is a placeholder secret; set a real one "
                                           "(placeholders are accepted only in demo mode)")
            for key, value in settings if isinstance(value, SecretStr) and is_placeholder(value)]
        if placeholders:
            raise ConfigProblems.combine(placeholders)
        return settings

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], ctx: ConnectorContext) -> Self:
        return cls(cls.parse_settings(raw, ctx), ctx)

    def __init__(self, settings: ConnectorSettings, ctx: ConnectorContext) -> None:
        self.settings = settings
        # The shop's context, naming this connector (its HTTP calls are counted by name).
        self.ctx = ctx if ctx.connector == self.name else replace(ctx, connector=self.name)


class Closeable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closeable)


class ClientConnector(ConnectorBase, Generic[C]):
    """A connector that talks to its provider through one client (its `client.py`).

    `client` is built by `build_client` on first use, so constructing a connector (e.g. to
    check a shop's config) opens nothing; `close()` closes it, and a later use builds a new one.
    """

    _client: C | None = None

    def build_client(self) -> C:
        raise NotImplementedError(f"{type(self).__name__} must define build_client()")

    @property
    def client(self) -> C:
        if self._client is None:
            self._client = self.build_client()
        return self._client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()


class PaymentConnector(ClientConnector[C]):
    """A payment provider's connector: it refunds what the provider took, reads a refund
    back, and takes the provider's refund notifications."""

    roles: ClassVar[frozenset[Role]] = frozenset({Role.PAYMENT})
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.ISSUE_REFUND, Capability.REFUND_STATUS, Capability.REFUND_NOTIFICATIONS})


class ErpConnector(ClientConnector[C]):
    """An ERP's connector: the units an order shipped, the return booked per disposition
    (see `StockDestinations`), and the credit note."""

    roles: ClassVar[frozenset[Role]] = frozenset({Role.ERP})
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.SHIPPED_UNITS, Capability.BOOK_RETURN, Capability.CREDIT_NOTE})


D = TypeVar("D")


@dataclass(frozen=True)  # no slots: a slotted generic dataclass breaks Generic's super()
class StockDestinations(Generic[D]):
    """Where an ERP books returned units, by disposition: a warehouse name, a location id.

    One rule for every ERP: only `restock` is sellable. Nothing that awaits inspection, may
    go back to a manufacturer, or serves as evidence in a vigilance report may be sold again
    before someone has decided about it, so those default to quarantine.
    """

    restock: D
    quarantine: D
    scrap: D
    return_to_manufacturer: D | None = None
    evidence: D | None = None
    connector: str = "erp"

    def for_disposition(self, disposition: Disposition) -> D:
        match disposition:
            case Disposition.RESTOCK:
                return self.restock
            case Disposition.QUARANTINE | Disposition.PENDING_INSPECTION:
                return self.quarantine
            case Disposition.RETURN_TO_MANUFACTURER:
                return (self.quarantine if self.return_to_manufacturer is None
                        else self.return_to_manufacturer)
            case Disposition.KEEP_AS_EVIDENCE:
                return self.quarantine if self.evidence is None else self.evidence
            case Disposition.SCRAP:
                return self.scrap
            case Disposition.NOT_RETURNED:
                # Callers leave these out: the unit stayed with the customer.
                raise PermanentProviderError(self.connector, "a unit that was not returned "
                                                             "has no destination",
                                             code="not_returned")
            case _:
                assert_never(disposition)

    def holds(self) -> dict[str, D]:
        """The destinations that must never be the sellable one, by setting name."""
        held = {"quarantine": self.quarantine, "scrap": self.scrap}
        if self.return_to_manufacturer is not None:
            held["return_to_manufacturer"] = self.return_to_manufacturer
        if self.evidence is not None:
            held["evidence"] = self.evidence
        return held


def first_problem(exc: ValidationError, prefix: str = "") -> str:
    """The first field pydantic refused in a provider's answer, and why: `field: message`."""
    first = exc.errors()[0]
    return f"{field_path(first['loc'], prefix)}: {first['msg']}"


def unexpected_answer(connector: str, what: str, exc: ValidationError, prefix: str = ""
                      ) -> PermanentProviderError:
    """A 2xx answer that is not in the shape the provider documents: it will not improve on
    retry, so it is permanent, and it names the first field that is off."""
    return PermanentProviderError(connector, f"unexpected answer to {what}: "
                                             f"{first_problem(exc, prefix)}",
                                  code="invalid_response")


W = TypeVar("W", bound=BaseModel)


def parse_answer(connector: str, model: type[W], body: object, what: str) -> W:
    """A provider's decoded 2xx answer as `model`, or `unexpected_answer`."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise unexpected_answer(connector, what, exc) from exc


def mapped_status(table: Mapping[str, RefundStatus], raw: str | None, connector: str,
                  what: str = "refund status") -> RefundStatus:
    """A provider's refund status by its table. A value the table lacks is UNKNOWN (recorded,
    never acted on) and logged, so someone can add it."""
    status = table.get(raw) if raw is not None else None
    if status is None:
        log.warning("%s: unmapped %s %r; recorded as unknown", connector, what, raw)
        return RefundStatus.UNKNOWN
    return status


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """Look a header up case-insensitively: callers may pass a plain dict."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


SIGNED_AT_LIMIT = 10**12  # unix seconds: year 33658, far past any real clock


def check_freshness(connector: str, signed_at: float, now: datetime, tolerance: float) -> None:
    """Refuse a signature made more than `tolerance` seconds before or after `now`: a
    captured message can't be replayed later, nor one from a skewed clock used early."""
    # A header may carry any number of digits: one far beyond any clock is simply not fresh
    # (as a float it would not even convert).
    if not isinstance(signed_at, int | float) or not -SIGNED_AT_LIMIT < signed_at < (
            SIGNED_AT_LIMIT) or signed_at != signed_at:
        raise WebhookRejected(connector, "the signature's timestamp is not a time")
    age = now.timestamp() - signed_at
    if age > tolerance:
        raise WebhookRejected(connector, f"signed {age:.0f} s ago, more than {tolerance} s "
                                         "away from now")
    if -age > tolerance:
        raise WebhookRejected(connector, f"signed {-age:.0f} s in the future, more than "
                                         f"{tolerance} s away from now")


def retry_after_seconds(response: httpx.Response, now: datetime | None = None) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # the asctime form carries no zone; HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


ErrorReader = Callable[[httpx.Response], tuple[str, str | None]]


def _raw_error(response: httpx.Response) -> tuple[str, str | None]:
    return f"HTTP {response.status_code}: {response.text[:500]}", str(response.status_code)


def send(connector: str, client: httpx.Client, request: httpx.Request,
         read_error: ErrorReader = _raw_error) -> httpx.Response:
    """Send one request and sort its failure into transient or permanent.

    Transient: connect/read timeouts and network errors, 409 (a concurrent request with the
    same idempotency key is in flight), 429 (with Retry-After), 5xx. Everything else that is
    not 2xx is permanent, with the (message, code) `read_error` finds in the provider's
    answer, so the person reading the case sees the provider's own words. The caller wraps
    this in `RetryPolicy.call`.
    """
    try:
        response = client.send(request)
    except httpx.TransportError as exc:
        telemetry.unanswered(request)
        raise TransientProviderError(connector, f"{type(exc).__name__}: {exc}") from exc
    if response.status_code in (409, 429) or response.status_code >= 500:
        raise TransientProviderError(
            connector, f"HTTP {response.status_code}: {response.text[:300]}",
            retry_after=retry_after_seconds(response),
        )
    if response.status_code >= 400:
        message, code = read_error(response)
        raise PermanentProviderError(connector, message, code=code)
    return response


__all__ = [
    "ClientConnector",
    "ConfigProblems",
    "ConnectorBase",
    "ConnectorContext",
    "ConnectorError",
    "ConnectorSettings",
    "RetryPolicy",
    "is_placeholder",
    "send",
]
