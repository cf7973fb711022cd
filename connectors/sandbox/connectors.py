"""The sandbox payment, ERP and notifier connectors."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable, Mapping
from datetime import date
from types import MappingProxyType
from typing import ClassVar, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from refundbridge.connectors.alipay.transformers import ALIPAY_UNITS
from refundbridge.connectors.base import ConnectorBase, ConnectorContext, ConnectorSettings
from refundbridge.connectors.minor_units import MinorUnitTable
from refundbridge.connectors.stripe.transformers import STRIPE_UNITS
from refundbridge.connectors.wechatpay.transformers import WECHATPAY_UNITS
from refundbridge.core.errors import TransientProviderError
from refundbridge.core.model import RefundResult, RefundStatus
from refundbridge.core.ports import (
    Capability,
    Consignee,
    ConsigneePage,
    ConsigneeUnits,
    OutgoingMessage,
    QuarantinedUnits,
    QuarantineOrder,
    QuarantineResult,
    RecallScope,
    RefundOrder,
    ReplacementOrder,
    ReplacementResult,
    ReplacementState,
    ReturnBooking,
    Role,
    ShippedQuantityQuery,
)
from refundbridge.core.signals import QualityAlert

T = TypeVar("T")


class SandboxSettings(ConnectorSettings):
    latency_ms: float = Field(default=0.0, ge=0)
    transient_failure_rate: float = Field(default=0.0, ge=0, le=0.9)
    seed: int | None = None


# The provider whose currency table the sandbox payment plays: it refuses what that provider
# would refuse (a KWD amount Stripe cannot take, a USD refund through WeChat Pay), so a demo
# meets the same limits a live shop will.
PLAYED_TABLES: Final[Mapping[str, MinorUnitTable]] = MappingProxyType({
    "stripe": STRIPE_UNITS, "wechatpay": WECHATPAY_UNITS, "alipay": ALIPAY_UNITS,
})


class SandboxPaymentSettings(SandboxSettings):
    minor_units: Literal["stripe", "wechatpay", "alipay"] = "stripe"


class _Sandbox(ConnectorBase):
    Settings: ClassVar[type[ConnectorSettings]] = SandboxSettings
    settings: SandboxSettings

    def __init__(self, settings: SandboxSettings, ctx: ConnectorContext) -> None:
        super().__init__(settings, ctx)
        self._random = random.Random(settings.seed)
        self._lock = threading.Lock()

    def _call(self, operation: str, fn: Callable[[], T]) -> T:
        def attempt() -> T:
            if self.settings.latency_ms:
                time.sleep(self.settings.latency_ms / 1000)
            with self._lock:
                unlucky = self._random.random() < self.settings.transient_failure_rate
            if unlucky:
                raise TransientProviderError(self.name, f"sandbox {operation}: simulated 503")
            return fn()

        return self.ctx.retry.call(attempt)


class SandboxPaymentConnector(_Sandbox):
    name: ClassVar[str] = "sandbox_payment"
    plays_any_provider: ClassVar[bool] = True  # it stands in for Stripe, Alipay, …
    roles: ClassVar[frozenset[Role]] = frozenset({Role.PAYMENT})
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.ISSUE_REFUND, Capability.REFUND_STATUS})
    Settings: ClassVar[type[ConnectorSettings]] = SandboxPaymentSettings
    settings: SandboxPaymentSettings

    def __init__(self, settings: SandboxPaymentSettings, ctx: ConnectorContext) -> None:
        super().__init__(settings, ctx)
        self.units = PLAYED_TABLES[settings.minor_units]
        self.refunds: dict[str, RefundResult] = {}
        self.paid_minor: dict[str, int] = {}  # what went "over the wire", in the table's units

    def issue_refund(self, order: RefundOrder) -> RefundResult:
        # Converted before the call, as a real connector does: a refused amount moves nothing.
        minor = self.units.to_minor(order.amount)

        def refund() -> RefundResult:
            with self._lock:
                # Like a real provider: the same key pays once and replays the answer.
                if order.idempotency_key not in self.refunds:
                    digest = hashlib.sha256(order.idempotency_key.encode()).hexdigest()
                    ref = "sbx_re_" + digest[:16]
                    self.paid_minor[order.idempotency_key] = minor
                    self.refunds[order.idempotency_key] = RefundResult(
                        RefundStatus.SUCCEEDED, ref,
                        self.units.from_minor(minor, order.amount.currency),
                        raw_status="succeeded")
                return self.refunds[order.idempotency_key]

        return self._call("refund", refund)

    def find_refund(self, order: RefundOrder) -> RefundResult | None:
        return self._call("find refund", lambda: self.refunds.get(order.idempotency_key))

    def refund_status(self, provider_ref: str, order: RefundOrder) -> RefundResult:
        found = self.find_refund(order)
        return found or RefundResult(RefundStatus.UNKNOWN, provider_ref, raw_status="missing")


class SandboxShipment(BaseModel):
    """One shipped row the sandbox ERP knows: who received which units."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    customer: str
    name: str
    sku: str
    quantity: int = Field(gt=0)
    document: str
    lot: str | None = None
    serial: str | None = None
    order_id: str | None = None
    email: str | None = None
    phone: str | None = None
    locale: str | None = None
    shipped_on: date | None = None


class SandboxStock(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sku: str
    quantity: int = Field(gt=0)
    warehouse: str = "Stores"
    lot: str | None = None
    serial: str | None = None


class SandboxErpSettings(SandboxSettings):
    # What it shipped and holds, for recall campaigns (`erp.consignees`, `erp.quarantine`).
    shipments: list[SandboxShipment] = Field(default_factory=list)
    stock: list[SandboxStock] = Field(default_factory=list)


def _covers(scope: RecallScope, sku: str, lot: str | None, serial: str | None) -> bool:
    def same(value: str | None, wanted: tuple[str, ...]) -> bool:
        return not wanted or (value or "").casefold() in {w.casefold() for w in wanted}

    return (scope.sku or "").casefold() == sku.casefold() and same(lot, scope.lots) and (
        same(serial, scope.serials))


def shipped_in(shipments: list[SandboxShipment], query: ShippedQuantityQuery) -> int:
    lot = (query.lot or "").casefold()
    return sum(s.quantity for s in shipments
               if s.sku.casefold() == query.sku.casefold()
               and (not query.lot or (s.lot or "").casefold() == lot)
               and s.shipped_on is not None and query.since <= s.shipped_on <= query.until)


class SandboxErpConnector(_Sandbox):
    name: ClassVar[str] = "sandbox_erp"
    roles: ClassVar[frozenset[Role]] = frozenset({Role.ERP})
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.BOOK_RETURN, Capability.CONSIGNEES, Capability.QUARANTINE,
         Capability.REPLACEMENT,
         Capability.SHIPPED_QUANTITY})
    Settings: ClassVar[type[ConnectorSettings]] = SandboxErpSettings
    settings: SandboxErpSettings

    def __init__(self, settings: SandboxErpSettings, ctx: ConnectorContext) -> None:
        super().__init__(settings, ctx)
        self.bookings: dict[str, ReturnBooking] = {}
        # Exchanges by idempotency key: the order as asked, and the documents made for it.
        self.replacements: dict[str, tuple[ReplacementOrder, ReplacementResult]] = {}
        self.replacement_calls = 0  # create_replacement calls that reached the "ERP"
        self.quarantines: dict[str, QuarantineResult] = {}

    def consignees(self, scope: RecallScope, cursor: str | None,
                   limit: int) -> ConsigneePage:
        """Pages of the configured shipments by position: the cursor is where the next
        page starts reading."""
        shipments = self.settings.shipments
        start = int(cursor) if cursor else 0
        page: list[tuple[int, SandboxShipment]] = []
        position = start
        while position < len(shipments) and len(page) < limit:
            shipment = shipments[position]
            if _covers(scope, shipment.sku, shipment.lot, shipment.serial):
                page.append((position, shipment))
            position += 1

        def read() -> ConsigneePage:
            found = tuple(Consignee(
                key=s.customer, name=s.name, email=s.email, phone=s.phone, locale=s.locale,
                units=(ConsigneeUnits(line_id=f"SBX-{i}", document=s.document, sku=s.sku,
                                      quantity=s.quantity, lot=s.lot, serial=s.serial,
                                      shipped_on=s.shipped_on, order_id=s.order_id),))
                for i, s in page)
            return ConsigneePage(found, str(position) if position < len(shipments) else None)

        return self._call("consignees", read)

    def quarantine_stock(self, order: QuarantineOrder) -> QuarantineResult:
        def move() -> QuarantineResult:
            with self._lock:
                if order.idempotency_key not in self.quarantines:
                    units = tuple(
                        QuarantinedUnits(s.sku, s.quantity, s.warehouse, s.lot, s.serial)
                        for s in self.settings.stock
                        if _covers(order.scope, s.sku, s.lot, s.serial))
                    digest = hashlib.sha256(order.idempotency_key.encode()).hexdigest()
                    self.quarantines[order.idempotency_key] = QuarantineResult(
                        f"SBX-QUAR-{digest[:10]}" if units else "", units)
                return self.quarantines[order.idempotency_key]

        return self._call("quarantine", move)

    def shipped_quantity(self, query: ShippedQuantityQuery) -> int:
        """The configured shipments of the SKU (and lot) dated in the range; an undated
        shipment counts as shipped before any range."""
        return self._call("shipped quantity", lambda: shipped_in(self.settings.shipments,
                                                                   query))

    def create_replacement(self, order: ReplacementOrder) -> ReplacementResult:
        """A sales order and its delivery at once (the sandbox ships from stock the moment it
        is asked), made once per key: a repeat returns the first."""
        def create() -> ReplacementResult:
            with self._lock:
                self.replacement_calls += 1
                if order.idempotency_key not in self.replacements:
                    digest = hashlib.sha256(order.idempotency_key.encode()).hexdigest()[:10]
                    result = ReplacementResult(f"SBX-SO-{digest}", ReplacementState.SHIPPED,
                                               f"SBX-DN-{digest}")
                    self.replacements[order.idempotency_key] = (order, result)
                return self.replacements[order.idempotency_key][1]

        return self._call("create replacement", create)

    def find_replacement(self, order: ReplacementOrder) -> ReplacementResult | None:
        def find() -> ReplacementResult | None:
            with self._lock:
                found = self.replacements.get(order.idempotency_key)
            return None if found is None else found[1]

        return self._call("find replacement", find)

    def book_return(self, booking: ReturnBooking) -> str:
        def book() -> str:
            with self._lock:
                self.bookings.setdefault(booking.case_id, booking)
            return f"SBX-RET-{booking.case_id}"

        return self._call("book return", book)


class SandboxNotifier(_Sandbox):
    name: ClassVar[str] = "sandbox_notifier"
    roles: ClassVar[frozenset[Role]] = frozenset({Role.NOTIFIER})
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.SEND_EMAIL})

    def __init__(self, settings: SandboxSettings, ctx: ConnectorContext) -> None:
        super().__init__(settings, ctx)
        self.sent: dict[str, OutgoingMessage] = {}
        self.alerts: dict[str, QualityAlert] = {}  # quality contacts' notices, by message id

    def send_quality_alert(self, alert: QualityAlert) -> None:
        def deliver() -> None:
            with self._lock:
                self.alerts[alert.message_id] = alert

        self._call("send quality alert", deliver)

    def send(self, message: OutgoingMessage) -> None:
        def deliver() -> None:
            with self._lock:
                self.sent[message.message_id] = message

        self._call("send", deliver)
