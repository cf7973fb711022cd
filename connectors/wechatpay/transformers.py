"""WeChat Pay v3's wire format (pydantic models) and its mapping to and from the core model.

No I/O here: `client.py` sends what these functions build, and `webhooks.py` reads
notifications with these models.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, Literal

from pydantic import ConfigDict, Field, ValidationError

from refundbridge.connectors.base import mapped_status
from refundbridge.connectors.minor_units import MinorUnit, MinorUnitTable, WireCurrency
from refundbridge.core.errors import AmountNotRepresentable, InvalidRequest, PermanentProviderError
from refundbridge.core.model import RefundResult, RefundStatus
from refundbridge.core.ports import RefundOrder
from refundbridge.core.request import ReasonCode, WireModel

log = logging.getLogger(__name__)

NAME: Final = "wechatpay"
REFUNDS_PATH: Final = "/v3/refund/domestic/refunds"
# Domestic refunds are in renminbi only ("目前只支持人民币：CNY").
CURRENCY: Final = "CNY"
# `amount.refund` and `amount.total` are integers in fen ("单位为分，只能为整数"), and CNY is
# the only currency of domestic refunds; anything else is refused before calling.
WECHATPAY_UNITS: Final = MinorUnitTable(
    provider=NAME,
    source="https://pay.weixin.qq.com/wiki/doc/apiv3/apis/chapter3_1_9.shtml",
    currencies={CURRENCY: MinorUnit(2, why="fen")},
)

# Every refund status WeChat Pay documents, for the refund object (`status`) and for the
# decrypted notification (`refund_status`). ABNORMAL means the money could not reach the
# customer (a closed card, say) and a person must act in the merchant platform: a failure
# for us, not something to wait on. Anything else is UNKNOWN: recorded, never acted on.
STATUS_MAP: Final[Mapping[str, RefundStatus]] = MappingProxyType({
    "SUCCESS": RefundStatus.SUCCEEDED,
    "PROCESSING": RefundStatus.PENDING,
    "CLOSED": RefundStatus.FAILED,
    "ABNORMAL": RefundStatus.FAILED,
})

STATUS_MESSAGES: Final[Mapping[str, str]] = MappingProxyType({
    "CLOSED": "WeChat Pay closed the refund",
    "ABNORMAL": "WeChat Pay could not return the money to the customer's account; it must "
                "be handled by hand in the merchant platform (异常退款)",
})


class Retry(StrEnum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"


# Error codes of `POST /v3/refund/domestic/refunds` and the refund query, as documented.
# Transient ones are retried with the same out_refund_no, which WeChat Pay asks for ("请不要
# 更换商户退款单号"); permanent ones fail the case with WeChat's own message.
ERROR_CODES: Final[Mapping[str, Retry]] = MappingProxyType({
    "SYSTEM_ERROR": Retry.TRANSIENT,  # 500 系统超时/系统异常
    "FREQUENCY_LIMITED": Retry.TRANSIENT,  # 429 频率限制
    "BIZ_ERR_NEED_RETRY": Retry.TRANSIENT,  # concurrent refunds of one order: same params
    "PARAM_ERROR": Retry.PERMANENT,  # 400
    "INVALID_REQUEST": Retry.PERMANENT,  # 400, e.g. more than the order can still refund
    "SIGN_ERROR": Retry.PERMANENT,  # 401 our signature or merchant serial is wrong
    "NOT_ENOUGH": Retry.PERMANENT,  # 403 余额不足: needs money on the account first
    "USER_ACCOUNT_ABNORMAL": Retry.PERMANENT,  # 403 the payer's account is closed
    "NO_AUTH": Retry.PERMANENT,  # 403
    "REQUEST_BLOCKED": Retry.PERMANENT,  # 403
    "MCH_NOT_EXISTS": Retry.PERMANENT,  # 404
    "RESOURCE_NOT_EXISTS": Retry.PERMANENT,  # 404 no such order or refund
    "ORDER_NOT_EXIST": Retry.PERMANENT,  # 404 (older spelling)
})

NOT_FOUND: Final = "RESOURCE_NOT_EXISTS"


def classify(status_code: int, code: str | None) -> Retry:
    """Whether an error answer is worth retrying: WeChat's code decides when we know it,
    otherwise the HTTP status does, by the rule every connector shares (409, 429, 5xx)."""
    known = ERROR_CODES.get(code) if code is not None else None
    if known is not None:
        return known
    if code is not None:
        log.warning("wechatpay: unknown error code %r (HTTP %s)", code, status_code)
    if status_code in (409, 429) or status_code >= 500:
        return Retry.TRANSIENT
    return Retry.PERMANENT


# What the customer reads in WeChat's refund message (`reason`, at most 80 characters).
# Kept neutral: the customer knows their reason; adverse events are not named back to them.
REASON_TEXT: Final[Mapping[ReasonCode, str]] = MappingProxyType({
    ReasonCode.CHANGED_MIND: "买家申请退款",
    ReasonCode.NO_LONGER_NEEDED: "买家申请退款",
    ReasonCode.ORDERED_BY_MISTAKE: "买家申请退款",
    ReasonCode.DEFECTIVE: "商品质量问题",
    ReasonCode.DAMAGED_ON_ARRIVAL: "商品运输破损",
    ReasonCode.WRONG_ITEM: "商家发错货",
    ReasonCode.NOT_AS_DESCRIBED: "商品与描述不符",
    ReasonCode.RECALL: "产品召回",
    ReasonCode.INJURY: "售后退款",
    ReasonCode.MALFUNCTION_HARM: "售后退款",
    ReasonCode.OTHER: "售后退款",
})


class _Wire(WireModel):
    # WeChat Pay adds fields without notice; unknown ones must not break parsing.
    model_config = ConfigDict(extra="ignore", frozen=True)


class RefundAmount(_Wire):
    refund: int
    total: int
    currency: WireCurrency = CURRENCY
    payer_refund: int | None = None
    payer_total: int | None = None


class WeChatRefund(_Wire):
    """The refund object of `POST /v3/refund/domestic/refunds` and of the query by
    out_refund_no (the fields we use)."""

    refund_id: str
    out_refund_no: str
    transaction_id: str | None = None
    out_trade_no: str | None = None
    channel: str | None = None
    user_received_account: str | None = None
    success_time: str | None = None
    create_time: str | None = None
    status: str
    amount: RefundAmount


class RefundNotice(_Wire):
    """The decrypted `resource` of a REFUND.* notification. Its amount carries no currency:
    domestic refunds are in CNY."""

    mchid: str | None = None
    out_trade_no: str | None = None
    transaction_id: str | None = None
    out_refund_no: str
    refund_id: str
    refund_status: str
    success_time: str | None = None
    user_received_account: str | None = None
    amount: RefundAmount


class EncryptedResource(_Wire):
    algorithm: Literal["AEAD_AES_256_GCM"]
    ciphertext: str = Field(min_length=1)
    nonce: str = Field(min_length=1)
    associated_data: str = ""
    original_type: str | None = None


class Notification(_Wire):
    id: str = Field(min_length=1)
    create_time: str
    event_type: str
    resource_type: str | None = None
    summary: str | None = None
    resource: EncryptedResource


class WeChatError(_Wire):
    code: str
    message: str = ""
    detail: dict[str, Any] | None = None


REFUND_EVENTS: Final = frozenset({"REFUND.SUCCESS", "REFUND.ABNORMAL", "REFUND.CLOSED"})


def refund_body(order: RefundOrder, *, notify_url: str | None,
                reference_field: Literal["out_trade_no", "transaction_id"]
                ) -> dict[str, Any]:
    """The JSON of `POST /v3/refund/domestic/refunds`. `out_refund_no` is our idempotency
    key: WeChat Pay refunds once per number."""
    for name, money in (("amount", order.amount), ("paid_total", order.paid_total)):
        if money.currency != CURRENCY:
            # The provider would refuse it: say so in the case, without calling.
            raise PermanentProviderError(
                NAME, f"WeChat Pay refunds only {CURRENCY}; {name} is {money}",
                code="UNSUPPORTED_CURRENCY")
    if not order.amount.amount > 0:
        raise PermanentProviderError(NAME, f"a refund must be positive, got {order.amount}",
                                     code="PARAM_ERROR")
    body: dict[str, Any] = {
        reference_field: order.payment_reference,
        "out_refund_no": order.idempotency_key,
        "reason": REASON_TEXT[order.reason],
        "amount": {"refund": WECHATPAY_UNITS.to_minor(order.amount),
                   "total": WECHATPAY_UNITS.to_minor(order.paid_total),
                   "currency": CURRENCY},
    }
    if notify_url:
        body["notify_url"] = notify_url
    return body


def encode(body: Mapping[str, Any]) -> bytes:
    """The exact bytes sent and signed; built once so every retry carries the same body."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def map_status(raw: str | None) -> RefundStatus:
    return mapped_status(STATUS_MAP, raw, "wechatpay")


def _result(raw: str, refund_id: str, amount: RefundAmount, where: str) -> RefundResult:
    try:
        money = WECHATPAY_UNITS.from_minor(amount.refund, amount.currency,
                                           f"{where}amount.refund")
    except AmountNotRepresentable as exc:  # WeChat's message is wrong, not our request
        raise InvalidRequest(f"{where}amount.currency", exc.reason) from exc
    return RefundResult(
        status=map_status(raw),
        provider_ref=refund_id,
        amount=money,
        message=STATUS_MESSAGES.get(raw),
        raw_status=raw,
    )


def to_refund_result(refund: WeChatRefund) -> RefundResult:
    return _result(refund.status, refund.refund_id, refund.amount, "")


def notice_to_refund_result(notice: RefundNotice) -> RefundResult:
    return _result(notice.refund_status, notice.refund_id, notice.amount, "resource.")


def read_error(body: bytes) -> WeChatError | None:
    try:
        return WeChatError.model_validate_json(body)
    except ValidationError:  # not WeChat's error shape (a proxy, say)
        return None
