"""WooCommerce exchanges by the shop's convention (connectors/woocommerce/exchanges.py): an
order in the configured exchange status, or a refund request whose lines name replacements
in meta, against deliveries encoded as PHP's json_encode encodes them and signed as
WooCommerce signs them (base64 HMAC-SHA256 of the raw body, tests/fakes/woocommerce.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from refundbridge.connectors.base import ConnectorContext
from refundbridge.connectors.woocommerce import WooCommerceConnector
from refundbridge.core.errors import ConfigError, InvalidRequest, WebhookRejected
from refundbridge.core.ports import Ignored, RefundRequested
from refundbridge.core.request import NormalizedRefundRequest, RequestKind
from tests.connectors.helpers import FAST
from tests.fakes.woocommerce import BASE as SHOP_BASE
from tests.fakes.woocommerce import (
    CONSUMER_KEY,
    CONSUMER_SECRET,
    WEBHOOK_SECRET,
    Line,
    WooCommerceFake,
    delivery,
)

NOW = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)
SETTINGS: dict[str, Any] = {"base_url": SHOP_BASE, "consumer_key": CONSUMER_KEY,
                            "consumer_secret": CONSUMER_SECRET,
                            "webhook_secret": WEBHOOK_SECRET,
                            "exchange_requested_status": "wc-exchange-requested"}
REASON = {"_refund_reason_code": "defective", "_refund_reason": "cuff leaks"}


def make_connector(**overrides: Any) -> WooCommerceConnector:
    return WooCommerceConnector.from_config({**SETTINGS, **overrides},
                                            ConnectorContext(shop_id="s1", retry=FAST))


def meter(**meta: Any) -> Line:
    return Line("BPM-200", "Blood pressure monitor", 2, "168.07", "31.93", meta=meta)


def strips(**meta: Any) -> Line:
    return Line("GLU-STRIP-50", "Glucose test strips", 1, "49.58", "9.42", meta=meta)


def parsed(order: dict[str, Any], connector: WooCommerceConnector | None = None
           ) -> NormalizedRefundRequest:
    headers, body = delivery(order)
    event = (connector or make_connector()).parse_webhook(headers, body, NOW)
    assert isinstance(event, RefundRequested), event
    return event.request


def refused(order: dict[str, Any]) -> InvalidRequest:
    headers, body = delivery(order)
    with pytest.raises(InvalidRequest) as info:
        make_connector().parse_webhook(headers, body, NOW)
    return info.value


def test_an_order_in_the_exchange_status_is_an_exchange_of_the_lines_that_name_one() -> None:
    shop = WooCommerceFake()
    order = shop.add_order([meter(_rb_exchange_sku="BPM-200", _rb_exchange_quantity="1"),
                            strips()], status="exchange-requested", meta=REASON)

    request = parsed(order)

    assert request.kind is RequestKind.EXCHANGE
    assert request.external_id == f"order-{order['id']}-exchange-request"
    assert [(line.sku, line.quantity, line.unit_price) for line in request.lines] == [
        ("BPM-200", 1, Decimal("100.00"))]  # only the exchanged unit comes back
    (sent,) = request.replacements
    assert (sent.sku, sent.name, sent.quantity, sent.unit_price, sent.replaces_sku,
            sent.line_id) == ("BPM-200", "Blood pressure monitor", 1, Decimal("100.00"),
                              "BPM-200", str(order["line_items"][0]["id"]))
    assert request.requested_amount == Decimal(0)  # like for like: no money back


def test_a_cheaper_replacement_leaves_the_difference_to_pay_back() -> None:
    shop = WooCommerceFake()
    order = shop.add_order([meter(_rb_exchange_sku="BPM-100", _rb_exchange_price="80.00",
                                  _rb_exchange_name="Blood pressure monitor, basic")],
                           status="exchange-requested", meta=REASON)

    request = parsed(order)

    (sent,) = request.replacements
    assert (sent.sku, sent.name, sent.quantity, sent.unit_price) == (
        "BPM-100", "Blood pressure monitor, basic", 2, Decimal("80.00"))
    assert request.requested_amount == Decimal("40.00")  # 2 × (100.00 − 80.00)


def test_a_refund_request_with_a_line_naming_a_replacement_is_a_return_and_exchange() -> None:
    shop = WooCommerceFake()
    order = shop.add_order([meter(_rb_exchange_sku="BPM-200"), strips()],
                           status="refund-requested", meta=REASON)

    request = parsed(order)

    assert request.kind is RequestKind.RETURN_AND_EXCHANGE
    assert request.external_id == f"order-{order['id']}-refund-request"
    assert [line.sku for line in request.lines] == ["BPM-200", "GLU-STRIP-50"]
    assert [(r.sku, r.quantity) for r in request.replacements] == [("BPM-200", 2)]
    assert request.requested_amount == Decimal("59.00")  # the strips are refunded


def test_without_an_exchange_status_configured_that_status_asks_for_nothing() -> None:
    shop = WooCommerceFake()
    order = shop.add_order([meter(_rb_exchange_sku="BPM-200")], status="exchange-requested")
    headers, body = delivery(order)

    event = make_connector(exchange_requested_status=None).parse_webhook(headers, body, NOW)

    assert isinstance(event, Ignored)


def test_a_plain_refund_request_is_unchanged() -> None:
    shop = WooCommerceFake()
    order = shop.add_order([meter(), strips()], status="refund-requested", meta=REASON)

    request = parsed(order)

    assert request.kind is RequestKind.RETURN_AND_REFUND and request.replacements == []


@pytest.mark.parametrize(("meta", "field", "words"), [
    ({"_rb_exchange_quantity": "0"}, "line_items.0.meta_data._rb_exchange_quantity",
     "at least 1"),
    ({"_rb_exchange_quantity": "3"}, "line_items.0.meta_data._rb_exchange_quantity",
     "2 units"),
    ({"_rb_exchange_quantity": "1.5"}, "line_items.0.meta_data._rb_exchange_quantity",
     "whole number"),
    ({"_rb_exchange_price": "-5.00"}, "line_items.0.meta_data._rb_exchange_price",
     "negative"),
    ({"_rb_exchange_price": "1e3"}, "line_items.0.meta_data._rb_exchange_price",
     "decimal string"),
    ({"_rb_exchange_price": "10.001"}, "line_items.0.meta_data._rb_exchange_price",
     "decimal places"),
    ({"_rb_exchange_name": "Monitor\x00"}, "line_items.0.meta_data._rb_exchange_name",
     "control character"),
])
def test_a_replacement_the_meta_cannot_describe_is_refused_by_field(
        meta: dict[str, Any], field: str, words: str) -> None:
    shop = WooCommerceFake()
    order = shop.add_order([meter(_rb_exchange_sku="BPM-200", **meta)],
                           status="exchange-requested", meta=REASON)

    error = refused(order)

    assert error.field == field and words in error.message


def test_an_exchange_status_without_a_line_naming_a_replacement_is_refused() -> None:
    shop = WooCommerceFake()
    order = shop.add_order([meter()], status="exchange-requested", meta=REASON)

    error = refused(order)

    assert error.field == "line_items" and "_rb_exchange_sku" in error.message


def test_a_refund_only_kind_with_lines_naming_replacements_is_refused() -> None:
    shop = WooCommerceFake()
    order = shop.add_order([meter(_rb_exchange_sku="BPM-200")], status="refund-requested",
                           meta={**REASON, "_refund_request_kind": "refund_only"})

    error = refused(order)

    assert error.field == "meta_data._refund_request_kind"


def test_an_exchange_delivery_is_only_believed_when_signed() -> None:
    shop = WooCommerceFake()
    order = shop.add_order([meter(_rb_exchange_sku="BPM-200")], status="exchange-requested")
    headers, body = delivery(order, secret="another-secret")

    with pytest.raises(WebhookRejected):
        make_connector().parse_webhook(headers, body, NOW)


def test_one_status_cannot_ask_for_a_refund_and_an_exchange() -> None:
    with pytest.raises(ConfigError) as info:
        make_connector(exchange_requested_status="wc-refund-requested")
    assert "exchange_requested_status" in str(info.value)
