"""WooCommerce against the connector contract suite, with the REST API v3 fake and webhook
deliveries built as `WC_Webhook::deliver` builds them (PHP's JSON, base64 HMAC-SHA256).

WooCommerce keeps no idempotency key: the connector carries the key in the refund's meta
data (and reason) and looks for it before posting, so that is where the contract reads it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, ClassVar

import httpx
import pytest
import respx

from refundbridge.connectors.testing import Delivery, PaymentContract, WebhookContract, route_for
from refundbridge.connectors.woocommerce import WooCommerceConnector
from refundbridge.connectors.woocommerce.transformers import META_IDEMPOTENCY_KEY
from refundbridge.core.money import Money
from refundbridge.core.ports import RefundOrder
from refundbridge.core.request import ReasonCode
from tests.connectors.helpers import ContractFixtures
from tests.fakes.woocommerce import (
    API,
    BASE,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    WEBHOOK_SECRET,
    Line,
    WooCommerceFake,
    delivery,
)

OTHER_SECRET = "another shop's webhook secret, 0123"
CASE_ID = "rc_contract0001"
KEY = f"{CASE_ID}-refund-1"
REQUEST_META = {
    "_refund_reason_code": "defective",
    "_refund_reason": "血糖仪屏幕不亮 – display stays blank, see https://shop.example/x/1.jpg",
    "_refund_requested_at": "2024-06-28T07:15:00",
    "_refund_request_kind": "return_and_refund",
}


class TestWooCommerceContract(ContractFixtures, PaymentContract,
                              WebhookContract):
    CONNECTOR_CLASS = WooCommerceConnector
    SETTINGS: ClassVar[dict[str, Any]] = {
        "base_url": BASE, "consumer_key": CONSUMER_KEY, "consumer_secret": CONSUMER_SECRET,
        "webhook_secret": WEBHOOK_SECRET}
    SIGNATURE_HEADERS = ("X-WC-Webhook-Signature",)

    @pytest.fixture
    def fake(self) -> WooCommerceFake:
        return WooCommerceFake()

    @pytest.fixture
    def shop_order(self, fake: WooCommerceFake) -> dict[str, Any]:
        """A CNY 80.00 order whose customer has asked for a refund."""
        return fake.add_order(
            [Line("GLU-METER-01", "血糖仪 Glucose meter / Set", 2, "80.00",
                  meta={"_rb_lot": "L2405A", "_rb_device_class": "IIb"})],
            status="refund-requested", currency="CNY", meta=REQUEST_META)

    # ------------------------------------------------------------ payment
    @pytest.fixture
    def refund_order(self, shop_order: dict[str, Any]) -> RefundOrder:
        # WooCommerce refunds an order by its numeric id; the gateway's id is for reference.
        return RefundOrder(
            case_id=CASE_ID, attempt=1, idempotency_key=KEY,
            amount=Money.parse("25.00", "CNY"), payment_reference=shop_order["transaction_id"],
            order_id=str(shop_order["id"]), reason=ReasonCode.DEFECTIVE,
            paid_total=Money.parse("80.00", "CNY"),
        )

    @pytest.fixture
    def refund_route(self, router: respx.MockRouter, shop_order: dict[str, Any]
                     ) -> respx.Route:
        return route_for(router, "POST", f"{API}/orders/{shop_order['id']}/refunds")

    @pytest.fixture
    def idempotency_key_of(self) -> Callable[[httpx.Request], str | None]:
        def key(request: httpx.Request) -> str | None:
            if request.method != "POST" or not request.url.path.endswith("/refunds"):
                return None
            meta = {m["key"]: m["value"] for m in json.loads(request.content)["meta_data"]}
            return str(meta[META_IDEMPOTENCY_KEY])
        return key

    @pytest.fixture
    def refusal(self) -> httpx.Response:
        # `wc_create_refund()` failing (the gateway said no): HTTP 500 with this code, which
        # the connector must read as a refusal although `send()` files 5xx as transient.
        return httpx.Response(500, json={
            "code": "woocommerce_rest_cannot_create_order_refund",
            "message": "The card issuer declined the refund.", "data": {"status": 500}})

    @pytest.fixture
    def unknown_status_answer(self, fake: WooCommerceFake) -> Callable[[str], str]:
        def answer(provider_ref: str) -> str:
            fake.refunds[int(provider_ref)]["refunded_payment"] = "partial"
            return "refunded_payment='partial'"
        return answer

    @pytest.fixture
    def paid_refunds(self, fake: WooCommerceFake) -> Callable[[], int]:
        # Every refund the shop holds: WooCommerce would pay each through the gateway.
        return lambda: len(fake.refunds)

    # ------------------------------------------------------------ webhooks
    @pytest.fixture
    def signed_delivery(self, shop_order: dict[str, Any]) -> Callable[..., Delivery]:
        def deliver(body: bytes | None = None, *, forged: bool = False) -> Delivery:
            secret = OTHER_SECRET if forged else WEBHOOK_SECRET
            if body is None:
                return delivery(shop_order, "order.updated", secret)
            return delivery(None, "order.updated", secret, body=body)
        return deliver
