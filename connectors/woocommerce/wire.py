"""WooCommerce's wire format: pydantic models of the REST API v3's orders, refunds, notes and
errors, which webhooks deliver in the same shape. No I/O, no mapping here.

Sources for the shapes: WooCommerce's own REST controllers (`class-wc-rest-orders-v2-controller`,
`class-wc-rest-order-refunds-controller` v2/v3). Amounts are decimal strings on the wire
(`"59.80"`) except a few fields we never read (`line_items[].price` is a PHP float). Dates
ending in `_gmt` are UTC without an offset.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import AliasChoices, ConfigDict, Field

from refundbridge.core.request import (
    WireModel,
)


class _Wire(WireModel):
    # WooCommerce and its plugins add fields freely; we read only what we need.
    model_config = ConfigDict(extra="ignore", frozen=True)


class WCMeta(_Wire):
    id: int | None = None
    key: str
    value: Any = None


class WCTax(_Wire):
    id: int
    total: str = ""
    subtotal: str = ""


class WCLineItem(_Wire):
    id: int
    name: str = ""
    product_id: int = 0
    variation_id: int = 0
    quantity: int
    sku: str | None = None
    subtotal: str = "0"
    subtotal_tax: str = "0"
    total: str = "0"
    total_tax: str = "0"
    taxes: list[WCTax] = Field(default_factory=list)
    meta_data: list[WCMeta] = Field(default_factory=list)

    def meta(self, key: str) -> Any:
        return _meta(self.meta_data, key)


class WCAddress(_Wire):
    first_name: str = ""
    last_name: str = ""
    company: str = ""
    email: str | None = None
    phone: str | None = None


class WCOrderRefundRef(_Wire):
    """An entry of an order's `refunds` list. WooCommerce before 3.0 called `reason` `refund`."""

    id: int
    reason: str = Field(default="", validation_alias=AliasChoices("reason", "refund"))
    total: str  # negative: "-10.00"


class WCOrder(_Wire):
    id: int
    status: str
    currency: str
    date_created_gmt: str | None = None
    date_modified_gmt: str | None = None
    date_completed_gmt: str | None = None
    date_paid_gmt: str | None = None
    total: str
    total_tax: str = "0"
    customer_id: int = 0
    billing: WCAddress = Field(default_factory=WCAddress)
    payment_method: str = ""
    payment_method_title: str = ""
    transaction_id: str = ""
    meta_data: list[WCMeta] = Field(default_factory=list)
    line_items: list[WCLineItem] = Field(default_factory=list)
    refunds: list[WCOrderRefundRef] = Field(default_factory=list)

    def meta(self, key: str) -> Any:
        return _meta(self.meta_data, key)


class WCRefund(_Wire):
    """`GET /orders/<id>/refunds/<refund id>` and the items of the refunds list."""

    id: int
    date_created_gmt: str | None = None
    amount: str
    reason: str = ""
    refunded_by: int | None = None
    # Read as-is: a value WooCommerce does not document must become UNKNOWN, not a 422.
    refunded_payment: Any = None
    meta_data: list[WCMeta] = Field(default_factory=list)

    def meta(self, key: str) -> Any:
        return _meta(self.meta_data, key)


class WCErrorData(_Wire):
    status: int | None = None


class WCError(_Wire):
    """Every WordPress REST error: `{"code": ..., "message": ..., "data": {"status": ...}}`."""

    code: str
    message: str = ""
    data: WCErrorData | None = None


class WCNote(_Wire):
    id: int
    note: str = ""
    customer_note: bool = False


def _meta(items: Iterable[WCMeta], key: str) -> Any:
    # WooCommerce allows several entries with one key; the last one written wins in its UI.
    found: Any = None
    for item in items:
        if item.key == key:
            found = item.value
    return found

