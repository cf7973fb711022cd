"""WooCommerce connector against WooCommerce's wire format: respx at the transport (the
stateful fake in tests/fakes/woocommerce.py), webhook bodies encoded as PHP's json_encode
encodes them and signed as `WC_Webhook::generate_signature` signs them. No network, no
sleeps."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from refundbridge.api.app import create_app
from refundbridge.bootstrap import Container
from refundbridge.connectors.base import ConnectorContext, RetryPolicy
from refundbridge.connectors.registry import ConnectorRegistry, check_connector_class
from refundbridge.connectors.woocommerce import WooCommerceConnector
from refundbridge.connectors.woocommerce.refunds import STATUS_MAP, map_status, to_refund_result
from refundbridge.connectors.woocommerce.transformers import META_CASE_ID, META_IDEMPOTENCY_KEY
from refundbridge.connectors.woocommerce.webhooks import sign
from refundbridge.connectors.woocommerce.wire import WCRefund
from refundbridge.core.errors import (
    ConfigError,
    InvalidRequest,
    NotSupported,
    PermanentProviderError,
    TransientProviderError,
    WebhookRejected,
)
from refundbridge.core.model import RefundStatus
from refundbridge.core.money import Money
from refundbridge.core.ports import (
    Capability,
    ExternalRefund,
    Ignored,
    RefundOrder,
    RefundRequested,
    Role,
    StatusOutcome,
    StatusUpdate,
)
from refundbridge.core.request import ReasonCode, RequestKind, RequestLine
from tests.connectors.helpers import CASE_ID, FAST, KEY
from tests.factories import SHOP
from tests.fakes.common import installed
from tests.fakes.woocommerce import (
    API,
    BASE,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    WEBHOOK_SECRET,
    Line,
    WooCommerceFake,
    delivery,
    php_json,
    ping,
    wc_signature,
)

NOW = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)

SETTINGS: dict[str, Any] = {
    "base_url": BASE,
    "consumer_key": CONSUMER_KEY,
    "consumer_secret": CONSUMER_SECRET,
    "webhook_secret": WEBHOOK_SECRET,
}

REQUEST_META = {
    "_refund_reason_code": "defective",
    "_refund_reason": "Das Messgerät zeigt „Err 5“ – see photo https://shop.example/x/1.jpg",
    "_refund_requested_at": "2024-06-28T07:15:00",
    "_refund_request_kind": "return_and_refund",
}


def make_connector(retry: RetryPolicy = FAST, **overrides: Any) -> WooCommerceConnector:
    ctx = ConnectorContext(shop_id="s1", retry=retry)
    return WooCommerceConnector.from_config({**SETTINGS, **overrides}, ctx)


@pytest.fixture
def shop() -> Iterator[WooCommerceFake]:
    fake = WooCommerceFake()
    with installed(fake):
        yield fake


@pytest.fixture
def connector() -> Iterator[WooCommerceConnector]:
    conn = make_connector()
    yield conn
    conn.close()


def glucose_order(fake: WooCommerceFake, **kwargs: Any) -> dict[str, Any]:
    """Two lines with 19 % VAT and shipping: 2 × 50.00 + 19.00 tax, 1 × 20.00 + 3.80 tax,
    shipping 4.90 + 0.93 tax; total 148.63 EUR."""
    kwargs.setdefault("status", "refund-requested")
    kwargs.setdefault("meta", REQUEST_META)
    return fake.add_order(
        [Line("GLU-METER-01", "Blutzuckermessgerät GlucoCheck / Set", 2, "100.00", "19.00",
              meta={"_rb_lot": "L2405A", "_rb_device_class": "IIb", "_rb_sterile": "no",
                    "_rb_expiry_date": "2026-05-31"}),
         Line("LANCET-100", "Lanzetten 100 Stück", 1, "20.00", "3.80",
              meta={"_rb_sterile": "yes", "_rb_package_opened": "1"})],
        shipping_total="4.90", shipping_tax="0.93", **kwargs)


def refund_order(order_id: int, amount: str = "59.50", lines: tuple[RequestLine, ...] = (),
                 key: str = KEY) -> RefundOrder:
    return RefundOrder(
        case_id=CASE_ID, attempt=1, idempotency_key=key,
        amount=Money.parse(amount, "EUR"), payment_reference="pi_3PqRsT2eZvKYlo2C",
        order_id=str(order_id), reason=ReasonCode.DEFECTIVE,
        paid_total=Money.parse("148.63", "EUR"), lines=lines,
    )


def request_line(sku: str, quantity: int, unit_price: str) -> RequestLine:
    return RequestLine(sku=sku, name=sku, quantity=quantity, unit_price=Decimal(unit_price))


# ---------------------------------------------------------------- the connector's contract


def test_declares_roles_and_capabilities_and_loads_by_entry_point() -> None:
    assert WooCommerceConnector.roles == frozenset({Role.STOREFRONT, Role.PAYMENT})
    assert WooCommerceConnector.capabilities == frozenset({
        Capability.RECEIVE_REQUESTS, Capability.LOOKUP_ORDER, Capability.WRITE_BACK,
        Capability.ISSUE_REFUND, Capability.REFUND_STATUS})
    check_connector_class("woocommerce", WooCommerceConnector)
    assert ConnectorRegistry.discover().load("woocommerce") is WooCommerceConnector


def test_shipped_units_is_not_supported(connector: WooCommerceConnector) -> None:
    with pytest.raises(NotSupported) as info:
        connector.shipped_units("1001")

    assert info.value.flow == Capability.SHIPPED_UNITS.value
    assert info.value.connector == "woocommerce"


@pytest.mark.parametrize("url", ["http://shop.acme-medical.example.com", "ftp://shop", "shop"])
def test_base_url_must_be_https(url: str) -> None:
    # WooCommerce refuses HTTP Basic auth over plain HTTP.
    with pytest.raises(ConfigError) as info:
        make_connector(base_url=url)

    assert info.value.key == "shops.s1.woocommerce.base_url"


def test_placeholder_secret_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        make_connector(webhook_secret="changeme")

    assert info.value.key == "shops.s1.woocommerce.webhook_secret"


def test_status_settings_accept_the_admins_wc_prefix() -> None:
    conn = make_connector(refund_requested_status="wc-Refund-Requested",
                          approved_status="wc-refund-approved", declined_status=None)

    assert conn.settings.refund_requested_status == "refund-requested"
    assert conn.settings.approved_status == "refund-approved"
    assert conn.settings.declined_status is None


def test_nothing_is_built_before_first_use() -> None:
    conn = make_connector()

    assert conn._client is None


# ---------------------------------------------------------------- webhooks: signature


def test_signature_is_base64_hmac_sha256_of_the_raw_body() -> None:
    # The reference value is computed independently of the connector.
    body = b'{"id":1001,"status":"refund-requested"}'
    expected = base64.b64encode(
        hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).digest()).decode()

    assert sign(body, WEBHOOK_SECRET) == expected == wc_signature(body)


def test_php_escaped_body_is_verified_on_its_raw_bytes(shop: WooCommerceFake,
                                                       connector: WooCommerceConnector) -> None:
    order = glucose_order(shop)
    order["meta_data"].append({"id": 1, "key": "note", "value": "Grüße 😀 aus Köln"})
    headers, body = delivery(order)
    # PHP's escapes, as WooCommerce sends them.
    assert b"https:\\/\\/shop.example\\/x\\/1.jpg" in body
    assert b"Blutzuckermessger\\u00e4t GlucoCheck \\/ Set" in body
    assert b"\\ud83d\\ude00" in body and b"\\u201e" in body

    event = connector.parse_webhook(headers, body, NOW)

    assert isinstance(event, RefundRequested)
    assert event.request.lines[0].name == "Blutzuckermessgerät GlucoCheck / Set"
    assert event.request.reason.text.endswith("https://shop.example/x/1.jpg")
    # The same JSON re-serialized the Python way is other bytes: a verifier that re-encoded
    # before checking would reject every real delivery.
    reencoded = json.dumps(json.loads(body), ensure_ascii=False).encode()
    assert reencoded != body
    with pytest.raises(WebhookRejected):
        connector.parse_webhook(headers, reencoded, NOW)


def test_bad_signature_is_rejected(shop: WooCommerceFake,
                                   connector: WooCommerceConnector) -> None:
    headers, body = delivery(glucose_order(shop), secret="another-shops-secret-entirely")

    with pytest.raises(WebhookRejected, match="does not match"):
        connector.parse_webhook(headers, body, NOW)


def test_tampered_body_is_rejected(shop: WooCommerceFake,
                                   connector: WooCommerceConnector) -> None:
    headers, body = delivery(glucose_order(shop))

    with pytest.raises(WebhookRejected):
        connector.parse_webhook(headers, body.replace(b'"148.63"', b'"1148.63"'), NOW)


@pytest.mark.parametrize("signature", [None, "", "not base64 at all ✓"])
def test_missing_or_garbled_signature_is_rejected(shop: WooCommerceFake,
                                                  connector: WooCommerceConnector,
                                                  signature: str | None) -> None:
    headers, body = delivery(glucose_order(shop))
    del headers["X-WC-Webhook-Signature"]
    if signature is not None:
        headers["X-WC-Webhook-Signature"] = signature

    with pytest.raises(WebhookRejected):
        connector.parse_webhook(headers, body, NOW)


def test_header_names_are_case_insensitive(shop: WooCommerceFake,
                                           connector: WooCommerceConnector) -> None:
    headers, body = delivery(glucose_order(shop))
    lowered = {k.lower(): v for k, v in headers.items()}  # as ASGI hands them over

    assert isinstance(connector.parse_webhook(lowered, body, NOW), RefundRequested)


def test_secret_is_html_entity_decoded_like_wordpress_does(shop: WooCommerceFake) -> None:
    # WooCommerce keys the HMAC with wp_specialchars_decode($secret, ENT_QUOTES): a secret
    # stored HTML-escaped still signs with the plain characters.
    stored = "Zq9&amp;xW2&lt;pL7&#039;vB4&quot;nM1"
    plain = "Zq9&xW2<pL7'vB4\"nM1"
    conn = make_connector(webhook_secret=stored)
    headers, body = delivery(glucose_order(shop), secret=plain)

    assert isinstance(conn.parse_webhook(headers, body, NOW), RefundRequested)


def test_creation_ping_is_ignored(connector: WooCommerceConnector) -> None:
    headers, body = ping(webhook_id=42)

    event = connector.parse_webhook(headers, body, NOW)

    assert isinstance(event, Ignored)
    assert "ping" in event.reason


def test_signed_ping_is_ignored_too(connector: WooCommerceConnector) -> None:
    body = b"webhook_id=42"
    headers = {"X-WC-Webhook-Signature": wc_signature(body)}

    assert isinstance(connector.parse_webhook(headers, body, NOW), Ignored)


def test_unsigned_body_that_merely_starts_like_a_ping_is_rejected(
        connector: WooCommerceConnector) -> None:
    with pytest.raises(WebhookRejected):
        connector.parse_webhook({}, b"webhook_id=42&status=refund-requested", NOW)


# ---------------------------------------------------------------- webhooks: what they mean


def test_refund_requested_order_becomes_a_normalized_request(
        shop: WooCommerceFake, connector: WooCommerceConnector) -> None:
    order = glucose_order(shop)
    headers, body = delivery(order)

    event = connector.parse_webhook(headers, body, NOW)

    assert isinstance(event, RefundRequested)
    request = event.request
    assert request.external_id == f"order-{order['id']}-refund-request"
    assert request.kind is RequestKind.RETURN_AND_REFUND
    assert request.order.id == str(order["id"])
    assert request.order.currency == "EUR"
    assert request.paid == Money.parse("148.63", "EUR")
    assert request.order.placed_at == datetime(2024, 6, 20, 9, 30, tzinfo=UTC)
    assert request.order.delivered_at == datetime(2024, 6, 22, 9, 30, tzinfo=UTC)
    assert (request.order.payment.provider, request.order.payment.reference) == (
        "stripe", "pi_3PqRsT2eZvKYlo2C")
    assert request.customer.id == "17"
    assert str(request.customer.email) == "anna.schmidt@example.de"
    assert request.customer.phone == "+49 30 1234567"
    assert request.customer.locale == "en"
    meter, lancets = request.lines
    assert (meter.sku, meter.quantity, meter.unit_price) == ("GLU-METER-01", 2, Decimal("59.50"))
    assert (meter.lot, meter.device_class, meter.sterile) == ("L2405A", "IIb", False)
    assert meter.expiry_date is not None and meter.expiry_date.isoformat() == "2026-05-31"
    assert (lancets.sku, lancets.unit_price) == ("LANCET-100", Decimal("23.80"))
    assert lancets.sterile and lancets.package_opened
    assert request.reason.code is ReasonCode.DEFECTIVE
    assert request.reason.text.startswith("Das Messgerät zeigt „Err 5“")
    # The goods' worth, shipping excluded: whether to refund shipping is the shop's call.
    assert request.requested == Money.parse("142.80", "EUR")
    assert request.requested_at == datetime(2024, 6, 28, 7, 15, tzinfo=UTC)


def test_redeliveries_make_the_same_request(shop: WooCommerceFake,
                                            connector: WooCommerceConnector) -> None:
    order = glucose_order(shop)
    first = connector.parse_webhook(*delivery(order, webhook_id=7), NOW)
    second = connector.parse_webhook(*delivery(order, webhook_id=8), NOW)

    assert isinstance(first, RefundRequested) and isinstance(second, RefundRequested)
    assert first.request.external_id == second.request.external_id
    assert first.request.fingerprint() == second.request.fingerprint()


def test_plugin_request_id_makes_each_request_its_own(shop: WooCommerceFake,
                                                      connector: WooCommerceConnector) -> None:
    order = glucose_order(shop, meta={**REQUEST_META, "_refund_request_id": "RMA-0042"})

    event = connector.parse_webhook(*delivery(order), NOW)

    assert isinstance(event, RefundRequested)
    assert event.request.external_id == f"order-{order['id']}-refund-request-RMA-0042"


def test_the_shops_own_status_and_meta_keys_are_read(shop: WooCommerceFake) -> None:
    # A return plugin with its own names: the settings say where it keeps the request.
    conn = make_connector(refund_requested_status="wc-rma-open", request_kind="refund_only",
                          reason_code_meta_key="_rma_reason", request_id_meta_key="_rma_id",
                          line_meta_prefix="_dev_")
    order = shop.add_order([Line("GLU-METER-01", "Glucose meter", 1, "50.00",
                                 meta={"_dev_lot": "L77"})],
                           status="rma-open", meta={"_rma_reason": "wrong_item", "_rma_id": "9"})

    event = conn.parse_webhook(*delivery(order), NOW)

    assert isinstance(event, RefundRequested)
    assert event.request.external_id == f"order-{order['id']}-refund-request-9"
    assert event.request.kind is RequestKind.REFUND_ONLY
    assert event.request.reason.code is ReasonCode.WRONG_ITEM
    assert event.request.lines[0].lot == "L77"
    assert isinstance(make_connector().parse_webhook(*delivery(order), NOW), Ignored)


def test_request_fallbacks_guest_no_sku_plain_meta(shop: WooCommerceFake,
                                                   connector: WooCommerceConnector) -> None:
    order = shop.add_order(
        [Line(None, "Verbandsmull", 3, "10.00", product_id=777)],
        status="refund-requested", customer_id=0, email="Gast@Example.de", phone="",
        payment_method="bacs", transaction_id="", completed=None,
        meta={"_refund_reason_code": "broke_in_transit", "_refund_reason": "kaputt",
              "_refund_request_amount": "5.00", "_refund_request_kind": "refund_only",
              "wpml_language": "zh-hans"})

    event = connector.parse_webhook(*delivery(order), NOW)

    assert isinstance(event, RefundRequested)
    request = event.request
    assert request.customer.id == "guest:gast@example.de"
    assert request.customer.phone is None
    assert request.customer.locale == "zh-CN"
    assert request.lines[0].sku == "wc-product-777"
    assert request.lines[0].unit_price == Decimal("3.33")  # 10.00 / 3, rounded down
    assert request.order.payment.reference == f"wc-order-{order['id']}"
    assert request.order.delivered_at is None
    assert request.kind is RequestKind.REFUND_ONLY
    assert request.requested == Money.parse("5.00", "EUR")
    # An unknown code goes to a person as "other", keeping the plugin's code as evidence.
    assert request.reason.code is ReasonCode.OTHER
    assert request.reason.text == "[broke_in_transit] kaputt"
    # Without the plugin's own time, the order's last change is when it was asked.
    assert request.requested_at == datetime(2024, 6, 25, 9, 30, tzinfo=UTC)


def test_yen_shown_with_two_decimals_is_read_exactly(shop: WooCommerceFake,
                                                     connector: WooCommerceConnector) -> None:
    order = shop.add_order([Line("MASK-50", "Masken", 2, "3000.00", "300.00")],
                           status="refund-requested", currency="JPY", meta=REQUEST_META)

    event = connector.parse_webhook(*delivery(order), NOW)

    assert isinstance(event, RefundRequested)
    assert event.request.paid == Money(Decimal("3300"), "JPY")
    assert event.request.lines[0].unit_price == Decimal("1650")


def test_admin_refund_becomes_an_external_refund(shop: WooCommerceFake,
                                                 connector: WooCommerceConnector) -> None:
    order = glucose_order(shop, status="completed")
    older = shop.add_admin_refund(order["id"], "5.00", "Kulanz")
    shop._store_refund(order, Decimal("10.00"), f"defective (RefundBridge {KEY})", True, [],
                       [])  # one of ours, newer: not external
    newest = shop.add_admin_refund(order["id"], "12.34", "Porto erstattet")

    event = connector.parse_webhook(*delivery(order), NOW)

    assert event == ExternalRefund(order_id=str(order["id"]), external_id=str(newest["id"]),
                                   amount=Money.parse("12.34", "EUR"), note="Porto erstattet")
    assert older["id"] < newest["id"]


def test_only_our_refunds_is_ignored(shop: WooCommerceFake,
                                     connector: WooCommerceConnector) -> None:
    order = glucose_order(shop, status="refunded")
    shop._store_refund(order, Decimal("10.00"), f"defective (RefundBridge {KEY})", True, [], [])

    assert isinstance(connector.parse_webhook(*delivery(order), NOW), Ignored)


def test_open_request_wins_over_an_admin_refund(shop: WooCommerceFake,
                                                connector: WooCommerceConnector) -> None:
    order = glucose_order(shop)
    shop.add_admin_refund(order["id"], "5.00")

    assert isinstance(connector.parse_webhook(*delivery(order), NOW), RefundRequested)


@pytest.mark.parametrize("topic", ["product.updated", "order.deleted", "coupon.created",
                                   "action.woocommerce_order_refunded"])
def test_other_topics_are_ignored(connector: WooCommerceConnector, topic: str) -> None:
    event = connector.parse_webhook(*delivery({"id": 74, "name": "x"}, topic=topic), NOW)

    assert isinstance(event, Ignored)
    assert topic in event.reason


def test_order_in_another_status_is_ignored(shop: WooCommerceFake,
                                            connector: WooCommerceConnector) -> None:
    order = glucose_order(shop, status="processing")

    event = connector.parse_webhook(*delivery(order, topic="order.created"), NOW)

    assert isinstance(event, Ignored)
    assert "processing" in event.reason


def test_missing_topic_names_the_header(shop: WooCommerceFake,
                                        connector: WooCommerceConnector) -> None:
    headers, body = delivery(glucose_order(shop))
    del headers["X-WC-Webhook-Topic"]

    with pytest.raises(InvalidRequest) as info:
        connector.parse_webhook(headers, body, NOW)

    assert info.value.field == "X-WC-Webhook-Topic"


@pytest.mark.parametrize(("change", "field"), [
    (lambda o: o["line_items"][0].update(quantity="two"), "line_items.0.quantity"),
    (lambda o: o.update(currency="XYZ"), "currency"),
    (lambda o: o["line_items"][1].update(total="12.345"), "line_items.1.total"),
    (lambda o: o["billing"].update(email="not-an-email"), "billing.email"),
    (lambda o: o["meta_data"].append({"id": 6, "key": "_refund_request_amount",
                                      "value": "500.00"}), "meta_data._refund_request_amount"),
    (lambda o: o.pop("total"), "total"),
    (lambda o: o["meta_data"].append({"id": 5, "key": "_refund_request_kind",
                                      "value": "swap"}), "meta_data._refund_request_kind"),
])
def test_invalid_order_names_the_field(shop: WooCommerceFake, connector: WooCommerceConnector,
                                       change: Any, field: str) -> None:
    order = glucose_order(shop)
    change(order)

    with pytest.raises(InvalidRequest) as info:
        connector.parse_webhook(*delivery(order), NOW)

    assert info.value.field == field


def test_body_that_is_not_json_is_invalid(connector: WooCommerceConnector) -> None:
    body = b"<html>oops</html>"

    with pytest.raises(InvalidRequest) as info:
        connector.parse_webhook({"X-WC-Webhook-Signature": wc_signature(body),
                                 "X-WC-Webhook-Topic": "order.updated"}, body, NOW)

    assert info.value.field == "body"


# ---------------------------------------------------------------- order look-up


def test_lookup_order_reads_the_rest_order(shop: WooCommerceFake,
                                           connector: WooCommerceConnector) -> None:
    order = glucose_order(shop, status="completed")

    snapshot = connector.lookup_order(str(order["id"]))

    request = shop.requests[-1]
    assert request.method == "GET"
    assert str(request.url) == f"{API}/orders/{order['id']}"
    user, _, password = base64.b64decode(
        request.headers["Authorization"].removeprefix("Basic ")).decode().partition(":")
    assert (user, password) == (CONSUMER_KEY, CONSUMER_SECRET)
    assert snapshot.order_id == str(order["id"])
    assert snapshot.paid_total == Money.parse("148.63", "EUR")
    assert snapshot.payment_reference == "pi_3PqRsT2eZvKYlo2C"
    assert snapshot.customer_email == "anna.schmidt@example.de"
    assert [(li.sku, li.quantity, li.unit_price, li.line_id) for li in snapshot.lines] == [
        ("GLU-METER-01", 2, Money.parse("59.50", "EUR"),
         str(order["line_items"][0]["id"])),
        ("LANCET-100", 1, Money.parse("23.80", "EUR"), str(order["line_items"][1]["id"])),
    ]


def test_lookup_of_unknown_order_is_permanent(shop: WooCommerceFake,
                                              connector: WooCommerceConnector) -> None:
    with pytest.raises(PermanentProviderError) as info:
        connector.lookup_order("999999")

    assert info.value.code == "woocommerce_rest_shop_order_invalid_id"
    assert info.value.message == "Invalid ID."


def test_wrong_credentials_are_permanent_with_woocommerces_message(
        shop: WooCommerceFake) -> None:
    conn = make_connector(consumer_secret="cs_0000000000000000000000000000000000000000")
    order = glucose_order(shop)

    with pytest.raises(PermanentProviderError) as info:
        conn.lookup_order(str(order["id"]))

    assert info.value.code == "woocommerce_rest_authentication_error"
    assert len(shop.requests) == 1


# ---------------------------------------------------------------- write-back


def test_approval_moves_the_status_and_adds_one_private_note(
        shop: WooCommerceFake, connector: WooCommerceConnector) -> None:
    order = glucose_order(shop)
    update = StatusUpdate(case_id=CASE_ID, order_id=str(order["id"]),
                          external_id=f"order-{order['id']}-refund-request",
                          outcome=StatusOutcome.APPROVED, note="Bitte Gerät zurücksenden.",
                          amount=Money.parse("142.80", "EUR"))

    connector.write_back(update)
    connector.write_back(update)  # a re-run changes nothing

    puts = [r for r in shop.requests if r.method == "PUT"]
    assert len(puts) == 1
    assert puts[0].url.path == f"/wp-json/wc/v3/orders/{order['id']}"
    assert json.loads(puts[0].content) == {"status": "refund-approved"}
    assert shop.orders[order["id"]]["status"] == "refund-approved"
    notes = shop.notes[order["id"]]
    assert len(notes) == 1
    assert notes[0]["customer_note"] is False
    assert "refund approved (142.80 EUR). Bitte Gerät zurücksenden." in notes[0]["note"]
    assert CASE_ID in notes[0]["note"]
    assert len(shop.posts("/notes")) == 1


def test_decline_puts_the_order_back_to_completed(shop: WooCommerceFake,
                                                  connector: WooCommerceConnector) -> None:
    order = glucose_order(shop)

    connector.write_back(StatusUpdate(CASE_ID, str(order["id"]), "x", StatusOutcome.DECLINED,
                                      note="Siegel geöffnet"))

    assert shop.orders[order["id"]]["status"] == "completed"
    assert "refund declined. Siegel geöffnet" in shop.notes[order["id"]][0]["note"]


def test_refunded_outcome_adds_a_note_only(shop: WooCommerceFake,
                                           connector: WooCommerceConnector) -> None:
    order = glucose_order(shop, status="refunded")

    connector.write_back(StatusUpdate(CASE_ID, str(order["id"]), "x", StatusOutcome.REFUNDED))

    assert not [r for r in shop.requests if r.method == "PUT"]
    assert shop.orders[order["id"]]["status"] == "refunded"
    assert len(shop.notes[order["id"]]) == 1


def test_late_write_back_does_not_undo_a_later_status(shop: WooCommerceFake,
                                                      connector: WooCommerceConnector) -> None:
    order = glucose_order(shop, status="refunded")  # WooCommerce moved on already

    connector.write_back(StatusUpdate(CASE_ID, str(order["id"]), "x", StatusOutcome.APPROVED))

    assert shop.orders[order["id"]]["status"] == "refunded"
    assert not [r for r in shop.requests if r.method == "PUT"]


def test_lost_note_answer_is_not_posted_twice(shop: WooCommerceFake,
                                              connector: WooCommerceConnector) -> None:
    order = glucose_order(shop)
    lost = iter([httpx.Response(503)])
    shop.after_note.append(lambda note: next(lost, None))

    connector.write_back(StatusUpdate(CASE_ID, str(order["id"]), "x", StatusOutcome.APPROVED))

    assert len(shop.notes[order["id"]]) == 1
    assert len(shop.posts("/notes")) == 1


# ---------------------------------------------------------------- refunds


def test_refund_is_posted_as_woocommerce_expects(shop: WooCommerceFake,
                                                 connector: WooCommerceConnector) -> None:
    order = glucose_order(shop, status="refund-approved")
    meter_id, lancet_id = (item["id"] for item in order["line_items"])
    lines = (request_line("GLU-METER-01", 1, "59.50"), request_line("LANCET-100", 1, "23.80"))

    result = connector.issue_refund(refund_order(order["id"], "83.30", lines))

    (post,) = shop.posts("/refunds")
    assert post.url.path == f"/wp-json/wc/v3/orders/{order['id']}/refunds"
    assert post.headers["Content-Type"] == "application/json"
    assert json.loads(post.content) == {
        "amount": "83.30",
        "reason": f"defective (RefundBridge {KEY})",
        "api_refund": True,
        "api_restock": False,
        "line_items": [
            {"id": meter_id, "quantity": 1, "refund_total": "50.00",
             "refund_tax": [{"id": 1, "refund_total": "9.50"}]},
            {"id": lancet_id, "quantity": 1, "refund_total": "20.00",
             "refund_tax": [{"id": 1, "refund_total": "3.80"}]},
        ],
        "meta_data": [{"key": META_IDEMPOTENCY_KEY, "value": KEY},
                      {"key": META_CASE_ID, "value": CASE_ID}],
    }
    (stored,) = shop.refunds_of(order["id"])
    assert result.status is RefundStatus.SUCCEEDED
    assert result.provider_ref == str(stored["id"])
    assert result.amount == Money.parse("83.30", "EUR")
    assert result.raw_status == "refunded_payment=true"
    assert shop.restocked == []  # stock is booked in the ERP after inspection


def test_approved_amount_below_the_lines_scales_them_down(
        shop: WooCommerceFake, connector: WooCommerceConnector) -> None:
    order = glucose_order(shop, status="refund-approved")
    lines = (request_line("GLU-METER-01", 2, "59.50"),)

    connector.issue_refund(refund_order(order["id"], "59.50", lines))

    (line,) = json.loads(shop.posts("/refunds")[0].content)["line_items"]
    assert line["quantity"] == 2
    refunded = Decimal(line["refund_total"]) + Decimal(line["refund_tax"][0]["refund_total"])
    assert (line["refund_total"], line["refund_tax"][0]["refund_total"]) == ("50.00", "9.50")
    assert refunded <= Decimal("59.50")


def test_unmatched_sku_refunds_by_amount_only(shop: WooCommerceFake,
                                              connector: WooCommerceConnector) -> None:
    order = glucose_order(shop, status="refund-approved")
    lines = (request_line("NOT-IN-ORDER", 1, "10.00"),)

    result = connector.issue_refund(refund_order(order["id"], "10.00", lines))

    assert json.loads(shop.posts("/refunds")[0].content)["line_items"] == []
    assert result.status is RefundStatus.SUCCEEDED


def test_lost_answer_after_the_refund_was_stored_keeps_one_refund(
        shop: WooCommerceFake, connector: WooCommerceConnector) -> None:
    order = glucose_order(shop, status="refund-approved")
    lost = iter([httpx.Response(503, text="<html>502 Bad Gateway</html>")])
    shop.after_refund.append(lambda refund: next(lost, None))

    result = connector.issue_refund(refund_order(order["id"]))

    (stored,) = shop.refunds_of(order["id"])
    assert len(shop.posts("/refunds")) == 1  # the retry found it instead of posting again
    assert result.provider_ref == str(stored["id"])
    assert result.status is RefundStatus.SUCCEEDED
    gets = [r for r in shop.requests if r.method == "GET" and r.url.path.endswith("/refunds")]
    assert len(gets) == 2  # once before the first POST, once before the retry


def test_gateway_call_cut_short_is_found_by_its_reason_and_left_pending(
        shop: WooCommerceFake, connector: WooCommerceConnector) -> None:
    # PHP died while the gateway was being called: the refund row exists, unpaid, and its
    # meta_data was never written. Only the reason leads back to it.
    order = glucose_order(shop, status="refund-approved")
    shop.gateway_hangs = True

    result = connector.issue_refund(refund_order(order["id"]))

    (stored,) = shop.refunds_of(order["id"])
    assert stored["meta_data"] == [] and stored["refunded_payment"] is False
    assert len(shop.posts("/refunds")) == 1
    assert result.status is RefundStatus.PENDING
    assert result.provider_ref == str(stored["id"])


def test_transient_failures_are_retried_with_the_same_request() -> None:
    conn = make_connector()
    created = {"id": 2001, "amount": "59.50", "reason": f"defective (RefundBridge {KEY})",
               "refunded_payment": True, "meta_data": []}
    with respx.mock(base_url=API, assert_all_mocked=True) as router:
        listing = router.get("/orders/1001/refunds").respond(200, json=[],
                                                             headers={"X-WP-TotalPages": "1"})
        post = router.post("/orders/1001/refunds").mock(side_effect=[
            httpx.ConnectError("connection refused"),
            httpx.Response(503, text="Service Unavailable"),
            httpx.Response(201, json=created),
        ])

        result = conn.issue_refund(refund_order(1001))

    assert result.status is RefundStatus.SUCCEEDED and result.provider_ref == "2001"
    assert post.call_count == 3
    assert len({call.request.content for call in post.calls}) == 1
    keys = {json.loads(call.request.content)["meta_data"][0]["value"] for call in post.calls}
    assert keys == {KEY}
    assert listing.call_count == 3  # before the first POST and before each retry


def test_failing_look_up_after_a_lost_answer_keeps_the_key(
        shop: WooCommerceFake, connector: WooCommerceConnector) -> None:
    # The first POST may have paid. If looking for it then fails for good, the case must not
    # be failed ("no money moved") and retried under a new key: it is left for a later run.
    order = glucose_order(shop, status="refund-approved")
    lost = iter([httpx.Response(503)])
    shop.after_refund.append(lambda refund: next(lost, None))
    listings = iter([None])  # the look-up before the first POST works; later ones are refused
    shop.before_list_refunds.append(lambda request: next(listings, httpx.Response(
        403, json={"code": "woocommerce_rest_cannot_view",
                   "message": "Sorry, you cannot list resources.", "data": {"status": 403}})))

    with pytest.raises(TransientProviderError, match="may have succeeded"):
        connector.issue_refund(refund_order(order["id"]))

    assert len(shop.refunds_of(order["id"])) == 1
    assert len(shop.posts("/refunds")) == 1


def test_retries_are_bounded(shop: WooCommerceFake, connector: WooCommerceConnector) -> None:
    order = glucose_order(shop, status="refund-approved")
    shop.before_refund.append(lambda request: httpx.Response(503))

    with pytest.raises(TransientProviderError):
        connector.issue_refund(refund_order(order["id"]))

    assert len(shop.posts("/refunds")) == 3
    assert shop.refunds_of(order["id"]) == []


def test_gateway_refusal_is_permanent_and_not_retried(shop: WooCommerceFake,
                                                      connector: WooCommerceConnector) -> None:
    order = glucose_order(shop, status="refund-approved")
    shop.gateway_error = "The card has expired (stripe: expired_card)."

    with pytest.raises(PermanentProviderError) as info:
        connector.issue_refund(refund_order(order["id"]))

    assert info.value.message == "The card has expired (stripe: expired_card)."
    assert info.value.code == "woocommerce_rest_cannot_create_order_refund"
    assert len(shop.posts("/refunds")) == 1
    assert shop.refunds_of(order["id"]) == []  # WooCommerce deleted the refund it started


def test_more_than_is_left_is_refused(shop: WooCommerceFake,
                                      connector: WooCommerceConnector) -> None:
    order = glucose_order(shop, status="refund-approved")
    shop.add_admin_refund(order["id"], "100.00")

    with pytest.raises(PermanentProviderError) as info:
        connector.issue_refund(refund_order(order["id"], "59.50"))

    assert info.value.message == "Invalid refund amount."
    assert len(shop.posts("/refunds")) == 1


def test_existing_refund_under_the_key_is_answered_without_posting(
        shop: WooCommerceFake, connector: WooCommerceConnector) -> None:
    order = glucose_order(shop, status="refund-approved")
    connector.issue_refund(refund_order(order["id"]))

    again = connector.issue_refund(refund_order(order["id"]))

    assert len(shop.posts("/refunds")) == 1
    assert len(shop.refunds_of(order["id"])) == 1
    assert again.status is RefundStatus.SUCCEEDED


def test_another_attempts_key_pays_again(shop: WooCommerceFake,
                                         connector: WooCommerceConnector) -> None:
    order = glucose_order(shop, status="refund-approved")
    connector.issue_refund(refund_order(order["id"], "10.00"))

    connector.issue_refund(refund_order(order["id"], "10.00", key=f"{CASE_ID}-refund-2"))

    assert len(shop.refunds_of(order["id"])) == 2


def test_zero_amount_is_never_sent(shop: WooCommerceFake,
                                   connector: WooCommerceConnector) -> None:
    order = glucose_order(shop, status="refund-approved")

    with pytest.raises(InvalidRequest) as info:
        connector.issue_refund(refund_order(order["id"], "0.00"))

    assert info.value.field == "amount"
    assert shop.posts("/refunds") == []


def test_find_refund_reads_every_page(shop: WooCommerceFake,
                                      connector: WooCommerceConnector) -> None:
    order = shop.add_order([Line("GAUZE", "Mull", 1, "500.00")], status="refund-approved")
    connector.issue_refund(refund_order(order["id"], "1.00"))  # the oldest: last page
    for _ in range(150):
        shop.add_admin_refund(order["id"], "1.00")

    found = connector.find_refund(refund_order(order["id"], "1.00"))

    assert found is not None and found.status is RefundStatus.SUCCEEDED
    pages = [r.url.params["page"] for r in shop.requests
             if r.method == "GET" and r.url.path.endswith("/refunds")]
    assert pages[-2:] == ["1", "2"]


def test_find_refund_returns_none_when_absent(shop: WooCommerceFake,
                                              connector: WooCommerceConnector) -> None:
    order = glucose_order(shop, status="refund-approved")
    shop.add_admin_refund(order["id"], "5.00", "Kulanz")

    assert connector.find_refund(refund_order(order["id"])) is None


# ---------------------------------------------------------------- refund status


@pytest.mark.parametrize(("refunded_payment", "expected"), [
    (True, RefundStatus.SUCCEEDED),
    (False, RefundStatus.PENDING),
    (None, RefundStatus.UNKNOWN),
    ("yes", RefundStatus.UNKNOWN),
])
def test_status_mapping(refunded_payment: Any, expected: RefundStatus) -> None:
    refund = WCRefund.model_validate({"id": 2001, "amount": "59.50", "reason": "",
                                      "refunded_payment": refunded_payment})

    assert to_refund_result(refund, "EUR").status is expected


def test_status_map_covers_every_state_and_unknown_is_unknown() -> None:
    assert {raw: map_status(raw) for raw in STATUS_MAP} == {
        "refunded_payment=true": RefundStatus.SUCCEEDED,
        "refunded_payment=false": RefundStatus.PENDING,
        "deleted": RefundStatus.FAILED,
    }
    assert map_status("refunded_payment='partial'") is RefundStatus.UNKNOWN
    assert map_status(None) is RefundStatus.UNKNOWN


def test_refund_status_reads_the_refund(shop: WooCommerceFake,
                                        connector: WooCommerceConnector) -> None:
    order = glucose_order(shop, status="refund-approved")
    shop.gateway_hangs = True
    pending = connector.issue_refund(refund_order(order["id"]))
    assert pending.provider_ref is not None
    shop.refunds[int(pending.provider_ref)]["refunded_payment"] = True  # the gateway returned

    result = connector.refund_status(pending.provider_ref, refund_order(order["id"]))

    assert result.status is RefundStatus.SUCCEEDED
    assert shop.requests[-1].url.path == (
        f"/wp-json/wc/v3/orders/{order['id']}/refunds/{pending.provider_ref}")


def test_refund_deleted_by_woocommerce_is_failed(shop: WooCommerceFake,
                                                 connector: WooCommerceConnector) -> None:
    order = glucose_order(shop, status="refund-approved")

    result = connector.refund_status("424242", refund_order(order["id"]))

    assert result.status is RefundStatus.FAILED
    assert result.raw_status == "deleted"
    assert result.provider_ref == "424242"
    assert result.message is not None and "gateway" in result.message


def test_refund_status_of_another_orders_refund_is_failed_not_theirs(
        shop: WooCommerceFake, connector: WooCommerceConnector) -> None:
    mine = glucose_order(shop, status="refund-approved")
    other = glucose_order(shop, status="refund-approved")
    theirs = shop.add_admin_refund(other["id"], "1.00")

    result = connector.refund_status(str(theirs["id"]), refund_order(mine["id"]))

    assert result.status is RefundStatus.FAILED


def test_non_numeric_ids_never_reach_the_path(connector: WooCommerceConnector) -> None:
    with respx.mock(assert_all_mocked=True) as router, \
            pytest.raises(PermanentProviderError) as info:
        connector.refund_status("../../users", refund_order(1001))

    assert info.value.code == "invalid_id"
    assert router.calls.call_count == 0


def test_php_json_matches_phps_escaping() -> None:
    # json_encode("a/b é 😀 \\/") in PHP: "a\/b \u00e9 \ud83d\ude00 \\\/"
    assert php_json("a/b é 😀 \\/") == b'"a\\/b \\u00e9 \\ud83d\\ude00 \\\\\\/"'


# ---------------------------------------------------------------- through the real API


def test_ingest_through_the_api(make_container: Callable[..., Container]) -> None:
    """The ping gets the 200 WooCommerce needs to save the webhook; a refund request opens
    one case; its redelivery answers 200 with the same case."""
    fake = WooCommerceFake()
    # The other roles are the sandbox's: this test is about the storefront's ingest.
    container = make_container(storefront="woocommerce", payment="sandbox_payment",
                               erp="sandbox_erp", notifier="sandbox_notifier",
                               woocommerce=SETTINGS)
    order = glucose_order(fake)
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router, \
            TestClient(create_app(container)) as client:
        fake.install(router)
        url = f"/webhooks/{SHOP}/woocommerce"
        headers, body = ping()
        pinged = client.post(url, content=body, headers=headers)
        headers, body = fake.delivery(order["id"])
        created = client.post(url, content=body, headers=headers)
        again = client.post(url, content=body, headers=delivery(order, webhook_id=8)[0])
        forged = client.post(url, content=body.replace(b"148.63", b"999.99"),
                             headers=headers)

    assert pinged.status_code == 200, pinged.text
    assert "ping" in pinged.json()["ignored"]
    assert created.status_code == 202, created.text
    assert again.status_code == 200
    assert again.json()["case_id"] == created.json()["case_id"]
    assert forged.status_code == 401
