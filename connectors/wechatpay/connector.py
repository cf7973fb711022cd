"""`WeChatPayConnector`: the payment port and notification receiver for WeChat Pay API v3."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, PositiveInt, SecretStr, ValidationInfo, field_validator

from refundbridge.connectors import rsa_signing
from refundbridge.connectors.base import ConnectorContext, ConnectorSettings, PaymentConnector
from refundbridge.connectors.rsa_signing import PrivateKeySetting, PublicKeySetting
from refundbridge.connectors.wechatpay import signing, webhooks
from refundbridge.connectors.wechatpay.client import WeChatPayClient
from refundbridge.connectors.wechatpay.transformers import encode, refund_body, to_refund_result
from refundbridge.core.model import RefundResult
from refundbridge.core.ports import RefundOrder, WebhookEvent


class WeChatPaySettings(ConnectorSettings):
    mchid: str = Field(pattern=r"^\d{1,32}$")
    merchant_serial_no: str = Field(pattern=r"^[0-9A-Fa-f]{1,64}$")
    merchant_private_key: PrivateKeySetting  # PEM (apiclient_key.pem)
    apiv3_key: SecretStr  # exactly 32 bytes
    # Public-key mode: WeChat Pay's public key and its id "PUB_KEY_ID_…".
    platform_public_key: PublicKeySetting | None = None
    platform_public_key_id: str | None = Field(default=None, pattern=r"^PUB_KEY_ID_\w+$",
                                               validate_default=True)
    # Platform-certificate mode: PEM certificates, matched by serial number.
    platform_certificates: tuple[str, ...] = Field(default=(), validate_default=True)
    # Where WeChat Pay posts refund results; unset, the merchant platform's setting.
    notify_url: str | None = None
    # What `payment_reference` holds: our order number at WeChat, or WeChat's own id.
    payment_reference: Literal["out_trade_no", "transaction_id"] = "out_trade_no"
    base_url: str = "https://api.mch.weixin.qq.com"
    tolerance_seconds: PositiveInt = 300

    @field_validator("apiv3_key")
    @classmethod
    def _apiv3_key(cls, value: SecretStr) -> SecretStr:
        signing.check_apiv3_key(value.get_secret_value())
        return value

    @field_validator("platform_public_key_id")
    @classmethod
    def _public_key_pair(cls, value: str | None, info: ValidationInfo) -> str | None:
        if "platform_public_key" not in info.data:
            return value  # the key itself failed; that error is reported
        if (value is None) != (info.data["platform_public_key"] is None):
            raise ValueError("platform_public_key and platform_public_key_id go together")
        return value

    @field_validator("platform_certificates")
    @classmethod
    def _certificates(cls, value: tuple[str, ...], info: ValidationInfo
                      ) -> tuple[str, ...]:
        signing.load_certificates(value)
        if not value and info.data.get("platform_public_key") is None:
            raise ValueError("set platform_public_key with platform_public_key_id, or "
                             "platform_certificates: WeChat Pay's signatures must be "
                             "verified")
        return value

    @field_validator("notify_url")
    @classmethod
    def _notify_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.netloc or parts.query or parts.fragment:
            raise ValueError("WeChat Pay needs an https URL without parameters")
        if len(value) > 256:
            raise ValueError("WeChat Pay takes at most 256 characters")
        return value


class WeChatPayConnector(PaymentConnector[WeChatPayClient]):
    name = "wechatpay"
    Settings: ClassVar[type[ConnectorSettings]] = WeChatPaySettings

    settings: WeChatPaySettings

    def __init__(self, settings: WeChatPaySettings, ctx: ConnectorContext) -> None:
        super().__init__(settings, ctx)
        # Parsed once here (validated already), so a bad key stops start-up, not a refund.
        self._private_key = rsa_signing.load_private_key(
            settings.merchant_private_key.get_secret_value())
        self._apiv3_key = signing.check_apiv3_key(settings.apiv3_key.get_secret_value())
        self.platform = signing.PlatformKeys(
            public_key_id=settings.platform_public_key_id,
            public_key=(rsa_signing.load_public_key(settings.platform_public_key)
                        if settings.platform_public_key is not None else None),
            certificates=signing.load_certificates(settings.platform_certificates),
        )

    def build_client(self) -> WeChatPayClient:
        return WeChatPayClient(
            self.ctx,
            base_url=self.settings.base_url,
            mchid=self.settings.mchid,
            serial_no=self.settings.merchant_serial_no,
            private_key=self._private_key,
            platform=self.platform,
            tolerance_seconds=self.settings.tolerance_seconds,
        )

    # ---------------------------------------------------------------- PaymentGateway
    def issue_refund(self, order: RefundOrder) -> RefundResult:
        body = encode(refund_body(order, notify_url=self.settings.notify_url,
                                  reference_field=self.settings.payment_reference))
        return to_refund_result(self.client.create_refund(body))

    def find_refund(self, order: RefundOrder) -> RefundResult | None:
        # out_refund_no is our idempotency key, so WeChat Pay can be asked for it directly.
        refund = self.client.find_refund(order.idempotency_key)
        return to_refund_result(refund) if refund is not None else None

    def refund_status(self, provider_ref: str, order: RefundOrder) -> RefundResult:
        # The query goes by out_refund_no; `provider_ref` (WeChat's refund_id) is not needed.
        return to_refund_result(self.client.get_refund(order.idempotency_key))

    # ---------------------------------------------------------------- WebhookReceiver
    def parse_webhook(self, headers: Mapping[str, str], body: bytes, now: datetime
                      ) -> WebhookEvent:
        webhooks.verify(headers, body, self.platform, self.settings.tolerance_seconds, now)
        return webhooks.parse_event(body, self._apiv3_key, self.settings.mchid)
