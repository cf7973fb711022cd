"""Stripe's wire format (pydantic models) and its mapping to and from the core model.

No I/O here: `client.py` sends what these functions build, and `webhooks.py` parses events
with these models.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, Literal

from pydantic import ConfigDict, Field

from refundbridge.connectors.base import mapped_status
from refundbridge.connectors.minor_units import MinorUnit, MinorUnitTable, WireCurrency
from refundbridge.core.errors import InvalidRequest
from refundbridge.core.model import RefundResult, RefundStatus
from refundbridge.core.ports import RefundOrder
from refundbridge.core.request import PROVIDER_REF_MAX, WireModel

# Every refund status Stripe documents (API 2024-06-20). Anything else becomes UNKNOWN, which
# the core records but never acts on: a status Stripe adds later must not move money or close
# a case by accident.
STATUS_MAP: Final[Mapping[str, RefundStatus]] = MappingProxyType({
    "pending": RefundStatus.PENDING,
    "requires_action": RefundStatus.PENDING,
    "succeeded": RefundStatus.SUCCEEDED,
    "failed": RefundStatus.FAILED,
    "canceled": RefundStatus.FAILED,
})

# Stripe's own table (https://docs.stripe.com/currencies, "Specify amounts in API requests"),
# which is not CLDR's: "currencies are two-decimal currencies unless otherwise specified".
_ZERO = MinorUnit(0, why="zero-decimal in Stripe")
_THREE = MinorUnit(3, multiple=10, why="Stripe takes three-decimal amounts only with a last "
                                       "digit of 0 (5.124 KWD must be 5.120 or 5.130)")
_WHOLE_IN_TWO = MinorUnit(2, multiple=100, why="zero-decimal, but Stripe still writes it with two "
                                               "decimals that must be 00 (5 units = 500)")
STRIPE_UNITS: Final = MinorUnitTable(
    provider="stripe",
    source="https://docs.stripe.com/currencies",
    default=MinorUnit(2),
    currencies={
        **{code: _ZERO for code in ("BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA",
                                    "PYG", "RWF", "VND", "VUV", "XAF", "XOF", "XPF")},
        **{code: _THREE for code in ("BHD", "JOD", "KWD", "OMR", "TND")},
        # Special cases. UGX is also in Stripe's zero-decimal list, but its special-case
        # entry (the specific rule, about charges and refunds) says two decimals of 00.
        "ISK": _WHOLE_IN_TWO,
        "UGX": _WHOLE_IN_TWO,
        # HUF and TWD are zero-decimal for payouts only; charges and refunds take two
        # decimals, with no step.
        "HUF": MinorUnit(2, why="two-decimal for refunds (zero-decimal only for payouts)"),
        "TWD": MinorUnit(2, why="two-decimal for refunds (zero-decimal only for payouts)"),
    },
)

# Only `duplicate`, `fraudulent` and `requested_by_customer` are accepted by Stripe; every
# refund we issue was asked for by a customer.
REFUND_REASON: Final = "requested_by_customer"


class _Wire(WireModel):
    # Stripe adds fields without a version bump; unknown ones must not break parsing.
    model_config = ConfigDict(extra="ignore", frozen=True)


class StripeRefund(_Wire):
    """The Refund object (https://docs.stripe.com/api/refunds/object), the fields we use."""

    id: str = Field(max_length=PROVIDER_REF_MAX)
    object: Literal["refund"] = "refund"
    amount: int
    currency: WireCurrency
    status: str | None = None  # documented as nullable
    payment_intent: str | None = None
    charge: str | None = None
    reason: str | None = None
    failure_reason: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    created: int | None = None


class StripeRefundList(_Wire):
    object: Literal["list"] = "list"
    data: list[StripeRefund]
    has_more: bool = False


class StripeEventData(_Wire):
    # Kept loose: its shape depends on the event type, and only refund events are read.
    object: dict[str, Any]


class StripeEvent(_Wire):
    """A webhook Event (https://docs.stripe.com/api/events/object)."""

    id: str
    object: Literal["event"]
    type: str
    created: int
    livemode: bool = False
    data: StripeEventData


class StripeErrorDetail(_Wire):
    type: str
    message: str | None = None
    code: str | None = None
    param: str | None = None
    decline_code: str | None = None


class StripeErrorBody(_Wire):
    error: StripeErrorDetail


def reference_field(payment_reference: str) -> Literal["charge", "payment_intent"]:
    """Which Stripe parameter names this payment: charges are `ch_…`, the rest `pi_…`."""
    return "charge" if payment_reference.startswith("ch_") else "payment_intent"


def refund_form(order: RefundOrder) -> dict[str, str]:
    """The form fields of `POST /v1/refunds` for this order."""
    if not order.amount.amount > 0:
        # Stripe reads a missing amount as "refund everything"; never let a zero get near that.
        raise InvalidRequest("amount", f"a refund must be positive, got {order.amount}")
    minor = STRIPE_UNITS.to_minor(order.amount)
    return {
        reference_field(order.payment_reference): order.payment_reference,
        "amount": str(minor),
        "reason": REFUND_REASON,
        # Stored with the refund so `find_refund` and webhooks can lead back to the case.
        "metadata[case_id]": order.case_id,
        "metadata[idempotency_key]": order.idempotency_key,
        "metadata[attempt]": str(order.attempt),
    }


def map_status(raw: str | None) -> RefundStatus:
    return mapped_status(STATUS_MAP, raw, "stripe")


def to_refund_result(refund: StripeRefund, where: str = "") -> RefundResult:
    """`where`: the refund object's place in the message, to name a bad amount by its path."""
    return RefundResult(
        status=map_status(refund.status),
        provider_ref=refund.id,
        amount=STRIPE_UNITS.from_minor(refund.amount, refund.currency, f"{where}amount"),
        message=refund.failure_reason,
        raw_status=refund.status,
    )
