"""Ports: what the core needs from the outside world, as small Protocols.

Adapters implement them: `store/` (repositories, unit of work), `connectors/` (providers),
`workers/` (the queue). The core never imports an adapter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

# Re-exported: connectors use these as port types.
from refundbridge.core.model import DeliveryState as DeliveryState
from refundbridge.core.model import (
    NotificationKind,
    RefundCase,
    RefundResult,
    Step,
    StockMove,
)
from refundbridge.core.model import ShippedUnit as ShippedUnit
from refundbridge.core.model import StatusOutcome as StatusOutcome
from refundbridge.core.money import Money
from refundbridge.core.recalls import RecallList
from refundbridge.core.request import NormalizedRefundRequest, ReasonCode, RequestLine

# ------------------------------------------------------------------ connectors


class Role(StrEnum):
    STOREFRONT = "storefront"
    PAYMENT = "payment"
    ERP = "erp"
    NOTIFIER = "notifier"


class Capability(StrEnum):
    """One thing a connector can do; each names the methods it needs (`CAPABILITY_METHODS`).

    A connector declares its capabilities; asking it for one it lacks raises `NotSupported`
    naming the flow and the connector.
    """

    RECEIVE_REQUESTS = "storefront.receive_requests"  # parse_webhook → RefundRequested
    LOOKUP_ORDER = "storefront.lookup_order"
    WRITE_BACK = "storefront.write_back"
    ISSUE_REFUND = "payment.issue_refund"
    REFUND_STATUS = "payment.refund_status"
    REFUND_NOTIFICATIONS = "payment.notifications"  # parse_webhook → RefundUpdate
    SHIPPED_UNITS = "erp.shipped_units"
    SHIPPED_QUANTITY = "erp.shipped_quantity"  # units of a SKU (and lot) shipped in a date range
    CONSIGNEES = "erp.consignees"  # who received units of a recalled lot or serial
    QUARANTINE = "erp.quarantine"  # stop the stock on hand of a recalled lot or serial
    BOOK_RETURN = "erp.book_return"
    CREDIT_NOTE = "erp.credit_note"  # book_return also books the credit note
    REPLACEMENT = "erp.replacement"  # send an exchange's replacement units
    SEND_EMAIL = "notifier.email"
    SEND_SMS = "notifier.sms"

    @property
    def role(self) -> Role:
        return Role(self.value.split(".", 1)[0])


CAPABILITY_METHODS: Mapping[Capability, tuple[str, ...]] = {
    Capability.RECEIVE_REQUESTS: ("parse_webhook",),
    Capability.LOOKUP_ORDER: ("lookup_order",),
    Capability.WRITE_BACK: ("write_back",),
    Capability.ISSUE_REFUND: ("issue_refund", "find_refund"),
    Capability.REFUND_STATUS: ("refund_status",),
    Capability.REFUND_NOTIFICATIONS: ("parse_webhook",),
    Capability.SHIPPED_UNITS: ("shipped_units",),
    Capability.SHIPPED_QUANTITY: ("shipped_quantity",),
    Capability.CONSIGNEES: ("consignees",),
    Capability.QUARANTINE: ("quarantine_stock",),
    Capability.BOOK_RETURN: ("book_return",),
    Capability.CREDIT_NOTE: ("book_return",),
    Capability.REPLACEMENT: ("create_replacement", "find_replacement"),
    Capability.SEND_EMAIL: ("send",),
    Capability.SEND_SMS: ("send_sms", "find_sms", "parse_callback"),
}

# What a connector must be able to do to fill a role in a shop's config.
ROLE_NEEDS: Mapping[Role, frozenset[Capability]] = {
    Role.STOREFRONT: frozenset({Capability.RECEIVE_REQUESTS}),
    Role.PAYMENT: frozenset({Capability.ISSUE_REFUND, Capability.REFUND_STATUS}),
    Role.ERP: frozenset({Capability.BOOK_RETURN}),
    Role.NOTIFIER: frozenset(),  # either channel will do
}


@runtime_checkable
class Connector(Protocol):
    """What every connector declares about itself."""

    name: ClassVar[str]
    roles: ClassVar[frozenset[Role]]
    capabilities: ClassVar[frozenset[Capability]]


@dataclass(frozen=True, slots=True)
class RefundRequested:
    """A storefront (or anyone) asks for a refund.

    `fingerprint` tells a redelivery from a changed request with the same external id. By
    default it is the request's own digest; a connector that builds the request from a thin
    webhook plus a look-up sets it from the signed body instead, because the looked-up order
    may have moved on between two deliveries of the very same webhook."""

    request: NormalizedRefundRequest
    fingerprint: str | None = None  # a hex SHA-256, like the request's own


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


@dataclass(frozen=True, slots=True)
class ExternalRefund:
    """Money refunded on an order outside RefundBridge (in the shop's admin, say). Recorded
    against the order so the over-refund guard stays true. `external_id` is the provider's id
    of that refund: recording it twice changes nothing."""

    order_id: str
    external_id: str
    amount: Money
    note: str = ""


WebhookEvent = RefundRequested | RefundUpdate | ExternalRefund | Ignored


@dataclass(frozen=True, slots=True)
class WebhookAck:
    """The exact answer a provider expects to a notification (Alipay wants the text
    `success`); connectors that need one set `acknowledgement` on their class."""

    status: int
    body: bytes
    media_type: str


class WebhookReceiver(Protocol):
    name: ClassVar[str]
    # The exact answer the provider expects to a notification, or None for our JSON.
    acknowledgement: ClassVar[WebhookAck | None]

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
    # What is being refunded, for providers that refund per line (WooCommerce, Shopify).
    lines: tuple[RequestLine, ...] = ()


class PaymentGateway(Protocol):
    name: ClassVar[str]
    # True for a stand-in that may refund what any provider took (G02 lets it).
    plays_any_provider: ClassVar[bool]

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
    name: ClassVar[str]

    def book_return(self, booking: ReturnBooking) -> str:
        """Book the return; returns the ERP's document reference. Must be idempotent on
        `booking.case_id` (look for an earlier booking before creating one)."""
        ...


class ShipmentLookup(Protocol):
    def shipped_units(self, order_id: str) -> list[ShippedUnit]:
        """Every unit shipped for the storefront's order id; [] if the ERP knows the order
        but shipped nothing. Raises `PermanentProviderError` if it does not know the order."""
        ...


@dataclass(frozen=True, slots=True)
class ShippedQuantityQuery:
    """Units of a SKU shipped from `since` to `until`, both days included (submitted / done
    shipments less their returns to us are not subtracted: a rate's denominator is what
    went out). `lot` None: every lot of the SKU."""

    sku: str
    since: date
    until: date
    lot: str | None = None


class ShippedQuantityLookup(Protocol):
    """The `erp.shipped_quantity` capability (quality signals' return rates)."""

    def shipped_quantity(self, query: ShippedQuantityQuery) -> int:
        """0 when nothing shipped; raises `PermanentProviderError` when the ERP knows no
        such product, `TransientProviderError` for a call worth repeating."""
        ...


# ---- recall campaigns: who received the recalled units, and stopping the stock on hand ----

@dataclass(frozen=True, slots=True)
class RecallScope:
    """Which units a recall covers, as an ERP is asked about them: the product by the shop's
    SKU (the ERP's item code) or its GTIN, narrowed to lots and/or serials. Both empty: every
    unit of the product. A unit is covered when its lot is in `lots` (or `lots` is empty) and
    its serial in `serials` (or `serials` is empty)."""

    sku: str | None
    gtin: str | None = None  # GTIN-14; an ERP finds its item by barcode when sku is None
    lots: tuple[str, ...] = ()
    serials: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ConsigneeUnits:
    """Units of the recalled product one shipment line delivered to a consignee."""

    line_id: str  # the ERP's id of the shipped row (Delivery Note Item, stock.move.line)
    document: str  # the shipping document (Delivery Note, Sales Invoice, picking)
    sku: str
    quantity: int
    lot: str | None = None
    serial: str | None = None
    shipped_on: date | None = None
    order_id: str | None = None  # the storefront's order id, where the ERP holds it


@dataclass(frozen=True, slots=True)
class Consignee:
    """Someone the ERP delivered recalled units to, with how to reach them."""

    key: str  # the ERP's id of the customer (ERPNext Customer name, Odoo partner id)
    name: str
    units: tuple[ConsigneeUnits, ...]
    email: str | None = None
    phone: str | None = None  # as the ERP holds it; E.164 is made of it before a send
    locale: str | None = None  # e.g. "zh-CN"; None: the shop's default


@dataclass(frozen=True, slots=True)
class ConsigneePage:
    """One page of the walk: `cursor` None on the last. A consignee may appear on several
    pages (one row per shipment line): callers merge by `Consignee.key` and
    `ConsigneeUnits.line_id`, so a page read twice changes nothing."""

    consignees: tuple[Consignee, ...]
    cursor: str | None


class ConsigneeLookup(Protocol):
    """The `erp.consignees` capability."""

    def consignees(self, scope: RecallScope, cursor: str | None,
                   limit: int) -> ConsigneePage:
        """Consignees of covered units from submitted / done shipments, `limit` shipment
        rows a page at most, in a stable order; `cursor` is what the previous page
        returned (None: the first). Raises `PermanentProviderError` when the ERP knows no
        such product."""
        ...


@dataclass(frozen=True, slots=True)
class QuarantineOrder:
    """Move every covered unit on hand (outside quarantine) into quarantine, once."""

    idempotency_key: str  # derived from the campaign: the same key never moves stock twice
    reference: str  # the recall notice's reference, for the ERP document's remarks
    scope: RecallScope


@dataclass(frozen=True, slots=True)
class QuarantinedUnits:
    sku: str
    quantity: int
    source: str  # the warehouse or location the units were taken from
    lot: str | None = None
    serial: str | None = None


@dataclass(frozen=True, slots=True)
class QuarantineResult:
    """The ERP's document(s) of the move ("" when nothing was on hand) and what moved."""

    document: str
    units: tuple[QuarantinedUnits, ...] = ()


class StockQuarantine(Protocol):
    """The `erp.quarantine` capability."""

    def quarantine_stock(self, order: QuarantineOrder) -> QuarantineResult:
        """Idempotent on `order.idempotency_key`: a second call finds the first move and
        returns it instead of moving anything."""
        ...


@dataclass(frozen=True, slots=True)
class ReplacementItem:
    sku: str
    name: str
    quantity: int
    unit_price: Money


@dataclass(frozen=True, slots=True)
class ReplacementOrder:
    """Send the customer these units in place of returned ones, once."""

    idempotency_key: str  # derived from the case: the same key never ships twice
    case_id: str
    order_id: str  # the original order the exchange is against
    customer_id: str
    customer_email: str | None
    items: tuple[ReplacementItem, ...]
    # Recalled lots of the returned units: the replacement must not be picked from them
    # (core/exchanges.py X02). Added after the first version; empty for most exchanges.
    avoid_lots: tuple[str, ...] = ()


class ReplacementState(StrEnum):
    CREATED = "created"  # the order exists; nothing has shipped yet
    SHIPPED = "shipped"  # the delivery (Delivery Note / picking) is done


@dataclass(frozen=True, slots=True)
class ReplacementResult:
    """The ERP's documents of a replacement: its order and, once made, its delivery."""

    document: str  # ERPNext Sales Order name, Odoo sale.order name
    state: ReplacementState
    delivery: str | None = None  # ERPNext Delivery Note, Odoo stock.picking name


class ReplacementCreator(Protocol):
    """The `erp.replacement` capability."""

    def create_replacement(self, order: ReplacementOrder) -> ReplacementResult:
        """Idempotent on `order.idempotency_key`: a second call finds the first order (and
        its delivery) and returns it instead of creating anything."""
        ...

    def find_replacement(self, order: ReplacementOrder) -> ReplacementResult | None:
        """The replacement made under `order.idempotency_key`, or None if none exists."""
        ...


@dataclass(frozen=True, slots=True)
class OrderLine:
    sku: str
    name: str
    quantity: int
    unit_price: Money
    line_id: str | None = None  # the storefront's id of the line, for refunds per line


@dataclass(frozen=True, slots=True)
class OrderSnapshot:
    """An order as the storefront knows it, to fill in a thin webhook."""

    order_id: str
    paid_total: Money
    placed_at: datetime
    delivered_at: datetime | None
    payment_provider: str
    payment_reference: str
    customer_id: str
    customer_email: str | None
    customer_phone: str | None
    customer_locale: str
    lines: tuple[OrderLine, ...]


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """What we tell the storefront about its request (its return approved or declined)."""

    case_id: str
    order_id: str
    external_id: str  # the storefront's id of the request (a Shopify return id, say)
    outcome: StatusOutcome
    # The storefront may show it to the customer: the decision's customer message, never
    # a reviewer's internal note.
    note: str = ""
    amount: Money | None = None


class OrderLookup(Protocol):
    """The `storefront.lookup_order` capability."""

    def lookup_order(self, order_id: str) -> OrderSnapshot: ...


class StatusWriter(Protocol):
    def write_back(self, update: StatusUpdate) -> None:
        """Idempotent: writing the same outcome twice leaves the storefront as once."""
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


# ---- SMS: a send has a provider id and a later delivery state, and may be deferred ----

@dataclass(frozen=True, slots=True)
class SmsReceipt:
    """The provider's answer to one send."""

    provider_id: str  # Twilio's Message SID, Aliyun's BizId, Tencent's SerialNo
    state: DeliveryState
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A provider's later word on one send. `message_id` is ours where the provider echoes
    it (Aliyun's OutId, Tencent's SessionContext); else the send is found by `provider_id`."""

    provider_id: str | None
    message_id: str | None
    phone: str | None
    state: DeliveryState
    error: str = ""
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class InboundSms:
    """A customer's reply: "STOP" or "退订" opts the number out of the shop's SMS."""

    phone: str
    text: str
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SmsCallback:
    reports: tuple[DeliveryReport, ...] = ()
    replies: tuple[InboundSms, ...] = ()


class SmsSender(Protocol):
    """An SMS provider (the `notifier.sms` capability). `message.phone` is E.164."""

    name: ClassVar[str]

    def send_sms(self, message: OutgoingMessage) -> SmsReceipt:
        """Send one message. Raises `SendDeferred` when the provider holds it back for
        now (try later, the case does not fail), `TransientProviderError` for a call worth
        repeating, `PermanentProviderError` for a refusal."""
        ...

    def find_sms(self, message: OutgoingMessage, sent_on: date) -> SmsReceipt | None:
        """The provider's record of a send of this message on that day, if any: asked
        before sending again after a crash mid-call, where a send is not idempotent."""
        ...

    def parse_callback(self, url: str, headers: Mapping[str, str], body: bytes,
                       now: datetime) -> SmsCallback:
        """Verify a delivery report or reply pushed to us (`url`: the full URL it was sent
        to, as the provider signed it), then translate it. Raises `WebhookRejected`."""
        ...


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

    def earlier_requests(self, shop_id: str, customer_id: str, since: datetime,
                         excluding: str) -> list[datetime]:
        """When this customer's other cases at this shop were opened, from `since` on."""
        ...


@dataclass(frozen=True, slots=True)
class HeldUnits:
    """Units of one line of another case on the same order: what that case asks to have
    refunded (and maybe returned), so the units guard (G03) can count them against what was
    shipped. `pending` marks a case still waiting for a person: it holds nothing yet, but a
    person deciding this one should know of it."""

    case_id: str
    sku: str
    quantity: int
    lot: str | None = None
    serial: str | None = None
    pending: bool = False


class OrderLedger(Protocol):
    def lock(self, shop_id: str, order_id: str, paid_total: Money) -> Money:
        """Lock the order for this unit of work (creating it on first sight) and return
        what it was paid."""
        ...

    def reserved(self, shop_id: str, order_id: str, currency: str, excluding: str) -> Money:
        """Money approved for refund on this order by cases other than `excluding`, and
        refunded on it outside RefundBridge."""
        ...

    def known_currency(self, shop_id: str, order_id: str) -> str | None:
        """The currency the order is known in (its ledger entry, else an earlier case on
        it), or None for an order not seen before. Reads only; takes no lock."""
        ...

    def record_external(self, shop_id: str, refund: ExternalRefund) -> bool:
        """Count a refund made outside RefundBridge against its order; False if it was
        recorded before (the same `external_id`)."""
        ...

    def held_units(self, shop_id: str, order_id: str, excluding: str) -> list[HeldUnits]:
        """The request lines of the order's cases other than `excluding` that hold units:
        approved ones not denied or cancelled (the cases `reserved` counts the money of),
        and, marked `pending`, ones waiting for a person."""
        ...


class Inbox(Protocol):
    def find(self, shop_id: str, connector: str, external_id: str) -> InboxEntry | None: ...

    def add(self, shop_id: str, connector: str, external_id: str, entry: InboxEntry) -> None:
        """Raises `DuplicateDelivery` (at commit at the latest) if the key exists."""
        ...


@dataclass(frozen=True, slots=True)
class CaseOpened:
    """The case, its inbox key, audit events and work are committed."""


@dataclass(frozen=True, slots=True)
class KnownDelivery:
    """The inbox key was there already (a replay, or a concurrent copy that won): nothing
    was written. `entry` is what the key was first stored with."""

    entry: InboxEntry


@dataclass(frozen=True, slots=True)
class CurrencyConflict:
    """The order is known in another currency: nothing was written."""

    known_currency: str


IntakeOutcome = CaseOpened | KnownDelivery | CurrencyConflict


class IntakeWriter(Protocol):
    def open_case(self, case: RefundCase, connector: str, external_id: str,
                  fingerprint: str) -> IntakeOutcome:
        """Commit a new case with its inbox key `(case.shop_id, connector, external_id)`,
        its audit events and its work, in that order of checks: the order known in another
        currency (looked up as `OrderLedger.known_currency` does) writes nothing; a known
        key writes nothing (the key decides between concurrent copies: one case at most).
        Commits by itself and hands the work over as `commit` would: it must be the unit of
        work's only use."""
        ...


class AsyncIntakeWriter(Protocol):
    """`IntakeWriter.open_case` for an event loop: awaited by a webhook's handler instead of
    taking a thread (the API on PostgreSQL). Its hand-over is the relay's (the API's unit of
    work dispatches nothing). One per run of the app: `aclose` ends it."""

    async def open_case(self, case: RefundCase, connector: str, external_id: str,
                        fingerprint: str) -> IntakeOutcome: ...

    async def aclose(self) -> None: ...


class Outbox(Protocol):
    def complete(self, case_id: str, step: Step) -> None:
        """Mark the case's pending work for `step` done, in this unit of work."""
        ...

    def postpone(self, case_id: str, step: Step, until: datetime) -> None:
        """The step's open work is waiting, not lost (a message held back until the end of
        quiet hours or of a provider's limit): the reconciler hands it out again after
        `until`, and the wait does not use up its hand-overs."""
        ...


class SmsOptOuts(Protocol):
    """Numbers that asked a shop for no more SMS (a STOP / 退订 reply)."""

    def add(self, shop_id: str, phone: str, at: datetime, source: str, text: str) -> bool:
        """Record the opt-out; False if the number had opted out before."""
        ...

    def has(self, shop_id: str, phone: str) -> bool: ...


class SmsSends(Protocol):
    """Which case's message a provider's id of a send names."""

    def remember(self, shop_id: str, provider_id: str, case_id: str,
                 kind: NotificationKind) -> None: ...

    def find(self, shop_id: str, provider_id: str) -> tuple[str, NotificationKind] | None: ...


class RecallSource(Protocol):
    def for_shop(self, shop_id: str) -> RecallList: ...


class UnitOfWork(Protocol):
    cases: CaseRepository
    orders: OrderLedger
    inbox: Inbox
    outbox: Outbox
    intake: IntakeWriter
    recalls: RecallSource
    sms_opt_outs: SmsOptOuts
    sms_sends: SmsSends

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
