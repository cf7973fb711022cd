"""Shopify against the connector contract suite, with the Admin GraphQL fake and webhooks
signed as Shopify signs them (base64 HMAC-SHA256 of the raw body with the app's secret).

Shopify takes two kinds of webhook the contract applies to: `returns/request` (a storefront
asking for a refund) and `refunds/create` for a refund RefundBridge made (a payment
notification). Each runs the webhook contract; the payment contract runs once, with the
first class.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

import httpx
import pytest
import respx

from refundbridge.connectors.shopify import ShopifyConnector
from refundbridge.connectors.testing import Delivery, PaymentContract, WebhookContract
from refundbridge.core.money import Money
from refundbridge.core.ports import RefundOrder, RefundUpdate
from refundbridge.core.request import ReasonCode
from tests.connectors.helpers import ContractFixtures
from tests.fakes.shopify import (
    ACCESS_TOKEN,
    BASE,
    CLIENT_SECRET,
    GRAPHQL_PATH,
    SHOP_DOMAIN,
    Line,
    ShopifyFake,
    webhook_headers,
)

GRAPHQL_URL = f"{BASE}{GRAPHQL_PATH}"
OTHER_SECRET = "shpss_" + "0123456789abcdef0123456789abcdef"  # another app's secret
CASE_ID = "rc_contract0001"
KEY = f"{CASE_ID}-refund-1"
REFUND_CREATE = "RefundBridgeRefundCreate"


class ShopifyFixtures(ContractFixtures):
    """What both Shopify contract classes share: the connector, its settings and the fake."""

    CONNECTOR_CLASS = ShopifyConnector
    SETTINGS: ClassVar[dict[str, Any]] = {"shop_domain": SHOP_DOMAIN,
                                          "access_token": ACCESS_TOKEN,
                                          "client_secret": CLIENT_SECRET}
    SIGNATURE_HEADERS = ("X-Shopify-Hmac-Sha256",)

    @pytest.fixture
    def fake(self) -> ShopifyFake:
        return ShopifyFake()

    @pytest.fixture
    def shop_order(self, fake: ShopifyFake) -> str:
        """A CNY 80.00 order, paid by one sale: the contract's default amounts."""
        return fake.add_order([Line("GLU-METER-01", "血糖仪 Glucose meter", 2, "40.00")],
                              currency="CNY")

    @staticmethod
    def sign(topic: str, body: bytes, forged: bool) -> Delivery:
        return webhook_headers(topic, body, secret=OTHER_SECRET if forged else CLIENT_SECRET,
                               webhook_id="b54557e4-bdd9-4b37-8a5f-contract"), body


class TestShopifyContract(ShopifyFixtures, PaymentContract, WebhookContract):
    """Payment through `refundCreate`, and `returns/request` webhooks opening cases."""

    REFUND_URL = GRAPHQL_URL  # GraphQL: every operation goes there; only refundCreate pays

    # ------------------------------------------------------------ payment
    @pytest.fixture
    def refund_order(self, shop_order: str) -> RefundOrder:
        # Shopify refunds an order: the payment reference is the order's GID.
        return RefundOrder(
            case_id=CASE_ID, attempt=1, idempotency_key=KEY,
            amount=Money.parse("25.00", "CNY"), payment_reference=shop_order,
            order_id=shop_order, reason=ReasonCode.DEFECTIVE,
            paid_total=Money.parse("80.00", "CNY"),
        )

    @pytest.fixture
    def idempotency_key_of(self) -> Callable[[httpx.Request], str | None]:
        def key(request: httpx.Request) -> str | None:
            body = json.loads(request.content)
            if body.get("operationName") != REFUND_CREATE:
                return None
            return str(body["variables"]["idempotencyKey"])
        return key

    @pytest.fixture
    def refusal(self) -> httpx.Response:
        # Shopify refuses a mutation with HTTP 200 and `userErrors`, not with a 4xx.
        return httpx.Response(200, json={"data": {"refundCreate": {"refund": None,
                                                                   "userErrors": [{
            "field": ["transactions", "0", "amount"],
            "message": "Refund amount must be less than or equal to 0.0"}]}}})

    @pytest.fixture
    def unknown_status_answer(self, fake: ShopifyFake) -> Callable[[str], str]:
        def answer(provider_ref: str) -> str:
            for tx in fake.refunds[provider_ref]["transactions"]["nodes"]:
                tx["status"] = "REVERSED_BY_ISSUER"
            return "REVERSED_BY_ISSUER"
        return answer

    @pytest.fixture
    def paid_refunds(self, fake: ShopifyFake) -> Callable[[], int]:
        return lambda: len(fake.paid())

    def test_same_order_twice_over_several_payments_answers_the_same_refund(
            self, connector: ShopifyConnector, fake: ShopifyFake, router: respx.MockRouter,
            refund_order: RefundOrder) -> None:
        # The contract's "same order twice", where it is hardest for Shopify: the order was
        # paid by a sale and a capture, so after the first refund the split worked out again
        # differs, and Shopify refuses the key with other input.
        sale = fake.orders[refund_order.order_id]["transactions"][0]
        sale["amountSet"]["presentmentMoney"]["amount"] = "30.0"
        fake.orders[refund_order.order_id]["transactions"].append({
            **sale, "id": "gid://shopify/OrderTransaction/77", "kind": "CAPTURE",
            "amountSet": {"presentmentMoney": {"amount": "50.0", "currencyCode": "CNY"}}})

        first = connector.issue_refund(refund_order)
        again = connector.issue_refund(refund_order)

        assert first.provider_ref and again.provider_ref == first.provider_ref
        assert len(fake.paid()) == 1
        assert set(fake.keys_posted()) == {KEY}

    # ------------------------------------------------------------ webhooks
    @pytest.fixture
    def signed_delivery(self, fake: ShopifyFake, router: respx.MockRouter, shop_order: str
                        ) -> Callable[..., Delivery]:
        # `router` is active while the webhook tests run: a return request is completed
        # with the order, read from the Admin API.
        return_body = fake.return_webhook(fake.add_return(shop_order))

        def deliver(body: bytes | None = None, *, forged: bool = False) -> Delivery:
            return self.sign("returns/request", return_body if body is None else body,
                             forged)
        return deliver


class TestShopifyRefundNotificationContract(ShopifyFixtures, WebhookContract):
    """`refunds/create` for a refund RefundBridge made: the payment notification."""

    @pytest.fixture
    def signed_delivery(self, fake: ShopifyFake, router: respx.MockRouter, shop_order: str,
                        connector: ShopifyConnector) -> Callable[..., Delivery]:
        order = RefundOrder(
            case_id=CASE_ID, attempt=1, idempotency_key=KEY,
            amount=Money.parse("25.00", "CNY"), payment_reference=shop_order,
            order_id=shop_order, reason=ReasonCode.DEFECTIVE,
            paid_total=Money.parse("80.00", "CNY"))
        refund_body = fake.refund_webhook(connector.issue_refund(order).provider_ref or "")

        def deliver(body: bytes | None = None, *, forged: bool = False) -> Delivery:
            return self.sign("refunds/create", refund_body if body is None else body, forged)
        return deliver

    def test_notification_is_a_refund_update_under_the_key(
            self, connector: ShopifyConnector, signed_delivery: Callable[..., Delivery],
            webhook_now: datetime) -> None:
        # Guards the fixture: the delivery above must be the notification, not an outside
        # refund or an ignored topic, for this class to test what it claims to.
        headers, body = signed_delivery()

        event = connector.parse_webhook(headers, body, webhook_now)

        assert isinstance(event, RefundUpdate)
        assert (event.idempotency_key, event.case_id) == (KEY, CASE_ID)
