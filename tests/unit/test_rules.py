"""The over-refund guard: no shop can switch it off."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import pytest

from core.model import Outcome
from core.money import Money
from core.request import NormalizedRefundRequest, ReasonCode
from core.rules import EvaluationContext, ShopPolicy, over_refund_guard, payment_route_guard
from tests.unit.builders import at, make_request


def _ctx(request: NormalizedRefundRequest | None = None, *, refundable: str | None = None,
         limits: Mapping[str, Decimal] | None = None,
         reasons: frozenset[ReasonCode] | None = None) -> EvaluationContext:
    request = request or make_request()
    policy = ShopPolicy(
        auto_approve_limits=dict(limits if limits is not None else {"CNY": Decimal("500")}),
        **({"auto_approve_reasons": reasons} if reasons is not None else {}),
    )
    money = (Money.parse(refundable, request.currency) if refundable is not None
             else request.paid)
    return EvaluationContext(request, policy, money, at(10))


# ------------------------------------------------------------------ over-refund guard


@pytest.mark.parametrize(
    ("requested", "refundable", "outcome"),
    [
        ("100.00", "100.00", Outcome.PASS),
        ("100.00", "100.01", Outcome.PASS),
        ("100.01", "100.00", Outcome.DENY),
        ("0.01", "0.00", Outcome.DENY),
        ("398.00", "0.00", Outcome.DENY),
    ],
)
def test_over_refund_guard_boundaries(requested: str, refundable: str,
                                      outcome: Outcome) -> None:
    result = over_refund_guard(_ctx(make_request(requested_amount=requested),
                                    refundable=refundable))
    assert result.rule_id == "G01"
    assert result.outcome is outcome


@pytest.mark.parametrize(
    ("currency", "requested", "one_unit_less"),
    [("JPY", "3980", "3979"), ("KWD", "398.000", "397.999"), ("USD", "398.00", "397.99")],
)
def test_over_refund_guard_denies_one_minor_unit_more(currency: str, requested: str,
                                                      one_unit_less: str) -> None:
    request = make_request(**{"order.currency": currency, "order.paid_total": requested,
                              "lines.0.unit_price": requested, "lines.0.quantity": 1,
                              "requested_amount": requested})
    assert over_refund_guard(_ctx(request, refundable=requested)).outcome is Outcome.PASS
    assert over_refund_guard(_ctx(request, refundable=one_unit_less)).outcome is Outcome.DENY


# ------------------------------------------------------------------ payment route guard


@pytest.mark.parametrize(
    ("provider", "payment", "source", "outcome"),
    [
        ("stripe", "stripe", "generic", Outcome.PASS),
        ("WeChat-Pay", "wechatpay", "generic", Outcome.PASS),
        ("alipay_direct", "alipay", "woocommerce", Outcome.PASS),
        ("stripe", "wechatpay", "generic", Outcome.REVIEW),
        # A storefront that refunds through its own gateway needs no match.
        ("paypal", "woocommerce", "woocommerce", Outcome.PASS),
    ],
)
def test_payment_route_guard(provider: str, payment: str, source: str,
                             outcome: Outcome) -> None:
    request = make_request(**{"order.payment.provider": provider})
    result = payment_route_guard(request, payment, source)
    assert (result.rule_id, result.outcome) == ("G02", outcome)


def test_a_sandbox_plays_any_provider() -> None:
    request = make_request(**{"order.payment.provider": "stripe"})
    assert payment_route_guard(request, "sandbox_payment", "generic",
                               plays_any_provider=True).outcome is Outcome.PASS


def test_guard_messages_follow_the_customers_locale() -> None:
    chinese = over_refund_guard(_ctx(make_request(**{"customer.locale": "zh-CN"}),
                                     refundable="1.00"))
    english = over_refund_guard(_ctx(make_request(**{"customer.locale": "en"}),
                                     refundable="1.00"))
    assert "拒绝退款" in chinese.message
    assert english.message.startswith("Refusing to refund")
