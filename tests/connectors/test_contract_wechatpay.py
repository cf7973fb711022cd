"""WeChat Pay (API v3) against the connector contract suite, with the fake that checks our
request signatures and signs its answers, and REFUND.* notifications signed with the platform
key and sealed with the APIv3 key. The official `wechatpayv3` SDK accepts the notifications
used here, so the contract runs on the real protocol.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from wechatpayv3 import WeChatPay, WeChatPayType

from refundbridge.connectors.testing import Delivery, PaymentContract, WebhookContract
from refundbridge.connectors.wechatpay import WeChatPayConnector
from refundbridge.core.ports import RefundUpdate
from tests.connectors.helpers import ContractFixtures
from tests.fakes.wechatpay import BASE, REFUNDS, WeChatPayFake, WeChatPayKeys

KEY = "rc_contract0001-refund-1"  # the contract's default refund order's key


class TestWeChatPayContract(ContractFixtures, PaymentContract, WebhookContract):
    CONNECTOR_CLASS = WeChatPayConnector
    SIGNATURE_HEADERS = ("Wechatpay-Signature", "Wechatpay-Timestamp", "Wechatpay-Nonce",
                         "Wechatpay-Serial", "Wechatpay-Signature-Type")
    FRESHNESS_TOLERANCE = 300  # the default `tolerance_seconds`; WeChat's SDKs check no age
    REFUND_URL = f"{BASE}{REFUNDS}"

    @pytest.fixture
    def keys(self) -> WeChatPayKeys:
        return WeChatPayKeys.generate("contract")

    @pytest.fixture
    def connector_settings(self, keys: WeChatPayKeys) -> dict[str, Any]:
        return keys.connector_config()

    # ------------------------------------------------------------ payment
    @pytest.fixture
    def fake(self, keys: WeChatPayKeys) -> WeChatPayFake:
        return WeChatPayFake(keys)

    @pytest.fixture
    def idempotency_key_of(self) -> Callable[[httpx.Request], str | None]:
        def key(request: httpx.Request) -> str | None:
            if request.method != "POST":
                return None  # the refund query moves no money
            return str(json.loads(request.content)["out_refund_no"])
        return key

    @pytest.fixture
    def refusal(self, fake: WeChatPayFake) -> httpx.Response:
        # WeChat Pay's own refusal: {"code", "message"}, signed like every answer.
        return fake.error(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")

    @pytest.fixture
    def unknown_status_answer(self, fake: WeChatPayFake) -> Callable[[str], str]:
        def answer(provider_ref: str) -> str:
            [refund] = [r for r in fake.refunds.values() if r["refund_id"] == provider_ref]
            refund["status"] = "SUSPENDED"
            return "SUSPENDED"
        return answer

    @pytest.fixture
    def paid_refunds(self, fake: WeChatPayFake) -> Callable[[], int]:
        return lambda: len(fake.refunds)

    # ------------------------------------------------------------ notifications
    @pytest.fixture
    def signed_delivery(self, keys: WeChatPayKeys) -> Callable[..., Delivery]:
        # A forger with its own platform key, who knows which key id the merchant expects.
        forger = WeChatPayKeys.generate("contract-forger")
        _, notification, _ = keys.notification({
            "mchid": keys.mchid, "out_trade_no": "pay-contract-0001",
            "transaction_id": "4200000000202407011234567890", "out_refund_no": KEY,
            "refund_id": "50000000382019052709732678859", "refund_status": "SUCCESS",
            "success_time": "2024-07-01T20:00:05+08:00",
            "user_received_account": "招商银行信用卡0403",
            "amount": {"total": 8000, "refund": 2500, "payer_total": 8000, "payer_refund": 2500},
        }, event_id="EV-2018022511223320873")

        def deliver(body: bytes | None = None, *, forged: bool = False) -> Delivery:
            raw = notification if body is None else body
            headers = keys.sign_headers(raw)
            if forged:
                headers["Wechatpay-Signature"] = forger.sign_headers(
                    raw, int(headers["Wechatpay-Timestamp"]),
                    headers["Wechatpay-Nonce"])["Wechatpay-Signature"]
            return {"Content-Type": "application/json", **headers}, raw
        return deliver

    def test_the_official_sdk_accepts_the_delivery(
            self, keys: WeChatPayKeys, connector: WeChatPayConnector,
            signed_delivery: Callable[..., Delivery], webhook_now: datetime) -> None:
        # Guards the fixture: the contract's deliveries are what WeChat Pay really sends,
        # and what the connector makes of one is the refund update under our key.
        sdk = WeChatPay(wechatpay_type=WeChatPayType.NATIVE, mchid=keys.mchid,
                        private_key=keys.merchant_private_pem,
                        cert_serial_no=keys.merchant_serial_no, appid="wxd678efh567hg6787",
                        apiv3_key=keys.apiv3_key, public_key=keys.platform_public_pem,
                        public_key_id=keys.public_key_id)
        headers, body = signed_delivery()
        forged_headers, _ = signed_delivery(forged=True)

        accepted = sdk.callback(headers, body)

        assert accepted is not None and accepted["resource"]["out_refund_no"] == KEY
        assert sdk.callback(forged_headers, body) is None
        event = connector.parse_webhook(headers, body, webhook_now)
        assert isinstance(event, RefundUpdate) and event.idempotency_key == KEY
