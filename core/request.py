"""The normalized refund request: what every storefront connector turns its webhook into.

This is also the body the `generic` connector accepts, so its JSON schema is published in
the OpenAPI document and the README. Amounts are decimal strings, never JSON numbers.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    PlainSerializer,
    model_validator,
)

from core.errors import InvalidRequest
from core.money import Money, check_currency


def _decimal_string(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | Decimal):
        raise ValueError("amounts are decimal strings such as \"12.50\", not JSON numbers")
    try:
        amount = Decimal(str(value).strip())
    except ArithmeticError as exc:
        raise ValueError(f"'{value}' is not a decimal amount") from exc
    if not amount.is_finite():
        raise ValueError(f"'{value}' is not a finite amount")
    if amount < 0:
        raise ValueError("must not be negative")
    return amount


DecimalString = Annotated[
    Decimal,
    BeforeValidator(_decimal_string),
    PlainSerializer(lambda d: str(d), return_type=str, when_used="json"),
    Field(json_schema_extra={"type": "string", "pattern": r"^\d+(\.\d+)?$"}),
]


def _currency(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 4217 code such as \"CNY\"")
    try:
        return check_currency(value)
    except InvalidRequest as exc:
        raise ValueError(exc.message) from exc


CurrencyCode = Annotated[str, BeforeValidator(_currency)]


class RequestKind(StrEnum):
    REFUND_ONLY = "refund_only"
    RETURN_AND_REFUND = "return_and_refund"


class CustomerType(StrEnum):
    CONSUMER = "consumer"
    BUSINESS = "business"


class ReasonCode(StrEnum):
    """Why the customer wants their money back. Groups are used by the rule engine."""

    CHANGED_MIND = "changed_mind"
    NO_LONGER_NEEDED = "no_longer_needed"
    ORDERED_BY_MISTAKE = "ordered_by_mistake"
    DEFECTIVE = "defective"
    DAMAGED_ON_ARRIVAL = "damaged_on_arrival"
    WRONG_ITEM = "wrong_item"
    NOT_AS_DESCRIBED = "not_as_described"
    RECALL = "recall"
    INJURY = "injury"
    MALFUNCTION_HARM = "malfunction_harm"
    OTHER = "other"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class PaymentRef(_Strict):
    provider: str = Field(min_length=1, max_length=64, examples=["stripe"])
    reference: str = Field(
        min_length=1, max_length=255, description="The provider's id of the original payment"
    )


class OrderInfo(_Strict):
    id: str = Field(min_length=1, max_length=128)
    currency: CurrencyCode
    paid_total: DecimalString
    placed_at: datetime
    delivered_at: datetime | None = None
    payment: PaymentRef


DeviceClass = Literal["I", "II", "IIa", "IIb", "III"]


class Licence(_Strict):
    """A business buyer's medical-device trading licence or filing (R15)."""

    number: str = Field(min_length=1, max_length=64)
    expires_on: date | None = Field(default=None, description="null: no expiry (a filing)")
    scope_classes: list[DeviceClass] = Field(
        default_factory=list, description="Device classes the licence allows it to buy")


class CustomerInfo(_Strict):
    id: str = Field(min_length=1, max_length=128)
    type: CustomerType = CustomerType.CONSUMER
    email: EmailStr | None = None
    phone: str | None = Field(default=None, max_length=32)
    locale: str = Field(default="en", pattern=r"^[a-z]{2}(-[A-Za-z]{2,4})?$")
    licence: Licence | None = Field(default=None, description="Business buyers only (R15)")


class RequestLine(_Strict):
    sku: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=512)
    quantity: int = Field(gt=0, le=100_000)
    unit_price: DecimalString
    device_class: DeviceClass | None = None
    gtin: str | None = Field(default=None, max_length=14, pattern=r"^\d{8,14}$")
    lot: str | None = Field(default=None, max_length=64)
    serial: str | None = Field(default=None, max_length=64)
    expiry_date: date | None = None
    udi: str | None = Field(default=None, max_length=512)
    sterile: bool = False
    package_opened: bool = False
    cold_chain: bool = False
    custom_made: bool = False
    implantable: bool = False
    single_use: bool = False
    no_reason_exclusion_confirmed: bool = Field(
        default=False, description="The buyer confirmed at purchase that this item is excluded "
                                   "from no-reason return (R04)")


class Severity(StrEnum):
    """How badly someone was harmed, when the reason is a possible adverse event."""

    DEATH = "death"
    SERIOUS_INJURY = "serious_injury"
    INJURY = "injury"
    MALFUNCTION = "malfunction"  # no one was hurt, but it could have been


class Reason(_Strict):
    code: ReasonCode
    text: str = Field(default="", max_length=4000)
    injury: bool = Field(default=False, description="The customer says someone was hurt")
    severity: Severity | None = Field(
        default=None, description="null: not known; deadlines then assume the worst")


class NormalizedRefundRequest(_Strict):
    """One customer's request for money back (and maybe goods back) on one order."""

    external_id: str = Field(
        min_length=1, max_length=255, description="The sender's id; unique per shop and connector"
    )
    kind: RequestKind
    order: OrderInfo
    customer: CustomerInfo
    lines: list[RequestLine] = Field(min_length=1, max_length=500)
    reason: Reason
    requested_amount: DecimalString
    requested_at: datetime

    @model_validator(mode="after")
    def _amounts_fit(self) -> NormalizedRefundRequest:
        currency = self.order.currency
        # Parsing through Money checks the currency's decimal places for each amount.
        paid = _money(self.order.paid_total, currency, "order.paid_total")
        requested = _money(self.requested_amount, currency, "requested_amount")
        lines_total = Money.zero(currency)
        for index, line in enumerate(self.lines):
            unit = _money(line.unit_price, currency, f"lines.{index}.unit_price")
            lines_total = lines_total + Money.from_minor(unit.minor * line.quantity, currency)
        if not requested.is_positive():
            raise ValueError("requested_amount: must be greater than zero")
        if requested > paid:
            raise ValueError(
                f"requested_amount: {requested} is more than the order's paid_total {paid}"
            )
        if requested > lines_total:
            raise ValueError(
                f"requested_amount: {requested} is more than the returned lines are worth "
                f"({lines_total})"
            )
        return self

    @property
    def currency(self) -> str:
        return self.order.currency

    @cached_property
    def requested(self) -> Money:
        return Money.parse(self.requested_amount, self.order.currency)

    @cached_property
    def paid(self) -> Money:
        return Money.parse(self.order.paid_total, self.order.currency)

    def fingerprint(self) -> str:
        """A digest of the request's meaning, to tell a replay from a changed resend."""
        return self._fingerprint

    @cached_property
    def _fingerprint(self) -> str:
        # Canonical: "12.5" and "12.50", or 18:00+08:00 and 10:00Z, mean the same thing.
        canonical = json.dumps(self.model_dump(mode="python"), sort_keys=True,
                               default=_canonical, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


def _canonical(value: object) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return value.value
    raise TypeError(f"no canonical form for {type(value).__name__}")


def _money(value: Decimal, currency: str, field: str) -> Money:
    try:
        return Money.parse(value, currency, field)
    except InvalidRequest as exc:
        raise ValueError(str(exc)) from exc
