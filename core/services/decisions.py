"""Deciding a case: the rules (under a lock on its order), a preview, a reviewer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from refundbridge.core.errors import (
    InvalidRequest,
    NotSupported,
    PermanentProviderError,
)
from refundbridge.core.exchanges import price_difference_guard, recalled_lot_notes
from refundbridge.core.lifecycle import CaseState
from refundbridge.core.model import (
    Decision,
    FourEyesReason,
    Inspection,
    LineDisposition,
    Obligation,
    Outcome,
    RefundCase,
    ReviewProposal,
    RuleResult,
    ShippedUnit,
    Step,
)
from refundbridge.core.money import Money
from refundbridge.core.policy import ShopPolicy
from refundbridge.core.ports import (
    UnitOfWork,
)
from refundbridge.core.request import NormalizedRefundRequest, check_text
from refundbridge.core.rules import (
    EvaluationContext,
    RuleSet,
    over_refund_guard,
    payment_route_guard,
    units_guard,
)
from refundbridge.core.services.common import Services, commit_step, finish_idle_step


def evaluate(svc: Services, case_id: str) -> None:
    """Decide a new case by the shop's rules, under a lock on its order.

    If the shop's ERP can say what was shipped (R01), it is asked first, outside any
    transaction: a slow ERP must not hold the case's lock.
    """
    shipments: list[ShippedUnit] | None = None
    unknown_because: str | None = None
    asked = False
    while True:
        with svc.uow() as uow:
            case = uow.cases.get(case_id)
            if Step.EVALUATE not in case.steps_needed():
                finish_idle_step(svc, uow, case, Step.EVALUATE)
                return
            lookup = svc.gateways(case.shop_id).shipments
            if lookup is None or asked:
                _decide(svc, uow, case, shipments, asked, unknown_because)
                return
        try:
            shipments = list(lookup.shipped_units(case.request.order.id))
        except (PermanentProviderError, NotSupported) as exc:
            # The ERP does not know the order: R01 says it could not check, and the case's
            # trail keeps the ERP's answer (a rejected credential must not pass unseen).
            # Transient errors propagate, so the job is tried again.
            unknown_because = exc.message
        asked = True


def _decide(svc: Services, uow: UnitOfWork, case: RefundCase,
            shipments: list[ShippedUnit] | None, asked: bool,
            unknown_because: str | None) -> None:
    request = case.request
    # Locks are always taken case first, then order: no deadlocks between cases.
    paid = uow.orders.lock(case.shop_id, request.order.id, request.paid)
    now = svc.clock()
    if case.state is CaseState.RECEIVED:
        case.start_evaluation(now)
    if asked:
        case.record_shipments(shipments, now, unknown_because)
    held = uow.orders.reserved(case.shop_id, request.order.id, case.currency, case.id)
    ctx = evaluation_context(svc, uow, case, now, paid - held)
    route = _route(svc, case.shop_id, request, case.source)
    case.decide(rules_decision(svc.rules(case.shop_id), ctx, route))
    _queue_write_back(svc, case)
    uow.outbox.complete(case.id, Step.EVALUATE)
    commit_step(svc, uow, case)


def rules_decision(rules: RuleSet, ctx: EvaluationContext,
                   route: RuleResult | None = None) -> Decision:
    """The over-refund guard, then the units guard and the shop's rules; `route` (G02) can
    only send an approval to a person."""
    guard = over_refund_guard(ctx)
    if guard.outcome is Outcome.DENY:
        return Decision(Outcome.DENY, ctx.request.requested, (guard,), "rules", ctx.now)
    units = units_guard(ctx)
    verdict = rules.evaluate(ctx)
    guards = (guard, units) if route is None else (guard, units, route)
    # An exchange's price difference (X01) can only send an approval to a person, as G02.
    difference = price_difference_guard(ctx.request)
    if difference is not None:
        guards = (*guards, difference, *recalled_lot_notes(ctx.request, verdict.lines))
    outcome = verdict.outcome
    if units.outcome is Outcome.DENY:
        # Nothing is paid for units the order no longer has; but a claim the rules send to
        # a person anyway (an adverse event, a quality claim) still reaches one, who then
        # sees the reason first and can only deny the money (`review`).
        outcome = Outcome.REVIEW if outcome is Outcome.REVIEW else Outcome.DENY
    elif outcome is Outcome.APPROVE and any(
            g.outcome is Outcome.REVIEW for g in guards):
        outcome = Outcome.REVIEW
    return Decision(outcome, verdict.amount, (*guards, *verdict.rules), "rules",
                    ctx.now, lines=verdict.lines, obligations=verdict.obligations)


def _route(svc: Services, shop_id: str, request: NormalizedRefundRequest,
           source: str) -> RuleResult:
    payment = svc.gateways(shop_id).payment
    return payment_route_guard(request, payment.name, source, payment.plays_any_provider)


def preview(svc: Services, shop_id: str, request: NormalizedRefundRequest, now: datetime,
            inspections: Sequence[Inspection] = (), source: str = "generic") -> Decision:
    """What the rules would decide for `request` at `now`, storing nothing: the same inputs
    a case would get (the shop's policy and recall list, the customer's earlier requests,
    what the order's other cases hold), except that the ERP is not asked what it shipped."""
    policy = svc.policy(shop_id)
    with svc.uow() as uow:
        since = now - timedelta(days=policy.frequent_refund_days)
        earlier = uow.cases.earlier_requests(shop_id, request.customer.id, since, "")
        held = uow.orders.reserved(shop_id, request.order.id, request.currency, "")
        units = tuple(uow.orders.held_units(shop_id, request.order.id, ""))
        recalls = uow.recalls.for_shop(shop_id)
    ctx = EvaluationContext(request, policy, request.paid - held, now, recalls=recalls,
                            previous_requests=tuple(at for at in earlier if at <= now),
                            inspections=tuple(inspections), held_units=units)
    return rules_decision(svc.rules(shop_id), ctx, _route(svc, shop_id, request, source))


def evaluation_context(svc: Services, uow: UnitOfWork, case: RefundCase, now: datetime,
             refundable: Money, decided: Outcome | None = None) -> EvaluationContext:
    """Everything the rules may read about a case, gathered in the case's unit of work."""
    policy = svc.policy(case.shop_id)
    since = now - timedelta(days=policy.frequent_refund_days)
    earlier = uow.cases.earlier_requests(case.shop_id, case.request.customer.id, since,
                                         case.id)
    return EvaluationContext(
        case.request, policy, refundable, now,
        recalls=uow.recalls.for_shop(case.shop_id),
        previous_requests=tuple(at for at in earlier if at < case.created_at),
        shipments=None if case.shipments is None else tuple(case.shipments),
        inspections=tuple(case.inspections),
        held_units=tuple(uow.orders.held_units(case.shop_id, case.request.order.id,
                                               case.id)),
        decided=decided,
    )


def _queue_write_back(svc: Services, case: RefundCase) -> None:
    """Tell the storefront the request was decided, if it came from one that listens."""
    gateways = svc.gateways(case.shop_id)
    if gateways.storefront is not None and gateways.storefront_name == case.source:
        case.request_write_back()


def four_eyes_reasons(policy: ShopPolicy, case: RefundCase) -> tuple[FourEyesReason, ...]:
    """Why a reviewer's decision on `case` must wait for a second reviewer (none: it need
    not): the amount asked is above the shop's `four_eyes_above` for its currency, or the
    case is a possible adverse event."""
    reasons: list[FourEyesReason] = []
    if policy.four_eyes_for(case.requested.amount, case.currency):
        reasons.append(FourEyesReason.AMOUNT)
    if case.possible_adverse_event:
        reasons.append(FourEyesReason.ADVERSE_EVENT)
    return tuple(reasons)


def review(svc: Services, case_id: str, outcome: Outcome, actor: str, internal_note: str,
           customer_message: str = "") -> ReviewProposal | None:
    """A person decides a case the rules sent to review. The over-refund and units guards
    still hold.

    `internal_note` is kept in the case and its trail and never leaves RefundBridge;
    `customer_message` goes to the customer with the decision (email, storefront note).

    When four eyes apply (`four_eyes_reasons`), nothing is decided yet: the decision is kept
    as a proposal, returned, and the case stays `awaiting_review` until another reviewer
    confirms or rejects it (`confirm_review`).
    """
    if outcome not in {Outcome.APPROVE, Outcome.DENY}:
        raise InvalidRequest("decision", "a reviewer approves or denies")
    check_text(internal_note, "internal_note", multiline=True)
    check_text(customer_message, "customer_message", multiline=True)
    if not internal_note.strip():
        raise InvalidRequest("internal_note", "say why, for the shop's people")
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        reasons = four_eyes_reasons(svc.policy(case.shop_id), case)
        if reasons:
            proposal = ReviewProposal(outcome, actor, svc.clock(), internal_note,
                                      customer_message, reasons)
            case.propose_review(proposal)
            uow.commit()
            return proposal
        _apply_review(svc, uow, case, Decision(outcome, case.requested, (), actor, svc.clock(),
                                               internal_note, customer_message=customer_message))
        uow.commit()
    return None


def confirm_review(svc: Services, case_id: str, actor: str, agree: bool,
                   note: str = "") -> None:
    """A second reviewer (never the proposal's author: `SameReviewer`) confirms the
    proposed decision, which then applies as a decision by `actor` that names its proposer
    (the guards hold as for any review), or rejects it with `note`, and the case waits for
    a new decision."""
    check_text(note, "internal_note", multiline=True)
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        if not agree:
            case.reject_proposal(actor, svc.clock(), note)
            uow.commit()
            return
        proposal = case.proposal_for(actor)
        _apply_review(svc, uow, case, Decision(
            proposal.outcome, case.requested, (), actor, svc.clock(), proposal.internal_note,
            customer_message=proposal.customer_message, proposed_by=proposal.proposed_by,
            confirm_note=note))
        uow.commit()


def _apply_review(svc: Services, uow: UnitOfWork, case: RefundCase, chosen: Decision) -> None:
    """Decide `case` as a person chose, under the order's lock: an approval the over-refund
    or units guard refuses becomes a denial."""
    request = case.request
    paid = uow.orders.lock(case.shop_id, request.order.id, request.paid)
    outcome = chosen.outcome
    rules: tuple[RuleResult, ...] = ()
    lines: tuple[LineDisposition, ...] = ()
    obligations: tuple[Obligation, ...] = ()
    if outcome is Outcome.APPROVE:
        held = uow.orders.reserved(case.shop_id, request.order.id, case.currency, case.id)
        ctx = evaluation_context(svc, uow, case, chosen.at, paid - held,
                                 decided=Outcome.APPROVE)
        rules = (over_refund_guard(ctx), units_guard(ctx))
        if any(guard.outcome is Outcome.DENY for guard in rules):
            outcome = Outcome.DENY
        else:
            # What the approval starts (R07: a refund without goods is due from today).
            verdict = svc.rules(case.shop_id).evaluate(ctx)
            lines, obligations = verdict.lines, verdict.obligations
    # A message written for the reviewer's outcome is not sent with another (an approval
    # the guard turned into a denial): the customer gets the plain message of that one.
    message = chosen.customer_message if outcome is chosen.outcome else ""
    case.decide(replace(chosen, outcome=outcome, rules=rules, lines=lines,
                        obligations=obligations, customer_message=message))
    _queue_write_back(svc, case)


def claim_case(svc: Services, case_id: str, actor: str, take_over: bool = False) -> None:
    """`actor` takes the case from the review queue (another's claim only with
    `take_over`)."""
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        case.claim(actor, svc.clock(), take_over=take_over)
        uow.commit()


def release_case(svc: Services, case_id: str, actor: str) -> None:
    """The case's assignee gives it back to the queue."""
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        case.release(actor, svc.clock())
        uow.commit()
