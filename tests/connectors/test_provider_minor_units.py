"""Amounts in each payment provider's own units, from that provider's documented table, never
CLDR's: one row per documented exception, in both directions, and refusals before any call."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from refundbridge.connectors.alipay.transformers import (
    AlipayRefundQueryAnswer,
    queried_refund,
    yuan,
)
from refundbridge.connectors.base import ConnectorContext
from refundbridge.connectors.minor_units import MinorUnit, MinorUnitTable, held_decimal
from refundbridge.connectors.sandbox import SandboxPaymentConnector
from refundbridge.connectors.stripe.transformers import (
    STRIPE_UNITS,
    StripeRefund,
    refund_form,
    to_refund_result,
)
from refundbridge.connectors.wechatpay.transformers import (
    RefundNotice,
    WeChatRefund,
    notice_to_refund_result,
    refund_body,
)
from refundbridge.connectors.wechatpay.transformers import to_refund_result as wechat_result
from refundbridge.connectors.woocommerce.refunds import refund_body as woocommerce_body
from refundbridge.core.errors import AmountNotRepresentable, InvalidRequest, PermanentProviderError
from refundbridge.core.model import RefundStatus
from refundbridge.core.money import Money
from refundbridge.core.ports import RefundOrder
from refundbridge.core.request import ReasonCode

ROOT = Path(__file__).resolve().parents[2]


def order(amount: Money, paid: Money | None = None, reference: str = "pi_3PqRsT2eZvKYlo2C1v"
          ) -> RefundOrder:
    return RefundOrder(
        case_id="rc_8f14e45fceea167a5a36dedd4bea2543", attempt=1,
        idempotency_key="rc_8f14e45fceea167a5a36dedd4bea2543-refund-1", amount=amount,
        payment_reference=reference, order_id="1001", reason=ReasonCode.DEFECTIVE,
        paid_total=paid or amount,
    )


def money(amount: str, currency: str) -> Money:
    return Money.parse(amount, currency)


def refused(exc: AmountNotRepresentable, amount: str, currency: str) -> None:
    assert isinstance(exc, PermanentProviderError)  # the refund step records it, pays nothing
    assert exc.code == "amount_not_representable"
    assert exc.currency == currency
    assert amount in str(exc) and currency in str(exc)


# ---------------------------------------------------------------- Stripe
# https://docs.stripe.com/currencies: two decimals unless listed; zero-decimal list;
# three-decimal currencies with a last digit of 0; special cases ISK, HUF, TWD, UGX.

STRIPE_SENT = [
    # (amount, currency, Stripe's `amount`, why)
    ("500", "ISK", "50000", "ISK: zero-decimal, written with two decimals of 00"),
    ("5000", "UGX", "500000", "UGX: in the zero-decimal list, but its special case wins"),
    ("500", "HUF", "50000", "HUF: two-decimal for refunds (CLDR prints none)"),
    ("500.00", "TWD", "50000", "TWD: two-decimal for refunds"),
    ("500.25", "TWD", "50025", "TWD: cents are fine outside payouts"),
    ("500", "JPY", "500", "zero-decimal"),
    ("5000", "KRW", "5000", "zero-decimal"),
    ("1000", "CLP", "1000", "zero-decimal"),
    ("500", "XOF", "500", "zero-decimal"),
    ("1.230", "KWD", "1230", "three-decimal, last digit 0"),
    ("0.500", "BHD", "500", "three-decimal, last digit 0"),
    ("12.340", "TND", "12340", "three-decimal, last digit 0"),
    ("25.00", "USD", "2500", "two-decimal"),
    ("398.00", "CNY", "39800", "two-decimal"),
    ("1000", "COP", "100000", "COP: two-decimal in Stripe, none in CLDR"),
    ("15000", "IDR", "1500000", "IDR: two-decimal in Stripe, none in CLDR"),
]


@pytest.mark.parametrize(("amount", "currency", "sent", "why"), STRIPE_SENT)
def test_stripe_amount_is_in_stripes_units(amount: str, currency: str, sent: str,
                                           why: str) -> None:
    assert refund_form(order(money(amount, currency)))["amount"] == sent, why


STRIPE_REFUSED = [
    # (amount, currency, why)
    ("1.234", "KWD", "Stripe takes three-decimal amounts only in steps of ten"),
    ("0.005", "BHD", "a last digit that is not 0"),
    ("12.345", "JOD", "a last digit that is not 0"),
    ("7.777", "OMR", "a last digit that is not 0"),
    ("1.234", "LYD", "not listed by Stripe, so two-decimal: a third decimal cannot go"),
]


@pytest.mark.parametrize(("amount", "currency", "why"), STRIPE_REFUSED)
def test_stripe_refuses_what_it_cannot_represent(amount: str, currency: str, why: str) -> None:
    with pytest.raises(AmountNotRepresentable) as info:
        refund_form(order(money(amount, currency)))

    refused(info.value, amount, currency)


def test_stripe_refusal_offers_the_amounts_it_could_take() -> None:
    with pytest.raises(AmountNotRepresentable) as info:
        refund_form(order(money("5.124", "KWD")))

    assert "5.120" in info.value.reason and "5.130" in info.value.reason


def test_stripe_refuses_a_fraction_of_a_krona() -> None:
    # Money built by hand can carry more than ISK's decimals; Stripe would refuse 50050.
    with pytest.raises(AmountNotRepresentable) as info:
        refund_form(order(Money(Decimal("500.5"), "ISK")))

    refused(info.value, "500.5", "ISK")


STRIPE_READ = [
    # (Stripe's amount, Stripe's currency, what it is)
    (50000, "isk", "500", "ISK"),
    (500000, "ugx", "5000", "UGX"),
    (50000, "huf", "500", "HUF"),
    (50025, "twd", "500.25", "TWD"),
    (500, "jpy", "500", "JPY"),
    (1230, "kwd", "1.230", "KWD"),
    (2500, "usd", "25.00", "USD"),
    (100000, "cop", "1000", "COP"),
]


@pytest.mark.parametrize(("amount", "currency", "expected", "code"), STRIPE_READ)
def test_stripe_refund_amount_is_read_in_stripes_units(amount: int, currency: str,
                                                       expected: str, code: str) -> None:
    refund = StripeRefund.model_validate({"id": "re_1", "amount": amount, "currency": currency,
                                          "status": "succeeded"})

    assert to_refund_result(refund).amount == Money.parse(expected, code)


def test_stripe_amount_we_cannot_hold_is_an_error_naming_the_field() -> None:
    refund = StripeRefund.model_validate({"id": "re_1", "amount": 50050, "currency": "isk",
                                          "status": "succeeded"})

    with pytest.raises(InvalidRequest) as info:
        to_refund_result(refund)

    assert info.value.field == "amount"


def test_every_documented_stripe_exception_has_a_row() -> None:
    documented = {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "VND",
                  "VUV", "XAF", "XOF", "XPF", "BHD", "JOD", "KWD", "OMR", "TND", "ISK", "HUF",
                  "TWD", "UGX"}
    for code in documented:
        assert STRIPE_UNITS.unit(code) is not STRIPE_UNITS.default, code
    assert STRIPE_UNITS.unit("EUR") == MinorUnit(2)


# ---------------------------------------------------------------- WeChat Pay (domestic)
# amount.refund / amount.total: integers in fen, CNY only.

def test_wechatpay_sends_fen() -> None:
    body = refund_body(order(money("25.01", "CNY"), money("80.00", "CNY")), notify_url=None,
                       reference_field="out_trade_no")

    assert body["amount"] == {"refund": 2501, "total": 8000, "currency": "CNY"}


def test_wechatpay_refuses_a_fraction_of_a_fen() -> None:
    # Today's `.minor` rounded this half-even to 1000 fen: a refund quietly smaller.
    with pytest.raises(AmountNotRepresentable) as info:
        refund_body(order(Money(Decimal("10.005"), "CNY"), money("80.00", "CNY")),
                    notify_url=None, reference_field="out_trade_no")

    refused(info.value, "10.005", "CNY")


def test_wechatpay_reads_fen_back() -> None:
    refund = WeChatRefund.model_validate({
        "refund_id": "50000000382019052709732678859", "out_refund_no": "k1",
        "status": "SUCCESS", "amount": {"refund": 2501, "total": 8000, "currency": "CNY"}})

    assert wechat_result(refund).amount == money("25.01", "CNY")


def test_wechatpay_notice_in_another_currency_names_the_field() -> None:
    notice = RefundNotice.model_validate({
        "out_refund_no": "k1", "refund_id": "50000000382019052709732678859",
        "refund_status": "SUCCESS",
        "amount": {"refund": 2500, "total": 8000, "currency": "USD"}})

    with pytest.raises(InvalidRequest) as info:
        notice_to_refund_result(notice)

    assert info.value.field == "resource.amount.currency"


# ---------------------------------------------------------------- Alipay
# refund_amount: yuan, at most two decimals, CNY only.

@pytest.mark.parametrize(("amount", "sent"), [("10.00", "10.00"), ("0.01", "0.01"),
                                              ("100", "100.00"), ("398.5", "398.50")])
def test_alipay_sends_yuan_with_two_decimals(amount: str, sent: str) -> None:
    assert yuan(money(amount, "CNY")) == sent


def test_alipay_refuses_a_fraction_of_a_fen() -> None:
    # Today's f"{amount:.2f}" rounded this to "10.00".
    with pytest.raises(AmountNotRepresentable) as info:
        yuan(Money(Decimal("10.005"), "CNY"))

    refused(info.value, "10.005", "CNY")


def test_alipay_reads_yuan_back() -> None:
    answer = AlipayRefundQueryAnswer.model_validate({
        "code": "10000", "out_request_no": order(money("1", "CNY")).idempotency_key,
        "refund_amount": "12.50", "refund_status": "REFUND_SUCCESS"})

    result = queried_refund(order(money("12.50", "CNY")), answer)

    assert result is not None and result.amount == money("12.50", "CNY")


# ---------------------------------------------------------------- sandbox payment


def sandbox(**settings: Any) -> SandboxPaymentConnector:
    connector = SandboxPaymentConnector.from_config(settings, ConnectorContext(shop_id="s1"))
    assert isinstance(connector, SandboxPaymentConnector)
    return connector


def test_sandbox_plays_stripes_table_by_default() -> None:
    connector = sandbox()
    isk = order(money("500", "ISK"))

    result = connector.issue_refund(isk)

    assert connector.paid_minor[isk.idempotency_key] == 50000
    assert result.status is RefundStatus.SUCCEEDED
    assert result.amount == money("500", "ISK")


def test_sandbox_refuses_what_the_played_provider_would() -> None:
    connector = sandbox()

    with pytest.raises(AmountNotRepresentable):
        connector.issue_refund(order(money("1.234", "KWD")))

    assert connector.refunds == {}


def test_sandbox_can_play_wechatpay() -> None:
    connector = sandbox(minor_units="wechatpay")

    with pytest.raises(AmountNotRepresentable) as info:
        connector.issue_refund(order(money("25.00", "USD")))

    assert "CNY" in info.value.reason
    assert connector.refunds == {}


# ---------------------------------------------------------------- decimal-string providers
# Shopify's Decimal scalar and WooCommerce's REST amounts take major units at any precision:
# the amount goes exactly as held, fixed-point, never "5E+2" and never rounded.

@pytest.mark.parametrize(("amount", "currency", "sent"), [
    (Decimal("500"), "JPY", "500"),
    (Decimal("5E+2"), "JPY", "500"),
    (Decimal("1.23"), "KWD", "1.230"),
    (Decimal("25.5"), "USD", "25.50"),
])
def test_decimal_providers_get_plain_fixed_point(amount: Decimal, currency: str,
                                                 sent: str) -> None:
    assert held_decimal(Money(amount, currency), "shopify") == sent
    assert woocommerce_body(order(Money(amount, currency)), [])["amount"] == sent


def test_decimal_providers_refuse_more_precision_than_the_currency() -> None:
    with pytest.raises(AmountNotRepresentable) as info:
        woocommerce_body(order(Money(Decimal("10.5"), "JPY")), [])

    refused(info.value, "10.5", "JPY")


# ---------------------------------------------------------------- the mechanism


def test_a_table_without_a_default_takes_only_its_currencies() -> None:
    table = MinorUnitTable(provider="p", source="doc", currencies={"CNY": MinorUnit(2)})

    with pytest.raises(AmountNotRepresentable) as info:
        table.to_minor(money("1.00", "USD"))

    assert "CNY" in info.value.reason


def test_a_table_names_only_iso_currencies() -> None:
    with pytest.raises(InvalidRequest):
        MinorUnitTable(provider="p", source="doc", currencies={"XYZ": MinorUnit(2)})


def test_decimal_round_trip_checks_the_providers_places() -> None:
    table = MinorUnitTable(provider="p", source="doc", currencies={},
                           default=MinorUnit(2, multiple=100))

    assert table.to_decimal(money("500", "ISK")) == "500.00"
    assert table.from_decimal("500.00", "ISK") == money("500", "ISK")
    with pytest.raises(InvalidRequest):
        table.from_decimal("500.001", "ISK")


PAYMENT_PACKAGES = ("stripe", "wechatpay", "alipay", "sandbox")
CLDR_UNITS = re.compile(r"\.minor\b|Money\.from_minor|from core\.money import[^\n]*minor_units")


@pytest.mark.parametrize("package", PAYMENT_PACKAGES)
def test_no_payment_connector_uses_cldr_minor_units(package: str) -> None:
    """The class of defect: a connector reaching for `Money.minor` (CLDR's decimals) to build
    or read a provider's amount. Each must go through its own table."""
    offenders = [f"{path.relative_to(ROOT)}:{text[:match.start()].count(chr(10)) + 1}"
                 for path in sorted((ROOT / "connectors" / package).glob("*.py"))
                 for text in [path.read_text()]
                 for match in CLDR_UNITS.finditer(text)]

    assert offenders == []
