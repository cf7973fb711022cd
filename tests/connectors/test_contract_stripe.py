"""Stripe against the connector contract suite, with the Stripe fake and the SDK's signer."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, ClassVar

import httpx
import pytest
import stripe

from refundbridge.connectors.stripe import StripeConnector
from refundbridge.connectors.testing import Delivery, PaymentContract, WebhookContract
from tests.connectors.helpers import ContractFixtures
from tests.fakes.stripe import BASE, StripeFake

API_KEY = "sk_test_51ContractSuite0123456789abcdef"
WEBHOOK_SECRET = "whsec_7d1e4a9c2b8f0e3d6a5c1b9e8f7a2d4c"


def refund_event(refund: dict[str, Any]) -> bytes:
    return json.dumps({
        "id": "evt_1ContractSuite0001", "object": "event", "api_version": "2024-06-20",
        "created": int(time.time()), "livemode": False, "pending_webhooks": 1,
        "data": {"object": refund}, "type": "refund.updated",
    }).encode()


class TestStripeContract(ContractFixtures, PaymentContract, WebhookContract):
    CONNECTOR_CLASS = StripeConnector
    SETTINGS: ClassVar[dict[str, Any]] = {"api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET,
                                          "base_url": BASE}
    SIGNATURE_HEADERS = ("Stripe-Signature",)
    FRESHNESS_TOLERANCE = 300
    REFUND_URL = f"{BASE}/v1/refunds"

    # ------------------------------------------------------------ payment
    @pytest.fixture
    def fake(self) -> StripeFake:
        return StripeFake()

    @pytest.fixture
    def paid_refunds(self, fake: StripeFake) -> Callable[[], int]:
        return lambda: len(fake.paid())

    @pytest.fixture
    def idempotency_key_of(self) -> Callable[[httpx.Request], str | None]:
        def key(request: httpx.Request) -> str | None:
            return request.headers.get("Idempotency-Key") if request.method == "POST" else None
        return key

    @pytest.fixture
    def unknown_status_answer(self, fake: StripeFake) -> Callable[[str], str]:
        def answer(provider_ref: str) -> str:
            fake.refunds[provider_ref]["status"] = "in_review"
            return "in_review"
        return answer

    # ------------------------------------------------------------ webhooks
    @pytest.fixture
    def signed_delivery(self) -> Callable[..., Delivery]:
        def deliver(body: bytes | None = None, *, forged: bool = False) -> Delivery:
            if body is None:
                body = refund_event({
                    "id": "re_1ContractSuite0001", "object": "refund", "amount": 2500,
                    "currency": "cny", "status": "succeeded", "payment_intent": "pi_1Contract",
                    "metadata": {"case_id": "rc_contract0001",
                                 "idempotency_key": "rc_contract0001-refund-1"},
                })
            secret = "whsec_not_the_shops_secret_at_all" if forged else WEBHOOK_SECRET
            header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret)
            return {"Stripe-Signature": header, "Content-Type": "application/json"}, body
        return deliver
