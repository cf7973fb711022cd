"""The evaluation hook: a shop policy, rules, and the way their results combine.

A `RuleSet` turns an `EvaluationContext` into a `Verdict`. The spine ships `BasicRuleSet`
(amount limit and reason codes); the medical-device rule set replaces it without touching the
services, because the services only know the `RuleSet` protocol. The over-refund guard is not
a rule a shop can switch off: `services.evaluate` applies it before any rule set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Literal, Protocol

from core.model import Outcome, RuleResult
from core.money import Money
from core.request import NormalizedRefundRequest, ReasonCode

RefundTiming = Literal["on_approval", "on_receipt"]

NO_REASON_CODES = frozenset(
    {ReasonCode.CHANGED_MIND, ReasonCode.NO_LONGER_NEEDED, ReasonCode.ORDERED_BY_MISTAKE}
)
QUALITY_CODES = frozenset(
    {ReasonCode.DEFECTIVE, ReasonCode.DAMAGED_ON_ARRIVAL, ReasonCode.WRONG_ITEM,
     ReasonCode.NOT_AS_DESCRIBED}
)
ADVERSE_EVENT_CODES = frozenset({ReasonCode.INJURY, ReasonCode.MALFUNCTION_HARM})


@dataclass(frozen=True, slots=True)
class ShopPolicy:
    refund_timing: RefundTiming = "on_receipt"
    # currency -> largest amount the rules may approve without a person
    auto_approve_limits: Mapping[str, Decimal] = field(default_factory=dict)
    auto_approve_reasons: frozenset[ReasonCode] = NO_REASON_CODES | QUALITY_CODES


@dataclass(frozen=True, slots=True)
class EvaluationContext:
    request: NormalizedRefundRequest
    policy: ShopPolicy
    refundable: Money  # paid on the order minus what other cases already hold
    now: datetime

    @property
    def today(self) -> date:
        return self.now.date()


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    amount: Money
    rules: tuple[RuleResult, ...]


class Rule(Protocol):
    rule_id: str

    def check(self, ctx: EvaluationContext) -> Sequence[RuleResult]: ...


class RuleSet(Protocol):
    def evaluate(self, ctx: EvaluationContext) -> Verdict: ...


def over_refund_guard(ctx: EvaluationContext) -> RuleResult:
    requested = ctx.request.requested
    if requested > ctx.refundable:
        return RuleResult(
            "G01", Outcome.DENY,
            f"Refusing to refund {requested}: the order can refund at most {ctx.refundable} "
            "more (paid total minus what other requests already hold).",
        )
    return RuleResult("G01", Outcome.PASS, f"{requested} is within what the order can refund.")


class AmountLimitRule:
    rule_id = "A01"

    def check(self, ctx: EvaluationContext) -> Sequence[RuleResult]:
        requested = ctx.request.requested
        limit = ctx.policy.auto_approve_limits.get(requested.currency)
        if limit is None:
            return [RuleResult(self.rule_id, Outcome.REVIEW,
                               f"No auto-approval limit is set for {requested.currency}.")]
        if requested.amount > limit:
            return [RuleResult(self.rule_id, Outcome.REVIEW,
                               f"{requested} is above the auto-approval limit of {limit} "
                               f"{requested.currency}.")]
        return [RuleResult(self.rule_id, Outcome.PASS,
                           f"{requested} is within the auto-approval limit.")]


class ReasonCodeRule:
    rule_id = "A02"

    def check(self, ctx: EvaluationContext) -> Sequence[RuleResult]:
        code = ctx.request.reason.code
        if code in ADVERSE_EVENT_CODES:
            return [RuleResult(self.rule_id, Outcome.REVIEW,
                               f"Reason '{code}' may be an adverse event; a person must review.")]
        if code in ctx.policy.auto_approve_reasons:
            return [RuleResult(self.rule_id, Outcome.PASS,
                               f"Reason '{code}' may be approved automatically.")]
        return [RuleResult(self.rule_id, Outcome.REVIEW,
                           f"Reason '{code}' needs a person's review.")]


class BasicRuleSet:
    """Any deny denies; else any review sends the case to a person; else approve."""

    def __init__(self, rules: Sequence[Rule] | None = None) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules or (AmountLimitRule(), ReasonCodeRule()))

    def evaluate(self, ctx: EvaluationContext) -> Verdict:
        results = tuple(r for rule in self.rules for r in rule.check(ctx))
        outcomes = {r.outcome for r in results}
        if Outcome.DENY in outcomes:
            outcome = Outcome.DENY
        elif Outcome.REVIEW in outcomes:
            outcome = Outcome.REVIEW
        else:
            outcome = Outcome.APPROVE
        return Verdict(outcome, ctx.request.requested, results)
