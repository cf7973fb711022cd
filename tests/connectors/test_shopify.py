"""Shopify connector against Shopify's wire format: the Admin GraphQL API faked with respx
(tests/fakes/shopify.py), webhooks signed as Shopify signs them. No network, no sleeps.

Shopify's Python SDK (`ShopifyAPI`) has no webhook HMAC helper, so webhooks are signed here
by the documented algorithm (base64 HMAC-SHA256 of the raw body with the app's client
secret), independently of the connector's own code.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx
from pydantic import BaseModel

from refundbridge.connectors.base import ConnectorContext, RetryPolicy
from refundbridge.connectors.registry import ConnectorRegistry, check_connector_class
from refundbridge.connectors.shopify import ShopifyConnector
from refundbridge.connectors.shopify import queries as shopify_queries
from refundbridge.connectors.shopify import transformers as shopify_transformers
from refundbridge.connectors.shopify import wire as shopify_wire
from refundbridge.connectors.shopify.queries import DOCUMENTS, operation_name
from refundbridge.connectors.shopify.transformers import (
    REASON_MAP,
    combine_statuses,
    map_reason,
    to_refund_result,
)
from refundbridge.connectors.shopify.wire import GqlRefund
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
    OrderSnapshot,
    RefundOrder,
    RefundRequested,
    RefundUpdate,
    StatusOutcome,
    StatusUpdate,
    WebhookEvent,
)
from refundbridge.core.request import ReasonCode, RequestKind
from tests.connectors.helpers import CASE_ID, KEY, in_turn
from tests.fakes.common import installed
from tests.fakes.shopify import (
    ACCESS_TOKEN,
    API_VERSION,
    BASE,
    CLIENT_SECRET,
    GRAPHQL_PATH,
    MAX_QUERY_COST,
    PLACED_AT,
    SHOP_DOMAIN,
    Line,
    ShopifyFake,
    query_cost,
    webhook_headers,
)

FAST = RetryPolicy(attempts=3, initial_wait=0, max_wait=0, max_retry_after=0)
NOW = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)
GRAPHQL_URL = f"{BASE}{GRAPHQL_PATH}"

LINES = (
    Line("GLU-METER-01", "血糖仪 Glucose meter", 2, "49.95"),
    Line("LANCETS-100", "Lancets, 100 pcs", 3, "12.50"),
)


def make_connector(retry: RetryPolicy = FAST, **settings: Any) -> ShopifyConnector:
    ctx = ConnectorContext(shop_id="acme-medical", retry=retry)
    raw = {"shop_domain": SHOP_DOMAIN, "access_token": ACCESS_TOKEN,
           "client_secret": CLIENT_SECRET, **settings}
    return ShopifyConnector.from_config(raw, ctx)


@pytest.fixture
def shop() -> Any:
    fake = ShopifyFake()
    with installed(fake):
        yield fake


def delivered(connector: ShopifyConnector, topic: str, body: bytes) -> WebhookEvent:
    """What the connector makes of `body`, delivered as Shopify delivers `topic`, now."""
    return connector.parse_webhook(webhook_headers(topic, body), body, NOW)


@pytest.fixture
def connector() -> Any:
    conn = make_connector()
    yield conn
    conn.close()


def make_order(order_id: str, amount: str = "25.00", currency: str = "USD",
               key: str = KEY) -> RefundOrder:
    return RefundOrder(
        case_id=CASE_ID, attempt=1, idempotency_key=key,
        amount=Money.parse(amount, currency), payment_reference=order_id, order_id=order_id,
        reason=ReasonCode.DEFECTIVE, paid_total=Money.parse("137.40", currency),
    )


def bodies(route_calls: Any) -> list[dict[str, Any]]:
    return [json.loads(call.request.content) for call in route_calls]


def fail_first(shop: ShopifyFake, operation: str, *answers: httpx.Response | Exception
               ) -> list[dict[str, Any]]:
    """Answer the first calls of `operation` with `answers` (a Response, or an exception to
    raise at the transport), then let the fake answer. Returns the bodies seen."""
    seen: list[dict[str, Any]] = []
    next_answer = in_turn(*answers)

    def hook(request: httpx.Request, body: dict[str, Any]) -> httpx.Response | None:
        if body.get("operationName") != operation:
            return None
        seen.append(body)
        return next_answer()

    shop.before.append(hook)
    return seen


# ================================================================ webhooks: signature


def test_returns_request_is_verified_and_normalized(shop: ShopifyFake,
                                                    connector: ShopifyConnector) -> None:
    order_id = shop.add_order(LINES, paid="137.40")
    return_id = shop.add_return(order_id, [(0, 1, "DEFECTIVE"), (1, 2, "SIZE_TOO_SMALL")],
                                note="display stays blank")
    body = shop.return_webhook(return_id)
    triggered = NOW - timedelta(seconds=5)
    headers = webhook_headers("returns/request", body, webhook_id="b54557e4-bdd9-4b37-8a5f",
                              triggered_at=triggered)

    event = connector.parse_webhook(headers, body, NOW)

    assert isinstance(event, RefundRequested)
    request = event.request
    assert request.external_id == return_id  # one return, one case
    assert request.kind is RequestKind.RETURN_AND_REFUND
    assert request.order.id == order_id
    assert request.order.currency == "USD"
    assert request.order.paid_total == Decimal("137.40")
    assert request.order.placed_at == PLACED_AT
    assert request.order.delivered_at == PLACED_AT + timedelta(days=3)
    assert (request.order.payment.provider, request.order.payment.reference) == (
        "shopify", order_id)
    assert [(line.sku, line.name, line.quantity, line.unit_price) for line in request.lines] == [
        ("GLU-METER-01", "血糖仪 Glucose meter", 1, Decimal("49.95")),
        ("LANCETS-100", "Lancets, 100 pcs", 2, Decimal("12.50")),
    ]
    assert request.requested == Money.parse("74.95", "USD")
    assert request.reason.code is ReasonCode.DEFECTIVE  # the fault outranks the size
    assert "GLU-METER-01: DEFECTIVE – display stays blank" in request.reason.text
    assert request.customer.email == "jane.doe@example.com"
    assert request.customer.phone == "+15555550123"
    assert request.customer.locale == "en"
    assert request.customer.id.startswith("gid://shopify/Customer/")
    assert request.requested_at == triggered
    # The order was read through the Admin GraphQL API, as Shopify expects to be called.
    (lookup,) = shop.requests
    assert lookup.url == GRAPHQL_URL
    assert lookup.headers["X-Shopify-Access-Token"] == ACCESS_TOKEN
    assert lookup.headers["Content-Type"] == "application/json"
    sent = json.loads(lookup.content)
    assert sent["operationName"] == "RefundBridgeOrder"
    assert sent["variables"] == {"id": order_id}
    assert "order(id: $id)" in sent["query"]


def test_header_names_are_case_insensitive(shop: ShopifyFake,
                                           connector: ShopifyConnector) -> None:
    order_id = shop.add_order()
    body = shop.return_webhook(shop.add_return(order_id))
    headers = {k.lower(): v for k, v in webhook_headers("returns/request", body).items()}

    assert isinstance(connector.parse_webhook(headers, body, NOW), RefundRequested)


def test_redelivery_gives_the_same_request_without_a_second_lookup(
        shop: ShopifyFake, connector: ShopifyConnector) -> None:
    order_id = shop.add_order()
    body = shop.return_webhook(shop.add_return(order_id))
    headers = webhook_headers("returns/request", body, webhook_id="wh-1")
    first = connector.parse_webhook(headers, body, NOW)
    shop.orders[order_id]["email"] = "changed@example.com"  # the order moved on meanwhile

    again = connector.parse_webhook(headers, body, NOW + timedelta(minutes=5))

    assert isinstance(first, RefundRequested) and isinstance(again, RefundRequested)
    assert again.request.fingerprint() == first.request.fingerprint()
    assert len(shop.bodies("RefundBridgeOrder")) == 1


def test_a_redelivery_to_another_process_is_still_the_same_delivery(
        shop: ShopifyFake) -> None:
    # Another API process has not seen the first delivery, so it looks the order up again and
    # finds it changed; the signed body, not the order, says it is the same webhook.
    order_id = shop.add_order()
    body = shop.return_webhook(shop.add_return(order_id))
    headers = webhook_headers("returns/request", body, webhook_id="wh-1")
    first, second = make_connector(), make_connector()
    try:
        one = first.parse_webhook(headers, body, NOW)
        shop.orders[order_id]["email"] = "changed@example.com"
        two = second.parse_webhook(headers, body, NOW + timedelta(minutes=5))
    finally:
        first.close()
        second.close()

    assert isinstance(one, RefundRequested) and isinstance(two, RefundRequested)
    assert one.request.fingerprint() != two.request.fingerprint()
    assert one.fingerprint is not None and one.fingerprint == two.fingerprint
    other = shop.return_webhook(shop.add_return(order_id))
    three = second.parse_webhook(webhook_headers("returns/request", other, webhook_id="wh-2"),
                                 other, NOW)
    assert isinstance(three, RefundRequested) and three.fingerprint != one.fingerprint


def test_tampered_body_is_rejected(shop: ShopifyFake, connector: ShopifyConnector) -> None:
    order_id = shop.add_order()
    body = shop.return_webhook(shop.add_return(order_id))
    headers = webhook_headers("returns/request", body)

    with pytest.raises(WebhookRejected, match="bad signature"):
        connector.parse_webhook(headers, body.replace(b'"quantity": 1', b'"quantity": 2'), NOW)
    assert shop.requests == []  # nothing looked up for a forged message


def test_wrong_secret_is_rejected(shop: ShopifyFake, connector: ShopifyConnector) -> None:
    order_id = shop.add_order()
    body = shop.return_webhook(shop.add_return(order_id))
    headers = webhook_headers("returns/request", body, secret="shpss_another_apps_secret_0001")

    with pytest.raises(WebhookRejected):
        connector.parse_webhook(headers, body, NOW)


@pytest.mark.parametrize("value", [None, "", "not base64!"])
def test_missing_or_garbled_signature_is_rejected(shop: ShopifyFake, connector: ShopifyConnector,
                                                  value: str | None) -> None:
    order_id = shop.add_order()
    body = shop.return_webhook(shop.add_return(order_id))
    headers = webhook_headers("returns/request", body)
    if value is None:
        del headers["X-Shopify-Hmac-Sha256"]
    else:
        headers["X-Shopify-Hmac-Sha256"] = value

    with pytest.raises(WebhookRejected):
        connector.parse_webhook(headers, body, NOW)


def test_another_shop_of_the_same_app_is_rejected(shop: ShopifyFake,
                                                  connector: ShopifyConnector) -> None:
    # Same app, same secret, genuine signature: but it is another shop's return.
    order_id = shop.add_order()
    body = shop.return_webhook(shop.add_return(order_id))
    headers = webhook_headers("returns/request", body, shop_domain="rival.myshopify.com")

    with pytest.raises(WebhookRejected, match=r"rival\.myshopify\.com"):
        connector.parse_webhook(headers, body, NOW)


def test_triggered_at_is_checked_only_when_configured(shop: ShopifyFake) -> None:
    order_id = shop.add_order()
    body = shop.return_webhook(shop.add_return(order_id))
    old = webhook_headers("returns/request", body, triggered_at=NOW - timedelta(hours=3))

    assert isinstance(make_connector().parse_webhook(old, body, NOW), RefundRequested)
    strict = make_connector(tolerance_seconds=3600)
    with pytest.raises(WebhookRejected, match="ago"):
        strict.parse_webhook(old, body, NOW)
    fresh = webhook_headers("returns/request", body, triggered_at=NOW - timedelta(minutes=2))
    assert isinstance(strict.parse_webhook(fresh, body, NOW), RefundRequested)


def test_nanosecond_triggered_at_is_read(shop: ShopifyFake, connector: ShopifyConnector) -> None:
    order_id = shop.add_order()
    body = shop.return_webhook(shop.add_return(order_id))
    headers = webhook_headers("returns/request", body)
    headers["X-Shopify-Triggered-At"] = "2024-07-01T11:59:27.877041743Z"

    event = connector.parse_webhook(headers, body, NOW)

    assert isinstance(event, RefundRequested)
    assert event.request.requested_at == datetime(2024, 7, 1, 11, 59, 27, 877041, tzinfo=UTC)


# ================================================================ webhooks: topics


def test_our_refund_comes_back_as_a_refund_update(shop: ShopifyFake,
                                                  connector: ShopifyConnector) -> None:
    order_id = shop.add_order(LINES, paid="137.40")
    result = connector.issue_refund(make_order(order_id))
    body = shop.refund_webhook(result.provider_ref or "")
    headers = webhook_headers("refunds/create", body, webhook_id="wh-refund-1")

    update = connector.parse_webhook(headers, body, NOW)

    assert isinstance(update, RefundUpdate)
    assert update.idempotency_key == KEY
    assert update.case_id == CASE_ID
    assert update.event_id == "wh-refund-1"
    assert update.result.provider_ref == result.provider_ref
    assert update.result.status is RefundStatus.SUCCEEDED
    assert update.result.amount == Money.parse("25.00", "USD")


def test_admin_refund_is_recorded_against_the_order(shop: ShopifyFake,
                                                    connector: ShopifyConnector) -> None:
    order_id = shop.add_order(LINES, paid="137.40")
    refund_id = shop.add_external_refund(order_id, "30.00", note="goodwill")
    raw = json.loads(shop.refund_webhook(refund_id))
    # A second, failed attempt on the same refund moved no money and must not count.
    raw["transactions"].append({**raw["transactions"][0], "id": 1, "status": "failure",
                                "amount": "99.00"})
    body = json.dumps(raw).encode()

    event = delivered(connector, "refunds/create", body)

    assert event == ExternalRefund(order_id=order_id, external_id=refund_id,
                                   amount=Money.parse("30.00", "USD"), note="goodwill")
    # The same order id our normalized requests use, so the over-refund guard adds up.
    ret_body = shop.return_webhook(shop.add_return(order_id))
    request = delivered(connector, "returns/request", ret_body)
    assert isinstance(request, RefundRequested) and request.request.order.id == event.order_id


def admin_refund_webhook(shop: ShopifyFake, status: str) -> bytes:
    """refunds/create for a 10.00 refund made in Shopify's admin, whose transaction is
    `status`."""
    return shop.refund_webhook(shop.add_external_refund(shop.add_order(), "10.00",
                                                        status=status))


def test_admin_refund_without_money_moved_is_ignored(shop: ShopifyFake,
                                                     connector: ShopifyConnector) -> None:
    event = delivered(connector, "refunds/create", admin_refund_webhook(shop, "FAILURE"))

    assert isinstance(event, Ignored)
    assert "no money" in event.reason


def test_a_pending_admin_refund_counts_now(shop: ShopifyFake,
                                           connector: ShopifyConnector) -> None:
    # refunds/create fires once: money on its way out must hold against the order now.
    event = delivered(connector, "refunds/create", admin_refund_webhook(shop, "PENDING"))

    assert isinstance(event, ExternalRefund)
    assert event.amount == Money.parse("10.00", "USD")


@pytest.mark.parametrize("topic", ["orders/updated", "returns/approve", "products/update"])
def test_other_topics_are_ignored_with_a_reason(connector: ShopifyConnector, topic: str) -> None:
    body = json.dumps({"id": 820982911946154508, "admin_graphql_api_id":
                       "gid://shopify/Order/820982911946154508"}).encode()

    event = delivered(connector, topic, body)

    assert isinstance(event, Ignored)
    assert topic in event.reason


def test_return_body_without_lines_names_the_field(connector: ShopifyConnector) -> None:
    body = json.dumps({"id": 1, "admin_graphql_api_id": "gid://shopify/Return/1",
                       "order": {"id": 2, "admin_graphql_api_id": "gid://shopify/Order/2"}}
                      ).encode()

    with pytest.raises(InvalidRequest) as info:
        delivered(connector, "returns/request", body)

    assert info.value.field == "return_line_items"


def test_refund_body_without_order_names_the_field(connector: ShopifyConnector) -> None:
    body = json.dumps({"id": 1, "note": None, "transactions": []}).encode()

    with pytest.raises(InvalidRequest) as info:
        delivered(connector, "refunds/create", body)

    assert info.value.field == "order_id"


def test_signed_body_that_is_not_json(connector: ShopifyConnector) -> None:
    body = b"not json"

    with pytest.raises(InvalidRequest) as info:
        delivered(connector, "refunds/create", body)

    assert info.value.field == "body"


# ================================================================ order lookup


def test_lookup_maps_the_order(shop: ShopifyFake, connector: ShopifyConnector) -> None:
    order_id = shop.add_order(LINES, paid="137.40", locale="zh-CN")

    snapshot = connector.lookup_order(order_id)

    assert isinstance(snapshot, OrderSnapshot)
    assert snapshot.order_id == order_id
    assert snapshot.paid_total == Money.parse("137.40", "USD")
    assert snapshot.placed_at == PLACED_AT
    assert snapshot.delivered_at == PLACED_AT + timedelta(days=3)
    assert (snapshot.payment_provider, snapshot.payment_reference) == ("shopify", order_id)
    assert snapshot.customer_locale == "zh-CN"
    assert [(line.sku, line.quantity, line.unit_price) for line in snapshot.lines] == [
        ("GLU-METER-01", 2, Money.parse("49.95", "USD")),
        ("LANCETS-100", 3, Money.parse("12.50", "USD")),
    ]
    assert all(line.line_id and line.line_id.startswith("gid://shopify/LineItem/")
               for line in snapshot.lines)


def test_lookup_reads_yen_written_with_a_decimal(shop: ShopifyFake,
                                                 connector: ShopifyConnector) -> None:
    # GraphQL writes ¥1000 as "1000.0": not a fraction of a yen.
    order_id = shop.add_order([Line(None, "体温计 Thermometer", 1, "1000")], currency="JPY")

    snapshot = connector.lookup_order(order_id)

    assert snapshot.paid_total == Money(Decimal("1000"), "JPY")
    assert snapshot.lines[0].sku == snapshot.lines[0].line_id  # no SKU: the line's GID


def test_guest_order_and_odd_locale(shop: ShopifyFake) -> None:
    order_id = shop.add_order(customer=False, locale="klingon", email=None, phone=None)

    snapshot = make_connector(locale="de").lookup_order(order_id)

    assert snapshot.customer_id == f"guest:{order_id}"
    assert snapshot.customer_locale == "de"
    assert snapshot.customer_email is None


def test_unknown_order_is_permanent(shop: ShopifyFake, connector: ShopifyConnector) -> None:
    with pytest.raises(PermanentProviderError, match="no order"):
        connector.lookup_order("gid://shopify/Order/404")


def test_lookup_outage_is_transient_so_shopify_redelivers(shop: ShopifyFake,
                                                          connector: ShopifyConnector) -> None:
    order_id = shop.add_order()
    body = shop.return_webhook(shop.add_return(order_id))
    seen = fail_first(shop, "RefundBridgeOrder", *[httpx.Response(503)] * 3)

    with pytest.raises(TransientProviderError):
        delivered(connector, "returns/request", body)

    assert len(seen) == 3  # bounded


def test_throttled_lookup_is_retried(shop: ShopifyFake, connector: ShopifyConnector) -> None:
    order_id = shop.add_order()
    throttled = httpx.Response(200, json={
        "errors": [{"message": "Throttled", "extensions": {
            "code": "THROTTLED",
            "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
        "extensions": {"cost": {"requestedQueryCost": 202, "actualQueryCost": None,
                                "throttleStatus": {"maximumAvailable": 2000.0,
                                                   "currentlyAvailable": 2,
                                                   "restoreRate": 100.0}}}})
    seen = fail_first(shop, "RefundBridgeOrder", throttled)

    assert connector.lookup_order(order_id).order_id == order_id
    assert len(seen) == 2


def test_throttle_wait_comes_from_the_cost(shop: ShopifyFake) -> None:
    order_id = shop.add_order()
    fail_first(shop, "RefundBridgeOrder", httpx.Response(200, json={
        "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
        "extensions": {"cost": {"requestedQueryCost": 202, "throttleStatus": {
            "maximumAvailable": 2000.0, "currentlyAvailable": 2, "restoreRate": 100.0}}}}))

    with pytest.raises(TransientProviderError) as info:
        make_connector(RetryPolicy(attempts=1)).lookup_order(order_id)

    assert info.value.retry_after == pytest.approx(2.0)


def test_bad_token_is_permanent_with_shopifys_words(shop: ShopifyFake) -> None:
    conn = make_connector(access_token="shpat_revoked_token_000000000000")

    with pytest.raises(PermanentProviderError, match="Invalid API key or access token"):
        conn.lookup_order(shop.add_order())
    assert len(shop.requests) == 1


def test_query_errors_are_permanent(shop: ShopifyFake, connector: ShopifyConnector) -> None:
    seen = fail_first(shop, "RefundBridgeOrder", httpx.Response(200, json={"errors": [{
        "message": "Field 'discountedUnitPriceAfterAllDiscountsSet' doesn't exist on type "
                   "'LineItem'",
        "extensions": {"code": "undefinedField", "typeName": "LineItem"}}]}))

    with pytest.raises(PermanentProviderError, match="doesn't exist") as info:
        connector.lookup_order(shop.add_order())

    assert info.value.code == "undefinedField"
    assert len(seen) == 1


# ================================================================ reason map


@pytest.mark.parametrize(("raw", "expected"), [
    ("DEFECTIVE", ReasonCode.DEFECTIVE),
    ("NOT_AS_DESCRIBED", ReasonCode.NOT_AS_DESCRIBED),
    ("WRONG_ITEM", ReasonCode.WRONG_ITEM),
    ("SIZE_TOO_SMALL", ReasonCode.ORDERED_BY_MISTAKE),
    ("SIZE_TOO_LARGE", ReasonCode.ORDERED_BY_MISTAKE),
    ("UNWANTED", ReasonCode.NO_LONGER_NEEDED),
    ("STYLE", ReasonCode.CHANGED_MIND),
    ("COLOR", ReasonCode.CHANGED_MIND),
    ("OTHER", ReasonCode.OTHER),
    ("UNKNOWN", ReasonCode.OTHER),
    ("defective", ReasonCode.DEFECTIVE),  # webhooks write it in lower case
    ("ARRIVED_LATE", ReasonCode.OTHER),  # a reason Shopify may add later
    (None, ReasonCode.OTHER),
])
def test_reason_map(raw: str | None, expected: ReasonCode) -> None:
    assert map_reason(raw) is expected


def test_every_documented_reason_is_in_the_table() -> None:
    documented = {"COLOR", "DEFECTIVE", "NOT_AS_DESCRIBED", "OTHER", "SIZE_TOO_LARGE",
                  "SIZE_TOO_SMALL", "STYLE", "UNKNOWN", "UNWANTED", "WRONG_ITEM"}
    assert set(REASON_MAP) == documented


# ================================================================ refunds


def test_refund_is_created_as_shopify_documents(shop: ShopifyFake,
                                                connector: ShopifyConnector) -> None:
    order_id = shop.add_order(LINES, paid="137.40")
    sale = shop.orders[order_id]["transactions"][0]

    result = connector.issue_refund(make_order(order_id))

    (sent,) = shop.bodies("RefundBridgeRefundCreate")
    assert "refundCreate(input: $input) @idempotent(key: $idempotencyKey)" in sent["query"]
    assert sent["variables"]["idempotencyKey"] == KEY
    assert sent["variables"]["input"] == {
        "orderId": order_id,
        "currency": "USD",
        "note": f"RefundBridge refund [refundbridge case={CASE_ID} key={KEY}]",
        "notify": False,
        "transactions": [{"orderId": order_id, "parentId": sale["id"], "kind": "REFUND",
                          "gateway": "shopify_payments", "amount": "25.00"}],
    }
    assert result.status is RefundStatus.SUCCEEDED
    assert result.provider_ref is not None and result.provider_ref.startswith(
        "gid://shopify/Refund/")
    assert result.amount == Money.parse("25.00", "USD")
    assert result.raw_status == "SUCCESS"


def test_refund_retries_transient_failures_with_the_same_key(
        shop: ShopifyFake, connector: ShopifyConnector) -> None:
    order_id = shop.add_order(LINES, paid="137.40")
    seen = fail_first(shop, "RefundBridgeRefundCreate",
                      httpx.ConnectError("connection refused"),
                      httpx.Response(503, text="Service Unavailable"))

    result = connector.issue_refund(make_order(order_id))

    assert result.status is RefundStatus.SUCCEEDED
    assert len(seen) == 3
    assert {body["variables"]["idempotencyKey"] for body in seen} == {KEY}
    assert all(body == seen[0] for body in seen)  # the very same request each time
    assert len(shop.paid()) == 1


def test_a_replayed_key_pays_once(shop: ShopifyFake, connector: ShopifyConnector) -> None:
    order_id = shop.add_order(LINES, paid="137.40")

    first = connector.issue_refund(make_order(order_id))
    second = connector.issue_refund(make_order(order_id))

    assert second.provider_ref == first.provider_ref
    assert shop.keys_posted() == [KEY, KEY]
    assert len(shop.paid()) == 1


def test_throttled_refund_is_retried_with_the_same_key(shop: ShopifyFake,
                                                       connector: ShopifyConnector) -> None:
    order_id = shop.add_order(LINES, paid="137.40")
    seen = fail_first(shop, "RefundBridgeRefundCreate",
                      httpx.Response(429, headers={"Retry-After": "2"}),
                      httpx.Response(200, json={"errors": [{
                          "message": "Throttled", "extensions": {"code": "THROTTLED"}}]}))

    assert connector.issue_refund(make_order(order_id)).status is RefundStatus.SUCCEEDED
    assert [body["variables"]["idempotencyKey"] for body in seen] == [KEY, KEY, KEY]


def test_user_errors_are_permanent_with_shopifys_message(shop: ShopifyFake,
                                                         connector: ShopifyConnector) -> None:
    order_id = shop.add_order(LINES, paid="137.40")
    seen = fail_first(shop, "RefundBridgeRefundCreate", httpx.Response(200, json={"data": {
        "refundCreate": {"refund": None, "userErrors": [{
            "field": ["transactions", "0", "amount"],
            "message": "Refund amount must be less than or equal to 137.40"}]}}}))

    with pytest.raises(PermanentProviderError) as info:
        connector.issue_refund(make_order(order_id))

    assert "transactions.0.amount: Refund amount must be less than or equal" in str(info.value)
    assert len(seen) == 1  # never retried


def test_refund_beyond_what_is_left_is_refused_before_calling(
        shop: ShopifyFake, connector: ShopifyConnector) -> None:
    order_id = shop.add_order(LINES, paid="137.40")
    shop.add_external_refund(order_id, "120.00")

    with pytest.raises(PermanentProviderError, match="left to refund") as info:
        connector.issue_refund(make_order(order_id, amount="25.00"))

    assert info.value.code == "insufficient_refundable"
    assert shop.bodies("RefundBridgeRefundCreate") == []


def test_refund_spreads_over_several_captures(shop: ShopifyFake,
                                              connector: ShopifyConnector) -> None:
    order_id = shop.add_order(LINES, paid="100.00")
    order = shop.orders[order_id]
    second = {**order["transactions"][0], "id": "gid://shopify/OrderTransaction/77",
              "kind": "CAPTURE", "gateway": "paypal",
              "amountSet": {"presentmentMoney": {"amount": "37.4", "currencyCode": "USD"}}}
    order["transactions"].append(second)
    shop.add_external_refund(order_id, "90.00")  # 10.00 left on the sale

    connector.issue_refund(make_order(order_id, amount="30.00"))

    (sent,) = shop.bodies("RefundBridgeRefundCreate")
    assert [(t["parentId"], t["gateway"], t["amount"])
            for t in sent["variables"]["input"]["transactions"]] == [
        (order["transactions"][0]["id"], "shopify_payments", "10.00"),
        ("gid://shopify/OrderTransaction/77", "paypal", "20.00"),
    ]


@pytest.mark.parametrize(("amount", "currency", "field"), [
    ("0.00", "USD", "amount"), ("25.00", "EUR", "amount")])
def test_bad_amounts_are_never_sent(shop: ShopifyFake, connector: ShopifyConnector,
                                    amount: str, currency: str, field: str) -> None:
    order_id = shop.add_order(LINES, paid="137.40")

    with pytest.raises(InvalidRequest) as info:
        connector.issue_refund(make_order(order_id, amount=amount, currency=currency))

    assert info.value.field == field
    assert shop.bodies("RefundBridgeRefundCreate") == []


def test_find_refund_matches_the_key_in_the_note(shop: ShopifyFake,
                                                 connector: ShopifyConnector) -> None:
    order_id = shop.add_order(LINES, paid="137.40")
    shop.add_external_refund(order_id, "5.00", note="made in the admin")
    connector.issue_refund(make_order(order_id, key=f"{CASE_ID}-refund-2"))

    assert connector.find_refund(make_order(order_id)) is None
    mine = connector.issue_refund(make_order(order_id))
    found = connector.find_refund(make_order(order_id))
    assert found is not None and found.provider_ref == mine.provider_ref


def test_refund_status_reads_the_refund(shop: ShopifyFake, connector: ShopifyConnector) -> None:
    order_id = shop.add_order(LINES, paid="137.40")
    shop.next_status = "PENDING"
    issued = connector.issue_refund(make_order(order_id))
    assert issued.status is RefundStatus.PENDING

    for tx in shop.refunds[issued.provider_ref or ""]["transactions"]["nodes"]:
        tx["status"] = "SUCCESS"
    status = connector.refund_status(issued.provider_ref or "", make_order(order_id))

    assert status.status is RefundStatus.SUCCEEDED
    (sent,) = shop.bodies("RefundBridgeRefund")
    assert sent["variables"] == {"id": issued.provider_ref}


# ================================================================ query cost and paging
# Shopify refuses, with MAX_COST_EXCEEDED, any query whose requested cost is over 1,000
# points. The fake prices every query by Shopify's documented rules and refuses it the same
# way, so every test above also shows that the queries it makes are accepted.

# The order query as it was before it was priced: 250 lines, 50 fulfillments of 250 lines
# each and 100 transactions in one query. Kept here to show the fake's check can fail.
EXPENSIVE_ORDER_QUERY = """query RefundBridgeOrder($id: ID!) {
  order(id: $id) {
    id name createdAt processedAt email phone customerLocale presentmentCurrencyCode
    customer { id locale }
    lineItems(first: 250) {
      nodes { id sku name quantity
        discountedUnitPriceAfterAllDiscountsSet { presentmentMoney { amount currencyCode } } }
    }
    fulfillments(first: 50) {
      deliveredAt
      fulfillmentLineItems(first: 250) { nodes { id lineItem { id } } }
    }
    transactions(first: 100) { id kind status gateway parentTransaction { id }
      amountSet { presentmentMoney { amount currencyCode } } }
  }
}"""


def post_graphql(document: str, variables: dict[str, Any]) -> dict[str, Any]:
    """A query posted to the fake as the connector posts it; the parsed answer."""
    with httpx.Client() as http:
        response = http.post(GRAPHQL_URL, headers={"X-Shopify-Access-Token": ACCESS_TOKEN},
                             json={"query": document, "operationName": operation_name(document),
                                   "variables": variables})
    assert response.status_code == 200
    answer: dict[str, Any] = response.json()
    return answer


@pytest.mark.parametrize(("document", "variables", "cost"), [
    # Objects cost 1, scalars 0.
    ("query { shop { id name currencyCode } }", {}, 1),
    # Shopify's worked example: 2 + 10 × (1 product + 2 + 5 × 1 variant) = 82.
    ("query { products(first: 10) { edges { node { title variants(first: 5) { edges { node "
     "{ price } } } } } } }", {}, 82),
    # A page size given as a variable is priced by its value.
    ("query Q($n: Int!) { orders(first: $n) { nodes { id } } }", {"n": 250}, 252),
    ("query Q($n: Int!) { orders(last: $n) { nodes { id customer { id } } } }", {"n": 10}, 22),
    # A mutation costs 10, plus what its payload selects.
    ("mutation { returnApproveRequest(input: {id: \"gid://shopify/Return/1\"}) { "
     "return { id status } userErrors { field message } } }", {}, 12),
    # The query this connector used to send for an order.
    (EXPENSIVE_ORDER_QUERY, {"id": "gid://shopify/Order/1"}, 26308),
])
def test_cost_is_worked_out_by_shopifys_documented_rules(
        document: str, variables: dict[str, Any], cost: int) -> None:
    assert query_cost(document, variables) == cost


def _documents_in(module: Any) -> set[str]:
    return {value for name, value in vars(module).items()
            if name.isupper() and isinstance(value, str)
            and value.startswith(("query ", "mutation "))}


def test_every_document_is_listed_for_the_cost_check() -> None:
    documents = _documents_in(shopify_queries)
    assert documents == set(DOCUMENTS)
    assert {operation_name(d) for d in DOCUMENTS} == set(ShopifyFake.OPERATIONS)


def test_the_graphql_documents_live_apart_from_the_wire_models_and_the_mapping() -> None:
    assert _documents_in(shopify_transformers) == set()
    assert _documents_in(shopify_wire) == set()
    assert not [name for name, value in vars(shopify_queries).items()
                if isinstance(value, type) and issubclass(value, BaseModel)]


def test_every_document_the_connector_sends_is_accepted(shop: ShopifyFake) -> None:
    order_id = shop.add_order(LINES, paid="137.40")
    return_id = shop.add_return(order_id)
    refund_id = shop.add_external_refund(order_id, "5.00")
    first = post_graphql(shopify_queries.ORDER_QUERY, {"id": order_id})["data"]["order"]
    fulfillment = first["fulfillments"][0]
    sale = first["transactions"][0]
    variables = {
        shopify_queries.ORDER_QUERY: {"id": order_id},
        shopify_queries.ORDER_LINES_QUERY: {
            "id": order_id, "after": first["lineItems"]["pageInfo"]["endCursor"]},
        shopify_queries.FULFILLMENT_LINES_QUERY: {
            "id": fulfillment["id"],
            "after": fulfillment["fulfillmentLineItems"]["pageInfo"]["endCursor"]},
        shopify_queries.ORDER_REFUNDS_QUERY: {"id": order_id},
        shopify_queries.REFUND_QUERY: {"id": refund_id},
        shopify_queries.REFUND_CREATE: {"idempotencyKey": KEY, "input": {
            "orderId": order_id, "currency": "USD", "note": "n", "notify": False,
            "transactions": [{"orderId": order_id, "parentId": sale["id"], "kind": "REFUND",
                              "gateway": sale["gateway"], "amount": "1.00"}]}},
        shopify_queries.RETURN_QUERY: {"id": return_id},
        shopify_queries.RETURN_EXCHANGES_QUERY: {"id": return_id},
        shopify_queries.RETURN_APPROVE: {"input": {"id": return_id, "notifyCustomer": False}},
        shopify_queries.RETURN_DECLINE: {"input": {"id": return_id, "declineReason": "OTHER",
                                                   "notifyCustomer": False}},
    }
    assert set(variables) == set(DOCUMENTS)

    for document in DOCUMENTS:
        cost = query_cost(document, variables[document])
        answer = post_graphql(document, variables[document])

        assert cost <= MAX_QUERY_COST, operation_name(document)
        assert "errors" not in answer, (operation_name(document), answer)
        assert answer["extensions"]["cost"]["requestedQueryCost"] == cost


def test_the_fake_refuses_a_query_over_the_limit_as_shopify_does(shop: ShopifyFake) -> None:
    order_id = shop.add_order(LINES, paid="137.40")

    answer = post_graphql(EXPENSIVE_ORDER_QUERY, {"id": order_id})

    assert "data" not in answer  # refused before running, not run and cut short
    (error,) = answer["errors"]
    assert error["extensions"]["code"] == "MAX_COST_EXCEEDED"
    assert (error["extensions"]["cost"], error["extensions"]["maxCost"]) == (26308, 1000)
    assert error["message"].startswith(
        "Query cost is 26308, which exceeds the single query max cost limit (1000).")


def test_the_limit_is_inclusive(shop: ShopifyFake) -> None:
    order_id = shop.add_order()

    def lines(first: int) -> str:
        # order 1 + customer 1 + lineItems (2 + first × 1)
        return (f"query RefundBridgeOrder($id: ID!) {{ order(id: $id) {{ id customer {{ id }} "
                f"lineItems(first: {first}) {{ nodes {{ id }} }} }} }}")

    at_limit = post_graphql(lines(996), {"id": order_id})
    over = post_graphql(lines(997), {"id": order_id})

    assert "errors" not in at_limit and at_limit["extensions"]["cost"][
        "requestedQueryCost"] == 1000
    assert over["errors"][0]["extensions"] == {
        "code": "MAX_COST_EXCEEDED", "cost": 1001, "maxCost": 1000,
        "documentation": "https://shopify.dev/api/usage/rate-limits"}


def test_max_cost_exceeded_is_permanent_and_not_retried(shop: ShopifyFake,
                                                        connector: ShopifyConnector) -> None:
    # Sending the same query again costs the same: retrying cannot help.
    seen = fail_first(shop, "RefundBridgeOrder", ShopifyFake.max_cost_exceeded(1502))

    with pytest.raises(PermanentProviderError, match="exceeds the single query") as info:
        connector.lookup_order(shop.add_order())

    assert info.value.code == "MAX_COST_EXCEEDED"
    assert len(seen) == 1


def test_the_fake_answers_only_what_was_asked(shop: ShopifyFake) -> None:
    # So that a field the connector reads but forgot to ask for fails here, as on Shopify.
    order_id = shop.add_order(LINES, paid="137.40")

    answer = post_graphql("query RefundBridgeOrder($id: ID!) { order(id: $id) { id "
                          "lineItems(first: 1) { nodes { sku } } } }", {"id": order_id})

    assert answer["data"] == {"order": {"id": order_id, "lineItems": {"nodes": [
        {"sku": "GLU-METER-01"}]}}}


def test_an_order_with_many_lines_is_read_page_by_page(shop: ShopifyFake,
                                                       connector: ShopifyConnector) -> None:
    lines = [Line(f"STRIP-{n:03}", f"Test strips, lot {n}", 1, "1.00") for n in range(180)]
    order_id = shop.add_order(lines)

    snapshot = connector.lookup_order(order_id)

    assert [line.sku for line in snapshot.lines] == [line.sku for line in lines]
    assert snapshot.paid_total == Money.parse("180.00", "USD")
    pages = shop.bodies("RefundBridgeOrderLines")
    assert len(pages) == 2  # 50 with the order, then 100 and 30
    assert all(page["variables"]["id"] == order_id and page["variables"]["after"]
               for page in pages)
    assert pages[0]["variables"]["after"] != pages[1]["variables"]["after"]


def test_a_return_on_a_later_page_of_fulfillment_lines(shop: ShopifyFake,
                                                       connector: ShopifyConnector) -> None:
    # Twelve lines in one parcel: the returned one is on the second page of the parcel's
    # lines, which is where both the line and the delivery date are found.
    lines = [Line(f"SKU-{n:02}", f"Item {n}", 1, "10.00") for n in range(12)]
    order_id = shop.add_order(lines)
    raw = json.loads(shop.return_webhook(shop.add_return(order_id, [(11, 1, "DEFECTIVE")])))
    del raw["return_line_items"][0]["fulfillment_line_item"]["line_item"]
    body = json.dumps(raw).encode()

    event = delivered(connector, "returns/request", body)

    assert isinstance(event, RefundRequested)
    assert [(line.sku, line.quantity) for line in event.request.lines] == [("SKU-11", 1)]
    assert event.request.order.delivered_at == PLACED_AT + timedelta(days=3)
    (page,) = shop.bodies("RefundBridgeFulfillmentLines")
    assert page["variables"]["id"] == shop.orders[order_id]["fulfillments"][0]["id"]


def test_refund_status_reads_every_transaction(shop: ShopifyFake,
                                               connector: ShopifyConnector) -> None:
    order_id = shop.add_order(LINES, paid="137.40")
    refund_id = shop.add_external_refund(order_id, "1.00")
    nodes = shop.refunds[refund_id]["transactions"]["nodes"]
    nodes.extend({**nodes[0], "id": f"gid://shopify/OrderTransaction/{900 + n}"}
                 for n in range(59))
    nodes[55]["status"] = "FAILURE"  # on the second page

    result = connector.refund_status(refund_id, make_order(order_id))

    assert result.status is RefundStatus.FAILED
    assert (result.raw_status or "").count(",") == 59
    assert len(shop.bodies("RefundBridgeRefund")) == 2


def test_a_refund_over_many_payments_comes_back_whole(shop: ShopifyFake,
                                                      connector: ShopifyConnector) -> None:
    # Sixty instalments of 1.00: refunding all of it takes sixty refund transactions, more
    # than one page of refundCreate's answer.
    order_id = shop.add_order(LINES, paid="1.00")
    sale = shop.orders[order_id]["transactions"][0]
    shop.orders[order_id]["transactions"].extend(
        {**sale, "id": f"gid://shopify/OrderTransaction/{700 + n}", "kind": "CAPTURE"}
        for n in range(59))

    result = connector.issue_refund(make_order(order_id, amount="60.00"))

    assert result.status is RefundStatus.SUCCEEDED
    assert result.amount == Money.parse("60.00", "USD")
    assert result.raw_status == ",".join(["SUCCESS"] * 60)
    assert len(shop.bodies("RefundBridgeRefundCreate")) == 1
    assert [b["variables"]["id"] for b in shop.bodies("RefundBridgeRefund")] == [
        result.provider_ref]


@pytest.mark.parametrize(("what", "count"), [("transactions", 100), ("fulfillments", 20)])
def test_an_order_too_large_to_read_whole_is_refused_not_read_short(
        shop: ShopifyFake, connector: ShopifyConnector, what: str, count: int) -> None:
    order_id = shop.add_order(LINES, paid="137.40")
    order = shop.orders[order_id]
    template = order[what][0]
    order[what].extend({**template, "id": f"gid://shopify/Extra/{n}"}
                       for n in range(count - len(order[what])))

    with pytest.raises(PermanentProviderError, match=f"{count} or more {what}") as info:
        connector.issue_refund(make_order(order_id))

    assert info.value.code == "order_too_large"
    assert shop.bodies("RefundBridgeRefundCreate") == []
    order[what].pop()  # one fewer is read whole
    assert connector.lookup_order(order_id).order_id == order_id


def test_find_refund_says_none_only_when_it_saw_every_refund(
        shop: ShopifyFake, connector: ShopifyConnector) -> None:
    order_id = shop.add_order(LINES, paid="137.40")
    for _ in range(99):
        shop.add_external_refund(order_id, "0.01", note="store credit")
    assert connector.find_refund(make_order(order_id)) is None

    shop.add_external_refund(order_id, "0.01", note="store credit")  # the 100th

    with pytest.raises(PermanentProviderError, match="100 or more refunds") as info:
        connector.find_refund(make_order(order_id))
    assert info.value.code == "order_too_large"


def test_find_refund_reads_the_matching_refund_whole(shop: ShopifyFake,
                                                     connector: ShopifyConnector) -> None:
    order_id = shop.add_order(LINES, paid="137.40")
    mine = connector.issue_refund(make_order(order_id))

    found = connector.find_refund(make_order(order_id))

    assert found == mine
    (listed,) = shop.bodies("RefundBridgeOrderRefunds")
    assert listed["variables"] == {"id": order_id}
    assert [b["variables"]["id"] for b in shop.bodies("RefundBridgeRefund")] == [
        mine.provider_ref]


# ================================================================ status map


def refund_with(*statuses: str) -> GqlRefund:
    return GqlRefund.model_validate({
        "id": "gid://shopify/Refund/929361463", "note": None,
        "totalRefundedSet": {"presentmentMoney": {"amount": "25.0", "currencyCode": "USD"}},
        "transactions": {"nodes": [{
            "id": f"gid://shopify/OrderTransaction/{n}", "kind": "REFUND", "status": status,
            "gateway": "bogus", "parentTransaction": {"id": "gid://shopify/OrderTransaction/1"},
            "amountSet": {"presentmentMoney": {"amount": "25.0", "currencyCode": "USD"}},
        } for n, status in enumerate(statuses)]},
    })


@pytest.mark.parametrize(("raw", "expected"), [
    ("SUCCESS", RefundStatus.SUCCEEDED),
    ("PENDING", RefundStatus.PENDING),
    ("AWAITING_RESPONSE", RefundStatus.PENDING),
    ("FAILURE", RefundStatus.FAILED),
    ("ERROR", RefundStatus.FAILED),
    ("UNKNOWN", RefundStatus.UNKNOWN),
    ("success", RefundStatus.SUCCEEDED),  # the REST spelling in webhooks
    ("PARTIALLY_REVERSED", RefundStatus.UNKNOWN),  # not Shopify's (yet): never acted on
])
def test_status_map(raw: str, expected: RefundStatus) -> None:
    result = to_refund_result(refund_with(raw))

    assert result.status is expected
    assert result.raw_status == raw


@pytest.mark.parametrize(("statuses", "expected"), [
    ((RefundStatus.SUCCEEDED, RefundStatus.SUCCEEDED), RefundStatus.SUCCEEDED),
    ((RefundStatus.SUCCEEDED, RefundStatus.PENDING), RefundStatus.PENDING),
    ((RefundStatus.SUCCEEDED, RefundStatus.FAILED), RefundStatus.FAILED),
    ((RefundStatus.FAILED, RefundStatus.UNKNOWN), RefundStatus.UNKNOWN),
    ((), RefundStatus.UNKNOWN),
])
def test_one_status_for_several_transactions(statuses: tuple[RefundStatus, ...],
                                             expected: RefundStatus) -> None:
    assert combine_statuses(statuses) is expected


# ================================================================ write-back


def update(return_id: str, outcome: StatusOutcome, note: str = "") -> StatusUpdate:
    return StatusUpdate(case_id=CASE_ID, order_id="gid://shopify/Order/1",
                        external_id=return_id, outcome=outcome, note=note)


def test_approval_approves_the_return(shop: ShopifyFake, connector: ShopifyConnector) -> None:
    return_id = shop.add_return(shop.add_order())

    connector.write_back(update(return_id, StatusOutcome.APPROVED))

    assert [b["operationName"] for b in shop.bodies()] == [
        "RefundBridgeReturn", "RefundBridgeReturnApprove"]
    approve = shop.bodies("RefundBridgeReturnApprove")[0]
    assert "returnApproveRequest(input: $input)" in approve["query"]
    assert approve["variables"] == {"input": {"id": return_id, "notifyCustomer": False}}
    assert shop.returns[return_id]["status"] == "OPEN"


def test_approving_twice_is_harmless(shop: ShopifyFake, connector: ShopifyConnector) -> None:
    return_id = shop.add_return(shop.add_order())
    connector.write_back(update(return_id, StatusOutcome.APPROVED))

    connector.write_back(update(return_id, StatusOutcome.APPROVED))

    assert len(shop.bodies("RefundBridgeReturnApprove")) == 1


def test_decline_carries_reason_and_note(shop: ShopifyFake, connector: ShopifyConnector) -> None:
    return_id = shop.add_return(shop.add_order())

    connector.write_back(update(return_id, StatusOutcome.DECLINED,
                                note="Opened sterile packs cannot be taken back."))

    (decline,) = shop.bodies("RefundBridgeReturnDecline")
    assert "returnDeclineRequest(input: $input)" in decline["query"]
    assert decline["variables"] == {"input": {
        "id": return_id, "declineReason": "OTHER",
        "declineNote": "Opened sterile packs cannot be taken back.", "notifyCustomer": False}}
    assert shop.returns[return_id]["status"] == "DECLINED"


def test_declining_an_approved_return_is_permanent(shop: ShopifyFake,
                                                   connector: ShopifyConnector) -> None:
    return_id = shop.add_return(shop.add_order(), status="OPEN")

    with pytest.raises(PermanentProviderError, match="OPEN"):
        connector.write_back(update(return_id, StatusOutcome.DECLINED))
    assert shop.bodies("RefundBridgeReturnDecline") == []


def test_approval_that_lost_a_race_is_tolerated(shop: ShopifyFake,
                                                connector: ShopifyConnector) -> None:
    return_id = shop.add_return(shop.add_order())

    def someone_else_approves(request: httpx.Request, body: dict[str, Any]) -> None:
        if body["operationName"] == "RefundBridgeReturnApprove":
            shop.returns[return_id]["status"] = "OPEN"

    shop.before.append(someone_else_approves)

    connector.write_back(update(return_id, StatusOutcome.APPROVED))  # no error

    assert [b["operationName"] for b in shop.bodies()] == [
        "RefundBridgeReturn", "RefundBridgeReturnApprove", "RefundBridgeReturn"]


def test_approval_refused_for_another_reason_is_permanent(shop: ShopifyFake,
                                                          connector: ShopifyConnector) -> None:
    return_id = shop.add_return(shop.add_order())
    fail_first(shop, "RefundBridgeReturnApprove", httpx.Response(200, json={"data": {
        "returnApproveRequest": {"return": None, "userErrors": [{
            "field": ["input", "id"], "code": "INVALID",
            "message": "Return cannot be approved"}]}}}))

    with pytest.raises(PermanentProviderError, match="Return cannot be approved") as info:
        connector.write_back(update(return_id, StatusOutcome.APPROVED))

    assert info.value.code == "INVALID"


def test_refunded_needs_no_call(shop: ShopifyFake, connector: ShopifyConnector) -> None:
    return_id = shop.add_return(shop.add_order())

    connector.write_back(update(return_id, StatusOutcome.REFUNDED))

    assert shop.requests == []


def test_write_back_needs_a_return_id(shop: ShopifyFake, connector: ShopifyConnector) -> None:
    with pytest.raises(PermanentProviderError, match="not a Shopify return"):
        connector.write_back(update("ext-123", StatusOutcome.APPROVED))
    assert shop.requests == []


# ================================================================ contract and settings


def test_not_supported_flows_say_so(connector: ShopifyConnector) -> None:
    with pytest.raises(NotSupported) as info:
        connector.shipped_units("gid://shopify/Order/1")

    assert info.value.flow == Capability.SHIPPED_UNITS.value
    assert "shopify" in str(info.value)


def test_the_class_keeps_the_connector_contract() -> None:
    check_connector_class("shopify", ShopifyConnector)
    assert ConnectorRegistry.discover().load("shopify") is ShopifyConnector
    assert ShopifyConnector.capabilities == {
        Capability.RECEIVE_REQUESTS, Capability.LOOKUP_ORDER, Capability.WRITE_BACK,
        Capability.ISSUE_REFUND, Capability.REFUND_STATUS, Capability.REFUND_NOTIFICATIONS}


def test_constructing_opens_nothing() -> None:
    with respx.mock(assert_all_called=False) as router:
        route = router.route()
        make_connector()
    assert route.call_count == 0


def test_placeholder_secret_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        make_connector(client_secret="changeme")
    assert info.value.key == "shops.acme-medical.shopify.client_secret"


def test_shop_domain_must_be_the_myshopify_one() -> None:
    with pytest.raises(ConfigError) as info:
        make_connector(shop_domain="shop.acme-medical.com")
    assert info.value.key == "shops.acme-medical.shopify.shop_domain"


def test_api_version_is_pinned_in_the_path(shop: ShopifyFake) -> None:
    assert API_VERSION == "2026-01"
    with respx.mock(assert_all_called=False) as router:
        route = router.post(f"{BASE}/admin/api/2026-04/graphql.json").respond(
            200, json={"data": {"order": None}})
        with pytest.raises(PermanentProviderError):
            make_connector(api_version="2026-04").lookup_order("gid://shopify/Order/1")
    assert route.call_count == 1
