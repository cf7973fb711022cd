"""The over-refund guard and the spine's basic rule set."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import pytest

from core.model import Outcome, RuleResult
from core.money import Money
from core.request import NormalizedRefundRequest, ReasonCode
from core.rules import (
    ADVERSE_EVENT_CODES,
    BasicRuleSet,
    EvaluationContext,
    ShopPolicy,
    over_refund_guard,
)
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


# ------------------------------------------------------------------ BasicRuleSet


def _verdict(requested: str = "398.00", code: str = "changed_mind", *,
             limits: Mapping[str, Decimal] | None = None,
             reasons: frozenset[ReasonCode] | None = None) -> Outcome:
    request = make_request(requested_amount=requested, **{"reason.code": code})
    return BasicRuleSet().evaluate(_ctx(request, limits=limits, reasons=reasons)).outcome


@pytest.mark.parametrize(
    ("requested", "limit", "outcome"),
    [
        ("100.00", "100.00", Outcome.APPROVE),
        ("100.01", "100.00", Outcome.REVIEW),
        ("99.99", "100", Outcome.APPROVE),
        ("0.01", "0", Outcome.REVIEW),
    ],
)
def test_amount_limit(requested: str, limit: str, outcome: Outcome) -> None:
    assert _verdict(requested, limits={"CNY": Decimal(limit)}) is outcome


def test_a_missing_limit_for_the_currency_sends_to_review() -> None:
    assert _verdict("1.00", limits={"USD": Decimal("1000")}) is Outcome.REVIEW
    assert _verdict("1.00", limits={}) is Outcome.REVIEW


@pytest.mark.parametrize("code", sorted(ADVERSE_EVENT_CODES))
def test_possible_adverse_events_go_to_review_even_when_listed(code: ReasonCode) -> None:
    everything = frozenset(ReasonCode)
    assert _verdict("1.00", code.value, reasons=everything) is Outcome.REVIEW
    assert _verdict("1.00", code.value) is Outcome.REVIEW


@pytest.mark.parametrize(
    "code", ["changed_mind", "no_longer_needed", "ordered_by_mistake", "defective",
             "damaged_on_arrival", "wrong_item", "not_as_described"],
)
def test_listed_reasons_within_the_limit_approve(code: str) -> None:
    assert _verdict("1.00", code) is Outcome.APPROVE


@pytest.mark.parametrize("code", ["recall", "other"])
def test_unlisted_reasons_go_to_review(code: str) -> None:
    assert _verdict("1.00", code) is Outcome.REVIEW


def test_a_shop_can_narrow_its_listed_reasons() -> None:
    only_defects = frozenset({ReasonCode.DEFECTIVE})
    assert _verdict("1.00", "defective", reasons=only_defects) is Outcome.APPROVE
    assert _verdict("1.00", "changed_mind", reasons=only_defects) is Outcome.REVIEW


def test_the_verdict_carries_the_requested_amount_and_every_rule_result() -> None:
    request = make_request(requested_amount="12.34")
    verdict = BasicRuleSet().evaluate(_ctx(request))
    assert verdict.amount == Money.parse("12.34", "CNY")
    assert [r.rule_id for r in verdict.rules] == ["A01", "A02"]
    assert {r.outcome for r in verdict.rules} == {Outcome.PASS}


class _FixedRule:
    """A hand-written rule that always answers `outcome`."""

    def __init__(self, rule_id: str, outcome: Outcome) -> None:
        self.rule_id = rule_id
        self.outcome = outcome

    def check(self, ctx: EvaluationContext) -> list[RuleResult]:
        return [RuleResult(self.rule_id, self.outcome, self.outcome.value)]


def test_any_deny_wins_over_review() -> None:
    review, deny = _FixedRule("X01", Outcome.REVIEW), _FixedRule("X02", Outcome.DENY)
    assert BasicRuleSet([review, deny]).evaluate(_ctx()).outcome is Outcome.DENY
    assert BasicRuleSet([review]).evaluate(_ctx()).outcome is Outcome.REVIEW
