"""The RefundCase aggregate driven through the lifecycle's three paths and its edge cases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest

from refundbridge.core.audit import verify_chain
from refundbridge.core.errors import DomainError, IllegalTransition, InvalidRequest, NotFound
from refundbridge.core.lifecycle import CaseState, Transition
from refundbridge.core.model import (
    Decision,
    DeliveryStatus,
    Disposition,
    LineDisposition,
    NotificationKind,
    Outcome,
    RefundCase,
    RefundResult,
    RefundStatus,
    StatusOutcome,
    Step,
)
from refundbridge.core.money import Money
from tests.unit.builders import approval, at, decision, inspection, line, open_case

S = CaseState
TRANSITION_NAMES = {t.value for t in Transition}


# ------------------------------------------------------------------ helpers


def queued_by(case: RefundCase, action: Callable[[], object]) -> list[Step]:
    """The steps `action` added to the case's queue."""
    before = len(case.new_steps)
    action()
    return case.new_steps[before:]


def work(steps: list[Step]) -> list[Step]:
    """The steps other than notifying: when the notify job runs is a batching choice."""
    return [s for s in steps if s is not Step.NOTIFY]


def assert_customer_news_is_queued(case: RefundCase) -> None:
    """Once a decision is made, any unsent notification has a notify job queued."""
    if case.pending_notifications():
        assert Step.NOTIFY in case.new_steps


def path(case: RefundCase) -> list[str | None]:
    """The states the audit trail says the case went through, from the opening event."""
    return [e.to_state for e in case.new_events
            if e.name == "received" or e.name in TRANSITION_NAMES]


def succeeded(case: RefundCase, ref: str = "re_1") -> RefundResult:
    return RefundResult(RefundStatus.SUCCEEDED, ref, case.approved)


def failed(message: str = "card closed") -> RefundResult:
    return RefundResult(RefundStatus.FAILED, None, message=message)


def send_all_notifications(case: RefundCase, when: datetime) -> None:
    case.record_notifications(
        [(n.kind, DeliveryStatus.SENT, None) for n in case.pending_notifications()], when)


def assert_audit_trail_is_sound(case: RefundCase) -> None:
    events = case.new_events
    assert verify_chain(events).verifies
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert case.audit_seq == events[-1].seq and case.audit_head == events[-1].hash
    # One event per transition: every change of state is exactly one transition event,
    # each starting where the one before ended; other events do not move the state.
    previous = None
    for event in events:
        if event.name == "received":
            assert event.from_state is None
        elif event.name in TRANSITION_NAMES:
            assert event.from_state == previous
            assert event.to_state != event.from_state
        else:
            assert event.from_state == event.to_state == previous
        previous = event.to_state
    assert previous == case.state


def refunding_case(kind: str = "refund_only", refund_timing: str = "on_receipt") -> RefundCase:
    """A case approved and (for an on-receipt return, after the goods came back) refunding."""
    case = open_case(kind=kind, refund_timing=refund_timing)
    case.start_evaluation(at(1))
    case.decide(approval(case))
    if case.state is S.AWAITING_RETURN:
        case.receive_goods([inspection()], at(3), "warehouse:bob")
    assert case.state is S.REFUNDING
    return case


# ------------------------------------------------------------------ the three paths


def test_refund_only_path() -> None:
    case = open_case()
    assert case.state is S.RECEIVED
    assert work(case.new_steps) == [Step.EVALUATE]
    assert [n.kind for n in case.pending_notifications()] == [NotificationKind.RECEIVED]
    assert case.refunded == Money.zero("CNY")

    case.start_evaluation(at(1))
    assert case.state is S.EVALUATING

    assert work(queued_by(case, lambda: case.decide(approval(case)))) == [Step.REFUND]
    assert case.state is S.REFUNDING
    assert case.approved == case.requested
    assert_customer_news_is_queued(case)

    attempt = case.reserve_attempt(at(3))
    assert attempt.idempotency_key == "rc_test-refund-1"
    assert attempt.amount == case.approved

    steps = queued_by(case, lambda: case.apply_refund_result(succeeded(case), at(4),
                                                              "connector:stripe"))
    assert case.state is S.REFUNDED
    assert work(steps) == [Step.STOCK]
    assert_customer_news_is_queued(case)
    assert case.refunded == case.approved
    assert case.current_attempt is not None
    assert case.current_attempt.status is RefundStatus.SUCCEEDED
    assert case.current_attempt.provider_ref == "re_1"

    assert case.planned_stock_moves() == []
    case.record_stock_booked("ERP-RET-1", [], at(5), "connector:erpnext")
    assert case.state is S.REFUNDED, "closes only once the customer has been told"

    send_all_notifications(case, at(6))
    assert case.state is S.CLOSED
    assert case.is_final
    assert [n.kind for n in case.notifications] == [
        NotificationKind.RECEIVED, NotificationKind.APPROVED, NotificationKind.REFUNDED]
    assert path(case) == [S.RECEIVED, S.EVALUATING, S.APPROVED, S.REFUNDING, S.REFUNDED,
                          S.CLOSED]
    assert_audit_trail_is_sound(case)


def test_return_refunded_on_receipt_path() -> None:
    case = open_case(kind="return_and_refund", refund_timing="on_receipt")
    case.start_evaluation(at(1))

    steps = queued_by(case, lambda: case.decide(approval(case)))
    assert case.state is S.AWAITING_RETURN
    assert work(steps) == [], "no money leaves before the goods are back"
    assert case.attempts == []
    assert_customer_news_is_queued(case)

    steps = queued_by(case, lambda: case.receive_goods([inspection()], at(3), "warehouse:bob"))
    assert case.state is S.REFUNDING
    assert work(steps) == [Step.STOCK, Step.REFUND]
    assert case.goods_received

    case.reserve_attempt(at(4))
    case.apply_refund_result(succeeded(case), at(5), "connector:stripe")
    assert case.state is S.REFUNDED

    case.reassess([LineDisposition(0, "GLU-METER-01", Disposition.RESTOCK, "R08")], [], at(5))
    moves = case.planned_stock_moves()
    assert [(m.sku, m.quantity, m.disposition) for m in moves] == [
        ("GLU-METER-01", 2, Disposition.RESTOCK)]
    case.record_stock_booked("ERP-RET-1", moves, at(6), "connector:erpnext")
    assert case.stock_moves == moves
    send_all_notifications(case, at(7))

    assert case.state is S.CLOSED
    assert path(case) == [S.RECEIVED, S.EVALUATING, S.APPROVED, S.AWAITING_RETURN,
                          S.RECEIVED_GOODS, S.REFUNDING, S.REFUNDED, S.CLOSED]
    assert_audit_trail_is_sound(case)


def test_return_refunded_on_approval_path() -> None:
    case = open_case(kind="return_and_refund", refund_timing="on_approval")
    case.start_evaluation(at(1))

    assert work(queued_by(case, lambda: case.decide(approval(case)))) == [Step.REFUND]
    assert case.state is S.REFUNDING
    assert_customer_news_is_queued(case)

    case.reserve_attempt(at(3))
    case.apply_refund_result(succeeded(case), at(4), "connector:stripe")
    assert case.state is S.AWAITING_RETURN
    assert case.refunded == case.approved

    steps = queued_by(case, lambda: case.receive_goods([inspection()], at(5), "warehouse:bob"))
    assert case.state is S.RECEIVED_GOODS
    assert work(steps) == [Step.STOCK], "the refund is already paid"
    assert len(case.attempts) == 1

    case.record_stock_booked("ERP-RET-1", case.planned_stock_moves(), at(6),
                             "connector:erpnext")
    assert case.state is S.RECEIVED_GOODS
    send_all_notifications(case, at(7))

    assert case.state is S.CLOSED
    assert path(case) == [S.RECEIVED, S.EVALUATING, S.APPROVED, S.REFUNDING, S.REFUNDED,
                          S.AWAITING_RETURN, S.RECEIVED_GOODS, S.CLOSED]
    assert_audit_trail_is_sound(case)


def test_review_then_a_person_approves() -> None:
    case = open_case()
    case.start_evaluation(at(1))
    steps = queued_by(case, lambda: case.decide(decision(Outcome.REVIEW, case.requested)))
    assert work(steps) == []
    assert case.state is S.AWAITING_REVIEW
    assert case.approved is None
    case.decide(approval(case, minute=3, by="operator:alice"))
    assert case.state is S.REFUNDING
    assert [e.actor for e in case.new_events if e.name == Transition.APPROVE] == [
        "operator:alice"]
    assert len(case.decisions) == 2
    assert_audit_trail_is_sound(case)


def test_deny_is_final_and_tells_the_customer() -> None:
    case = open_case()
    case.start_evaluation(at(1))
    case.decide(decision(Outcome.DENY, case.requested))
    assert case.state is S.DENIED and case.is_final
    assert case.approved is None and not case.reserves_money
    assert case.pending_notifications()[-1].kind is NotificationKind.DENIED
    assert_customer_news_is_queued(case)
    with pytest.raises(DomainError):
        case.reserve_attempt(at(3))


def test_a_decision_of_pass_is_refused() -> None:
    case = open_case()
    case.start_evaluation(at(1))
    with pytest.raises(DomainError):
        case.decide(decision(Outcome.PASS, case.requested))
    assert case.state is S.EVALUATING


def test_without_email_no_notification_is_queued() -> None:
    case = open_case(**{"customer.email": None})
    assert case.new_steps == [Step.EVALUATE]
    case.start_evaluation(at(1))
    case.decide(approval(case))
    case.reserve_attempt(at(3))
    case.apply_refund_result(succeeded(case), at(4), "connector:stripe")
    case.record_stock_booked("ERP-1", [], at(5), "connector:erpnext")
    assert case.notifications == []
    assert Step.NOTIFY not in case.new_steps
    assert case.state is S.CLOSED


def test_stock_booking_is_recorded_once() -> None:
    case = refunding_case()
    case.record_stock_booked("ERP-1", [], at(5), "connector:erpnext")
    events = len(case.new_events)
    case.record_stock_booked("ERP-2", [], at(6), "connector:erpnext")
    assert case.erp_reference == "ERP-1"
    assert len(case.new_events) == events


# ------------------------------------------------------------------ idempotency


def test_repeated_reserve_attempt_keeps_the_key_and_records_once() -> None:
    case = refunding_case()
    first = case.reserve_attempt(at(3))
    events = len(case.new_events)
    for minute in (4, 5, 6):
        again = case.reserve_attempt(at(minute))
        assert again is first
        assert again.idempotency_key == "rc_test-refund-1"
    assert len(case.attempts) == 1
    assert len(case.new_events) == events
    reserved = [e for e in case.new_events if e.name == "refund_attempt_reserved"]
    assert [e.data["idempotency_key"] for e in reserved] == ["rc_test-refund-1"]


@pytest.mark.parametrize("status", [RefundStatus.PENDING, RefundStatus.UNKNOWN,
                                    RefundStatus.SUCCEEDED])
def test_an_attempt_that_did_not_fail_keeps_its_key(status: RefundStatus) -> None:
    case = refunding_case()
    first = case.reserve_attempt(at(3))
    case.apply_refund_result(RefundResult(status, "re_1", case.approved), at(4), "poll")
    assert case.reserve_attempt(at(5)).idempotency_key == first.idempotency_key
    assert len(case.attempts) == 1


def test_a_new_key_only_after_a_failed_attempt() -> None:
    case = refunding_case()
    first = case.reserve_attempt(at(3))
    case.apply_refund_result(failed("insufficient funds"), at(4), "connector:stripe")
    assert case.state is S.FAILED
    assert first.status is RefundStatus.FAILED
    case.retry(at(5), "operator:alice")
    second = case.reserve_attempt(at(6))
    assert second.number == 2
    assert second.idempotency_key == "rc_test-refund-2"
    assert second.idempotency_key != first.idempotency_key
    assert case.reserve_attempt(at(7)) is second
    assert_audit_trail_is_sound(case)


def test_keys_differ_between_cases() -> None:
    one = refunding_case()
    other = open_case()
    other.id = "rc_other"
    other.start_evaluation(at(1))
    other.decide(approval(other))
    assert one.reserve_attempt(at(3)).idempotency_key != other.reserve_attempt(
        at(3)).idempotency_key


def test_reserve_without_approval_is_refused() -> None:
    case = open_case()
    with pytest.raises(DomainError):
        case.reserve_attempt(at(1))
    assert case.attempts == []


def test_a_result_without_an_attempt_is_refused() -> None:
    case = refunding_case()
    with pytest.raises(DomainError):
        case.apply_refund_result(succeeded(case), at(4), "poll")
    assert case.state is S.REFUNDING


# ------------------------------------------------------------------ late and odd news


def _refunded_refund_only() -> RefundCase:
    case = refunding_case()
    case.reserve_attempt(at(3))
    case.apply_refund_result(succeeded(case), at(4), "connector:stripe")
    return case


def _closed_refund_only() -> RefundCase:
    case = _refunded_refund_only()
    case.record_stock_booked("ERP-1", [], at(5), "connector:erpnext")
    send_all_notifications(case, at(6))
    return case


def _awaiting_return_after_refund() -> RefundCase:
    case = refunding_case(kind="return_and_refund", refund_timing="on_approval")
    case.reserve_attempt(at(3))
    case.apply_refund_result(succeeded(case), at(4), "connector:stripe")
    return case


def _received_goods_after_refund() -> RefundCase:
    case = _awaiting_return_after_refund()
    case.receive_goods([inspection()], at(5), "warehouse:bob")
    return case


PAID_CASES = {
    S.REFUNDED: _refunded_refund_only,
    S.CLOSED: _closed_refund_only,
    S.AWAITING_RETURN: _awaiting_return_after_refund,
    S.RECEIVED_GOODS: _received_goods_after_refund,
}


@pytest.mark.parametrize("state", list(PAID_CASES), ids=str)
def test_a_late_duplicate_success_changes_nothing(state: CaseState) -> None:
    case = PAID_CASES[state]()
    assert case.state is state
    events, steps = list(case.new_events), list(case.new_steps)
    notifications = [(n.kind, n.status) for n in case.notifications]
    case.apply_refund_result(succeeded(case, ref="re_1"), at(30), "webhook:stripe")
    assert case.state is state
    assert case.new_events == events
    assert case.new_steps == steps
    assert [(n.kind, n.status) for n in case.notifications] == notifications
    assert case.refunded == case.approved
    assert len(case.attempts) == 1


@pytest.mark.parametrize("state", list(PAID_CASES), ids=str)
def test_failure_after_success_reopens_the_case(state: CaseState) -> None:
    case = PAID_CASES[state]()
    case.apply_refund_result(failed("refund reversed"), at(30), "webhook:stripe")
    assert case.state is S.FAILED
    assert case.refunded == Money.zero("CNY")
    assert case.failure is not None
    assert case.failure.step is Step.REFUND
    assert case.failure.resume_state is S.REFUNDING
    last = case.new_events[-1]
    assert (last.name, last.from_state, last.to_state) == (Transition.REFUND_REVERSED, state,
                                                           S.FAILED)
    assert_audit_trail_is_sound(case)

    steps = queued_by(case, lambda: case.retry(at(31), "operator:alice"))
    assert case.state is S.REFUNDING
    # What the state needs: the refund, and the return's booking if its goods are back.
    unbooked_goods = case.goods_received and not case.erp_booked
    assert work(steps) == [Step.REFUND, *([Step.STOCK] if unbooked_goods else [])]
    assert case.reserve_attempt(at(32)).number == 2


@pytest.mark.parametrize("settled", [False, True], ids=["while_refunding", "after_success"])
def test_unknown_status_is_recorded_and_changes_nothing_else(settled: bool) -> None:
    case = refunding_case()
    attempt = case.reserve_attempt(at(3))
    if settled:
        case.apply_refund_result(succeeded(case), at(4), "connector:stripe")
    state, status, refunded = case.state, attempt.status, case.refunded
    steps, notifications = list(case.new_steps), list(case.notifications)
    events = len(case.new_events)

    case.apply_refund_result(
        RefundResult(RefundStatus.UNKNOWN, "re_1", raw_status="requires_magic"),
        at(5), "webhook:stripe")

    assert (case.state, attempt.status, case.refunded) == (state, status, refunded)
    assert case.new_steps == steps and case.notifications == notifications
    assert len(case.new_events) == events + 1
    recorded = case.new_events[-1]
    assert recorded.name == "refund_status_unknown"
    assert recorded.data == {"raw_status": "requires_magic"}
    assert recorded.from_state == recorded.to_state == state
    assert_audit_trail_is_sound(case)


def test_pending_then_success_records_the_status_change() -> None:
    case = refunding_case()
    attempt = case.reserve_attempt(at(3))
    case.apply_refund_result(RefundResult(RefundStatus.PENDING, "re_1"), at(4), "connector")
    assert case.state is S.REFUNDING and attempt.status is RefundStatus.PENDING
    assert case.new_events[-1].name == "refund_status_changed"
    events = len(case.new_events)
    case.apply_refund_result(RefundResult(RefundStatus.PENDING, "re_1"), at(5), "poll")
    assert len(case.new_events) == events, "the same status again is not news"
    case.apply_refund_result(succeeded(case), at(6), "poll")
    assert case.state is S.REFUNDED


def test_provider_ref_is_kept_once_known() -> None:
    case = refunding_case()
    attempt = case.reserve_attempt(at(3))
    case.apply_refund_result(RefundResult(RefundStatus.PENDING, "re_1"), at(4), "connector")
    case.apply_refund_result(succeeded(case, ref="re_other"), at(5), "poll")
    assert attempt.provider_ref == "re_1"


# ------------------------------------------------------------------ failure and retry


def test_refund_failure_then_retry_returns_to_refunding_and_queues_the_refund() -> None:
    case = refunding_case()
    case.reserve_attempt(at(3))
    case.apply_refund_result(failed("do_not_honor"), at(4), "connector:stripe")
    assert case.state is S.FAILED
    assert case.failure is not None and case.failure.message == "do_not_honor"
    assert case.refunded == Money.zero("CNY")

    steps = queued_by(case, lambda: case.retry(at(5), "operator:alice"))
    assert case.state is S.REFUNDING
    assert work(steps) == [Step.REFUND]
    assert case.failure is None
    last = case.new_events[-1]
    assert (last.name, last.from_state, last.to_state, last.actor) == (
        Transition.RETRY, S.FAILED, S.REFUNDING, "operator:alice")
    assert last.data == {"step": "refund", "previous_error": "do_not_honor"}
    assert_audit_trail_is_sound(case)


def _evaluating() -> RefundCase:
    case = open_case()
    case.start_evaluation(at(1))
    return case


@pytest.mark.parametrize(
    ("build", "step", "state", "expected_steps"),
    [
        (_evaluating, Step.EVALUATE, S.EVALUATING, [Step.EVALUATE]),
        (_refunded_refund_only, Step.STOCK, S.REFUNDED, [Step.STOCK]),
        # The goods are not back yet: nothing to book, the case waits for them again.
        (_awaiting_return_after_refund, Step.STOCK, S.AWAITING_RETURN, []),
        (_received_goods_after_refund, Step.STOCK, S.RECEIVED_GOODS, [Step.STOCK]),
        # A step other than the refund failed while refunding: the refund is looked at again.
        (refunding_case, Step.STOCK, S.REFUNDING, [Step.REFUND]),
    ],
    ids=["evaluate", "stock-refunded", "stock-awaiting_return", "stock-received_goods",
         "stock-refunding"],
)
def test_retry_returns_to_the_failed_state_and_queues_the_failed_step(
    build: Callable[[], RefundCase], step: Step, state: CaseState, expected_steps: list[Step],
) -> None:
    case = build()
    assert case.state is state
    case.fail(step, "ERP said no", at(20), code="417")
    assert case.state is S.FAILED
    assert case.failure is not None
    assert (case.failure.step, case.failure.resume_state, case.failure.code) == (
        step, state, "417")
    assert work(queued_by(case, lambda: case.retry(at(21), "operator:alice"))) == expected_steps
    assert case.state is state
    assert_audit_trail_is_sound(case)


def test_retry_without_a_failure_is_refused() -> None:
    case = refunding_case()
    with pytest.raises(DomainError):
        case.retry(at(5), "operator:alice")
    assert case.state is S.REFUNDING


# ------------------------------------------------------------------ cancel


def test_cancel_is_refused_while_a_refund_is_paid() -> None:
    case = _awaiting_return_after_refund()
    events = len(case.new_events)
    with pytest.raises(DomainError) as caught:
        case.cancel(at(10), "operator:alice", "customer changed their mind")
    assert not isinstance(caught.value, IllegalTransition)
    assert case.state is S.AWAITING_RETURN
    assert len(case.new_events) == events


@pytest.mark.parametrize("status", [RefundStatus.SUCCEEDED, RefundStatus.PENDING])
def test_cancel_is_refused_from_failed_while_a_refund_is_paid_or_in_flight(
    status: RefundStatus,
) -> None:
    case = refunding_case()
    case.reserve_attempt(at(3))
    case.apply_refund_result(RefundResult(status, "re_1", case.approved), at(4), "connector")
    case.fail(Step.STOCK, "ERP down", at(5))
    assert case.state is S.FAILED
    with pytest.raises(DomainError):
        case.cancel(at(6), "operator:alice", "give up")
    assert case.state is S.FAILED


def test_cancel_after_a_failed_refund_is_allowed() -> None:
    case = refunding_case()
    case.reserve_attempt(at(3))
    case.apply_refund_result(failed(), at(4), "connector:stripe")
    case.cancel(at(5), "operator:alice", "customer withdrew")
    assert case.state is S.CANCELLED
    assert not case.reserves_money
    assert case.new_events[-1].data == {"reason": "customer withdrew"}
    assert_audit_trail_is_sound(case)


def test_cancel_before_money_moves() -> None:
    case = open_case(kind="return_and_refund", refund_timing="on_receipt")
    case.start_evaluation(at(1))
    case.decide(approval(case))
    assert case.state is S.AWAITING_RETURN
    case.cancel(at(3), "operator:alice", "never shipped back")
    assert case.state is S.CANCELLED


# ------------------------------------------------------------------ goods and stock


def test_receive_goods_on_a_refund_only_case_is_refused() -> None:
    case = refunding_case()
    with pytest.raises(InvalidRequest):
        case.receive_goods([inspection()], at(3), "warehouse:bob")


@pytest.mark.parametrize("index", [-1, 1, 5])
def test_receive_goods_for_an_unknown_line_is_refused(index: int) -> None:
    case = open_case(kind="return_and_refund")
    case.start_evaluation(at(1))
    case.decide(approval(case))
    with pytest.raises(InvalidRequest) as caught:
        case.receive_goods([inspection(index)], at(3), "warehouse:bob")
    assert caught.value.field == f"lines.{index}"
    assert case.state is S.AWAITING_RETURN


@pytest.mark.parametrize(
    ("assessed", "moved"),
    [
        (Disposition.RESTOCK, Disposition.RESTOCK),
        (Disposition.SCRAP, Disposition.SCRAP),
        (Disposition.RETURN_TO_MANUFACTURER, Disposition.RETURN_TO_MANUFACTURER),
        (Disposition.KEEP_AS_EVIDENCE, Disposition.KEEP_AS_EVIDENCE),
        # Nothing inspected goes back on the shelf without a rule saying so.
        (Disposition.PENDING_INSPECTION, Disposition.QUARANTINE),
        (Disposition.NOT_RETURNED, Disposition.QUARANTINE),
        (None, Disposition.QUARANTINE),
    ],
)
def test_planned_stock_moves_follow_the_assessment_after_inspection(
    assessed: Disposition | None, moved: Disposition,
) -> None:
    case = open_case(kind="return_and_refund", lines=[line(serial="SN1")])
    case.start_evaluation(at(1))
    case.decide(approval(case))
    case.receive_goods([inspection(0)], at(3), "warehouse:bob")
    if assessed is not None:
        case.reassess([LineDisposition(0, "GLU-METER-01", assessed, "R08")], [], at(3))
    moves = case.planned_stock_moves()
    assert [(m.line, m.sku, m.quantity, m.disposition, m.lot, m.serial) for m in moves] == [
        (0, "GLU-METER-01", 2, moved, "L2401", "SN1")]
    if assessed is not None:
        assert case.new_events[-1].name == "reassessed"


def test_planned_stock_moves_per_line_with_quantity_and_uninspected_lines() -> None:
    lines = [
        line(sku="A", quantity=3, unit_price="10.00"),
        line(sku="B", quantity=1, unit_price="20.00", sterile=True, package_opened=True),
        line(sku="C", quantity=1, unit_price="5.00"),
    ]
    case = open_case(kind="return_and_refund", lines=lines, requested_amount="55.00")
    case.start_evaluation(at(1))
    case.decide(approval(case))
    case.receive_goods([inspection(0, quantity=2), inspection(1)], at(3), "warehouse:bob")
    case.reassess([LineDisposition(0, "A", Disposition.RESTOCK, "R08"),
                   LineDisposition(1, "B", Disposition.SCRAP, "R10"),
                   LineDisposition(2, "C", Disposition.PENDING_INSPECTION, "R08")], [], at(3))
    moves = case.planned_stock_moves()
    assert [(m.sku, m.quantity, m.disposition) for m in moves] == [
        ("A", 2, Disposition.RESTOCK),
        ("B", 1, Disposition.SCRAP),
    ]


# ------------------------------------------------------------------ storefront write-back


def test_write_back_follows_the_decision_and_the_refund() -> None:
    case = open_case()
    case.start_evaluation(at(1))
    case.decide(approval(case))
    assert case.pending_write_backs() == []  # nobody asked for it: generic storefronts
    steps = queued_by(case, case.request_write_back)
    assert steps == [Step.WRITE_BACK]
    assert case.pending_write_backs() == [StatusOutcome.APPROVED]

    case.record_write_backs([(StatusOutcome.APPROVED, None)], at(3))
    assert case.pending_write_backs() == []
    assert case.new_events[-1].name == "write_back_sent"

    case.new_steps.clear()  # as committing the unit of work does
    case.reserve_attempt(at(4))
    steps = queued_by(case, lambda: case.apply_refund_result(succeeded(case), at(5),
                                                             "connector:shopify"))
    assert Step.WRITE_BACK in steps
    assert case.pending_write_backs() == [StatusOutcome.REFUNDED]


def test_a_denied_request_is_written_back_as_declined_and_a_failure_is_kept() -> None:
    case = open_case()
    case.start_evaluation(at(1))
    case.decide(decision(Outcome.DENY, case.requested))
    case.request_write_back()
    assert case.pending_write_backs() == [StatusOutcome.DECLINED]
    case.record_write_backs([(StatusOutcome.DECLINED, "shopify: return is CLOSED")], at(3))
    assert case.pending_write_backs() == []
    assert case.write_backs[0].status is DeliveryStatus.FAILED
    assert case.write_backs[0].message == "shopify: return is CLOSED"
    assert case.state is S.DENIED  # a failed write-back never changes the decision


# ------------------------------------------------------------------ what the customer is owed

K = NotificationKind
D = DeliveryStatus


def paid_and_booked(*, failing: NotificationKind | None = None) -> RefundCase:
    """A refund-only case paid and booked; every message sent except `failing`, which the
    mail server refused for good."""
    case = refunding_case()
    case.reserve_attempt(at(3))
    case.apply_refund_result(succeeded(case), at(4), "connector:stripe")
    case.record_stock_booked("ERP-RET-1", [], at(5), "connector:erpnext")
    case.record_notifications(
        [(n.kind, D.FAILED if n.kind is failing else D.SENT,
          "smtp: 550 mailbox unavailable" if n.kind is failing else None)
         for n in case.pending_notifications()], at(6), attempted=True)
    case.new_steps.clear()  # as committing the unit of work does
    return case


def test_a_case_does_not_close_while_a_message_it_owes_failed() -> None:
    case = paid_and_booked(failing=K.APPROVED)
    assert case.state is S.REFUNDED
    approved = next(n for n in case.notifications if n.kind is K.APPROVED)
    assert (approved.status, approved.attempts, approved.last_error) == (
        D.FAILED, 1, "smtp: 550 mailbox unavailable")
    assert [n.kind for n in case.undelivered_notifications()] == [K.APPROVED]
    # Nothing a worker could do about it: the case waits for a person, not in a loop.
    assert case.steps_needed() == []
    assert not case.close_if_done(at(7))
    assert_audit_trail_is_sound(case)


def test_a_resend_queues_the_message_and_the_case_closes_once_it_is_sent() -> None:
    case = paid_and_booked(failing=K.REFUNDED)
    steps = queued_by(case, lambda: case.resend_notification(K.REFUNDED, at(8),
                                                             "operator:li.na"))
    assert steps == [Step.NOTIFY]
    assert [n.kind for n in case.pending_notifications()] == [K.REFUNDED]
    assert case.new_events[-1].name == "notification_resend_requested"
    assert case.new_events[-1].actor == "operator:li.na"
    assert case.state is S.REFUNDED

    case.record_notifications([(K.REFUNDED, D.SENT, None)], at(9), attempted=True)
    assert case.state is S.CLOSED
    refunded = next(n for n in case.notifications if n.kind is K.REFUNDED)
    assert (refunded.status, refunded.attempts, refunded.last_error) == (D.SENT, 2, None)
    assert_audit_trail_is_sound(case)


def test_a_waiver_with_a_reason_closes_the_case_and_is_in_the_trail() -> None:
    case = paid_and_booked(failing=K.APPROVED)
    case.waive_notification(K.APPROVED, at(8), "operator:li.na", "told the customer by phone")
    assert case.state is S.CLOSED
    waived = next(e for e in case.new_events if e.name == "notification_waived")
    assert waived.actor == "operator:li.na"
    assert waived.data["kind"] == "approved"
    assert waived.data["reason"] == "told the customer by phone"
    assert waived.data["last_error"] == "smtp: 550 mailbox unavailable"
    approved = next(n for n in case.notifications if n.kind is K.APPROVED)
    assert (approved.status, approved.waived_by, approved.waive_reason) == (
        D.WAIVED, "operator:li.na", "told the customer by phone")
    assert_audit_trail_is_sound(case)


def test_a_waiver_needs_a_reason_and_an_unsent_message() -> None:
    case = paid_and_booked(failing=K.APPROVED)
    with pytest.raises(InvalidRequest) as blank:
        case.waive_notification(K.APPROVED, at(8), "operator:li.na", "  ")
    assert blank.value.field == "reason"
    with pytest.raises(DomainError, match="sent"):
        case.waive_notification(K.RECEIVED, at(8), "operator:li.na", "no need")
    with pytest.raises(NotFound):
        case.waive_notification(K.DENIED, at(8), "operator:li.na", "no need")
    assert case.state is S.REFUNDED


@pytest.mark.parametrize("status", [D.SENT, D.PENDING])
def test_only_a_failed_or_waived_message_is_sent_again(status: DeliveryStatus) -> None:
    case = paid_and_booked(failing=K.APPROVED)
    next(n for n in case.notifications if n.kind is K.APPROVED).status = status
    with pytest.raises(DomainError, match=status.value):
        case.resend_notification(K.APPROVED, at(8), "operator:li.na")


def test_a_waived_message_can_still_be_sent_again() -> None:
    case = open_case()
    case.start_evaluation(at(1))
    case.decide(decision(Outcome.DENY, case.requested))
    case.record_notifications([(K.RECEIVED, D.SENT, None), (K.DENIED, D.FAILED, "550")],
                              at(3), attempted=True)
    case.waive_notification(K.DENIED, at(4), "operator:li.na", "wrong address")
    case.new_steps.clear()
    assert queued_by(case, lambda: case.resend_notification(
        K.DENIED, at(5), "operator:li.na")) == [Step.NOTIFY]
    denied = next(n for n in case.notifications if n.kind is K.DENIED)
    assert (denied.status, denied.waived_by, denied.waive_reason) == (D.PENDING, None, None)


def test_a_transient_failure_is_an_attempt_and_the_message_stays_owed() -> None:
    case = refunding_case()
    case.reserve_attempt(at(3))
    case.apply_refund_result(succeeded(case), at(4), "connector:stripe")
    case.record_stock_booked("ERP-RET-1", [], at(5), "connector:erpnext")
    case.new_steps.clear()
    outcomes = [(n.kind, D.PENDING, "smtp: 421 try later") for n in case.pending_notifications()]
    steps = queued_by(case, lambda: case.record_notifications(outcomes, at(6), attempted=True))
    # The run that failed stays open and is handed out again by the reconciler, with
    # backoff: a new run now would retry at once.
    assert steps == []
    assert case.state is S.REFUNDED
    assert all((n.status, n.attempts, n.last_error, n.last_attempt_at)
               == (D.PENDING, 1, "smtp: 421 try later", at(6)) for n in case.notifications)
    assert case.new_events[-1].name == "notification_attempt_failed"

    case.record_notifications([(n.kind, D.SENT, None) for n in case.pending_notifications()],
                              at(7), attempted=True)
    assert case.state is S.CLOSED
    assert all(n.attempts == 2 for n in case.notifications)


def test_giving_up_on_a_message_is_no_attempt_and_keeps_the_case_open() -> None:
    case = refunding_case()
    case.reserve_attempt(at(3))
    case.apply_refund_result(succeeded(case), at(4), "connector:stripe")
    case.record_stock_booked("ERP-RET-1", [], at(5), "connector:erpnext")
    case.record_notifications([(n.kind, D.PENDING, "smtp: timed out")
                               for n in case.pending_notifications()], at(6), attempted=True)
    case.step_failed(Step.NOTIFY, "gave up on the notify step after 8 tries", at(9), "gave_up")
    assert case.state is S.REFUNDED
    assert all((n.status, n.attempts) == (D.FAILED, 1) for n in case.notifications)


def test_a_send_that_ends_after_a_waiver_is_recorded_as_sent() -> None:
    case = refunding_case()
    case.record_notifications([(K.RECEIVED, D.SENT, None)], at(3), attempted=True)
    case.waive_notification(K.APPROVED, at(4), "operator:li.na", "customer asked us not to")
    case.record_notifications([(K.APPROVED, D.SENT, None)], at(5), attempted=True)
    approved = next(n for n in case.notifications if n.kind is K.APPROVED)
    assert approved.status is D.SENT
    assert case.new_events[-1].name == "notification_sent"


def test_a_denied_case_whose_email_failed_can_be_resent_and_stays_denied() -> None:
    case = open_case()
    case.start_evaluation(at(1))
    case.decide(decision(Outcome.DENY, case.requested))
    case.record_notifications([(K.RECEIVED, D.SENT, None), (K.DENIED, D.FAILED, "550")],
                              at(3), attempted=True)
    assert case.steps_needed() == []
    case.resend_notification(K.DENIED, at(4), "operator:li.na")
    assert case.steps_needed() == [Step.NOTIFY]
    case.record_notifications([(K.DENIED, D.SENT, None)], at(5), attempted=True)
    assert case.state is S.DENIED and case.undelivered_notifications() == []
    assert_audit_trail_is_sound(case)


def test_a_reviewers_decision_keeps_the_note_and_the_message_apart_in_the_trail() -> None:
    case = open_case()
    case.start_evaluation(at(1))
    case.decide(decision(Outcome.REVIEW, case.requested))
    case.decide(Decision(Outcome.DENY, case.requested, (), "operator:li.na", at(3),
                         internal_note="customer sounded rehearsed",
                         customer_message="We cannot take back an opened sterile pack."))
    denied = case.new_events[-1]
    assert denied.data["internal_note"] == "customer sounded rehearsed"
    assert denied.data["customer_message"] == "We cannot take back an opened sterile pack."
