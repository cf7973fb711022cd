"""Exchanges in the core: what a request may say, the price difference (Decimal and
currency), the exchange's paths through the lifecycle, the replacement's claim, and the two
exchange guards (X01, X02)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from refundbridge.core.audit import verify_chain
from refundbridge.core.errors import (
    CurrencyMismatch,
    DomainError,
    IllegalTransition,
    InvalidRequest,
)
from refundbridge.core.exchanges import lots_to_avoid, price_difference_guard, recalled_lot_notes
from refundbridge.core.lifecycle import CaseState, Transition
from refundbridge.core.model import (
    DeliveryStatus,
    Disposition,
    LineDisposition,
    NotificationKind,
    Outcome,
    RefundCase,
    RefundResult,
    RefundStatus,
    Step,
)
from refundbridge.core.money import Money
from refundbridge.core.replacement import CaseReplacement, ReplacementProgress
from refundbridge.core.request import NormalizedRefundRequest, parse_request
from tests.unit.builders import approval, at, inspection, line, request_body

S = CaseState
LEASE = timedelta(minutes=5)
TRANSITION_NAMES = {t.value for t in Transition}


def replacement(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"sku": "GLU-METER-02", "name": "Glucose meter II", "quantity": 2,
                            "unit_price": "179.00"}
    body.update(overrides)
    return body


def exchange(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"kind": "exchange", "replacements": [replacement()],
                              "requested_amount": "40.00"}
    fields.update(overrides)
    return request_body(**fields)


def refused_field(body: dict[str, Any]) -> str:
    import json

    with pytest.raises(InvalidRequest) as refused:
        parse_request(json.dumps(body).encode())
    return refused.value.field


# ------------------------------------------------------------------ validation


def test_an_exchange_needs_a_replacement() -> None:
    assert refused_field(exchange(replacements=[])) == "replacements"


@pytest.mark.parametrize("kind", ["refund_only", "return_and_refund"])
def test_a_refund_carries_no_replacements(kind: str) -> None:
    assert refused_field(request_body(kind=kind, replacements=[replacement()])) == (
        "replacements")


def test_an_exchange_may_ask_for_no_money_but_a_refund_must() -> None:
    swap = exchange(requested_amount="0", replacements=[replacement(unit_price="199.00")])
    assert NormalizedRefundRequest.model_validate(swap).requested == Money.zero("CNY")
    assert refused_field(request_body(requested_amount="0")) == "requested_amount"
    assert refused_field(request_body(requested_amount="0.00",
                                      kind="return_and_refund")) == "requested_amount"


def test_an_exchange_asks_back_at_most_its_price_difference() -> None:
    assert NormalizedRefundRequest.model_validate(exchange(requested_amount="40.00"))
    assert NormalizedRefundRequest.model_validate(exchange(requested_amount="39.99"))
    assert refused_field(exchange(requested_amount="40.01")) == "requested_amount"
    # Owing the shop: nothing may be asked back.
    dearer = [replacement(unit_price="249.00")]
    assert refused_field(exchange(replacements=dearer, requested_amount="0.01")) == (
        "requested_amount")
    assert NormalizedRefundRequest.model_validate(
        exchange(replacements=dearer, requested_amount="0"))


@pytest.mark.parametrize("bad, field", [
    ({"unit_price": "1.001"}, "replacements.0.unit_price"),
    ({"unit_price": "-1.00"}, "replacements.0.unit_price"),
    ({"unit_price": 12.5}, "replacements.0.unit_price"),
    ({"quantity": 0}, "replacements.0.quantity"),
    ({"sku": ""}, "replacements.0.sku"),
    ({"colour": "red"}, "replacements.0.colour"),
])
def test_a_malformed_replacement_names_its_field(bad: dict[str, Any], field: str) -> None:
    assert refused_field(exchange(replacements=[replacement(**bad)])) == field


def test_a_replacement_price_has_the_currencys_decimal_places() -> None:
    yen = exchange(**{"order.currency": "JPY", "order.paid_total": "398",
                      "lines.0.unit_price": "199", "requested_amount": "40"},
                   replacements=[replacement(unit_price="179.5")])
    assert refused_field(yen) == "replacements.0.unit_price"


# ------------------------------------------------------------------ the price difference


def test_the_price_difference_is_decimal_money_in_the_orders_currency() -> None:
    request = NormalizedRefundRequest.model_validate(exchange(
        lines=[line(quantity=2, unit_price="199.00"), line(sku="STRIP-50", quantity=3,
                                                           unit_price="0.10")],
        **{"order.paid_total": "398.30"},
        replacements=[replacement(quantity=1, unit_price="179.00"),
                      replacement(sku="STRIP-25", quantity=3, unit_price="0.05")],
        requested_amount="219.15"))
    assert request.lines_value == Money(Decimal("398.30"), "CNY")
    assert request.replacements_value == Money(Decimal("179.15"), "CNY")
    assert request.price_difference == Money(Decimal("219.15"), "CNY")
    assert isinstance(request.price_difference.amount, Decimal)
    with pytest.raises(CurrencyMismatch):
        _ = request.price_difference - Money(Decimal("1"), "USD")


def test_a_dearer_replacement_leaves_a_negative_difference() -> None:
    request = NormalizedRefundRequest.model_validate(exchange(
        replacements=[replacement(unit_price="249.00")], requested_amount="0"))
    assert request.price_difference == Money(Decimal("-100.00"), "CNY")


def test_the_fingerprint_of_a_request_without_replacements_is_unchanged() -> None:
    body = request_body()
    plain = NormalizedRefundRequest.model_validate(body)
    explicit = NormalizedRefundRequest.model_validate({**body, "replacements": []})
    assert plain.fingerprint() == explicit.fingerprint()
    one = NormalizedRefundRequest.model_validate(exchange())
    other = NormalizedRefundRequest.model_validate(exchange(
        replacements=[replacement(sku="GLU-METER-03")]))
    assert one.fingerprint() != other.fingerprint()


# ------------------------------------------------------------------ the guards


def test_x01_passes_a_refund_or_a_swap_and_sends_a_debt_to_a_person() -> None:
    refund = price_difference_guard(NormalizedRefundRequest.model_validate(exchange()))
    assert refund is not None and refund.outcome is Outcome.PASS and "40.00" in refund.message
    swap = price_difference_guard(NormalizedRefundRequest.model_validate(exchange(
        replacements=[replacement(unit_price="199.00")], requested_amount="0")))
    assert swap is not None and swap.outcome is Outcome.PASS
    owed = price_difference_guard(NormalizedRefundRequest.model_validate(exchange(
        replacements=[replacement(unit_price="249.00")], requested_amount="0",
        **{"customer.locale": "en"})))
    assert owed is not None and owed.outcome is Outcome.REVIEW
    assert "100.00 CNY more" in owed.message and "person" in owed.message
    assert price_difference_guard(NormalizedRefundRequest.model_validate(request_body())) is None


def test_x02_names_the_recalled_lots_a_replacement_must_avoid() -> None:
    request = NormalizedRefundRequest.model_validate(exchange())
    dispositions = [LineDisposition(0, "GLU-METER-01", Disposition.QUARANTINE, "R13", "L2401"),
                    LineDisposition(1, "GLU-METER-01", Disposition.QUARANTINE, "R13", "L2401"),
                    LineDisposition(2, "STRIP-50", Disposition.RESTOCK, "R08", "S9")]
    assert lots_to_avoid(dispositions) == ("L2401",)
    notes = recalled_lot_notes(request, dispositions)
    assert [(n.rule_id, n.outcome, n.line) for n in notes] == [("X02", Outcome.PASS, 0)]
    assert "L2401" in notes[0].message


# ------------------------------------------------------------------ the lifecycle


def open_exchange(timing: str = "on_receipt", **overrides: Any) -> RefundCase:
    request = NormalizedRefundRequest.model_validate(exchange(**overrides))
    return RefundCase.open(request, shop_id="acme", source="generic",
                           refund_timing="on_receipt", at=at(0), case_id="rc_test",
                           replacement_timing=timing)


def send_all(case: RefundCase, minute: int) -> None:
    case.record_notifications(
        [(n.kind, DeliveryStatus.SENT, None) for n in case.pending_notifications()], at(minute))


def order(case: RefundCase, minute: int, *, shipped: bool = True) -> None:
    claim = case.claim_replacement(at(minute), LEASE)
    assert claim is not None and claim.idempotency_key == "rc_test-replacement"
    case.record_replacement("SO-1", "DN-1" if shipped else None, shipped, at(minute),
                            "connector:erp")


def states(case: RefundCase) -> list[str | None]:
    return [e.to_state for e in case.new_events
            if e.name == "received" or e.name in TRANSITION_NAMES]


def assert_trail_is_sound(case: RefundCase) -> None:
    events = case.new_events
    assert verify_chain(events).verifies
    previous = None
    for event in events:
        if event.name in TRANSITION_NAMES:
            assert event.from_state == previous and event.to_state != previous
        elif event.name != "received":
            assert event.from_state == event.to_state == previous
        previous = event.to_state
    assert previous == case.state


def test_on_receipt_the_unit_comes_back_then_the_replacement_then_the_difference() -> None:
    case = open_exchange()
    case.start_evaluation(at(1))
    case.decide(approval(case))
    assert case.state is S.AWAITING_RETURN
    assert Step.REPLACE not in case.steps_needed()
    assert case.claim_replacement(at(2), LEASE) is None  # not before the unit is back
    case.receive_goods([inspection()], at(3), "warehouse:bob")
    assert case.state is S.REPLACING and Step.REPLACE in case.steps_needed()
    order(case, 4)
    assert case.state is S.REFUNDING  # 40.00 back
    case.reserve_attempt(at(5))
    case.apply_refund_result(RefundResult(RefundStatus.SUCCEEDED, "re_1", case.approved),
                             at(5), "connector:pay")
    assert not case.close_if_done(at(6))  # the return is not booked yet
    case.record_stock_booked("ERP-RET-1", case.planned_stock_moves(), at(6), "connector:erp")
    send_all(case, 7)
    assert case.state is S.CLOSED
    assert states(case) == ["received", "evaluating", "approved", "awaiting_return",
                            "received_goods", "replacing", "replaced", "refunding",
                            "refunded", "closed"]
    kinds = [n.kind for n in case.notifications]
    assert NotificationKind.REPLACEMENT_SHIPPED in kinds
    assert NotificationKind.REPLACEMENT_ORDERED not in kinds  # shipped at once says both
    assert_trail_is_sound(case)


def test_on_approval_the_replacement_goes_first_and_a_swap_closes_on_receipt() -> None:
    case = open_exchange("on_approval", requested_amount="0",
                         replacements=[replacement(unit_price="199.00")])
    case.start_evaluation(at(1))
    case.decide(approval(case))
    assert case.state is S.REPLACING
    order(case, 2, shipped=False)
    assert case.state is S.AWAITING_RETURN
    assert [n.kind for n in case.notifications][-1] is NotificationKind.REPLACEMENT_ORDERED
    # Later news that it shipped moves it on, once.
    case.record_replacement("SO-1", "DN-1", True, at(3), "connector:erp")
    case.record_replacement("SO-1", "DN-1", True, at(3), "connector:erp")
    assert case.replacement is not None
    assert case.replacement.progress is ReplacementProgress.SHIPPED
    assert [n.kind for n in case.notifications].count(NotificationKind.REPLACEMENT_SHIPPED) == 1
    case.receive_goods([inspection()], at(4), "warehouse:bob")
    assert case.state is S.RECEIVED_GOODS and not case.refund_owed
    case.record_stock_booked("ERP-RET-1", case.planned_stock_moves(), at(5), "connector:erp")
    send_all(case, 6)
    assert case.state is S.CLOSED and case.attempts == []
    assert states(case)[2:] == ["approved", "replacing", "replaced", "awaiting_return",
                                "received_goods", "closed"]
    assert_trail_is_sound(case)


def test_an_on_receipt_swap_closes_from_replaced() -> None:
    case = open_exchange(requested_amount="0", replacements=[replacement(unit_price="199.00")])
    case.start_evaluation(at(1))
    case.decide(approval(case))
    case.receive_goods([inspection()], at(2), "warehouse:bob")
    case.record_stock_booked("ERP-RET-1", case.planned_stock_moves(), at(3), "connector:erp")
    order(case, 4)
    assert case.state is S.REPLACED  # the customer's emails are still owed
    send_all(case, 5)
    assert case.state is S.CLOSED
    assert_trail_is_sound(case)


def test_a_second_claim_waits_for_the_lease_and_then_looks_up_first() -> None:
    case = open_exchange("on_approval")
    case.start_evaluation(at(1))
    case.decide(approval(case))
    first = case.claim_replacement(at(2), LEASE)
    assert first is not None and first.claims == 1
    assert case.claim_replacement(at(3), LEASE) is None  # the first job's claim is live
    second = case.claim_replacement(at(2) + LEASE, LEASE)
    assert second is not None and second.claims == 2
    assert second.idempotency_key == first.idempotency_key
    claimed = [e.data for e in case.new_events if e.name == "replacement_claimed"]
    assert [d["looks_up_first"] for d in claimed] == [False, True]
    case.record_replacement("SO-1", "DN-1", True, at(20), "connector:erp", found=True)
    assert case.claim_replacement(at(60), LEASE) is None  # ordered: nothing left to claim
    assert_trail_is_sound(case)


def test_a_refused_replacement_fails_for_a_person_who_retries_it() -> None:
    case = open_exchange("on_approval")
    case.start_evaluation(at(1))
    case.decide(approval(case))
    case.claim_replacement(at(2), LEASE)
    case.replacement_refused("SKU GLU-METER-02 is not sold", at(3), "not_found")
    assert case.state is S.FAILED and case.failure is not None
    assert case.failure.step is Step.REPLACE and case.failure.resume_state is S.REPLACING
    # The refusal freed the claim: the retry claims at once.
    case.retry(at(4), "operator:li")
    assert case.state is S.REPLACING and Step.REPLACE in case.new_steps
    assert case.claim_replacement(at(4), LEASE) is not None
    assert_trail_is_sound(case)


def test_a_case_with_a_replacement_under_way_is_not_cancelled() -> None:
    case = open_exchange("on_approval")
    case.start_evaluation(at(1))
    case.decide(approval(case))
    order(case, 2)
    assert case.state is S.AWAITING_RETURN
    with pytest.raises(DomainError):
        case.cancel(at(3), "operator:li", "customer changed their mind")


@pytest.mark.parametrize("state, transition", [
    (S.APPROVED, Transition.CONFIRM_REPLACEMENT),
    (S.AWAITING_RETURN, Transition.START_REPLACEMENT),
    (S.REPLACED, Transition.START_REPLACEMENT),
    (S.REPLACING, Transition.CLOSE),
    (S.REPLACING, Transition.CANCEL),
    (S.REFUNDING, Transition.CONFIRM_REPLACEMENT),
])
def test_illegal_exchange_transitions_raise(state: CaseState, transition: Transition) -> None:
    case = open_exchange()
    case.state = state
    with pytest.raises(IllegalTransition):
        case._move(transition, actor="test", at=at(1))


def test_recording_a_replacement_nobody_claimed_raises() -> None:
    case = open_exchange()
    with pytest.raises(DomainError):
        case.record_replacement("SO-1", None, False, at(1), "connector:erp")


def test_the_replacement_record_round_trips_through_json() -> None:
    record = CaseReplacement("rc_x-replacement", 2, at(1), ReplacementProgress.SHIPPED,
                             False, "SO-1", "DN-1", ("L2401",), None)
    assert CaseReplacement.from_json(record.as_json()) == record


def test_a_refund_case_still_ignores_exchanges() -> None:
    request = NormalizedRefundRequest.model_validate(request_body(kind="return_and_refund"))
    case = RefundCase.open(request, shop_id="acme", source="generic",
                           refund_timing="on_receipt", at=at(0), case_id="rc_test")
    assert case.replacement_done and not case.is_exchange
    case.start_evaluation(at(1))
    case.decide(approval(case))
    case.receive_goods([inspection()], at(2), "warehouse:bob")
    assert case.state is S.REFUNDING


def test_refund_kinds_still_refuse_validation_through_pydantic() -> None:
    with pytest.raises(ValidationError):
        NormalizedRefundRequest.model_validate(request_body(replacements=[replacement()]))
