"""`TwilioConnector`: the `SmsSender` port over Twilio's Programmable Messaging API.

Twilio keeps nothing of ours on a Message, so two things link a send back to our message:
its text (our body carries the case number and reads differently per kind: `find_sms`
matches number and text, see `transformers.is_our_send`), and its status callback URL, to
which we add `?message_id=<ours>` (Twilio posts to that URL and signs it, so every delivery
report names our message).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from itertools import islice
from typing import ClassVar, Final

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from refundbridge.connectors.base import ClientConnector, ConnectorSettings, http_address
from refundbridge.connectors.sms_text import SmsTextError, render_sms
from refundbridge.connectors.twilio import callbacks
from refundbridge.connectors.twilio.client import PAGE_SIZE, TwilioClient
from refundbridge.connectors.twilio.transformers import (
    BODY_MAX,
    DEFERRED_CODES,
    E164,
    callback_url,
    is_our_send,
    message_form,
    to_receipt,
)
from refundbridge.core.errors import PermanentProviderError, SendDeferred
from refundbridge.core.ports import (
    Capability,
    OutgoingMessage,
    Role,
    SmsCallback,
    SmsReceipt,
    WebhookAck,
)
from refundbridge.core.signals import QualityAlert

ACCOUNT_SID: Final = re.compile(r"^AC[0-9a-fA-F]{32}$")
API_KEY_SID: Final = re.compile(r"^SK[0-9a-fA-F]{32}$")
SERVICE_SID: Final = re.compile(r"^MG[0-9a-fA-F]{32}$")
# A sender Twilio takes as `From`: an E.164 number, a short code, or an alphanumeric
# sender ID (up to 11 letters, digits and spaces, at least one letter).
SENDER: Final = re.compile(r"^(\+[1-9]\d{6,14}|\d{5,6}|(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11})$")


class TwilioSettings(ConnectorSettings):
    account_sid: str
    auth_token: SecretStr  # also the key Twilio signs its callbacks with
    # Optional: authenticate the API calls with an API key instead of the Auth Token.
    api_key_sid: str | None = None
    api_key_secret: SecretStr | None = Field(default=None, validate_default=True)
    messaging_service_sid: str | None = None
    # Validated after messaging_service_sid: one of the two is needed.
    from_number: str | None = Field(default=None, validate_default=True)
    status_callback_url: str | None = None  # e.g. https://rb.example.com/webhooks/shop/twilio
    base_url: str = "https://api.twilio.com"

    @field_validator("account_sid")
    @classmethod
    def _account_sid(cls, value: str) -> str:
        if not ACCOUNT_SID.match(value):
            raise ValueError("must be the Account SID: AC and 32 hexadecimal digits")
        return value

    @field_validator("api_key_sid")
    @classmethod
    def _api_key_sid(cls, value: str | None) -> str | None:
        if value is not None and not API_KEY_SID.match(value):
            raise ValueError("must be an API key SID: SK and 32 hexadecimal digits")
        return value

    @field_validator("api_key_secret")
    @classmethod
    def _api_key_pair(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if "api_key_sid" in info.data and (info.data["api_key_sid"] is None) != (value is None):
            raise ValueError("api_key_sid and api_key_secret must be set together")
        return value

    @field_validator("from_number")
    @classmethod
    def _sender(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if "messaging_service_sid" in info.data and info.data["messaging_service_sid"] is None:
                raise ValueError("set from_number or messaging_service_sid: Twilio needs a "
                                 "sender")
            return None
        if not SENDER.match(value):
            raise ValueError("must be an E.164 number (+8613800138000), a short code or an "
                             "alphanumeric sender ID of up to 11 characters")
        return value

    @field_validator("messaging_service_sid")
    @classmethod
    def _service_sid(cls, value: str | None) -> str | None:
        if value is not None and not SERVICE_SID.match(value):
            raise ValueError("must be a Messaging Service SID: MG and 32 hexadecimal digits")
        return value

    @field_validator("status_callback_url")
    @classmethod
    def _callback(cls, value: str | None) -> str | None:
        return None if value is None else http_address(
            value, "full URL Twilio posts delivery reports to (https://…/webhooks/<shop>/twilio)")

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return http_address(value, "address of Twilio's API (https://api.twilio.com)")


class TwilioConnector(ClientConnector[TwilioClient]):
    """Sends the customer's SMS through Twilio and reads its status callbacks and replies."""

    name: ClassVar[str] = "twilio"
    roles: ClassVar[frozenset[Role]] = frozenset({Role.NOTIFIER})
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.SEND_SMS})
    Settings: ClassVar[type[ConnectorSettings]] = TwilioSettings
    # Empty TwiML: an inbound message is answered with no reply (Twilio's own STOP handling
    # sends its confirmation); a status callback takes any 2xx.
    acknowledgement: ClassVar[WebhookAck | None] = WebhookAck(
        200, b'<?xml version="1.0" encoding="UTF-8"?><Response></Response>', "text/xml")

    settings: TwilioSettings

    def build_client(self) -> TwilioClient:
        s = self.settings
        username, password = ((s.api_key_sid, s.api_key_secret)
                              if s.api_key_sid is not None and s.api_key_secret is not None
                              else (s.account_sid, s.auth_token))
        return TwilioClient(self.ctx, base_url=s.base_url, account_sid=s.account_sid,
                            username=username, password=password)

    def body(self, message: OutgoingMessage) -> str:
        """The text we send for `message`: the same message always reads the same, which is
        how `find_sms` recognises it."""
        try:
            text = render_sms(message.kind, message.locale, message.context).text
        except SmsTextError as exc:
            raise PermanentProviderError(
                self.name, f"case {message.case_id}, {message.kind.value}: {exc}",
                code="sms_text") from exc
        if len(text) > BODY_MAX:  # four segments are far shorter; kept as Twilio's own limit
            raise PermanentProviderError(self.name, f"body of {len(text)} characters is over "
                                                    f"Twilio's {BODY_MAX}", code="21617")
        return text

    def _phone(self, message: OutgoingMessage) -> str:
        if not message.phone or not E164.match(message.phone):
            raise PermanentProviderError(
                self.name, f"case {message.case_id}: no E.164 phone number to send the "
                           f"'{message.kind.value}' SMS to ({message.phone!r})",
                code="no_phone")
        return message.phone

    # ---------------------------------------------------------------- SmsSender
    def send_sms(self, message: OutgoingMessage) -> SmsReceipt:
        to, body = self._phone(message), self.body(message)
        s = self.settings
        form = message_form(to=to, body=body, from_number=s.from_number,
                            messaging_service_sid=s.messaging_service_sid,
                            status_callback=callback_url(s.status_callback_url, message.message_id)
                            if s.status_callback_url else None)
        try:
            # No idempotency key at Twilio: before another attempt, look for the first one
            # (a 5xx or a timeout may come after Twilio took the message).
            return self.ctx.retry.call_once(
                lambda: to_receipt(self.client.create_message(form)),
                lambda: self._find(to, body, self.ctx.clock().date()))
        except PermanentProviderError as exc:
            if exc.code in DEFERRED_CODES:
                # Outside the retry loop on purpose: "not now" must not be asked again at once.
                raise SendDeferred(self.name, exc.message) from exc
            raise

    def send_quality_sms(self, alert: QualityAlert) -> str:
        """A quality signal's SMS to the shop's quality contact: our own words
        (core/signals.py), found again by number and text before a second attempt."""
        if not alert.phone:
            raise PermanentProviderError(self.name, f"signal {alert.signal_id}: no phone "
                                                    "number", code="no_number")
        s = self.settings
        form = message_form(to=alert.phone, body=alert.sms_text, from_number=s.from_number,
                            messaging_service_sid=s.messaging_service_sid,
                            status_callback=None)
        receipt = self.ctx.retry.call_once(
            lambda: to_receipt(self.client.create_message(form)),
            lambda: self._find(alert.phone or "", alert.sms_text, self.ctx.clock().date()))
        return receipt.provider_id

    def find_sms(self, message: OutgoingMessage, sent_on: date) -> SmsReceipt | None:
        return self._find(self._phone(message), self.body(message), sent_on)

    def _find(self, to: str, body: str, sent_on: date) -> SmsReceipt | None:
        """Our send of `body` to `to`, matched on number and text (Twilio keeps nothing of
        ours on a Message; the text carries the case number and the kind).

        Twilio files a message under the day it left (`DateSent`, GMT) and leaves that
        empty while it is still queued; so a message not found on the day is looked for
        among the number's latest messages not sent yet.
        """
        for found in self.client.list_messages(to, sent_on):
            if is_our_send(found, to, body):
                return to_receipt(found)
        for found in islice(self.client.list_messages(to, None), PAGE_SIZE):
            if found.date_sent is None and is_our_send(found, to, body):
                return to_receipt(found)
        return None

    def parse_callback(self, url: str, headers: Mapping[str, str], body: bytes,
                       now: datetime) -> SmsCallback:
        return callbacks.parse(url, headers, body, self.settings.auth_token.get_secret_value(),
                               self.settings.account_sid, now)
