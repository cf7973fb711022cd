"""How a case decides what it still needs: its ERP booking claim, `steps_needed`, a bounded
revival, and a failed step shown on the case."""

from __future__ import annotations

from datetime import timedelta

import pytest

from refundbridge.core.lifecycle import CaseState
from refundbridge.core.model import (
    DeliveryStatus,
    RefundCase,
    RefundResult,
    RefundStatus,
    Step,
)
from tests.unit.builders import approval, at, inspection, open_case

S = CaseState
LEASE = timedelta(minutes=4)


def _paid(case: RefundCase, minute: int = 4) -> None:
    case.reserve_attempt(at(minute - 1))
    case.apply_refund_result(RefundResult(RefundStatus.SUCCEEDED, "re_1", case.approved),
                             at(minute), "connector:stripe")


def _notified(case: RefundCase, minute: int) -> None:
    case.record_notifications(
        [(n.kind, DeliveryStatus.SENT, None) for n in case.pending_notifications()], at(minute))


def refunded_refund_only() -> RefundCase:
    case = open_case()
    case.start_evaluation(at(1))
    case.decide(approval(case))
    _paid(case)
    assert case.state is S.REFUNDED
    return case


def refunding_return_with_goods() -> RefundCase:
    case = open_case(kind="return_and_refund")
    case.start_evaluation(at(1))
    case.decide(approval(case))
    case.receive_goods([inspection()], at(3), "warehouse:bob")
    assert case.state is S.REFUNDING
    return case


def test_a_refund_without_goods_is_due_for_booking_only_once_paid() -> None:
    case = open_case()
    case.start_evaluation(at(1))
    case.decide(approval(case))
    assert case.state is S.REFUNDING and not case.stock_booking_due
    _paid(case)
    assert case.stock_booking_due


def test_a_return_is_due_for_booking_once_its_goods_are_back() -> None:
    case = open_case(kind="return_and_refund")
    case.start_evaluation(at(1))
    case.decide(approval(case))
    assert case.state is S.AWAITING_RETURN and not case.stock_booking_due
    case.receive_goods([inspection()], at(3), "warehouse:bob")
    assert case.stock_booking_due


def test_a_live_claim_keeps_every_other_job_from_the_erp() -> None:
    case = refunding_return_with_goods()
    first = case.claim_stock_booking(at(5), LEASE)
    assert first is not None and first.claims == 1
    assert case.claim_stock_booking(at(6), LEASE) is None
    assert case.claim_stock_booking(at(8), LEASE) is None
    taken_over = case.claim_stock_booking(at(9), LEASE)  # the first job's lease ran out
    assert taken_over is not None and taken_over.claims == 2
    claims = [e for e in case.new_events if e.name == "stock_booking_claimed"]
    assert [e.data for e in claims] == [{"claim": 1, "looks_up_first": False},
                                        {"claim": 2, "looks_up_first": True}]


def test_a_booked_case_has_nothing_to_claim_and_keeps_its_reference() -> None:
    case = refunded_refund_only()
    assert case.claim_stock_booking(at(5), LEASE) is not None
    case.record_stock_booked("ACC-SINV-RET-1", [], at(6), actor="connector:erpnext")
    assert case.claim_stock_booking(at(30), LEASE) is None
    assert case.erp_reference == "ACC-SINV-RET-1"
    assert Step.STOCK not in case.steps_needed()


def test_a_refused_booking_releases_the_claim_for_a_retry() -> None:
    case = refunded_refund_only()
    assert case.claim_stock_booking(at(5), LEASE) is not None
    case.step_failed(Step.STOCK, "no invoice", at(6), "invoice_not_found")
    assert case.state is S.FAILED
    case.retry(at(7), "operator:zhao")
    assert case.state is S.REFUNDED
    assert case.claim_stock_booking(at(7), LEASE) is not None


@pytest.mark.parametrize(("build", "expected"), [
    (open_case, [Step.EVALUATE]),
    (refunding_return_with_goods, [Step.REFUND, Step.STOCK]),
    (refunded_refund_only, [Step.STOCK]),
], ids=["received", "refunding_with_goods", "refunded"])
def test_steps_needed_by_state(build, expected) -> None:
    case = build()
    _notified(case, 10)
    assert case.steps_needed() == expected


def test_a_retry_with_nothing_left_to_do_closes_the_case() -> None:
    case = refunded_refund_only()
    case.fail(Step.STOCK, "ERP refused a duplicate", at(5))
    case.record_stock_booked("ACC-SINV-RET-1", [], at(6), actor="connector:erpnext")
    _notified(case, 7)
    assert case.state is S.FAILED
    case.retry(at(8), "operator:zhao")
    assert case.state is S.CLOSED


def test_revivals_without_progress_are_bounded() -> None:
    case = refunded_refund_only()
    assert case.revive(at(10), limit=2) == [Step.STOCK, Step.NOTIFY]
    assert case.revive(at(20), limit=2) == [Step.STOCK, Step.NOTIFY]
    assert case.revive(at(30), limit=2) == []
    assert case.state is S.FAILED
    assert case.failure is not None and case.failure.code == "no_progress"


def test_a_change_of_state_resets_the_revival_count() -> None:
    case = open_case()
    case.revive(at(1), limit=1)
    case.start_evaluation(at(2))
    assert case.revivals == 0
    assert case.revive(at(3), limit=1) == [Step.EVALUATE, Step.NOTIFY]


def test_a_failed_message_step_never_fails_the_case() -> None:
    case = refunded_refund_only()
    case.step_failed(Step.NOTIFY, "gave up after 8 tries", at(5))
    assert case.state is S.REFUNDED
    assert case.pending_notifications() == []
    assert {n.status for n in case.notifications} == {DeliveryStatus.FAILED}


def test_a_step_failing_on_a_closed_case_is_kept_in_its_trail() -> None:
    case = refunded_refund_only()
    case.record_stock_booked("ACC-SINV-RET-1", [], at(5), actor="connector:erpnext")
    _notified(case, 6)
    assert case.state is S.CLOSED
    case.step_failed(Step.REFUND, "late error", at(7), "step_error")
    assert case.state is S.CLOSED
    assert case.new_events[-1].name == "step_failed"
