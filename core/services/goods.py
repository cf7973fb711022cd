"""The goods: their receipt and inspection, the ERP booking, the storefront write-back."""

from __future__ import annotations

from refundbridge.core.errors import (
    NotSupported,
    PermanentProviderError,
)
from refundbridge.core.model import (
    Inspection,
    Outcome,
    RefundCase,
    Step,
    StockMove,
)
from refundbridge.core.ports import (
    ReturnBooking,
    StatusOutcome,
    StatusUpdate,
)
from refundbridge.core.services.common import (
    FirstPhase,
    Services,
    first_phase,
    record_step,
)
from refundbridge.core.services.decisions import evaluation_context


def record_receipt(svc: Services, case_id: str, inspections: list[Inspection],
                   actor: str) -> None:
    """The goods are back and inspected: record that, and decide again where each unit goes
    (R08: only an inspection pass may put a unit back on the shelf)."""
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        now = svc.clock()
        case.receive_goods(inspections, now, actor)
        # Only an approved case has goods to receive.
        ctx = evaluation_context(svc, uow, case, now, case.approved or case.requested,
                       decided=Outcome.APPROVE)
        verdict = svc.rules(case.shop_id).evaluate(ctx)
        case.reassess(verdict.lines, verdict.obligations, now)
        uow.commit()


def write_back(svc: Services, case_id: str) -> None:
    """Tell the storefront what became of its request. Like an email, a failure is recorded
    and never undoes the decision or the refund."""
    pending = first_phase(svc, case_id, PENDING_WRITE_BACKS)
    if pending is None:
        return
    case, updates = pending
    storefront = svc.gateways(case.shop_id).storefront
    results: list[tuple[StatusOutcome, str | None]] = []
    for outcome in updates:
        if storefront is None:
            results.append((outcome, "the shop's storefront no longer takes write-backs"))
            continue
        amount = case.refunded if outcome is StatusOutcome.REFUNDED else case.approved
        decision = case.decisions[-1] if case.decisions else None
        # The storefront may show its note to the customer (Shopify's decline note, a
        # WooCommerce customer note): only the customer message goes, never the internal one.
        update = StatusUpdate(case.id, case.request.order.id, case.request.external_id,
                              outcome, decision.customer_message if decision else "", amount)
        try:
            storefront.write_back(update)
        except (PermanentProviderError, NotSupported) as exc:
            results.append((outcome, exc.message))
        else:
            results.append((outcome, None))
    record_step(svc, case, Step.WRITE_BACK,
            lambda c: c.record_write_backs(results, svc.clock()))


def _pending_write_backs(_svc: Services, case: RefundCase
                         ) -> tuple[RefundCase, list[StatusOutcome]] | None:
    updates = case.pending_write_backs()
    return (case, updates) if updates else None


PENDING_WRITE_BACKS = FirstPhase(Step.WRITE_BACK, _pending_write_backs, writes=False)


def adjust_stock(svc: Services, case_id: str) -> None:
    """Book the case's return in the ERP once, as `issue_refund` pays once:

    1. Claim the booking under the case's lock and commit, before any call; a job that
       finds a live claim of another job leaves the booking to it.
    2. The ERP connector looks for the case's documents before it creates any, so a claim
       taken over from a job that died finishes that job's booking instead of repeating it.
    3. Record the answer; a refusal fails the case only if nobody booked it meanwhile.
    """
    claimed = first_phase(svc, case_id, CLAIM_BOOKING)
    if claimed is None:
        return
    case, moves, booking = claimed
    erp = svc.gateways(case.shop_id).erp
    try:
        reference = erp.book_return(booking)
    except PermanentProviderError as exc:
        refused = exc
        record_step(svc, case, Step.STOCK, lambda c: _refused_booking(svc, c, refused))
        return
    actor = f"connector:{erp.name}"
    record_step(svc, case, Step.STOCK,
            lambda c: c.record_stock_booked(reference, moves, svc.clock(), actor=actor))


def _claim_booking(svc: Services, case: RefundCase
                   ) -> tuple[RefundCase, list[StockMove], ReturnBooking] | None:
    """Phase one: the claim, to commit before the call (None: nothing to book, or another
    job's claim is live)."""
    if case.claim_stock_booking(svc.clock(), svc.booking_lease) is None:
        return None
    moves = case.planned_stock_moves()
    amount = case.approved or case.requested
    booking = ReturnBooking(case.id, case.request.order.id, amount, tuple(moves), case.request)
    return case, moves, booking


CLAIM_BOOKING = FirstPhase(Step.STOCK, _claim_booking, writes=True)


def _refused_booking(svc: Services, case: RefundCase, refused: PermanentProviderError) -> None:
    if case.erp_booked:  # another job's booking landed first: the refusal was about that one
        case.close_if_done(svc.clock())
    else:
        case.step_failed(Step.STOCK, refused.message, svc.clock(), refused.code)
