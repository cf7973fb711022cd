"""`sandbox_sms`: an SMS connector for the demo and tests. It keeps what it "sent" (the text
a real provider would carry), answers `find_sms` from that record like Aliyun's
`QuerySendDetails`, and, like the other sandbox connectors, adds latency and fails a share
of calls with a transient error. `deferred_rate` plays a provider's per-number limit
(`SendDeferred`), and `refuse_numbers` numbers a provider refuses for good.

Callbacks (`POST /webhooks/{shop}/sandbox_sms/callback`) are JSON,
`{"reports": [{"provider_id"|"message_id", "state", "error"}], "replies": [{"phone",
"text"}]}`, signed `X-Sandbox-Signature: hex(HMAC-SHA256(secret, url + body))`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, ClassVar

from pydantic import Field, SecretStr

from refundbridge.connectors.base import ConnectorContext, ConnectorSettings
from refundbridge.connectors.sandbox.connectors import SandboxSettings, _Sandbox
from refundbridge.connectors.sms_text import SmsTextError, render_sms
from refundbridge.core.errors import PermanentProviderError, SendDeferred, WebhookRejected
from refundbridge.core.ports import (
    Capability,
    DeliveryReport,
    DeliveryState,
    InboundSms,
    OutgoingMessage,
    Role,
    SmsCallback,
    SmsReceipt,
)
from refundbridge.core.signals import QualityAlert

SIGNATURE_HEADER = "x-sandbox-signature"


class SandboxSmsSettings(SandboxSettings):
    deferred_rate: float = Field(default=0.0, ge=0, le=1.0)
    refuse_numbers: list[str] = Field(default_factory=list)
    callback_secret: SecretStr = SecretStr("sandbox-sms-callback")


@dataclass(frozen=True, slots=True)
class SandboxSend:
    message: OutgoingMessage
    text: str
    provider_id: str
    sent_on: date


def sign_callback(secret: str, url: str, body: bytes) -> str:
    return hmac.new(secret.encode(), url.encode() + body, hashlib.sha256).hexdigest()


class SandboxSmsConnector(_Sandbox):
    name: ClassVar[str] = "sandbox_sms"
    roles: ClassVar[frozenset[Role]] = frozenset({Role.NOTIFIER})
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.SEND_SMS})
    Settings: ClassVar[type[ConnectorSettings]] = SandboxSmsSettings
    settings: SandboxSmsSettings

    def __init__(self, settings: SandboxSmsSettings, ctx: ConnectorContext) -> None:
        super().__init__(settings, ctx)
        self.sent: list[SandboxSend] = []  # every send, repeats included (a test counts)
        self.alerts: list[tuple[QualityAlert, str]] = []  # quality signals' SMS, repeats too
        self.calls = 0

    def send_sms(self, message: OutgoingMessage) -> SmsReceipt:
        if not message.phone:
            raise PermanentProviderError(self.name, f"message {message.message_id} has no "
                                                    "phone number", code="no_number")
        if message.phone in self.settings.refuse_numbers:
            raise PermanentProviderError(self.name, f"{message.phone}: number refused",
                                         code="refused")
        try:
            text = render_sms(message.kind, message.locale, message.context).text
        except SmsTextError as exc:
            raise PermanentProviderError(self.name, str(exc), code="text") from exc

        with self._lock:
            self.calls += 1
            limited = self._random.random() < self.settings.deferred_rate
        if limited:  # not retried here: a deferral waits for later, like Aliyun's limit
            raise SendDeferred(self.name, "sandbox: per-number limit", retry_after=60)

        def send() -> SmsReceipt:
            with self._lock:
                provider_id = f"SBX-SMS-{len(self.sent) + 1:06d}"
                self.sent.append(SandboxSend(message, text, provider_id,
                                             date.today()))
            return SmsReceipt(provider_id, DeliveryState.QUEUED)

        return self._call("send_sms", send)

    def send_quality_sms(self, alert: QualityAlert) -> str:
        """A quality signal's SMS to the quality contact (our own words, as Twilio sends)."""
        if not alert.phone:
            raise PermanentProviderError(self.name, f"signal {alert.signal_id}: no phone "
                                                    "number", code="no_number")

        def send() -> str:
            with self._lock:
                provider_id = f"SBX-SMS-{len(self.sent) + len(self.alerts) + 1:06d}"
                self.alerts.append((alert, provider_id))
            return provider_id

        return self._call("send_quality_sms", send)

    def find_sms(self, message: OutgoingMessage, sent_on: date) -> SmsReceipt | None:
        def find() -> SmsReceipt | None:
            with self._lock:
                found = [s for s in self.sent if s.message.message_id == message.message_id
                         and s.message.phone == message.phone]
            return SmsReceipt(found[-1].provider_id, DeliveryState.SENT) if found else None

        return self._call("find_sms", find)

    def parse_callback(self, url: str, headers: Mapping[str, str], body: bytes,
                       now: datetime) -> SmsCallback:
        given = {k.lower(): v for k, v in headers.items()}.get(SIGNATURE_HEADER, "")
        expected = sign_callback(self.settings.callback_secret.get_secret_value(), url, body)
        if not hmac.compare_digest(given, expected):
            raise WebhookRejected(self.name, "bad or missing X-Sandbox-Signature")
        try:
            data: dict[str, Any] = json.loads(body)
            reports = tuple(
                DeliveryReport(provider_id=r.get("provider_id"),
                               message_id=r.get("message_id"), phone=r.get("phone"),
                               state=DeliveryState(r["state"]), error=r.get("error", ""),
                               at=now)
                for r in data.get("reports", ()))
            replies = tuple(InboundSms(str(r["phone"]), str(r["text"]), now)
                            for r in data.get("replies", ()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise WebhookRejected(self.name, f"not a sandbox SMS callback: {exc}") from exc
        return SmsCallback(reports, replies)
