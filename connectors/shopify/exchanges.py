"""Shopify returns with exchange lines, as `exchange` / `return_and_exchange` requests. No
I/O: the connector reads the return's exchange lines (`Return.exchangeLineItems`, with the
order line Shopify made for each) only when the `returns/request` body names some, and
hands them here with the order.

The amount asked back: Shopify applies the returned units' value to the exchange items
first, so money goes back only where the returned units are worth more than what is sent
out. The request is `return_and_exchange` when some money goes back, `exchange` when none
does (then the customer may owe the difference, which the exchange flow charges or sends to
a person). Shopify does not pair a returned line with the exchange line that replaces it;
with one returned SKU it can only be that one (`replaces_sku`), otherwise it stays open.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from refundbridge.connectors.shopify.transformers import bag_money, request_body, validated_request
from refundbridge.connectors.shopify.wire import GqlOrder, GqlReturnExchanges, WebhookReturn
from refundbridge.core.errors import InvalidRequest
from refundbridge.core.money import Money
from refundbridge.core.request import NormalizedRefundRequest, RequestKind


def worth(lines: Iterable[dict[str, Any]], currency: str) -> Money:
    total = Money.zero(currency)
    for line in lines:
        unit = Money.parse(line["unit_price"], currency)
        total = total + Money.from_minor(unit.minor * line["quantity"], currency)
    return total


def to_exchange_request(ret: WebhookReturn, order: GqlOrder, exchanges: GqlReturnExchanges,
                        requested_at: datetime, default_locale: str) -> NormalizedRefundRequest:
    """A `returns/request` webhook with exchange lines, plus its order and those lines."""
    body = request_body(ret, order, requested_at, default_locale)
    currency = body["order"]["currency"]
    returned_skus = {line["sku"] for line in body["lines"]}
    replacements = to_replacements(ret, exchanges, currency,
                                   next(iter(returned_skus)) if len(returned_skus) == 1
                                   else None)
    left = worth(body["lines"], currency) - worth(replacements, currency)
    paid = Money.parse(body["order"]["paid_total"], currency)
    owed = min(left, paid) if left.is_positive() else Money.zero(currency)
    body.update(kind=(RequestKind.RETURN_AND_EXCHANGE if owed.is_positive()
                      else RequestKind.EXCHANGE).value,
                replacements=replacements, requested_amount=owed.amount)
    return validated_request(body)


def to_replacements(ret: WebhookReturn, exchanges: GqlReturnExchanges, currency: str,
                    replaces_sku: str | None) -> list[dict[str, Any]]:
    """The return's exchange lines as the units to send: each must name a variant with a SKU
    (what the ERP ships), a positive quantity, and a price in the order's currency.

    Shopify does not say which returned line an exchange line replaces; with one returned
    SKU it can only be that one (`replaces_sku`), otherwise it is left open."""
    prefix = "return.exchangeLineItems"
    if exchanges.id != ret.admin_graphql_api_id:
        raise InvalidRequest(f"{prefix}.id", f"Shopify answered for {exchanges.id}, not the "
                                             f"return {ret.admin_graphql_api_id}")
    by_id = {node.id: node for node in exchanges.exchange_line_items.nodes}
    for index, named in enumerate(ret.exchange_line_items):
        if named.admin_graphql_api_id not in by_id:
            raise InvalidRequest(f"exchange_line_items.{index}.admin_graphql_api_id",
                                 f"{named.admin_graphql_api_id} is not an exchange line of "
                                 f"return {ret.admin_graphql_api_id}")
    replacements = []
    for index, node in enumerate(exchanges.exchange_line_items.nodes):
        where = f"{prefix}.{index}"
        if node.quantity <= 0:
            raise InvalidRequest(f"{where}.quantity", f"is {node.quantity}: an exchange line "
                                                      "sends at least one unit")
        if not node.variant_id:
            raise InvalidRequest(f"{where}.variantId", "names no product variant: there is "
                                                       "nothing to ship")
        if not node.line_items:
            raise InvalidRequest(f"{where}.lineItems", "has no order line: its SKU and price "
                                                       "are unknown")
        line = node.line_items[0]
        if not (line.sku or "").strip():
            raise InvalidRequest(f"{where}.lineItems.0.sku",
                                 f"variant {node.variant_id} has no SKU: the ERP cannot ship "
                                 "it")
        price_field = f"{where}.lineItems.0.discountedUnitPriceAfterAllDiscountsSet"
        money = line.discounted_unit_price_after_all_discounts_set.presentment_money
        if money.currency_code.upper() != currency.upper():
            raise InvalidRequest(f"{price_field}.presentmentMoney.currencyCode",
                                 f"is {money.currency_code}; the order is paid in {currency}")
        unit = bag_money(line.discounted_unit_price_after_all_discounts_set, price_field)
        replacements.append({"sku": line.sku, "name": line.name, "quantity": node.quantity,
                             "unit_price": unit.amount, "replaces_sku": replaces_sku,
                             "line_id": node.id})
    return replacements
