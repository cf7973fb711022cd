"""Shopify returns with exchange lines → `exchange` / `return_and_exchange` requests, against
the respx Shopify fake (tests/fakes/shopify.py) with webhooks signed as Shopify signs them
(base64 HMAC-SHA256 of the raw body with the app's client secret).

The `returns/request` body names the exchange lines by id only; their variant, SKU and price
come from the Admin API (`Return.exchangeLineItems` and the order line Shopify made for
each), read only when the body names some.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from refundbridge.connectors.base import ConnectorContext, RetryPolicy
from refundbridge.connectors.shopify import ShopifyConnector
from refundbridge.connectors.shopify.queries import EXCHANGE_LINES_FIRST
from refundbridge.core.errors import InvalidRequest, PermanentProviderError, WebhookRejected
from refundbridge.core.ports import RefundRequested
from refundbridge.core.request import NormalizedRefundRequest, RequestKind
from tests.fakes.common import installed
from tests.fakes.shopify import (
    ACCESS_TOKEN,
    CLIENT_SECRET,
    SHOP_DOMAIN,
    Line,
    ShopifyFake,
    webhook_headers,
)

FAST = RetryPolicy(attempts=3, initial_wait=0, max_wait=0, max_retry_after=0)
NOW = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)
EXCHANGES = "RefundBridgeReturnExchanges"
METER = Line("GLU-METER-01", "Glucose meter", 2, "49.95")
LANCETS = Line("LANCETS-100", "Lancets, 100 pcs", 3, "12.50")


@pytest.fixture
def shop() -> Iterator[ShopifyFake]:
    fake = ShopifyFake()
    with installed(fake):
        yield fake


@pytest.fixture
def connector() -> Iterator[ShopifyConnector]:
    ctx = ConnectorContext(shop_id="acme-medical", retry=FAST)
    conn = ShopifyConnector.from_config(
        {"shop_domain": SHOP_DOMAIN, "access_token": ACCESS_TOKEN,
         "client_secret": CLIENT_SECRET}, ctx)
    yield conn
    conn.close()


def requested(connector: ShopifyConnector, body: bytes) -> NormalizedRefundRequest:
    event = connector.parse_webhook(webhook_headers("returns/request", body), body, NOW)
    assert isinstance(event, RefundRequested)
    return event.request


def refused(connector: ShopifyConnector, body: bytes) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        connector.parse_webhook(webhook_headers("returns/request", body), body, NOW)
    return info.value


def test_a_like_for_like_exchange_is_an_exchange_that_asks_for_no_money(
        shop: ShopifyFake, connector: ShopifyConnector) -> None:
    order_id = shop.add_order([METER])
    return_id = shop.add_return(order_id, [(0, 1, "DEFECTIVE")])
    exchange_id = shop.add_exchange(return_id, "GLU-METER-01", "Glucose meter", 1, "49.95")

    request = requested(connector, shop.return_webhook(return_id))

    assert request.kind is RequestKind.EXCHANGE
    assert request.requested_amount == Decimal(0)
    assert [(r.sku, r.quantity, r.unit_price, r.replaces_sku, r.line_id)
            for r in request.replacements] == [
        ("GLU-METER-01", 1, Decimal("49.95"), "GLU-METER-01", exchange_id)]
    assert [(line.sku, line.quantity) for line in request.lines] == [("GLU-METER-01", 1)]
    (asked,) = shop.bodies(EXCHANGES)
    assert asked["variables"] == {"id": return_id}


def test_a_cheaper_exchange_pays_the_rest_back_as_a_return_and_exchange(
        shop: ShopifyFake, connector: ShopifyConnector) -> None:
    order_id = shop.add_order([METER, LANCETS])
    return_id = shop.add_return(order_id, [(0, 1, "DEFECTIVE"), (1, 2, "UNWANTED")])
    shop.add_exchange(return_id, "GLU-METER-02", "Glucose meter, new model", 1, "39.95")

    request = requested(connector, shop.return_webhook(return_id))

    assert request.kind is RequestKind.RETURN_AND_EXCHANGE
    # 49.95 + 2 × 12.50 returned, 39.95 sent out: 35.00 goes back.
    assert request.requested_amount == Decimal("35.00")
    (replacement,) = request.replacements
    assert (replacement.sku, replacement.replaces_sku) == ("GLU-METER-02", None)
    assert request.price_difference.amount == Decimal("35.00")


def test_a_dearer_exchange_asks_for_no_money_and_leaves_the_difference_owed(
        shop: ShopifyFake, connector: ShopifyConnector) -> None:
    order_id = shop.add_order([LANCETS])
    return_id = shop.add_return(order_id, [(0, 1, "WRONG_ITEM")])
    shop.add_exchange(return_id, "LANCETS-200", "Lancets, 200 pcs", 1, "22.00")

    request = requested(connector, shop.return_webhook(return_id))

    assert request.kind is RequestKind.EXCHANGE
    assert request.requested_amount == Decimal(0)
    assert request.price_difference.amount == Decimal("-9.50")


def test_a_plain_return_reads_no_exchange_lines(
        shop: ShopifyFake, connector: ShopifyConnector) -> None:
    order_id = shop.add_order([METER])
    return_id = shop.add_return(order_id)

    request = requested(connector, shop.return_webhook(return_id))

    assert request.kind is RequestKind.RETURN_AND_REFUND and request.replacements == []
    assert shop.bodies(EXCHANGES) == []


@pytest.mark.parametrize(("arrange", "field", "words"), [
    ({"variant": False}, "return.exchangeLineItems.0.variantId", "no product variant"),
    ({"sku": None}, "return.exchangeLineItems.0.lineItems.0.sku", "no SKU"),
    ({"sku": "  "}, "return.exchangeLineItems.0.lineItems.0.sku", "no SKU"),
    ({"quantity": 0}, "return.exchangeLineItems.0.quantity", "at least one unit"),
    ({"currency": "EUR"}, "return.exchangeLineItems.0.lineItems.0."
                          "discountedUnitPriceAfterAllDiscountsSet.presentmentMoney."
                          "currencyCode", "paid in USD"),
    ({"line": False}, "return.exchangeLineItems.0.lineItems", "no order line"),
])
def test_an_exchange_line_that_cannot_be_shipped_is_refused_by_field(
        shop: ShopifyFake, connector: ShopifyConnector, arrange: dict[str, Any], field: str,
        words: str) -> None:
    order_id = shop.add_order([METER])
    return_id = shop.add_return(order_id)
    values: dict[str, Any] = {"sku": "GLU-METER-01", "quantity": 1, **arrange}
    shop.add_exchange(return_id, values.pop("sku"), "Glucose meter", values.pop("quantity"),
                      "49.95", **values)

    error = refused(connector, shop.return_webhook(return_id))

    assert error.field == field and words in error.message


def test_a_body_naming_an_exchange_line_the_return_lacks_is_refused(
        shop: ShopifyFake, connector: ShopifyConnector) -> None:
    order_id = shop.add_order([METER])
    return_id = shop.add_return(order_id)
    shop.add_exchange(return_id, "GLU-METER-01", "Glucose meter", 1, "49.95")
    body = json.loads(shop.return_webhook(return_id))
    body["exchange_line_items"][0]["admin_graphql_api_id"] = "gid://shopify/ExchangeLineItem/9"
    body["exchange_line_items"][0]["id"] = 9

    error = refused(connector, json.dumps(body).encode())

    assert error.field == "exchange_line_items.0.admin_graphql_api_id"


def test_exchange_lines_are_only_believed_when_the_body_is_signed(
        shop: ShopifyFake, connector: ShopifyConnector) -> None:
    order_id = shop.add_order([METER])
    return_id = shop.add_return(order_id)
    shop.add_exchange(return_id, "GLU-METER-01", "Glucose meter", 1, "49.95")
    body = shop.return_webhook(return_id)
    headers = webhook_headers("returns/request", body, secret="shpss_" + "0" * 32)

    with pytest.raises(WebhookRejected):
        connector.parse_webhook(headers, body, NOW)
    assert shop.bodies(EXCHANGES) == []


def test_a_return_with_more_exchange_lines_than_one_page_is_refused_not_read_short(
        shop: ShopifyFake, connector: ShopifyConnector) -> None:
    order_id = shop.add_order([METER])
    return_id = shop.add_return(order_id)
    for _ in range(EXCHANGE_LINES_FIRST + 1):
        shop.add_exchange(return_id, "LANCETS-100", "Lancets", 1, "0.50")
    body = shop.return_webhook(return_id)

    with pytest.raises(PermanentProviderError) as info:
        connector.parse_webhook(webhook_headers("returns/request", body), body, NOW)

    assert info.value.code == "order_too_large"


def test_a_throttled_exchange_read_is_retried_with_the_same_query(
        shop: ShopifyFake, connector: ShopifyConnector) -> None:
    order_id = shop.add_order([METER])
    return_id = shop.add_return(order_id)
    shop.add_exchange(return_id, "GLU-METER-01", "Glucose meter", 1, "49.95")
    answers = [httpx.Response(503), httpx.Response(200, json={"errors": [
        {"message": "Throttled", "extensions": {"code": "THROTTLED"}}]})]

    def hook(request: httpx.Request, body: dict[str, Any]) -> httpx.Response | None:
        if body.get("operationName") == EXCHANGES and answers:
            return answers.pop(0)
        return None

    shop.before.append(hook)

    request = requested(connector, shop.return_webhook(return_id))

    assert request.kind is RequestKind.EXCHANGE
    assert len({json.dumps(b, sort_keys=True) for b in shop.bodies(EXCHANGES)}) == 1
    assert len(shop.bodies(EXCHANGES)) == 3
