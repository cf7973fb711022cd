"""The guards no shop can switch off: money (G01), the payment route (G02) and units (G03)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import pytest

from refundbridge.core.compliance import MedicalDeviceRuleSet
from refundbridge.core.model import Outcome, ShippedUnit
from refundbridge.core.money import Money
from refundbridge.core.ports import HeldUnits
from refundbridge.core.request import NormalizedRefundRequest, ReasonCode
from refundbridge.core.rules import (
    EvaluationContext,
    ShopPolicy,
    over_refund_guard,
    payment_route_guard,
    units_guard,
)
from refundbridge.core.services import rules_decision
from tests.unit.builders import at, line, make_request


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


# ------------------------------------------------------------------ units guard

GLU, BP = "GLU-METER-01", "BP-MON-01"


def _units_ctx(lines: list[dict[str, object]], *,
               shipped: tuple[ShippedUnit, ...] | None,
               held: tuple[HeldUnits, ...] = (), decided: Outcome | None = None,
               locale: str = "en", reason: str = "changed_mind") -> EvaluationContext:
    total = sum(int(str(li.get("quantity", 2))) * 199 for li in lines)
    request = make_request(**{"lines": [line(**li) for li in lines],
                              "order.paid_total": f"{total + 199}.00",
                              "requested_amount": f"{total}.00",
                              "customer.locale": locale, "reason.code": reason})
    return EvaluationContext(request, ShopPolicy(auto_approve_limits={"CNY": Decimal("5000")}),
                             request.paid, at(10), shipments=shipped, held_units=held,
                             decided=decided)


def _held(sku: str = GLU, quantity: int = 1, *, lot: str | None = None,
          serial: str | None = None, pending: bool = False) -> HeldUnits:
    return HeldUnits("rc_other", sku, quantity, lot, serial, pending)


ONE = (ShippedUnit(GLU, 1),)
TWO = (ShippedUnit(GLU, 2),)
TWO_LOTS = (ShippedUnit(GLU, 1, lot="L1"), ShippedUnit(GLU, 1, lot="L2"))
SERIALS = (ShippedUnit(GLU, 1, serial="S1"), ShippedUnit(GLU, 1, serial="S2"))


@pytest.mark.parametrize(
    ("lines", "shipped", "held", "outcome"),
    [
        # The first case on the order: what was shipped bounds it.
        ([{"quantity": 1, "lot": None}], ONE, (), Outcome.PASS),
        ([{"quantity": 2, "lot": None}], ONE, (), Outcome.DENY),
        # A unit another live case holds is gone: 1 of 1 shipped, 1 held.
        ([{"quantity": 1, "lot": None}], ONE, (_held(),), Outcome.DENY),
        # 2 shipped, 1 held: the other unit is still there, but not two.
        ([{"quantity": 1, "lot": None}], TWO, (_held(),), Outcome.PASS),
        ([{"quantity": 2, "lot": None}], TWO, (_held(),), Outcome.DENY),
        # Other SKUs held on the order are not this SKU's units.
        ([{"quantity": 1, "lot": None}], ONE, (_held(BP, 3),), Outcome.PASS),
        # Two lines of one SKU add up.
        ([{"quantity": 1, "lot": None}, {"quantity": 1, "lot": None}], ONE, (),
         Outcome.DENY),
        # Per lot, when the ERP recorded lots: L1's one unit is held, L2's is not.
        ([{"quantity": 1, "lot": "L1"}], TWO_LOTS, (_held(lot="L1"),), Outcome.DENY),
        ([{"quantity": 1, "lot": "L2"}], TWO_LOTS, (_held(lot="L1"),), Outcome.PASS),
        # A lot the ERP did not record is R01's question; the SKU total still binds.
        ([{"quantity": 1, "lot": "L9"}], TWO, (_held(),), Outcome.PASS),
        ([{"quantity": 1, "lot": "L9"}], TWO, (_held(lot="L9"),), Outcome.PASS),
        ([{"quantity": 1, "lot": "L9"}], ONE, (_held(),), Outcome.DENY),
        # A serial is one unit, with or without the ERP's record of it.
        ([{"quantity": 1, "lot": None, "serial": "S1"}], SERIALS, (_held(serial="S1"),),
         Outcome.DENY),
        ([{"quantity": 1, "lot": None, "serial": "S2"}], SERIALS, (_held(serial="S1"),),
         Outcome.PASS),
        ([{"quantity": 1, "lot": None, "serial": "S7"}], None, (_held(serial="S7"),),
         Outcome.DENY),
        # The ERP could not say what it shipped: nothing to count against...
        ([{"quantity": 5, "lot": None}], None, (), Outcome.PASS),
        # ...unless other requests ask for the same SKU: then a person confirms.
        ([{"quantity": 1, "lot": None}], None, (_held(),), Outcome.REVIEW),
        ([{"quantity": 1, "lot": None}], None, (_held(pending=True),), Outcome.REVIEW),
        # The ERP knows the order but shipped none of this SKU (a refund before shipping).
        ([{"quantity": 1, "lot": None}], (), (), Outcome.PASS),
        ([{"quantity": 1, "lot": None}], (ShippedUnit(BP, 1),), (_held(),), Outcome.REVIEW),
        # It fits only if a request waiting for a person is denied: a person decides.
        ([{"quantity": 1, "lot": None}], ONE, (_held(pending=True),), Outcome.REVIEW),
        ([{"quantity": 1, "lot": None}], TWO, (_held(pending=True),), Outcome.PASS),
    ],
)
def test_units_guard_table(lines: list[dict[str, object]],
                           shipped: tuple[ShippedUnit, ...] | None,
                           held: tuple[HeldUnits, ...], outcome: Outcome) -> None:
    result = units_guard(_units_ctx(lines, shipped=shipped, held=held))
    assert (result.rule_id, result.outcome) == ("G03", outcome), result.message


def test_units_guard_names_the_sku_what_remains_and_what_was_asked() -> None:
    ctx = _units_ctx([{"quantity": 2, "lot": None}], shipped=(ShippedUnit(GLU, 3),),
                     held=(_held(quantity=2),))
    english = units_guard(ctx).message
    assert english == ("SKU GLU-METER-01: 2 asked for, but only 1 of the 3 shipped on this "
                       "order remain (its other requests hold 2).")
    chinese = units_guard(_units_ctx([{"quantity": 2, "lot": None}], locale="zh-CN",
                                     shipped=(ShippedUnit(GLU, 3),),
                                     held=(_held(quantity=2),))).message
    assert chinese == ("SKU GLU-METER-01：申请 2 件，但本订单发货 3 件中仅剩 1 件可退"
                       "（其他申请已占用 2 件）。")


def test_units_guard_gives_one_reason_per_sku() -> None:
    ctx = _units_ctx([{"quantity": 1, "lot": "L1", "serial": "S1"}],
                     shipped=(ShippedUnit(GLU, 1, lot="L1", serial="S1"),),
                     held=(_held(lot="L1", serial="S1"),))
    result = units_guard(ctx)
    assert result.outcome is Outcome.DENY
    assert result.message.count("GLU-METER-01") == 1


def test_a_person_deciding_is_bound_only_by_held_units() -> None:
    waiting = (_held(pending=True),)
    assert units_guard(_units_ctx([{"quantity": 1, "lot": None}], shipped=ONE, held=waiting,
                                  decided=Outcome.APPROVE)).outcome is Outcome.PASS
    approved = (_held(),)
    assert units_guard(_units_ctx([{"quantity": 1, "lot": None}], shipped=ONE, held=approved,
                                  decided=Outcome.APPROVE)).outcome is Outcome.DENY


def test_a_request_for_a_unit_already_held_is_denied_before_any_money() -> None:
    ctx = _units_ctx([{"quantity": 1, "lot": None}], shipped=ONE, held=(_held(),))
    decision = rules_decision(MedicalDeviceRuleSet(), ctx)
    assert decision.outcome is Outcome.DENY
    assert [(r.rule_id, r.outcome) for r in decision.rules[:2]] == [
        ("G01", Outcome.PASS), ("G03", Outcome.DENY)]


def test_an_injury_over_the_units_still_reaches_a_person() -> None:
    ctx = _units_ctx([{"quantity": 1, "lot": None}], shipped=ONE, held=(_held(),),
                     reason="injury")
    decision = rules_decision(MedicalDeviceRuleSet(), ctx)
    assert decision.outcome is Outcome.REVIEW
    assert any(o.kind.value == "adverse_event_report" for o in decision.obligations)


def test_uncertain_units_send_an_approval_to_a_person() -> None:
    ctx = _units_ctx([{"quantity": 1, "lot": None}], shipped=None, held=(_held(),))
    assert rules_decision(MedicalDeviceRuleSet(), ctx).outcome is Outcome.REVIEW
    alone = _units_ctx([{"quantity": 1, "lot": None}], shipped=None)
    assert rules_decision(MedicalDeviceRuleSet(), alone).outcome is Outcome.APPROVE
