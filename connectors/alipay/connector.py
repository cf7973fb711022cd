"""`AlipayConnector`: the payment port and notification receiver for Alipay (支付宝)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import cached_property
from typing import ClassVar

from cryptography.hazmat.primitives.asymmetric import rsa

from refundbridge.connectors import rsa_signing
from refundbridge.connectors.alipay import webhooks
from refundbridge.connectors.alipay.client import AlipayClient
from refundbridge.connectors.alipay.transformers import (
    ReferenceKind,
    queried_refund,
    query_biz_content,
    refund_biz_content,
    refund_not_seen,
    refund_paid,
)
from refundbridge.connectors.base import ConnectorSettings, PaymentConnector
from refundbridge.connectors.rsa_signing import PrivateKeySetting, PublicKeySetting
from refundbridge.core.model import RefundResult, RefundStatus
from refundbridge.core.ports import RefundOrder, WebhookAck, WebhookEvent


class AlipaySettings(ConnectorSettings):
    app_id: str
    app_private_key: PrivateKeySetting  # PEM (or the bare base64 Alipay's console shows)
    # Alipay's key, from the console, to check what Alipay signs
    alipay_public_key: PublicKeySetting
    gateway_url: str = "https://openapi.alipay.com/gateway.do"
    # Which field `RefundOrder.payment_reference` is; see `transformers.reference_field`.
    reference_kind: ReferenceKind = "auto"


class AlipayConnector(PaymentConnector[AlipayClient]):
    name = "alipay"
    Settings: ClassVar[type[ConnectorSettings]] = AlipaySettings
    # Alipay re-sends a notification until it reads exactly this.
    acknowledgement: ClassVar[WebhookAck] = WebhookAck(200, b"success", "text/plain")

    settings: AlipaySettings

    @cached_property
    def _alipay_key(self) -> rsa.RSAPublicKey:
        return rsa_signing.load_public_key(self.settings.alipay_public_key)

    def build_client(self) -> AlipayClient:
        return AlipayClient(
            self.ctx,
            gateway_url=self.settings.gateway_url,
            app_id=self.settings.app_id,
            app_private_key=rsa_signing.load_private_key(
                self.settings.app_private_key.get_secret_value()),
            alipay_public_key=self._alipay_key,
        )

    # ---------------------------------------------------------------- PaymentGateway
    def issue_refund(self, order: RefundOrder) -> RefundResult:
        answer = self.client.refund(refund_biz_content(order, self.settings.reference_kind))
        if answer.fund_change == "Y":
            return refund_paid(order)
        # "N" (or nothing): this call moved no money. Either Alipay paid the number before (a
        # retry after a lost answer, a re-run after a crash) or it has not paid it at all;
        # only the refund query tells which, as Alipay's documentation advises.
        found = self.find_refund(order)
        return found if found is not None else refund_not_seen(order)

    def find_refund(self, order: RefundOrder) -> RefundResult | None:
        answer = self.client.query_refund(query_biz_content(order, self.settings.reference_kind))
        return queried_refund(order, answer)

    def refund_status(self, provider_ref: str, order: RefundOrder) -> RefundResult:
        # Our provider_ref is the out_request_no, which is the order's idempotency key.
        found = self.find_refund(order)
        if found is not None:
            return found
        # We only hold a provider_ref once Alipay confirmed the refund; if it now reports none,
        # something is off: recorded for a person, never acted on (and never "failed", which
        # would let a second refund start).
        return RefundResult(RefundStatus.UNKNOWN, provider_ref,
                            message=f"Alipay reports no refund under {order.idempotency_key}")

    # ---------------------------------------------------------------- WebhookReceiver
    def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime
                      ) -> WebhookEvent:
        params = webhooks.parse_form(body)
        webhooks.verify(params, self._alipay_key)
        return webhooks.parse(params, self.settings.app_id)
