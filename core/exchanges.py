"""Exchanges: what the rules add to a decision when units go out in place of returned ones.

An exchange (`exchange`, `return_and_exchange`) is decided by the same rules as a return:
its returned lines are the request's lines, checked, received, inspected and disposed of as
any return's. Two things are its own, both applied around any rule set like the guards in
core/rules.py:

- X01, the price difference: the returned lines' value minus the replacements'. Above zero
  it is refunded through the payment connector (the request asks for it in
  `requested_amount`, at most the difference); zero is a straight swap; below zero the
  customer owes the shop. None of our payment connectors can charge a customer, so an
  exchange that leaves the customer owing goes to a person, who collects or waives it
  before approving (the rule's message says so, in the review queue).
- X02, recalled lots: a returned unit of a recalled lot (R13) is quarantined like any
  recalled unit, and its replacement must not come from that lot. The replacement order
  carries the lots to avoid (`ReplacementOrder.avoid_lots`) for the ERP to honour.
"""

from __future__ import annotations

from collections.abc import Sequence

from refundbridge.core.messages import text
from refundbridge.core.model import LineDisposition, Outcome, RuleResult
from refundbridge.core.request import NormalizedRefundRequest


def price_difference_guard(request: NormalizedRefundRequest) -> RuleResult | None:
    """X01 (None for a request that is no exchange): only sends an approval to a person."""
    if not request.is_exchange:
        return None
    locale = request.customer.locale
    returned, replacements = request.lines_value, request.replacements_value
    difference = request.price_difference
    if difference.is_positive():
        return RuleResult("X01", Outcome.PASS, text(
            "X01.refund", locale, returned=returned, replacements=replacements,
            difference=difference))
    if difference.minor == 0:
        return RuleResult("X01", Outcome.PASS, text("X01.even", locale, returned=returned))
    owed = replacements - returned
    return RuleResult("X01", Outcome.REVIEW, text(
        "X01.owed", locale, returned=returned, replacements=replacements, owed=owed))


def lots_to_avoid(dispositions: Sequence[LineDisposition]) -> tuple[str, ...]:
    """The recalled lots among the returned units (R13 quarantined them), once each."""
    return tuple(dict.fromkeys(d.lot for d in dispositions if d.rule == "R13" and d.lot))


def recalled_lot_notes(request: NormalizedRefundRequest,
                       dispositions: Sequence[LineDisposition]) -> tuple[RuleResult, ...]:
    """X02: one line per recalled lot a replacement must not come from."""
    if not request.is_exchange:
        return ()
    locale = request.customer.locale
    seen: set[str] = set()
    notes: list[RuleResult] = []
    for d in dispositions:
        if d.rule != "R13" or not d.lot or d.lot in seen:
            continue
        seen.add(d.lot)
        notes.append(RuleResult("X02", Outcome.PASS,
                                text("X02.avoid", locale, line=d.line + 1, lot=d.lot), d.line))
    return tuple(notes)
