"""Ordering an exchange's replacement in the ERP once (`erp.replacement`).

The same five steps as the refund's key (STYLE.md "the refund key's path"):

1. The replacement is claimed under the case's lock, with its idempotency key (derived from
   the case: `core.replacement.replacement_key`), and committed before the ERP is called.
   A job that finds another job's live claim leaves the order to it.
2. A claim after an earlier one (its job died, or its call failed in a way that may have
   ordered) asks the ERP for the order made under the key first (`find_replacement`).
3. Otherwise the ERP is asked to create it under the same key (`create_replacement` is
   idempotent on it too: a second call returns the first order).
4. The answer is recorded: the order and its delivery, and the case moves on.
5. A refusal fails the case for a person (nothing was ordered); a transient error releases
   the claim and goes up, so the job is tried again, looking up first.
"""

from __future__ import annotations

from refundbridge.core.errors import NotSupported, PermanentProviderError, TransientProviderError
from refundbridge.core.exchanges import lots_to_avoid
from refundbridge.core.model import RefundCase, Step
from refundbridge.core.money import Money
from refundbridge.core.ports import (
    ReplacementItem,
    ReplacementOrder,
    ReplacementResult,
    ReplacementState,
)
from refundbridge.core.replacement import CaseReplacement
from refundbridge.core.services.common import FirstPhase, Services, first_phase, record_step

NO_REPLACEMENT = ("the shop's ERP connector cannot order replacements (erp.replacement); "
                  "send the replacement by hand, then retry or cancel the case")


def order_replacement(svc: Services, case_id: str) -> None:
    """The `replace` step: order the case's replacement once (module docstring)."""
    claimed = first_phase(svc, case_id, CLAIM_REPLACEMENT)
    if claimed is None:
        return
    case, replacement, order = claimed
    erp = svc.gateways(case.shop_id).replacement
    if erp is None:
        record_step(svc, case, Step.REPLACE, lambda c: c.replacement_refused(
            NO_REPLACEMENT, svc.clock(), "not_supported"))
        return
    result: ReplacementResult | None = None
    found = False
    try:
        if replacement.claims > 1:
            result = erp.find_replacement(order)
            found = result is not None
        if result is None:
            result = erp.create_replacement(order)
    except (PermanentProviderError, NotSupported) as exc:
        refused, code = exc.message, getattr(exc, "code", None)
        record_step(svc, case, Step.REPLACE,
                    lambda c: _refused(svc, c, refused, code))
        return
    except TransientProviderError as exc:
        # The ERP may have ordered it: the next claim (at once, not after the lease) asks
        # for it by the key before ordering.
        unsure = exc.message
        record_step(svc, case, Step.REPLACE,
                    lambda c: c.replacement_unsure(unsure, svc.clock()), done=False)
        raise
    answer = result
    actor = f"connector:{getattr(erp, 'name', 'erp')}"
    record_step(svc, case, Step.REPLACE, lambda c: c.record_replacement(
        answer.document, answer.delivery, answer.state is ReplacementState.SHIPPED,
        svc.clock(), actor, found=found))


def replacement_order(case: RefundCase, replacement: CaseReplacement) -> ReplacementOrder:
    """What the ERP is asked to send: the request's replacement lines, under the case's key."""
    request = case.request
    return ReplacementOrder(
        idempotency_key=replacement.idempotency_key, case_id=case.id,
        order_id=request.order.id, customer_id=request.customer.id,
        customer_email=str(request.customer.email) if request.customer.email else None,
        items=tuple(ReplacementItem(line.sku, line.name, line.quantity,
                                    Money.parse(line.unit_price, request.currency))
                    for line in request.replacements),
        avoid_lots=replacement.avoid_lots,
    )


def _claim(svc: Services, case: RefundCase
           ) -> tuple[RefundCase, CaseReplacement, ReplacementOrder] | None:
    """Phase one: the claim and its key, to commit before the call (None: nothing to
    order, or another job's claim is live)."""
    replacement = case.claim_replacement(svc.clock(), svc.booking_lease,
                                         lots_to_avoid(case.dispositions))
    if replacement is None:
        return None
    return case, replacement, replacement_order(case, replacement)


CLAIM_REPLACEMENT = FirstPhase(Step.REPLACE, _claim, writes=True)


def _refused(svc: Services, case: RefundCase, message: str, code: str | None) -> None:
    if case.replacement_done:  # another job's order landed first: the refusal was a repeat
        case.close_if_done(svc.clock())
    else:
        case.replacement_refused(message, svc.clock(), code)
