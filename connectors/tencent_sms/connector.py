"""`TencentSmsConnector`: the `notifier.sms` port over Tencent Cloud SMS (腾讯云短信).

Tencent's `SendSms` is not idempotent: a repeated call sends a second SMS. So a send is
repeated only after an error, and before each repeat `PullSmsSendStatusByPhoneNumber` is
asked whether the earlier attempt went out, matched on `SessionContext` (our message id).
Tencent echoes `SessionContext` in that answer only where it has switched the feature on
for the account, and lists a send only once its delivery report is in: where it cannot be
matched, `find_sms` answers None (sending again risks a duplicate SMS, never a silence).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Any, ClassVar, Final

from pydantic import BeforeValidator, Field, SecretStr, field_validator

from refundbridge.connectors.base import ClientConnector, ConnectorSettings, http_address
from refundbridge.connectors.tencent_sms import callbacks
from refundbridge.connectors.tencent_sms.client import TencentRefusal, TencentSmsClient, raise_for
from refundbridge.connectors.tencent_sms.transformers import (
    DEFAULT_PARAMS,
    DEFERRALS,
    MAINLAND,
    NAME,
    PULL_BY_NUMBER,
    SEND,
    ApiError,
    MessageProblem,
    PullAnswer,
    PullStatus,
    SendSmsAnswer,
    TemplateParam,
    defer_seconds,
    pull_body,
    pull_window,
    send_body,
    session_context,
    template_params,
)
from refundbridge.core.errors import PermanentProviderError, SendDeferred
from refundbridge.core.model import NotificationKind
from refundbridge.core.ports import (
    Capability,
    DeliveryState,
    OutgoingMessage,
    Role,
    SmsCallback,
    SmsReceipt,
    WebhookAck,
)

log = logging.getLogger(__name__)

E164: Final = re.compile(r"^\+[1-9]\d{6,14}$")
PULL_STATES: Final = {"SUCCESS": DeliveryState.DELIVERED, "FAIL": DeliveryState.FAILED}


class TemplateSetting(ConnectorSettings):
    """One approved template: its id and the variables `{1}`, `{2}`… in order."""

    id: str = Field(pattern=r"^\d{1,20}$")
    params: tuple[TemplateParam, ...] | None = None  # None: DEFAULT_PARAMS for the kind


def _template(value: Any) -> Any:
    # `received = "1234567"` is short for `received = {id = "1234567"}`.
    return {"id": str(value)} if isinstance(value, str | int) else value


Templates = dict[NotificationKind, Annotated[TemplateSetting, BeforeValidator(_template)]]


class TencentSmsSettings(ConnectorSettings):
    secret_id: str = Field(pattern=r"^AKID[0-9A-Za-z]{8,64}$")  # 云 API 密钥 SecretId
    secret_key: SecretStr
    sdk_app_id: str = Field(pattern=r"^\d{6,20}$")  # 短信 SdkAppId, e.g. 1400006666
    # The approved signature, without 【】 ("签名只能由中英文、数字组成，要求2 - 12个字").
    sign_name: str = Field(pattern=r"^[0-9A-Za-z\u4e00-\u9fff]{2,12}$")
    templates: Templates = Field(min_length=1)  # domestic (+86) templates by kind
    # Numbers outside mainland China need 国际/港澳台 templates; none set, they are refused.
    global_templates: Templates = Field(default_factory=dict)
    global_sign_name: str | None = None  # optional abroad
    region: str = Field(default="ap-guangzhou", pattern=r"^[a-z]{2}-[a-z]+(-\d+)?$")
    base_url: str = "https://sms.tencentcloudapi.com"
    # The last path segment of the callback URL set in Tencent's console.
    callback_secret: SecretStr | None = None
    # Characters per template variable: 6 on accounts opened since 2024-01-25; the
    # console shows an account's own limit.
    max_param_length: int = Field(default=6, ge=1, le=200)

    @field_validator("templates", "global_templates", mode="before")
    @classmethod
    def _kinds(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            kinds = [k.value for k in NotificationKind]
            unknown = sorted(str(key) for key in value if key not in kinds)
            if unknown:
                raise ValueError(f"{', '.join(unknown)}: not a message kind (the kinds are "
                                 f"{', '.join(kinds)})")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return http_address(value, "API address, e.g. https://sms.tencentcloudapi.com")

    @field_validator("callback_secret")
    @classmethod
    def _callback_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9._~-]{16,128}",
                                                  value.get_secret_value()):
            raise ValueError("must be 16 to 128 URL-safe characters (letters, digits, . _ ~ -)")
        return value


class TencentSmsConnector(ClientConnector[TencentSmsClient]):
    name: ClassVar[str] = NAME
    roles: ClassVar[frozenset[Role]] = frozenset({Role.NOTIFIER})
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.SEND_SMS})
    Settings: ClassVar[type[ConnectorSettings]] = TencentSmsSettings
    acknowledgement: ClassVar[WebhookAck | None] = WebhookAck(
        200, callbacks.ACKNOWLEDGEMENT, "application/json")

    settings: TencentSmsSettings

    def build_client(self) -> TencentSmsClient:
        s = self.settings
        return TencentSmsClient(self.ctx, base_url=s.base_url, secret_id=s.secret_id,
                                secret_key=s.secret_key, region=s.region)

    # ---------------------------------------------------------------- SmsSender
    def send_sms(self, message: OutgoingMessage) -> SmsReceipt:
        body = self._send_body(message)
        try:
            return self.ctx.retry.call_once(lambda: self._send_once(body),
                                            lambda: self._sent_before(message))
        except TencentRefusal as exc:
            if exc.code is not None and exc.code in DEFERRALS:
                wait = defer_seconds(exc.code, self.ctx.clock())
                raise SendDeferred(NAME, f"{exc.message}; Tencent holds the number back, try "
                                         f"again in {wait:.0f} s", retry_after=wait) from exc
            raise

    def find_sms(self, message: OutgoingMessage, sent_on: date) -> SmsReceipt | None:
        phone = self._phone(message)
        try:
            begin, end = pull_window(sent_on, self.ctx.clock())
        except MessageProblem as exc:
            raise PermanentProviderError(NAME, str(exc), code="status_expired") from exc
        body = pull_body(phone=phone, sdk_app_id=self.settings.sdk_app_id, begin=begin, end=end)
        answer = self.ctx.retry.call(lambda: self.client.call(PULL_BY_NUMBER, body, PullAnswer))
        ours = [s for s in answer.PullSmsSendStatusSet if s.SessionContext == message.message_id]
        if not ours:
            if any(not s.SessionContext for s in answer.PullSmsSendStatusSet):
                log.warning("%s: %d sends to %s without SessionContext: Tencent does not echo "
                            "it for this account, so message %s cannot be told apart", NAME,
                            len(answer.PullSmsSendStatusSet), phone[:-4] + "****",
                            message.message_id)
            return None
        return _pulled_receipt(max(ours, key=lambda s: s.UserReceiveTime or 0))

    def parse_callback(self, url: str, headers: Mapping[str, str], body: bytes,
                       now: datetime) -> SmsCallback:
        secret = self.settings.callback_secret
        callbacks.check_secret(url, secret.get_secret_value() if secret else None)
        return callbacks.parse(body)

    # ---------------------------------------------------------------- helpers
    def _send_once(self, body: Mapping[str, Any]) -> SmsReceipt:
        answer = self.client.call(SEND, body, SendSmsAnswer)
        if len(answer.SendStatusSet) != 1:
            raise PermanentProviderError(
                NAME, f"SendSms answered {len(answer.SendStatusSet)} statuses for one number "
                      f"(RequestId {answer.RequestId})", code="invalid_response")
        status = answer.SendStatusSet[0]
        if status.Code != "Ok":
            raise_for(ApiError(Code=status.Code, Message=status.Message), answer.RequestId)
        if not status.SerialNo:
            raise PermanentProviderError(NAME, f"SendSms said Ok without a SerialNo (RequestId "
                                               f"{answer.RequestId})", code="invalid_response")
        return SmsReceipt(provider_id=status.SerialNo, state=DeliveryState.QUEUED,
                          detail=f"Ok, fee {status.Fee}, {status.IsoCode or 'DEF'}")

    def _sent_before(self, message: OutgoingMessage) -> SmsReceipt | None:
        """Before a repeat: did the failed attempt go out after all? A lookup Tencent
        refuses (a sub-account without the Pull permission, say) does not stop the repeat."""
        try:
            return self.find_sms(message, self.ctx.clock().astimezone(UTC).date())
        except PermanentProviderError as exc:
            log.warning("%s: could not look message %s up before sending again: %s", NAME,
                        message.message_id, exc)
            return None

    def _phone(self, message: OutgoingMessage) -> str:
        if not message.phone or not E164.fullmatch(message.phone):
            raise PermanentProviderError(
                NAME, f"case {message.case_id}: no E.164 phone number to send the "
                      f"'{message.kind.value}' SMS to", code="invalid_phone")
        return message.phone

    def _send_body(self, message: OutgoingMessage) -> dict[str, Any]:
        s = self.settings
        phone = self._phone(message)
        mainland = phone.startswith(MAINLAND)
        template = (s.templates if mainland else s.global_templates).get(message.kind)
        if template is None:
            where = "templates" if mainland else "global_templates (numbers outside +86)"
            raise PermanentProviderError(
                NAME, f"case {message.case_id}: no Tencent template for "
                      f"'{message.kind.value}' in {where}", code="no_template")
        try:
            # `params = []` is a template without variables, not "the default"
            params = template_params(message, DEFAULT_PARAMS[message.kind]
                                     if template.params is None else template.params,
                                     s.max_param_length)
            session = session_context(message)
        except MessageProblem as exc:
            raise PermanentProviderError(
                NAME, f"case {message.case_id}, {message.kind.value}: {exc}",
                code="invalid_message") from exc
        return send_body(phone=phone, sdk_app_id=s.sdk_app_id,
                         sign_name=s.sign_name if mainland else s.global_sign_name,
                         template_id=template.id, params=params, session=session)


def _pulled_receipt(status: PullStatus) -> SmsReceipt:
    state = PULL_STATES.get(status.ReportStatus)
    if state is None:
        log.warning("%s: unknown ReportStatus %r", NAME, status.ReportStatus)
        state = DeliveryState.SENT
    return SmsReceipt(provider_id=status.SerialNo, state=state,
                      detail=f"{status.ReportStatus} {status.Description}".strip())
