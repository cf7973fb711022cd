"""`StripeConnector`: the payment port and webhook receiver for Stripe."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import ClassVar

from pydantic import PositiveInt, SecretStr

from refundbridge.connectors.base import ConnectorSettings, PaymentConnector, header_value
from refundbridge.connectors.stripe import webhooks
from refundbridge.connectors.stripe.client import StripeClient
from refundbridge.connectors.stripe.transformers import (
    reference_field,
    refund_form,
    to_refund_result,
)
from refundbridge.core.model import RefundResult
from refundbridge.core.ports import RefundOrder, WebhookEvent


class StripeSettings(ConnectorSettings):
    api_key: SecretStr
    webhook_secret: SecretStr
    base_url: str = "https://api.stripe.com"
    api_version: str = "2024-06-20"
    tolerance_seconds: PositiveInt = 300


class StripeConnector(PaymentConnector[StripeClient]):
    name = "stripe"
    Settings: ClassVar[type[ConnectorSettings]] = StripeSettings

    settings: StripeSettings

    def build_client(self) -> StripeClient:
        return StripeClient(
            self.ctx,
            base_url=self.settings.base_url,
            api_key=self.settings.api_key,
            api_version=self.settings.api_version,
        )

    # ---------------------------------------------------------------- PaymentGateway
    def issue_refund(self, order: RefundOrder) -> RefundResult:
        refund = self.client.create_refund(refund_form(order), order.idempotency_key)
        return to_refund_result(refund)

    def find_refund(self, order: RefundOrder) -> RefundResult | None:
        # A worker that died mid-call asks here before calling again: the idempotency key we
        # stored in the refund's metadata is the only link back to that earlier call.
        field = reference_field(order.payment_reference)
        for refund in self.client.list_refunds(field, order.payment_reference):
            if refund.metadata.get("idempotency_key") == order.idempotency_key:
                return to_refund_result(refund)
        return None

    def refund_status(self, provider_ref: str, order: RefundOrder) -> RefundResult:
        return to_refund_result(self.client.get_refund(provider_ref))

    # ---------------------------------------------------------------- WebhookReceiver
    def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime
                      ) -> WebhookEvent:
        webhooks.verify(
            body,
            header_value(headers, webhooks.SIGNATURE_HEADER),
            self.settings.webhook_secret.get_secret_value(),
            self.settings.tolerance_seconds,
            now,
        )
        return webhooks.parse_event(body)
