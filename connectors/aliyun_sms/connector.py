"""`AliyunSmsConnector`: the `notifier.sms` port for Aliyun SMS (阿里云短信, dysmsapi).

Sends are not idempotent (Aliyun says so: "不支持幂等"). So a retry after an answer that may
have come after the send (a 5xx, a timeout, a garbled answer) first asks `QuerySendDetails`
for a send to the number that day whose `OutId` is our message id, and sends again only if
there is none (`RetryPolicy.call_once`). The RAM user therefore needs both
`dysms:SendSms` and `dysms:QuerySendDetails`. A send shows up in `QuerySendDetails` a few
seconds after Aliyun took it, so a look-up right after a lost answer may still miss it: a
duplicate text is possible then, a lost one is not.

`isv.BUSINESS_LIMIT_CONTROL` (Aliyun's per-number limit, e.g. one a minute, five an hour,
ten a day per template) raises `SendDeferred` at once, never retried hot here: `retry_after`
is a minute, an hour, or until Beijing's midnight, after the limit Aliyun names.

Receipts (SmsReport) and replies (SmsUp) come by Aliyun's HTTP batch push, which signs
nothing: the URL configured in Aliyun's console ends in the shop's `callback_secret`, and
`parse_callback` refuses any other last path segment.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Final
from urllib.parse import unquote, urlsplit

from pydantic import BeforeValidator, Field, SecretStr, field_validator

from refundbridge.connectors.aliyun_sms.client import AliyunSmsClient
from refundbridge.connectors.aliyun_sms.transformers import (
    BEIJING,
    NAME,
    QUERY_ACTION,
    QUERY_MAX_PAGES,
    QUERY_PAGE_SIZE,
    SEND_ACTION,
    QueryAnswer,
    SendAnswer,
    SendDetail,
    Variable,
    aliyun_phone,
    best_match,
    found_receipt,
    parse_push,
    template_param,
)
from refundbridge.connectors.base import ClientConnector, ConnectorSettings, http_address
from refundbridge.core.errors import (
    PermanentProviderError,
    SendDeferred,
    TransientProviderError,
    WebhookRejected,
)
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

DEFAULT_REGION: Final = "cn-hangzhou"
# The kinds every shop must have an approved template for. The others (goods_received,
# refund_failed, and a recall campaign's recall_notice and recall_reminder) are optional:
# without a template, that SMS is refused for good with code `no_template` (shown on the
# message record; the email of the kind still goes).
REQUIRED_KINDS: Final = (NotificationKind.RECEIVED, NotificationKind.APPROVED,
                         NotificationKind.DENIED, NotificationKind.REFUNDED)
# dysmsapi's endpoints, as Alibaba Cloud's SDK (`alibabacloud_dysmsapi20170525.Client`) maps
# regions: these have their own, every other region is served centrally.
CENTRAL_HOST: Final = "dysmsapi.aliyuncs.com"
REGION_HOSTS: Final[Mapping[str, str]] = MappingProxyType({
    "ap-southeast-1": "dysmsapi.ap-southeast-1.aliyuncs.com",
    "ap-southeast-5": "dysmsapi.ap-southeast-5.aliyuncs.com",
    "cn-beijing": "dysmsapi-proxy.cn-beijing.aliyuncs.com",
    "cn-hongkong": "dysmsapi-xman.cn-hongkong.aliyuncs.com",
    "eu-central-1": "dysmsapi.eu-central-1.aliyuncs.com",
    "us-east-1": "dysmsapi.us-east-1.aliyuncs.com",
})
SECRET_SEGMENT: Final = re.compile(r"[A-Za-z0-9_-]{16,128}")


class TemplateSetting(ConnectorSettings):
    """One approved template: its code, and the variables it uses (all we have if unset)."""

    code: str = Field(pattern=r"^SMS_\d+$")
    params: tuple[Variable, ...] | None = None


def _code_alone(value: Any) -> Any:
    return {"code": value} if isinstance(value, str) else value


Template = Annotated[TemplateSetting, BeforeValidator(_code_alone)]


class AliyunSmsSettings(ConnectorSettings):
    access_key_id: str = Field(pattern=r"^\S+$")  # a RAM user's, with SendSms and
    access_key_secret: SecretStr  # QuerySendDetails only
    sign_name: str = Field(min_length=1)  # the approved 签名, without 【】
    # NotificationKind → template code ("SMS_154950909"), or {code, params}.
    templates: dict[NotificationKind, Template]
    # The last path segment of the receipt and reply URLs set in Aliyun's console.
    callback_secret: SecretStr
    region: str = Field(DEFAULT_REGION, pattern=r"^[a-z]{2,}(-[a-z0-9]+)+$")
    base_url: str | None = None  # default: the region's dysmsapi endpoint
    # The fixed link part of the approved templates; see transformers (`status_path`).
    status_url_prefix: str | None = None
    # The same for the recall templates' acknowledgement link (`ack_path`).
    ack_url_prefix: str | None = None

    @field_validator("access_key_id", "sign_name")
    @classmethod
    def _no_edge_spaces(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError("must not start or end with a space")
        return value

    @field_validator("templates")
    @classmethod
    def _every_kind(cls, value: dict[NotificationKind, TemplateSetting]
                    ) -> dict[NotificationKind, TemplateSetting]:
        missing = [kind.value for kind in REQUIRED_KINDS if kind not in value]
        if missing:
            raise ValueError(f"needs a template code for {', '.join(missing)}")
        return value

    @field_validator("callback_secret")
    @classmethod
    def _url_segment(cls, value: SecretStr) -> SecretStr:
        if not SECRET_SEGMENT.fullmatch(value.get_secret_value()):
            raise ValueError("must be 16 to 128 characters of A-Z a-z 0-9 - _ (it is the "
                             "last path segment of the callback URL)")
        return value

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return None if value is None else http_address(value, "dysmsapi endpoint's URL")

    @field_validator("status_url_prefix", "ack_url_prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be the start of the link, https://…")
        return value

    @property
    def endpoint(self) -> str:
        if self.base_url is not None:
            return self.base_url
        return f"https://{REGION_HOSTS.get(self.region, CENTRAL_HOST)}"


class AliyunSmsConnector(ClientConnector[AliyunSmsClient]):
    name: ClassVar[str] = NAME
    roles: ClassVar[frozenset[Role]] = frozenset({Role.NOTIFIER})
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.SEND_SMS})
    Settings: ClassVar[type[ConnectorSettings]] = AliyunSmsSettings
    # What Aliyun's HTTP batch push wants back; anything else and it pushes again.
    acknowledgement: ClassVar[WebhookAck] = WebhookAck(
        200, '{"code":0,"msg":"接收成功"}'.encode(), "application/json")

    settings: AliyunSmsSettings

    def build_client(self) -> AliyunSmsClient:
        return AliyunSmsClient(
            self.ctx, base_url=self.settings.endpoint,
            access_key_id=self.settings.access_key_id,
            access_key_secret=self.settings.access_key_secret.get_secret_value())

    # ---------------------------------------------------------------- SmsSender
    def send_params(self, message: OutgoingMessage) -> dict[str, str]:
        """SendSms' parameters for one message; raises `PermanentProviderError` for a
        message that cannot be sent (no number, no template for its kind)."""
        template = self.settings.templates.get(message.kind)
        if template is None:
            raise PermanentProviderError(
                NAME, f"no template for '{message.kind.value}' messages: set "
                      f"shops.{self.ctx.shop_id}.{NAME}.templates.{message.kind.value}",
                code="no_template")
        return {
            "PhoneNumbers": aliyun_phone(self._phone(message)),
            "SignName": self.settings.sign_name,
            "TemplateCode": template.code,
            "TemplateParam": template_param(message, template.params,
                                            self.settings.status_url_prefix,
                                            self.settings.ack_url_prefix),
            "OutId": message.message_id,
        }

    def send_sms(self, message: OutgoingMessage) -> SmsReceipt:
        params = self.send_params(message)
        first_day = self.ctx.clock().astimezone(UTC).date()

        def attempt() -> SmsReceipt | SendDeferred:
            try:
                answer = self.client.call(SEND_ACTION, params, SendAnswer, sends=True)
            except SendDeferred as deferred:
                return deferred  # out of the retry loop: deferring is not failing
            if not answer.BizId:
                raise TransientProviderError(NAME, f"{SEND_ACTION}: OK without a BizId "
                                                   f"(RequestId {answer.RequestId})")
            return SmsReceipt(answer.BizId, DeliveryState.QUEUED,
                              f"RequestId {answer.RequestId}")

        outcome = self.ctx.retry.call_once(attempt, lambda: self._look_up(message, first_day))
        if isinstance(outcome, SendDeferred):
            raise outcome
        return outcome

    def find_sms(self, message: OutgoingMessage, sent_on: date) -> SmsReceipt | None:
        """The send of this message, by OutId, among the number's sends of `sent_on` and
        the day after (`sent_on` read as a UTC date; Aliyun counts days in Beijing, up to
        eight hours ahead), days in the future left out."""
        return self.ctx.retry.call(lambda: self._find_once(message, sent_on))

    def parse_callback(self, url: str, headers: Mapping[str, str], body: bytes,
                       now: datetime) -> SmsCallback:
        segment = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
        expected = self.settings.callback_secret.get_secret_value()
        if not hmac.compare_digest(segment.encode("utf-8"), expected.encode("utf-8")):
            raise WebhookRejected(NAME, "the callback URL does not end in this shop's "
                                        "callback_secret")
        return parse_push(body)

    # ---------------------------------------------------------------- look-ups
    @staticmethod
    def _phone(message: OutgoingMessage) -> str:
        if not message.phone:
            raise PermanentProviderError(NAME, f"message {message.message_id} has no phone "
                                               "number", code="no_phone")
        return message.phone

    def _look_up(self, message: OutgoingMessage, sent_on: date) -> SmsReceipt | None:
        """`_find_once` before a retry of a send. A look-up that Aliyun refuses for good
        (a RAM user without QuerySendDetails) must not turn into a blind second send nor
        a failed message: it stays transient, and says why."""
        try:
            return self._find_once(message, sent_on)
        except PermanentProviderError as exc:
            raise TransientProviderError(NAME, "cannot look the send up before sending "
                                               f"again: {exc.message}") from exc

    def _find_once(self, message: OutgoingMessage, sent_on: date) -> SmsReceipt | None:
        phone = aliyun_phone(self._phone(message))
        today = self.ctx.clock().astimezone(BEIJING).date()
        details: list[SendDetail] = []
        for day in (sent_on, sent_on + timedelta(days=1)):
            if day <= today:
                details.extend(self._day_of_sends(phone, day))
        match = best_match(details, message.message_id)
        return None if match is None else found_receipt(match)

    def _day_of_sends(self, phone: str, day: date) -> list[SendDetail]:
        details: list[SendDetail] = []
        for page in range(1, QUERY_MAX_PAGES + 1):
            answer = self.client.call(QUERY_ACTION, {
                "PhoneNumber": phone, "SendDate": f"{day:%Y%m%d}",
                "PageSize": str(QUERY_PAGE_SIZE), "CurrentPage": str(page),
            }, QueryAnswer, sends=False)
            rows = answer.SmsSendDetailDTOs.SmsSendDetailDTO
            details.extend(rows)
            if not rows or page * QUERY_PAGE_SIZE >= answer.TotalCount:
                break
        return details
