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
from core.policy import ShopPolicy
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
    # The case's decision when it is already taken (a reviewer's approval; an approved case
    # whose goods came back): what the shop then owes follows it, not the rules' own outcome.
    decided: Outcome | None = None

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


# The guards' messages, in English and Chinese like the rule set's (core/compliance.py).
GUARD_MESSAGES: dict[str, tuple[str, str]] = {
    "G01.deny": ("Refusing to refund {requested}: the order can refund at most {refundable} "
                 "more (paid total minus what other requests already hold).",
                 "拒绝退款 {requested}：该订单最多还能退 {refundable}"
                 "（实付金额减去其他申请已占用的金额）。"),
    "G01.pass": ("{requested} is within what the order can refund.",
                 "{requested} 未超出该订单可退金额。"),
    "G02.pass": ("Refunded through {payment}, as the order was paid.",
                 "按原支付渠道 {payment} 退款。"),
    "G02.review": ("The order was paid through '{provider}', but this shop refunds through "
                   "'{payment}': a person must confirm where the money goes.",
                   "订单通过“{provider}”支付，但本店经“{payment}”退款：需人工确认退款去向。"),
}


def _guard(rule: str, outcome: Outcome, request: NormalizedRefundRequest, key: str,
           **values: object) -> RuleResult:
    english, chinese = GUARD_MESSAGES[key]
    template = chinese if request.customer.locale.lower().startswith("zh") else english
    return RuleResult(rule, outcome, template.format(**values))


def over_refund_guard(ctx: EvaluationContext) -> RuleResult:
    requested = ctx.request.requested
    if requested > ctx.refundable:
        return _guard("G01", Outcome.DENY, ctx.request, "G01.deny", requested=requested,
                      refundable=ctx.refundable)
    return _guard("G01", Outcome.PASS, ctx.request, "G01.pass", requested=requested)


def _plain(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def payment_route_guard(request: NormalizedRefundRequest, payment_connector: str,
                        source: str, plays_any_provider: bool = False) -> RuleResult:
    """G02: the money goes back the way it came. A storefront that is also the shop's payment
    connector (Shopify, WooCommerce) refunds through its own gateway; otherwise the order's
    payment provider must be the shop's payment connector, or a person confirms where the
    money goes (a Stripe reference is no use to WeChat Pay)."""
    provider = _plain(request.order.payment.provider)
    if plays_any_provider or source == payment_connector or (
            _plain(payment_connector) in provider):
        return _guard("G02", Outcome.PASS, request, "G02.pass", payment=payment_connector)
    return _guard("G02", Outcome.REVIEW, request, "G02.review",
                  provider=request.order.payment.provider, payment=payment_connector)


__all__ = ["EvaluationContext", "RuleSet", "ShopPolicy", "Verdict", "over_refund_guard",
           "payment_route_guard"]
