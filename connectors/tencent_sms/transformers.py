"""Tencent Cloud SMS (API 2021-01-11) on the wire: pydantic models of its answers, its error
codes sorted by what we do about them, and the request bodies built from our messages.

No I/O here: `client.py` sends what these functions build.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta, timezone
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, Literal

from pydantic import ConfigDict

from refundbridge.core.model import CAMPAIGN_KINDS, NotificationKind
from refundbridge.core.ports import OutgoingMessage
from refundbridge.core.request import WireModel

log = logging.getLogger(__name__)

NAME: Final = "tencent_sms"
SERVICE: Final = "sms"
VERSION: Final = "2021-01-11"
CONTENT_TYPE: Final = "application/json"
SEND: Final = "SendSms"
PULL_BY_NUMBER: Final = "PullSmsSendStatusByPhoneNumber"
# Tencent keeps per-number send status for 7 days ("最大可拉取当前时期前7天的数据") and
# answers at most 100 records, from offset 0 only ("目前固定设置为0").
PULL_DAYS: Final = 7
PULL_LIMIT: Final = 100
# "SessionContext … 注意长度需小于512字节".
SESSION_CONTEXT_MAX_BYTES: Final = 511
# Tencent's clock for its daily limits and times without a zone: Beijing time (no DST).
CHINA: Final = timezone(timedelta(hours=8), "Asia/Shanghai")
MAINLAND: Final = "+86"

# What a template variable may be filled with, from `OutgoingMessage.context`. Tencent
# forbids links in variables (`InvalidParameterValue.ProhibitedUseUrlInTemplateParameter`:
# a link must be a constant of the approved template) and caps each variable's length
# (6 characters on accounts opened since 2024-01-25), so only short plain values are offered.
# A recall campaign's: its reference, the product's SKU (else GTIN), the class (I, II, III)
# and the reminder's number (0 for the notice).
TemplateParam = Literal["case_id", "order_id", "amount", "currency",
                        "reference", "product", "recall_class", "reminder"]

# The variables `{1}`, `{2}`… of each kind's template, in order, unless a shop sets `params`.
DEFAULT_PARAMS: Final[Mapping[NotificationKind, tuple[TemplateParam, ...]]] = MappingProxyType({
    NotificationKind.RECEIVED: ("order_id",),  # 您的订单{1}的退货退款申请已收到…
    NotificationKind.APPROVED: ("order_id",),  # 您的订单{1}的退货申请已通过…
    NotificationKind.DENIED: ("order_id",),  # 您的订单{1}的退货申请未通过…
    NotificationKind.REFUNDED: ("order_id", "amount"),  # 订单{1}的退款{2}元已原路退回…
    # Optional kinds: a shop without a template for one sends no SMS of it (the send is
    # refused for good with code `no_template`, shown on the message; email still goes).
    NotificationKind.GOODS_RECEIVED: ("order_id",),  # 您的订单{1}的退货已签收…
    NotificationKind.REFUND_FAILED: ("order_id",),  # 订单{1}的退款未成功，我们将重新处理…
    NotificationKind.REPLACEMENT_ORDERED: ("order_id",),  # 订单{1}的换货已安排…
    NotificationKind.REPLACEMENT_SHIPPED: ("order_id",),  # 订单{1}的换货商品已发出…
    # A recall campaign's, optional too. No variable by default: the acknowledgement link
    # cannot be one (a link must be the template's constant), and a reference rarely fits
    # in 6 characters, so the default template is constant text sending the consignee to
    # the email (您购买的医疗器械涉及召回，请立即查看邮件中的召回通知并确认收到). A shop whose
    # account allows longer variables sets `params`, e.g. ["reference", "product"].
    NotificationKind.RECALL_NOTICE: (),
    NotificationKind.RECALL_REMINDER: (),
})


class Outcome(StrEnum):
    DEFER = "defer"  # held back for now: send later, the case does not fail
    TRANSIENT = "transient"  # worth repeating now (bounded, with backoff)
    PERMANENT = "permanent"  # a refusal: shown with Tencent's own words


# Until when Tencent holds a number back, per deferral code.
UNTIL_TOMORROW: Final = -1.0  # Beijing's next midnight: Tencent's daily counters reset
UNTIL_MORNING: Final = -2.0  # 08:00 Beijing: marketing SMS only go out 8:00 to 22:00

DEFERRALS: Final[Mapping[str, float]] = MappingProxyType({
    "LimitExceeded.PhoneNumberThirtySecondLimit": 30.0,  # 单个手机号30秒内…
    "LimitExceeded.PhoneNumberOneHourLimit": 3600.0,  # 单个手机号1小时内…
    "LimitExceeded.PhoneNumberDailyLimit": UNTIL_TOMORROW,  # 单个手机号日下发…
    "LimitExceeded.PhoneNumberSameContentDailyLimit": UNTIL_TOMORROW,  # 相同内容…
    "LimitExceeded.DeliveryFrequencyLimit": 3600.0,  # 命中了频率限制策略 (the console's)
    # The shop's own daily totals (控制台 发送总量阈值): they reset the next day.
    "LimitExceeded.AppDailyLimit": UNTIL_TOMORROW,
    "LimitExceeded.AppMainlandChinaDailyLimit": UNTIL_TOMORROW,
    "LimitExceeded.AppGlobalDailyLimit": UNTIL_TOMORROW,
    "LimitExceeded.AppCountryOrRegionDailyLimit": UNTIL_TOMORROW,
    "LimitExceeded.DailyLimit": UNTIL_TOMORROW,
    "FailedOperation.MarketingSendTimeConstraint": UNTIL_MORNING,
})

# Codes whose prefix would say otherwise.
EXCEPTIONS: Final[Mapping[str, Outcome]] = MappingProxyType({
    "LimitExceeded.GlobalSmsSendingRateLimit": Outcome.TRANSIENT,  # 国际短信发送速率限制
    "LimitExceeded.PhoneNumberCountLimit": Outcome.PERMANENT,  # more than 200 numbers
    "LimitExceeded.AppCountryOrRegionInBlacklist": Outcome.PERMANENT,  # country not allowed
    # Retrying cannot fix our clock, nor an API that does not exist.
    "InternalError.RequestTimeException": Outcome.PERMANENT,
    "InternalError.RestApiInterfaceNotExist": Outcome.PERMANENT,
})

# By the code's first part: Tencent's common and SMS error families.
PREFIXES: Final[Mapping[str, Outcome]] = MappingProxyType({
    "InternalError": Outcome.TRANSIENT,
    "RequestLimitExceeded": Outcome.TRANSIENT,  # API call rate (also .IPLimitExceeded …)
    "ResourceUnavailable": Outcome.TRANSIENT,
    "FailedOperation": Outcome.PERMANENT,
    "InvalidParameter": Outcome.PERMANENT,
    "InvalidParameterValue": Outcome.PERMANENT,
    "MissingParameter": Outcome.PERMANENT,
    "UnauthorizedOperation": Outcome.PERMANENT,
    "UnsupportedOperation": Outcome.PERMANENT,
    "AuthFailure": Outcome.PERMANENT,
    "LimitExceeded": Outcome.PERMANENT,
})


def classify(code: str) -> Outcome:
    """What to do about one of Tencent's error codes (an `Error.Code` or a per-number
    `SendStatus.Code`). An unknown family is a refusal, logged so that it can be sorted."""
    if code in DEFERRALS:
        return Outcome.DEFER
    if code in EXCEPTIONS:
        return EXCEPTIONS[code]
    outcome = PREFIXES.get(code.split(".", 1)[0])
    if outcome is None:
        log.warning("%s: unknown error code %r, taken as a refusal", NAME, code)
        return Outcome.PERMANENT
    return outcome


def defer_seconds(code: str, now: datetime) -> float:
    """How long Tencent holds a number back after `code`, from `now`."""
    wait = DEFERRALS[code]
    if wait >= 0:
        return wait
    local = now.astimezone(CHINA)
    if wait == UNTIL_TOMORROW:
        until = datetime.combine(local.date() + timedelta(days=1), time(), CHINA)
    else:
        morning = datetime.combine(local.date(), time(8), CHINA)
        until = morning if local < morning else morning + timedelta(days=1)
    return max(0.0, (until - local).total_seconds())


# ------------------------------------------------------------------ answers

class _Wire(WireModel):
    # Tencent adds fields to its answers; unknown ones must not break parsing.
    model_config = ConfigDict(extra="ignore", frozen=True)


class ApiError(_Wire):
    Code: str
    Message: str = ""


class Answer(_Wire):
    """`{"Response": {...}}`: every API 3.0 answer, an error or not."""

    Response: dict[str, Any]


class ErrorAnswer(_Wire):
    Error: ApiError | None = None
    RequestId: str = ""


class SendStatus(_Wire):
    SerialNo: str = ""
    PhoneNumber: str = ""
    Fee: int = 0
    SessionContext: str = ""
    Code: str
    Message: str = ""
    IsoCode: str = ""


class SendSmsAnswer(_Wire):
    SendStatusSet: tuple[SendStatus, ...]
    RequestId: str = ""


class PullStatus(_Wire):
    UserReceiveTime: int | None = None
    CountryCode: str = ""
    SubscriberNumber: str = ""
    PhoneNumber: str = ""
    SerialNo: str
    ReportStatus: str
    Description: str = ""
    # Echoed only where Tencent has switched it on for the account ("如需开通请联系
    # 腾讯云短信小助手评估"); otherwise empty or absent.
    SessionContext: str | None = None


class PullAnswer(_Wire):
    PullSmsSendStatusSet: tuple[PullStatus, ...] = ()
    RequestId: str = ""


# ------------------------------------------------------------------ requests

class MessageProblem(ValueError):
    """A message this connector cannot put into a Tencent request (before any call)."""


def template_params(message: OutgoingMessage, params: Sequence[TemplateParam],
                    max_length: int) -> list[str]:
    """`TemplateParamSet`: the message's values for `params`, in the template's order."""
    values = [_param_value(message, name) for name in params]
    if "amount" in params and "currency" not in params:
        currency = str(message.context.get("currency", ""))
        if currency != "CNY":
            raise MessageProblem(f"the template shows the amount without its currency, and "
                                 f"the amount is in {currency or 'no currency'}, not CNY (元)")
    for name, value in zip(params, values, strict=True):
        if not value:
            raise MessageProblem(f"template parameter {name} is empty")
        if len(value) > max_length:
            raise MessageProblem(f"template parameter {name} ({value!r}) is {len(value)} "
                                 f"characters, more than the {max_length} Tencent allows "
                                 f"per variable (max_param_length)")
    return values


def _param_value(message: OutgoingMessage, name: TemplateParam) -> str:
    if name == "product":
        product = message.context.get("product") or {}
        value = product.get("sku") or product.get("gtin")
    elif name == "case_id" and message.kind in CAMPAIGN_KINDS:
        # a campaign's id, not a case's: nothing a consignee can quote
        raise MessageProblem("a recall message has no case_id for the template")
    else:
        value = message.context.get(name, message.case_id if name == "case_id" else None)
    if value is None:
        raise MessageProblem(f"the message has no {name} for the template")
    return str(value).strip()


def session_context(message: OutgoingMessage) -> str:
    if len(message.message_id.encode("utf-8")) > SESSION_CONTEXT_MAX_BYTES:
        raise MessageProblem("the message id is longer than SessionContext takes (511 bytes)")
    return message.message_id


def send_body(*, phone: str, sdk_app_id: str, sign_name: str | None, template_id: str,
              params: Sequence[str], session: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "PhoneNumberSet": [phone],
        "SmsSdkAppId": sdk_app_id,
        "TemplateId": template_id,
        "TemplateParamSet": list(params),
        "SessionContext": session,
    }
    if sign_name is not None:
        body["SignName"] = sign_name
    return body


def pull_window(sent_on: date, now: datetime) -> tuple[int, int]:
    """`BeginTime`/`EndTime` covering the calendar day `sent_on` wherever it was counted
    (UTC+14 to UTC-12), within the 7 days Tencent keeps; `MessageProblem` if none is left."""
    begin = datetime.combine(sent_on, time(), timezone(timedelta(hours=14)))
    end = datetime.combine(sent_on + timedelta(days=1), time(), timezone(timedelta(hours=-12)))
    oldest = now - timedelta(days=PULL_DAYS) + timedelta(minutes=5)
    begin, end = max(begin, oldest), min(end, now)
    if end <= begin:
        raise MessageProblem(f"Tencent keeps send status for {PULL_DAYS} days only; whether "
                             f"the message of {sent_on.isoformat()} went out cannot be told")
    return int(begin.timestamp()), int(end.timestamp())


def pull_body(*, phone: str, sdk_app_id: str, begin: int, end: int) -> dict[str, Any]:
    return {"BeginTime": begin, "EndTime": end, "Offset": 0, "Limit": PULL_LIMIT,
            "PhoneNumber": phone, "SmsSdkAppId": sdk_app_id}


def encode(body: Mapping[str, Any]) -> bytes:
    """The exact bytes sent and signed: compact UTF-8 JSON (a sign name stays 中文)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
