"""Paying the approved amount back once, and settling it from the provider's news."""

from __future__ import annotations

from refundbridge.core.errors import (
    PermanentProviderError,
)
from refundbridge.core.model import (
    RefundAttempt,
    RefundCase,
    RefundResult,
    RefundStatus,
    Step,
)
from refundbridge.core.ports import (
    RefundOrder,
)
from refundbridge.core.services.common import (
    FirstPhase,
    Services,
    first_phase,
    record_step,
)


def issue_refund(svc: Services, case_id: str) -> None:
    """Pay the approved amount once.

    1. Reserve the attempt and its idempotency key, and commit, before any call.
    2. If the attempt existed (a crash or a duplicate job), ask the provider for it first.
    3. Call the provider with the same key (it pays once per key), record the answer.
    """
    reserved = first_phase(svc, case_id, RESERVE_REFUND)
    if reserved is None:
        return
    case, attempt, order, known_before = reserved
    payment = svc.gateways(case.shop_id).payment
    result: RefundResult | None = None
    try:
        if attempt.status is RefundStatus.SUCCEEDED:
            result = RefundResult(RefundStatus.SUCCEEDED, attempt.provider_ref, attempt.amount)
        elif known_before:
            if attempt.provider_ref:
                result = payment.refund_status(attempt.provider_ref, order)
            else:
                result = payment.find_refund(order)
    except PermanentProviderError as exc:
        # We could not learn whether money moved: fail the case for a person, but keep the
        # attempt (and its key) open so a retry asks again instead of paying again.
        unreadable = exc
        record_step(svc, case, Step.REFUND, lambda c: c.fail(
            Step.REFUND, f"could not read the refund's status: {unreadable.message}",
            svc.clock(), unreadable.code))
        return
    if result is None:
        try:
            result = payment.issue_refund(order)
        except PermanentProviderError as exc:  # the provider refused: no money moved
            result = RefundResult(RefundStatus.FAILED, None, message=exc.message)
    answer, actor = result, f"connector:{payment.name}"
    record_step(svc, case, Step.REFUND,
            lambda c: c.apply_refund_result(answer, svc.clock(), actor=actor))


def apply_refund_update(svc: Services, result: RefundResult, *, case_id: str | None,
                        idempotency_key: str | None, actor: str) -> str | None:
    """A provider's notification or a status poll: settle the case it belongs to.

    Notifications and polls converge: a duplicate or late one changes nothing.
    Returns the case id, or None when the refund is not one of ours.
    """
    with svc.uow() as uow:
        case = uow.cases.find_by_refund(result.provider_ref, idempotency_key)
        if case is None and case_id is not None:
            case = uow.cases.get(case_id)
        if case is None:
            return None
        attempt = case.current_attempt
        if attempt is None or (
            idempotency_key is not None and attempt.idempotency_key != idempotency_key
            and attempt.provider_ref != result.provider_ref
        ):
            return case.id  # news of an older attempt: the current one decides
        case.apply_refund_result(result, svc.clock(), actor=actor)
        uow.commit()
        return case.id


def _reserve(svc: Services, case: RefundCase
             ) -> tuple[RefundCase, RefundAttempt, RefundOrder, bool] | None:
    """Phase one: the attempt and its key, to commit before the call (None: nothing is
    left to pay). Also whether the attempt was there before (a crash or a duplicate job)."""
    if Step.REFUND not in case.steps_needed():
        return None
    known_before = case.current_attempt is not None and case.current_attempt.status in {
        RefundStatus.STARTED, RefundStatus.PENDING, RefundStatus.SUCCEEDED,
        RefundStatus.UNKNOWN,
    }
    attempt = case.reserve_attempt(svc.clock())
    return case, attempt, _refund_order(case), known_before


RESERVE_REFUND = FirstPhase(Step.REFUND, _reserve, writes=True)


def _refund_order(case: RefundCase) -> RefundOrder:
    attempt = case.current_attempt
    assert attempt is not None
    request = case.request
    return RefundOrder(
        case_id=case.id, attempt=attempt.number, idempotency_key=attempt.idempotency_key,
        amount=attempt.amount, payment_reference=request.order.payment.reference,
        order_id=request.order.id, reason=request.reason.code, paid_total=request.paid,
        lines=tuple(request.lines),
    )
