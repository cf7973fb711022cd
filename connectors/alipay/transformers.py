"""Alipay's wire format (pydantic models) and its mapping to and from the core model.

No I/O here: `client.py` sends what these functions build and hands back the inner response
objects, which these models read; `webhooks.py` reads notifications with them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Literal

from pydantic import ConfigDict, field_validator

from refundbridge.connectors.base import mapped_status
from refundbridge.connectors.minor_units import MinorUnit, MinorUnitTable
from refundbridge.core.errors import InvalidRequest, PermanentProviderError
from refundbridge.core.model import RefundResult, RefundStatus
from refundbridge.core.money import Money
from refundbridge.core.ports import RefundOrder
from refundbridge.core.request import ReasonCode, WireModel, parse_amount_text

log = logging.getLogger(__name__)

NAME: Final = "alipay"
REFUND_METHOD: Final = "alipay.trade.refund"
QUERY_METHOD: Final = "alipay.trade.fastpay.refund.query"
CURRENCY: Final = "CNY"  # the domestic OpenAPI refunds in yuan only
MAX_NO_LENGTH: Final = 64  # out_trade_no, trade_no and out_request_no alike
MAX_REASON_LENGTH: Final = 256
# `refund_amount` is a decimal string in yuan with at most two decimals ("单位为元，支持两位
# 小数"), in CNY only.
ALIPAY_UNITS: Final = MinorUnitTable(
    provider=NAME,
    source="https://opendocs.alipay.com/open/02ekfk",
    currencies={CURRENCY: MinorUnit(2, why="yuan with two decimals")},
)

ReferenceKind = Literal["auto", "out_trade_no", "trade_no"]

# Alipay's own trade number: 28 digits, starting with the year the trade was made ("2017…").
TRADE_NO: Final = re.compile(r"20\d{26}")
OUT_REQUEST_NO: Final = re.compile(r"[A-Za-z0-9_\-]{1,64}")

# --------------------------------------------------------------------- answers


class Verdict(StrEnum):
    SUCCESS = "success"
    TRANSIENT = "transient"  # ask again with the very same out_request_no
    PERMANENT = "permanent"  # Alipay refused; no money moved


# Public response codes (https://opendocs.alipay.com/common/02km9f).
CODE_VERDICT: Final[Mapping[str, Verdict]] = MappingProxyType({
    "10000": Verdict.SUCCESS,  # 接口调用成功
    "20000": Verdict.TRANSIENT,  # 服务不可用 (isp.unknow-error …): call again
    "20001": Verdict.PERMANENT,  # 授权权限不足 (an app_auth_token problem)
    "40001": Verdict.PERMANENT,  # 缺少必选参数
    "40002": Verdict.PERMANENT,  # 非法的参数 (incl. isv.invalid-signature, -app-id)
    "40003": Verdict.PERMANENT,  # 条件异常
    "40004": Verdict.PERMANENT,  # 业务处理失败: refined by the sub code below
    "40006": Verdict.PERMANENT,  # 权限不足 (the app lacks the product)
})

# Business sub codes of 40004 that Alipay says to retry with the same parameters.
# `AQC.SYSTEM_ERROR` is Alipay's own spelling in some answers.
TRANSIENT_SUB_CODES: Final = frozenset({
    "ACQ.SYSTEM_ERROR",
    "AQC.SYSTEM_ERROR",
    "ACQ.REFUND_CHARGE_ERROR",  # 退收费异常: "retry a while later"
    "isp.unknow-error",
    "aop.unknow-error",
})

# Refusals named in alipay.trade.refund's error table. Listed (though any other 40004 is
# permanent too) so the table test shows each is classified on purpose.
PERMANENT_SUB_CODES: Final = frozenset({
    "ACQ.TRADE_NOT_EXIST",  # 交易不存在
    "ACQ.SELLER_BALANCE_NOT_ENOUGH",  # 卖家余额不足: top up, then retry as an operator
    "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",  # 退款金额与订单金额不一致 (full refund without number)
    "ACQ.REASON_TRADE_REFUND_FEE_ERR",  # 退款金额无效 (more than is left to refund)
    "ACQ.REFUND_FEE_ERROR",  # 交易退款金额有误
    "ACQ.INVALID_PARAMETER",  # 参数无效
    "ACQ.TRADE_HAS_FINISHED",  # 交易已完结
    "ACQ.TRADE_STATUS_ERROR",  # 交易状态非法
    "ACQ.TRADE_NOT_ALLOW_REFUND",  # 当前交易不允许退款
    "ACQ.REASON_TRADE_BEEN_FREEZEN",  # 交易被冻结 (sic)
    "ACQ.REASON_ILLEGAL_STATUS",  # 交易状态异常
    "ACQ.DISCORDANT_REPEAT_REQUEST",  # same out_request_no, different amount
    "ACQ.NOT_ALLOW_PARTIAL_REFUND",  # 不支持部分退款
    "ACQ.BUYER_ERROR",  # 买家状态非法
    "ACQ.ONLINE_TRADE_VOUCHER_NOT_ALLOW_REFUND",  # 交易含有线上券
    "ACQ.CUSTOMER_VALIDATE_ERROR",  # 商户身份校验失败
})


def classify(code: str | None, sub_code: str | None) -> Verdict:
    """Whether an answer succeeded, may be asked again, or is Alipay's final no.

    A code Alipay does not document is TRANSIENT: we cannot tell whether money moved, and
    asking again under the same out_request_no is safe (Alipay pays a number once), while
    calling it permanent would let an operator start a second refund.
    """
    verdict = CODE_VERDICT.get(code or "")
    if verdict is None:
        log.warning("alipay: undocumented response code %r (sub_code %r); treated as transient",
                    code, sub_code)
        return Verdict.TRANSIENT
    if verdict is Verdict.SUCCESS:
        return verdict
    if sub_code in TRANSIENT_SUB_CODES:
        return Verdict.TRANSIENT
    return verdict


# --------------------------------------------------------------------- statuses

# `refund_status` of alipay.trade.fastpay.refund.query. Alipay documents one value; when the
# field is absent, Alipay "has not received the refund, or it failed", which is answered as "no
# such refund" (`find_refund` → None) so the same out_request_no is sent again, as Alipay's
# documentation asks. Anything else is UNKNOWN: recorded, never acted on.
STATUS_MAP: Final[Mapping[str, RefundStatus]] = MappingProxyType({
    "REFUND_SUCCESS": RefundStatus.SUCCEEDED,
})


def map_status(raw: str | None) -> RefundStatus:
    return mapped_status(STATUS_MAP, raw, "alipay", "refund_status")


# --------------------------------------------------------------------- wire models


class _Wire(WireModel):
    # Alipay adds response fields without notice; unknown ones must not break parsing.
    model_config = ConfigDict(extra="ignore", frozen=True)


class AlipayAnswer(_Wire):
    """The public part of every `<method>_response` object."""

    code: str
    msg: str | None = None
    sub_code: str | None = None
    sub_msg: str | None = None

    def describe(self) -> str:
        """Alipay's own words, for the person reading the case."""
        words = self.sub_msg or self.msg or "no message"
        return f"{words} ({self.sub_code or self.code})"


class AlipayRefundAnswer(AlipayAnswer):
    """`alipay_trade_refund_response` (https://opendocs.alipay.com/open/02ekfk)."""

    trade_no: str | None = None
    out_trade_no: str | None = None
    buyer_logon_id: str | None = None
    fund_change: str | None = None  # "Y": this call moved money; "N": it did not
    refund_fee: Decimal | None = None  # everything refunded on the trade so far, not this call
    gmt_refund_pay: str | None = None


class AlipayRefundQueryAnswer(AlipayAnswer):
    """`alipay_trade_fastpay_refund_query_response` (https://opendocs.alipay.com/open/02ekfl)."""

    trade_no: str | None = None
    out_trade_no: str | None = None
    out_request_no: str | None = None
    total_amount: Decimal | None = None
    refund_amount: Decimal | None = None  # this refund's amount
    refund_status: str | None = None
    gmt_refund_pay: str | None = None


class AlipayNotification(_Wire):
    """An asynchronous notification, the fields we read
    (https://opendocs.alipay.com/open/203/105286). A refund is announced by a
    `trade_status_sync` that carries `out_biz_no` (the refund's out_request_no), `refund_fee`
    (the total refunded on the trade) and `gmt_refund`."""

    notify_id: str
    notify_type: str
    notify_time: str
    app_id: str
    trade_no: str | None = None
    out_trade_no: str | None = None
    out_biz_no: str | None = None
    trade_status: str | None = None
    total_amount: Decimal | None = None
    refund_fee: Decimal | None = None
    gmt_refund: str | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_missing(cls, value: object) -> object:
        # Form fields arrive as strings; Alipay sends an empty one for "not set".
        return None if value == "" else value

    @field_validator("total_amount", "refund_fee", mode="before")
    @classmethod
    def _documented_amount(cls, value: object) -> object:
        # Yuan as Alipay writes them ("88.88"): "1e999999" or padding is no amount of money.
        return parse_amount_text(value) if isinstance(value, str) else value

    @property
    def is_refund(self) -> bool:
        return (self.notify_type == "trade_status_sync" and self.out_biz_no is not None
                and self.refund_fee is not None)


# --------------------------------------------------------------------- requests

# What the buyer reads in their Alipay bill next to the refund.
REASON_TEXT: Final[Mapping[ReasonCode, str]] = MappingProxyType({
    ReasonCode.CHANGED_MIND: "买家改变主意 (changed mind)",
    ReasonCode.NO_LONGER_NEEDED: "不再需要 (no longer needed)",
    ReasonCode.ORDERED_BY_MISTAKE: "误购 (ordered by mistake)",
    ReasonCode.DEFECTIVE: "商品有缺陷 (defective)",
    ReasonCode.DAMAGED_ON_ARRIVAL: "到货破损 (damaged on arrival)",
    ReasonCode.WRONG_ITEM: "发错商品 (wrong item)",
    ReasonCode.NOT_AS_DESCRIBED: "与描述不符 (not as described)",
    ReasonCode.RECALL: "产品召回 (recall)",
    ReasonCode.INJURY: "使用中受伤 (injury)",
    ReasonCode.MALFUNCTION_HARM: "故障致害 (malfunction with harm)",
    ReasonCode.OTHER: "其他 (other)",
})


def reference_field(reference: str, kind: ReferenceKind = "auto"
                    ) -> Literal["out_trade_no", "trade_no"]:
    """Which biz_content field names the paid trade.

    `auto`: a 28-digit number starting with "20" is Alipay's `trade_no` (that is how Alipay
    numbers trades); anything else is the shop's `out_trade_no`. A shop whose own order
    numbers look like Alipay's sets `reference_kind` explicitly.
    """
    if kind != "auto":
        return kind
    return "trade_no" if TRADE_NO.fullmatch(reference) else "out_trade_no"


def yuan(amount: Money) -> str:
    """`refund_amount`: yuan with exactly two decimals, from the exact Decimal."""
    if amount.currency != CURRENCY:
        raise PermanentProviderError(
            NAME, f"Alipay refunds only in {CURRENCY}; this refund is {amount}",
            code="unsupported_currency")
    if not amount.amount > 0:
        raise InvalidRequest("amount", f"a refund must be positive, got {amount}")
    return ALIPAY_UNITS.to_decimal(amount)


def _checked_numbers(order: RefundOrder) -> None:
    if not OUT_REQUEST_NO.fullmatch(order.idempotency_key):
        raise InvalidRequest("idempotency_key",
                             f"'{order.idempotency_key}' cannot be an Alipay out_request_no "
                             f"(1-{MAX_NO_LENGTH} letters, digits, '_' or '-')")
    if not 0 < len(order.payment_reference) <= MAX_NO_LENGTH:
        raise InvalidRequest("payment_reference",
                             f"an Alipay trade number has 1-{MAX_NO_LENGTH} characters")


def refund_biz_content(order: RefundOrder, kind: ReferenceKind = "auto") -> dict[str, str]:
    """biz_content of alipay.trade.refund. `out_request_no` is our idempotency key: Alipay
    pays one number once, and needs one for any partial refund."""
    amount = yuan(order.amount)
    _checked_numbers(order)
    return {
        reference_field(order.payment_reference, kind): order.payment_reference,
        "refund_amount": amount,
        "out_request_no": order.idempotency_key,
        "refund_reason": REASON_TEXT[order.reason][:MAX_REASON_LENGTH],
    }


def query_biz_content(order: RefundOrder, kind: ReferenceKind = "auto") -> dict[str, str]:
    """biz_content of alipay.trade.fastpay.refund.query for this order's refund."""
    _checked_numbers(order)
    return {
        reference_field(order.payment_reference, kind): order.payment_reference,
        "out_request_no": order.idempotency_key,
    }


# --------------------------------------------------------------------- results


def refund_paid(order: RefundOrder) -> RefundResult:
    """A refund call that moved money (`fund_change: "Y"`). Alipay pays exactly the amount
    asked or refuses, so the amount is ours; its `refund_fee` is the trade's running total."""
    return RefundResult(
        status=RefundStatus.SUCCEEDED,
        provider_ref=order.idempotency_key,
        amount=order.amount,
        raw_status="fund_change=Y",
    )


def refund_not_seen(order: RefundOrder) -> RefundResult:
    """Alipay accepted the call but moved no money and reports no refund under the number.
    No provider_ref, so the next run asks `find_refund` and then sends the same number
    again, which is what Alipay prescribes."""
    return RefundResult(
        status=RefundStatus.PENDING,
        provider_ref=None,
        message=f"Alipay accepted out_request_no {order.idempotency_key} but reports no "
                "refund under it yet",
        raw_status="fund_change=N",
    )


def queried_refund(order: RefundOrder, answer: AlipayRefundQueryAnswer) -> RefundResult | None:
    """The refund a query found, or None if Alipay has none under our number."""
    if answer.refund_status is None:
        return None
    if answer.out_request_no is not None and answer.out_request_no != order.idempotency_key:
        raise PermanentProviderError(
            NAME, f"asked for refund {order.idempotency_key}, Alipay answered about "
                  f"{answer.out_request_no}", code="invalid_response")
    amount: Money | None = None
    if answer.refund_amount is not None:
        try:
            amount = ALIPAY_UNITS.from_decimal(answer.refund_amount, CURRENCY,
                                               field="refund_amount")
        except InvalidRequest as exc:
            raise PermanentProviderError(NAME, f"unreadable refund_amount: {exc.message}",
                                         code="invalid_response") from exc
    return RefundResult(
        status=map_status(answer.refund_status),
        provider_ref=order.idempotency_key,
        amount=amount,
        raw_status=answer.refund_status,
    )


def notified_refund(note: AlipayNotification) -> RefundResult:
    """Alipay notifies a refund only once it has paid it. The amount is left out:
    `refund_fee` is the trade's total refunded, not this refund's."""
    assert note.out_biz_no is not None
    return RefundResult(
        status=RefundStatus.SUCCEEDED,
        provider_ref=note.out_biz_no,
        raw_status=note.trade_status,
    )
