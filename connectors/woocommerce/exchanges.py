"""Exchanges in WooCommerce, which has none of its own: a convention, configured per shop.

- The order status. With `exchange_requested_status` set (say `wc-exchange-requested`, a
  status a return plugin or the shop adds), an order delivered in that status is an
  `exchange` request: the lines that name a replacement come back, the replacements go
  out, and any other line stays with the customer. The external id is
  `order-<id>-exchange-request` (plus the plugin's request id, as for refunds).
- Line item meta names the replacement (the prefix is `line_meta_prefix`, `_rb_`):
  `_rb_exchange_sku` (required: the line is exchanged), `_rb_exchange_quantity` (how many of
  the line's units come back, each replaced by one unit; default all of them),
  `_rb_exchange_price` (the replacement's gross unit price in the order's currency; default
  the returned unit's: like for like) and `_rb_exchange_name` (default the line's name, or
  the SKU when it is another product).
- On an order in the refund-requested status, lines with that meta make the request a
  `return_and_exchange`: those lines are exchanged, the others refunded.

The amount asked back is the plugin's (`_refund_request_amount`) if it set one, else what
the returned lines are worth less the replacements, never below zero (a dearer replacement
leaves the customer owing the difference, which the exchange flow charges or sends to a
person).

Order notes are not part of the convention: WooCommerce does not deliver them with the
order, so reading them would cost a call per delivery and a note can be edited unseen.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from refundbridge.connectors.woocommerce.transformers import (
    OrderMapping,
    external_request_id,
    meta_text,
    request_body,
    request_line,
    to_refund_request,
    unit_gross,
    validated_request,
    wc_money,
)
from refundbridge.connectors.woocommerce.wire import WCLineItem, WCOrder
from refundbridge.core.errors import InvalidRequest
from refundbridge.core.money import Money
from refundbridge.core.request import (
    MAX_QUANTITY,
    NormalizedRefundRequest,
    RequestKind,
    check_text,
)

SKU_MAX: Final = 128
NAME_MAX: Final = 512


def exchanged_lines(order: WCOrder, mapping: OrderMapping) -> list[tuple[int, WCLineItem]]:
    """The order's lines (with their index) whose meta names a replacement."""
    key = mapping.line_meta_prefix + "exchange_sku"
    return [(index, item) for index, item in enumerate(order.line_items)
            if item.quantity > 0 and meta_text(item.meta(key))]


def _quantity(item: WCLineItem, index: int, mapping: OrderMapping) -> int:
    key = mapping.line_meta_prefix + "exchange_quantity"
    raw = item.meta(key)
    field = f"line_items.{index}.meta_data.{key}"
    if raw in (None, ""):
        return item.quantity
    text = meta_text(raw)
    if isinstance(raw, bool) or not text.isascii() or not text.isdigit():
        raise InvalidRequest(field, f"must be a whole number of units, not {text[:20]!r}")
    quantity = int(text)
    if not 1 <= quantity <= min(item.quantity, MAX_QUANTITY):
        raise InvalidRequest(field, f"is {quantity}; the line has {item.quantity} units to "
                                    "exchange (at least 1)")
    return quantity


def replacement(item: WCLineItem, index: int, currency: str, mapping: OrderMapping,
                returned_sku: str) -> dict[str, Any]:
    """The unit sent for each exchanged unit of line `index`, from its meta."""
    prefix = mapping.line_meta_prefix
    where = f"line_items.{index}.meta_data.{prefix}exchange"
    sku = meta_text(item.meta(prefix + "exchange_sku"))
    check_text(sku, f"{where}_sku")
    if len(sku) > SKU_MAX:
        raise InvalidRequest(f"{where}_sku", f"is longer than {SKU_MAX} characters")
    name = meta_text(item.meta(prefix + "exchange_name")) or (
        item.name if sku == returned_sku and item.name else sku)
    check_text(name, f"{where}_name")
    price_raw = meta_text(item.meta(prefix + "exchange_price"))
    price = (wc_money(price_raw, currency, f"{where}_price") if price_raw
             else unit_gross(item, currency, index))
    return {"sku": sku, "name": name[:NAME_MAX], "quantity": _quantity(item, index, mapping),
            "unit_price": str(price.amount), "replaces_sku": returned_sku,
            "line_id": str(item.id)}


def _worth(lines: list[dict[str, Any]], currency: str) -> Money:
    total = Money.zero(currency)
    for line in lines:
        unit = Money.parse(Decimal(line["unit_price"]), currency)
        total = total + Money.from_minor(unit.minor * line["quantity"], currency)
    return total


def to_exchange_request(order: WCOrder, mapping: OrderMapping, kind: RequestKind
                        ) -> NormalizedRefundRequest:
    """The request of an order in the exchange status (`EXCHANGE`: only the exchanged lines
    come back) or in the refund status with exchanged lines (`RETURN_AND_EXCHANGE`)."""
    body = request_body(order, mapping)
    currency = body["order"]["currency"]
    chosen = exchanged_lines(order, mapping)
    if not chosen:
        key = f"{mapping.line_meta_prefix}exchange_sku"
        raise InvalidRequest("line_items", f"no line names its replacement (line item meta "
                                           f"{key}): there is nothing to exchange")
    replacements = []
    exchanged: list[dict[str, Any]] = []
    for index, item in chosen:
        line = request_line(item, index, currency, mapping.line_meta_prefix)
        sent = replacement(item, index, currency, mapping, line["sku"])
        replacements.append(sent)
        exchanged.append({**line, "quantity": sent["quantity"]})
    if kind is RequestKind.EXCHANGE:
        body["lines"] = exchanged
        body["external_id"] = external_request_id(order, mapping).replace(
            "-refund-request", "-exchange-request", 1)
    body["kind"] = kind.value
    body["replacements"] = replacements
    asked = meta_text(order.meta(mapping.requested_amount_meta_key))
    if not asked:
        left = _worth(body["lines"], currency) - _worth(replacements, currency)
        paid = Money.parse(Decimal(body["order"]["paid_total"]), currency)
        owed = min(left, paid) if left.is_positive() else Money.zero(currency)
        body["requested_amount"] = str(owed.amount)
    return validated_request(body, mapping)


def to_request(order: WCOrder, mapping: OrderMapping) -> NormalizedRefundRequest | None:
    """The request an order delivery makes under the shop's convention, or None if its
    status asks for nothing. A refund request whose lines name replacements is a
    `return_and_exchange`; one whose kind meta says otherwise is refused, by field."""
    if mapping.exchange_requested_status and order.status == mapping.exchange_requested_status:
        return to_exchange_request(order, mapping, RequestKind.EXCHANGE)
    if order.status != mapping.refund_requested_status:
        return None
    if not exchanged_lines(order, mapping):
        return to_refund_request(order, mapping)
    stated = meta_text(order.meta(mapping.kind_meta_key)).lower()
    if stated and stated not in (RequestKind.EXCHANGE, RequestKind.RETURN_AND_EXCHANGE):
        raise InvalidRequest(f"meta_data.{mapping.kind_meta_key}",
                             f"is '{stated}', but line items name replacements "
                             f"({mapping.line_meta_prefix}exchange_sku)")
    return to_exchange_request(order, mapping, RequestKind(stated) if stated
                               else RequestKind.RETURN_AND_EXCHANGE)
