"""Aliyun SMS's wire format (dysmsapi 2017-05-25) and its mapping to and from the core.

No I/O here: `client.py` sends what these functions build; the connector reads the answers
with these models and turns them into receipts.

Template variables: Aliyun sends only a shop's approved templates, filled from
`TemplateParam`, a JSON *string* of string values. We fill these variables, and a shop's
approved templates may use any of them (by these names; Aliyun allows letters, digits and
`_`):

- `case_id`: our case number (`rc_…`, 35 characters), which the customer quotes to the shop;
- `order_id`: the shop's order number;
- `amount`: the amount in the currency's major unit, as a decimal (`25.00`);
- `currency`: its ISO 4217 code (`CNY`);
- `status_path`: the customer's status link after the fixed part the template holds. Aliyun
  refuses a whole link as a variable (`isv.PARAM_NOT_SUPPORT_URL`): the template writes its
  ICP-filed prefix, e.g. `进度 https://shop.example.cn/status/${status_path}`, and the
  setting `status_url_prefix` names that prefix. Without the setting it is not sent.

A recall campaign's messages (`recall_notice`, `recall_reminder`) have no case, order or
amount; their templates are filled from the campaign instead:

- `reference`: the recall notice's reference (`RC-2026-001`);
- `product`: the recalled product's SKU, else its GTIN;
- `recall_class`: `I`, `II` or `III` (a template writes e.g. `${recall_class}级召回`, or
  better words of its own per template);
- `reminder`: which reminder this is (`1`, `2`…), `0` for the notice;
- `ack_path`: the consignee's acknowledgement link after the fixed part the template holds,
  as `status_path` is (setting `ack_url_prefix`).

By default every variable we have is sent; a template entry may list the ones its template
uses (`params`), so that a template is sent nothing it does not name, and a message that
lacks one of them is refused before the call. Aliyun limits each value's length (a
notification variable holds about 35 characters); a longer one comes back as
`isv.PARAM_LENGTH_LIMIT`, a permanent refusal shown on the message.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

import phonenumbers
from pydantic import BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError

from refundbridge.core.errors import InvalidRequest, PermanentProviderError
from refundbridge.core.model import CAMPAIGN_KINDS
from refundbridge.core.ports import (
    DeliveryReport,
    DeliveryState,
    InboundSms,
    OutgoingMessage,
    SmsCallback,
    SmsReceipt,
)
from refundbridge.core.request import WireModel, loads_strict, validation_error

log = logging.getLogger(__name__)

NAME: Final = "aliyun_sms"
API_VERSION: Final = "2017-05-25"
SEND_ACTION: Final = "SendSms"
QUERY_ACTION: Final = "QuerySendDetails"
# Aliyun writes times (send_time, SendDate…) and counts send days in Beijing time. China has
# kept UTC+8 without daylight saving since 1991: a fixed offset is exact.
BEIJING: Final = timezone(timedelta(hours=8), "Asia/Shanghai")
TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
QUERY_PAGE_SIZE: Final = 50  # QuerySendDetails' largest page
QUERY_MAX_PAGES: Final = 10  # 500 messages to one number in a day is far beyond ours

Variable = Literal["case_id", "order_id", "amount", "currency", "status_path",
                   "reference", "product", "recall_class", "reminder", "ack_path"]
VARIABLES: Final[tuple[Variable, ...]] = ("case_id", "order_id", "amount", "currency",
                                           "status_path", "reference", "product",
                                           "recall_class", "reminder", "ack_path")

# A reply that opts the number out. Aliyun's templates offer "回TD退订" (TD, T or N are the
# unsubscribe replies its template rules name); STOP and 退订 are what people write anyway.
OPT_OUT_WORDS: Final = frozenset({"TD", "T", "N", "STOP", "退订", "UNSUBSCRIBE"})


def is_opt_out(text: str) -> bool:
    return text.strip().strip("。.!！").upper() in OPT_OUT_WORDS


# --------------------------------------------------------------------- answers


class Verdict(StrEnum):
    OK = "ok"
    TRANSIENT = "transient"  # worth calling again (nothing was sent, or a look-up decides)
    DEFER = "defer"  # the per-number limit: the message waits, the case does not fail
    PERMANENT = "permanent"  # Aliyun's no: shown to a person


DEFERRING_CODE: Final = "isv.BUSINESS_LIMIT_CONTROL"
# Platform errors Aliyun says to retry ("系统错误，请重试"), and a nonce seen twice (a new
# signature with a new nonce is a new request).
TRANSIENT_CODES: Final = frozenset({"isp.SYSTEM_ERROR", "isp.GATEWAY_ERROR", "isp.UNKNOWN",
                                    "SignatureNonceUsed", "ServiceUnavailable"})


def classify(code: str | None) -> Verdict:
    """`Throttling*` is the API's own flow control (nothing was sent); `isv.*` is a refusal
    of this message (bad number, template, signature, balance), which repeats if sent again.
    """
    if code == "OK":
        return Verdict.OK
    if code == DEFERRING_CODE:
        return Verdict.DEFER
    if code is not None and (code.startswith("Throttling") or code in TRANSIENT_CODES):
        return Verdict.TRANSIENT
    return Verdict.PERMANENT


# How long the per-number limit holds, from the words of its message ("触发分钟级流控
# Permits:1", "触发小时级流控Permits:5", "触发天级流控Permits:10"); a minute when unsaid.
DEFER_MINUTE: Final = 60.0
DEFER_HOUR: Final = 3600.0


def defer_seconds(message: str, now: datetime) -> float:
    """When to try again after `isv.BUSINESS_LIMIT_CONTROL`: a minute for the minute
    limit, an hour for the hour limit, Beijing's next midnight for the day limit."""
    lowered = message.lower()
    if "天级" in message or "day" in lowered:
        local = now.astimezone(BEIJING)
        midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(),
                                    BEIJING)
        return max(DEFER_MINUTE, (midnight - local).total_seconds())
    if "小时" in message or "hour" in lowered:
        return DEFER_HOUR
    return DEFER_MINUTE


class _Answer(WireModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    Code: str
    Message: str = ""
    RequestId: str = ""

    def describe(self) -> str:
        return f"{self.Code}: {self.Message}" if self.Message else self.Code


class ErrorAnswer(_Answer):
    """Any answer, read only for its code: an OpenAPI error (`SignatureDoesNotMatch`,
    `Throttling.User`) or a business one (`isv.MOBILE_NUMBER_ILLEGAL`)."""


class SendAnswer(_Answer):
    BizId: str | None = None


class SendDetail(WireModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    PhoneNum: str = ""
    OutId: str | None = None
    SendStatus: int
    SendDate: str = ""
    ReceiveDate: str | None = None
    ErrCode: str | None = None
    TemplateCode: str | None = None


class SendDetails(WireModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    SmsSendDetailDTO: tuple[SendDetail, ...] = ()


class QueryAnswer(_Answer):
    TotalCount: int = 0
    SmsSendDetailDTOs: SendDetails = Field(default_factory=SendDetails)


# QuerySendDetails' SendStatus: 1 等待回执 (handed on, no carrier receipt yet), 2 发送失败,
# 3 发送成功.
SEND_STATUS: Final[Mapping[int, DeliveryState]] = {
    1: DeliveryState.SENT,
    2: DeliveryState.FAILED,
    3: DeliveryState.DELIVERED,
}


def found_receipt(detail: SendDetail) -> SmsReceipt:
    """A send found by QuerySendDetails. Its record carries no BizId (only SendSms' answer
    and the receipts do), so `provider_id` is empty; the receipts still find the message
    by its OutId."""
    state = SEND_STATUS.get(detail.SendStatus)
    if state is None:
        log.warning("aliyun_sms: unmapped SendStatus %r; the send exists, taken as queued",
                    detail.SendStatus)
        state = DeliveryState.QUEUED
    return SmsReceipt("", state, f"found by QuerySendDetails: sent {detail.SendDate}, "
                                 f"SendStatus {detail.SendStatus} {detail.ErrCode or ''}"
                      .rstrip())


def best_match(details: Sequence[SendDetail], message_id: str) -> SendDetail | None:
    """Our send among a day's sends to the number, by OutId. If an operator's resend made
    several, a delivered or pending one wins over a failed one, then the latest."""
    matches = [d for d in details if d.OutId == message_id]
    if not matches:
        return None
    return max(matches, key=lambda d: (d.SendStatus != 2, d.SendDate))


# --------------------------------------------------------------------- requests


def aliyun_phone(e164: str) -> str:
    """`PhoneNumbers` from an E.164 number: an 11-digit mainland number without +86, any
    other with its country code and no `+` (Aliyun's "国际区号+号码": 852…)."""
    if not re.fullmatch(r"\+[1-9]\d{6,14}", e164):
        raise PermanentProviderError(NAME, f"phone {e164!r} is not an E.164 number",
                                     code="invalid_phone")
    return e164[3:] if e164.startswith("+86") else e164[1:]


def e164_from_aliyun(raw: str) -> str:
    """The E.164 form of a number Aliyun writes in a push: 11 digits that make a mainland
    number are read as one (+86), anything else as country code and number. (A North
    American number that is also a valid mainland one reads as mainland: replies come
    from mainland numbers, and a receipt finds its message by OutId, not by number.)"""
    digits = raw.strip().removeprefix("+")
    digits = digits.removeprefix("00")
    if not digits.isdigit():
        return raw.strip()
    if len(digits) == 11 and digits.startswith("1") and _valid(digits, "CN"):
        return "+86" + digits
    return "+" + digits


def _valid(number: str, region: str | None) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(number, region))
    except phonenumbers.NumberParseException:
        return False


def template_param(message: OutgoingMessage, variables: Sequence[Variable] | None,
                   status_url_prefix: str | None, ack_url_prefix: str | None = None) -> str:
    """`TemplateParam`: the JSON text of the variables the template uses (all we have when
    `variables` is None), every value a string (Aliyun refuses numbers:
    `isv.INVALID_JSON_PARAM`)."""
    available = (_recall_variables(message, ack_url_prefix)
                 if message.kind in CAMPAIGN_KINDS
                 else _variables(message, status_url_prefix))
    if variables is None:
        return json.dumps(available, ensure_ascii=False, separators=(",", ":"))
    missing = [name for name in variables if name not in available]
    if missing:
        raise PermanentProviderError(
            NAME, f"the '{message.kind.value}' template needs {', '.join(missing)}, which "
                  "this message does not have", code="template_param")
    chosen = {name: available[name] for name in variables}
    return json.dumps(chosen, ensure_ascii=False, separators=(",", ":"))


def _variables(message: OutgoingMessage, status_url_prefix: str | None) -> dict[str, str]:
    context = message.context
    values = {name: str(context[name]).strip() for name in ("order_id", "amount", "currency")
              if context.get(name) not in (None, "")}
    values["case_id"] = str(context.get("case_id") or message.case_id)
    status_url = context.get("status_url")
    if status_url and status_url_prefix:
        values["status_path"] = _link_path(str(status_url), status_url_prefix,
                                           "status link", "status_url_prefix")
    return values


def _recall_variables(message: OutgoingMessage, ack_url_prefix: str | None
                      ) -> dict[str, str]:
    """A campaign's variables: no case (its `case_id` is the campaign's, not for a
    consignee's eyes), the recall's reference, product and class, the acknowledgement link."""
    context = message.context
    product = context.get("product") or {}
    values = {"reference": str(context.get("reference") or "").strip(),
              "product": str(product.get("sku") or product.get("gtin") or "").strip(),
              "recall_class": str(context.get("recall_class") or "").strip(),
              "reminder": str(context.get("reminder") or 0)}
    values = {name: value for name, value in values.items() if value}
    ack_url = context.get("ack_url")
    if ack_url and ack_url_prefix:
        values["ack_path"] = _link_path(str(ack_url), ack_url_prefix, "acknowledgement link",
                                        "ack_url_prefix")
    return values


def _link_path(url: str, prefix: str, what: str, setting: str) -> str:
    url = url.strip()
    if not url.startswith(prefix) or url == prefix:
        raise PermanentProviderError(
            NAME, f"the {what} {url!r} does not start with {setting} {prefix!r}, the fixed "
                  "part of the approved templates", code=setting)
    return url[len(prefix):]


# --------------------------------------------------------------------- pushes


def _beijing_time(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return datetime.strptime(value.strip(), TIME_FORMAT).replace(tzinfo=BEIJING)
        except ValueError as exc:
            raise ValueError(f"must be a time like 2024-07-01 12:30:05, not {value!r}"
                             ) from exc
    return value


BeijingTime = Annotated[datetime, BeforeValidator(_beijing_time)]


class ReportItem(WireModel):
    """One entry of SmsReport, the delivery receipts Aliyun pushes (HTTP batch push)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    phone_number: str
    send_time: BeijingTime | None = None
    report_time: BeijingTime | None = None
    success: bool = Field(strict=True)  # JSON true or false, not "yes"
    err_code: str = ""
    err_msg: str = ""
    sms_size: str | None = None
    biz_id: str | None = None
    out_id: str | None = None

    def report(self) -> DeliveryReport:
        error = "" if self.success else f"{self.err_code}: {self.err_msg}".strip(": ")
        return DeliveryReport(
            provider_id=self.biz_id or None, message_id=self.out_id or None,
            phone=e164_from_aliyun(self.phone_number),
            state=DeliveryState.DELIVERED if self.success else DeliveryState.FAILED,
            error=error, at=self.report_time or self.send_time)


class ReplyItem(WireModel):
    """One entry of SmsUp, the customers' replies Aliyun pushes."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    phone_number: str
    send_time: BeijingTime | None = None
    content: str
    sign_name: str | None = None
    dest_code: str | None = None
    sequence_id: int | None = None

    def reply(self) -> InboundSms:
        return InboundSms(phone=e164_from_aliyun(self.phone_number), text=self.content.strip(),
                          at=self.send_time)


_REPORTS: Final = TypeAdapter(list[ReportItem])
_REPLIES: Final = TypeAdapter(list[ReplyItem])


def parse_push(body: bytes) -> SmsCallback:
    """SmsReport or SmsUp: a JSON array, told apart by its entries' fields (a receipt has
    `success`, a reply `content`). Raises `InvalidRequest` naming the field."""
    document = loads_strict(body)
    if not isinstance(document, list):
        raise _not_a_push("must be a JSON array of receipts or replies")
    if not document:
        return SmsCallback()
    if not all(isinstance(item, dict) for item in document):
        raise _not_a_push("every entry must be a JSON object")
    if all("content" in item for item in document):
        try:
            return SmsCallback(replies=tuple(r.reply() for r in _REPLIES.validate_python(
                document)))
        except ValidationError as exc:
            raise validation_error(exc, "body") from exc
    try:
        return SmsCallback(reports=tuple(r.report() for r in _REPORTS.validate_python(
            document)))
    except ValidationError as exc:
        raise validation_error(exc, "body") from exc


def _not_a_push(why: str) -> InvalidRequest:
    return InvalidRequest("body", why)
