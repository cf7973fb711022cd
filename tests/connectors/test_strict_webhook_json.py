"""Every connector that parses a signed JSON webhook refuses a key given twice (which copy
did the sender sign?), and its wire models refuse control characters and integers no
column can hold, naming the field."""

from __future__ import annotations

import pytest

from refundbridge.connectors.shopify.webhooks import parse_refund, parse_return
from refundbridge.connectors.stripe.webhooks import parse_event as stripe_event
from refundbridge.connectors.wechatpay.webhooks import parse_event as wechat_event
from refundbridge.connectors.woocommerce.transformers import OrderMapping
from refundbridge.connectors.woocommerce.webhooks import parse_delivery, sign
from refundbridge.core.errors import InvalidRequest

WC_SECRET = "wc-secret-0123456789abcdef"


def _woo(body: bytes) -> object:
    headers = {"X-WC-Webhook-Signature": sign(body, WC_SECRET),
               "X-WC-Webhook-Topic": "order.updated"}
    return parse_delivery(headers, body, WC_SECRET, OrderMapping())


PARSERS = {
    "shopify-refund": parse_refund,
    "shopify-return": parse_return,
    "stripe": stripe_event,
    "wechatpay": lambda body: wechat_event(body, b"k" * 32, "1900000001"),
    "woocommerce": _woo,
}


@pytest.mark.parametrize(
    ("parser", "body", "field"),
    [
        ("shopify-refund", b'{"id": 1, "order_id": 2, "order_id": 3}', "order_id"),
        ("shopify-return", b'{"id": 1, "order": {"id": 2, "id": 3}}', "order.id"),
        ("stripe", b'{"id": "evt_1", "id": "evt_2", "object": "event"}', "id"),
        ("wechatpay", b'{"id": "n1", "event_type": "REFUND.SUCCESS", '
                      b'"event_type": "TRANSACTION.SUCCESS"}', "event_type"),
        ("woocommerce", b'{"id": 7, "status": "refund-requested", "status": "completed"}',
         "status"),
        ("woocommerce", b'{"id": 7, "status": "completed", "currency": "USD", '
                        b'"total": "1.00", "refunds": [{"id": 1, "total": "-1", '
                        b'"total": "-900"}]}', "refunds.0.total"),
    ],
)
def test_a_key_given_twice_is_refused_naming_it(parser: str, body: bytes, field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        PARSERS[parser](body)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("parser", "body", "field"),
    [
        ("shopify-refund", b'{"id": 1, "order_id": 1' + b"0" * 30 + b"}", "order_id"),
        ("shopify-refund", b'{"id": 1, "order_id": 2, "note": "a\\u0000b"}', "note"),
        ("woocommerce", b'{"id": 1' + b"0" * 25 + b', "status": "completed", '
                        b'"currency": "USD", "total": "1.00"}', "id"),
        ("woocommerce", b'{"id": 7, "status": "completed", "currency": "USD", '
                        b'"total": "1.00", "transaction_id": "ch_\\u001b"}', "transaction_id"),
        ("stripe", b'{"id": "evt_\\u0000", "object": "event", "type": "x", "created": 1, '
                   b'"data": {"object": {}}}', "id"),
    ],
)
def test_wire_models_refuse_what_cannot_be_stored(parser: str, body: bytes, field: str
                                                  ) -> None:
    with pytest.raises(InvalidRequest) as caught:
        PARSERS[parser](body)
    assert caught.value.field == field
