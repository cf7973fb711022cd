"""The evaluation hook: what a rule set is given, what it answers, and the one guard no shop
can switch off.

A `RuleSet` turns an `EvaluationContext` into a `Verdict`. The services only know this
protocol; `core.compliance.MedicalDeviceRuleSet` is the rule set RefundBridge ships. The
over-refund guard is not a rule: `services.evaluate` applies it before any rule set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from typing import Protocol
from zoneinfo import ZoneInfo

from core.model import Inspection, LineDisposition, Obligation, Outcome, RuleResult
from core.money import Money
from core.policy import (
    ADVERSE_EVENT_CODES,
    NO_REASON_CODES,
    QUALITY_CODES,
    RefundTiming,
    ShopPolicy,
)
from core.ports import ShippedUnit
from core.recalls import RecallList
from core.request import NormalizedRefundRequest


@dataclass(frozen=True)
class EvaluationContext:
    """Everything a decision may depend on. Nothing else: the same context always gives the
    same verdict, which is what makes a decision reproducible for an auditor."""

    request: NormalizedRefundRequest
    policy: ShopPolicy
    refundable: Money  # paid on the order minus what other cases already hold
    now: datetime
    recalls: RecallList = field(default_factory=RecallList)
    # When this customer asked for refunds before, at this shop (R19).
    previous_requests: tuple[datetime, ...] = ()
    # What the ERP says it shipped for the order; None when it could not say (R01).
    shipments: tuple[ShippedUnit, ...] | None = None
    inspections: tuple[Inspection, ...] = ()

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.policy.timezone)

    def local_date(self, moment: datetime) -> date:
        """The day `moment` falls on in the shop's calendar."""
        return moment.astimezone(self.zone).date()

    @property
    def today(self) -> date:
        return self.local_date(self.now)


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    amount: Money
    rules: tuple[RuleResult, ...]
    lines: tuple[LineDisposition, ...] = ()
    obligations: tuple[Obligation, ...] = ()


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


__all__ = ["ADVERSE_EVENT_CODES", "NO_REASON_CODES", "QUALITY_CODES", "EvaluationContext",
           "RefundTiming", "RuleSet", "ShopPolicy", "Verdict", "over_refund_guard"]
