"""Ports: what the core needs from the outside world, as small Protocols.

Adapters implement them: `store/` (repositories, unit of work), `connectors/` (providers),
`workers/` (the queue). The core never imports an adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

from core.model import (
    NotificationKind,
    RefundCase,
    RefundResult,
    Step,
    StockMove,
)
from core.money import Money
from core.request import NormalizedRefundRequest, ReasonCode

# ------------------------------------------------------------------ connectors


class Role(StrEnum):
    STOREFRONT = "storefront"
    PAYMENT = "payment"
    ERP = "erp"
    NOTIFIER = "notifier"


@runtime_checkable
class Connector(Protocol):
    """What every connector declares about itself."""

    name: ClassVar[str]
    roles: ClassVar[frozenset[Role]]


@dataclass(frozen=True, slots=True)
class RefundRequested:
    """A storefront (or anyone) asks for a refund."""

    request: NormalizedRefundRequest


@dataclass(frozen=True, slots=True)
class RefundUpdate:
    """A payment provider tells us what became of a refund."""

    result: RefundResult
    idempotency_key: str | None = None
    case_id: str | None = None
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class Ignored:
    """A genuine, verified message that needs no action (a ping, an unrelated topic)."""

    reason: str


WebhookEvent = RefundRequested | RefundUpdate | Ignored


class WebhookReceiver(Protocol):
    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> WebhookEvent:
        """Verify the message came from the provider, then translate it. Raises
        `WebhookRejected` for a bad signature or a stale timestamp, `InvalidRequest`
        (naming the field) for a body that does not validate."""
        ...


@dataclass(frozen=True, slots=True)
class RefundOrder:
    """What we ask a payment provider to pay back."""

    case_id: str
    attempt: int
    idempotency_key: str
    amount: Money
    payment_reference: str
    order_id: str
    reason: ReasonCode
    paid_total: Money


class PaymentGateway(Protocol):
    def issue_refund(self, order: RefundOrder) -> RefundResult:
        """Pay back `order.amount` once; the same idempotency key never pays twice."""
        ...

    def find_refund(self, order: RefundOrder) -> RefundResult | None:
        """The refund made under this order's idempotency key, if the provider has one."""
        ...

    def refund_status(self, provider_ref: str, order: RefundOrder) -> RefundResult: ...


@dataclass(frozen=True, slots=True)
class ReturnBooking:
    """What we ask an ERP to book: a credit note, and stock moves for returned goods."""

    case_id: str
    order_id: str
    amount: Money
    moves: tuple[StockMove, ...]
    request: NormalizedRefundRequest


class ErpGateway(Protocol):
    def book_return(self, booking: ReturnBooking) -> str:
        """Book the return; returns the ERP's document reference. Must be idempotent on
        `booking.case_id` (look for an earlier booking before creating one)."""
        ...


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    case_id: str
    kind: NotificationKind
    locale: str
    email: str | None
    phone: str | None
    message_id: str  # stable per case and kind, so a resend can be recognised
    context: Mapping[str, Any] = field(default_factory=dict)


class Notifier(Protocol):
    def send(self, message: OutgoingMessage) -> None: ...


# ------------------------------------------------------------------ storage


@dataclass(frozen=True, slots=True)
class InboxEntry:
    case_id: str
    fingerprint: str


class CaseRepository(Protocol):
    def add(self, case: RefundCase) -> None: ...

    def get(self, case_id: str) -> RefundCase:
        """Load and lock the case for this unit of work; raises `NotFound`."""
        ...

    def attach(self, case: RefundCase) -> None:
        """Save `case`, read by an earlier unit of work, with this one. Committing raises
        `ConcurrencyConflict` if anyone wrote the case since it was read."""
        ...

    def find_by_refund(self, provider_ref: str | None, idempotency_key: str | None
                       ) -> RefundCase | None: ...


class OrderLedger(Protocol):
    def lock(self, shop_id: str, order_id: str, paid_total: Money) -> Money:
        """Lock the order for this unit of work (creating it on first sight) and return
        what it was paid."""
        ...

    def reserved(self, shop_id: str, order_id: str, currency: str, excluding: str) -> Money:
        """Money approved for refund on this order by cases other than `excluding`."""
        ...


class Inbox(Protocol):
    def find(self, shop_id: str, connector: str, external_id: str) -> InboxEntry | None: ...

    def add(self, shop_id: str, connector: str, external_id: str, entry: InboxEntry) -> None:
        """Raises `DuplicateDelivery` (at commit at the latest) if the key exists."""
        ...


class Outbox(Protocol):
    def complete(self, case_id: str, step: Step) -> None:
        """Mark the case's pending work for `step` done, in this unit of work."""
        ...


class UnitOfWork(Protocol):
    cases: CaseRepository
    orders: OrderLedger
    inbox: Inbox
    outbox: Outbox

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def commit(self) -> None:
        """Commit the cases seen, their audit events and their new work together; hand the
        new work to the queue after the commit."""
        ...
