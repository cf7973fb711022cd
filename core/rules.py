"""The evaluation hook: what a rule set is given, what it answers, and the one guard no shop
can switch off.

A `RuleSet` turns an `EvaluationContext` into a `Verdict`. The services only know this
protocol; `core.compliance.MedicalDeviceRuleSet` is the rule set RefundBridge ships. The
over-refund guard (G01, money) and the units guard (G03, units) are not rules: the services
apply them around any rule set, and a reviewer cannot approve past them either. Their
sentences are in core/messages.py, with the rules'.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from typing import Protocol
from zoneinfo import ZoneInfo

from refundbridge.core.messages import text
from refundbridge.core.model import Inspection, LineDisposition, Obligation, Outcome, RuleResult
from refundbridge.core.money import Money
from refundbridge.core.policy import ShopPolicy
from refundbridge.core.ports import HeldUnits, ShippedUnit
from refundbridge.core.recalls import RecallList
from refundbridge.core.request import NormalizedRefundRequest


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
    # The lines of the order's other cases that hold units, or wait for a person (G03).
    held_units: tuple[HeldUnits, ...] = ()
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


def _text(request: NormalizedRefundRequest, message_id: str, **values: object) -> str:
    return text(message_id, request.customer.locale, **values)


def _guard(rule: str, outcome: Outcome, request: NormalizedRefundRequest, message_id: str,
           **values: object) -> RuleResult:
    return RuleResult(rule, outcome, _text(request, message_id, **values))


def over_refund_guard(ctx: EvaluationContext) -> RuleResult:
    requested = ctx.request.requested
    if requested > ctx.refundable:
        return _guard("G01", Outcome.DENY, ctx.request, "G01.deny", requested=requested,
                      refundable=ctx.refundable)
    return _guard("G01", Outcome.PASS, ctx.request, "G01.pass", requested=requested)


# What G03 counts units of: a SKU, or one lot or one serial of it ("sku", sku, None) /
# ("lot", sku, lot) / ("serial", sku, serial).
_UnitKey = tuple[str, str, str | None]


def _unit_keys(sku: str, lot: str | None, serial: str | None) -> list[_UnitKey]:
    keys: list[_UnitKey] = [("sku", sku, None)]
    if lot:
        keys.append(("lot", sku, lot))
    if serial:
        keys.append(("serial", sku, serial))
    return keys


def _count(key: _UnitKey, quantity: int) -> int:
    # A serial number names one unit, whatever quantity its line says.
    return 1 if key[0] == "serial" else quantity


def _shipped(key: _UnitKey, shipments: tuple[ShippedUnit, ...] | None) -> int | None:
    """How many units of `key` left for the order, or None when nobody can say.

    Only the ERP's record counts (the request carries the returned lines, not the order's).
    A lot the record does not name is for R01 to question, not a bound of 0; a serial it
    does not name is still one unit.
    """
    kind, sku, value = key
    units = [u for u in shipments or () if u.sku == sku]
    if kind == "lot":
        units = [u for u in units if u.lot == value]
    elif kind == "serial":
        units = [u for u in units if u.serial == value]
    if units:
        return sum(u.quantity for u in units)
    return 1 if kind == "serial" else None


def units_guard(ctx: EvaluationContext) -> RuleResult:
    """G03: no more units are refunded than the order shipped.

    For each SKU the request names (and each lot or serial it names), the units asked for
    plus those the order's other live cases hold must not exceed what the ERP shipped;
    over that it denies, naming the SKU, what remains and what was asked for. It sends the
    case to a person instead when that is uncertain: the units fit only without the other
    requests waiting for a person, or the ERP cannot say what was shipped while other
    requests ask for the same SKU. A person deciding (`ctx.decided`) is not sent to
    themselves: only a denial binds them.
    """
    request = ctx.request
    asked: dict[_UnitKey, int] = {}
    for line in request.lines:
        for key in _unit_keys(line.sku, line.lot, line.serial):
            asked[key] = asked.get(key, 0) + _count(key, line.quantity)
    held: dict[_UnitKey, int] = {}
    pending: dict[_UnitKey, int] = {}
    for unit in ctx.held_units:
        if unit.pending and ctx.decided is not None:
            continue
        into = pending if unit.pending else held
        for key in _unit_keys(unit.sku, unit.lot, unit.serial):
            into[key] = into.get(key, 0) + _count(key, unit.quantity)
    denials: dict[str, str] = {}  # SKU -> why: one reason per SKU, the worst found
    reviews: dict[str, str] = {}
    unchecked = False
    for key, requested in asked.items():
        kind, sku, value = key
        if sku in denials:
            continue
        label = _text(request, f"G03.unit.{kind}", sku=sku, lot=value, serial=value)
        others, waiting = held.get(key, 0), pending.get(key, 0)
        shipped = _shipped(key, ctx.shipments)
        if shipped is None:
            if kind != "sku":
                continue  # a lot the ERP did not record: its SKU's count still binds
            unchecked = True
            if others + waiting:
                reviews.setdefault(sku, _text(request, "G03.review_unknown", unit=label,
                                              held=others + waiting, requested=requested))
            continue
        remaining = max(shipped - others, 0)
        if requested > remaining:
            by_definition = kind == "serial" and not any(
                u.serial == value and u.sku == sku for u in ctx.shipments or ())
            denials[sku] = _text(request, "G03.deny_serial" if by_definition else "G03.deny",
                                 unit=label, requested=requested, remaining=remaining,
                                 shipped=shipped, held=others)
        elif requested + waiting > remaining:
            reviews.setdefault(sku, _text(request, "G03.review_pending", unit=label,
                                          remaining=remaining, shipped=shipped,
                                          requested=requested, pending=waiting))
    if denials:
        return RuleResult("G03", Outcome.DENY, " ".join(denials.values()))
    if reviews:
        return RuleResult("G03", Outcome.REVIEW, " ".join(reviews.values()))
    return _guard("G03", Outcome.PASS, request, "G03.unchecked" if unchecked else "G03.pass")


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
           "payment_route_guard", "units_guard"]
