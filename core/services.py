"""The service layer: one function per use case, each a single unit of work.

Functions take ids and the dependencies they need (`Services`), never globals. The ones that
call a provider commit before the call (so the idempotency key is stored first) and again
after it (so the result is recorded with the work that follows from it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.errors import (
    ConcurrencyConflict,
    DuplicateDelivery,
    InvalidRequest,
    NotFound,
    NotSupported,
    PermanentProviderError,
    TransientProviderError,
)
from core.lifecycle import CaseState
from core.model import (
    Decision,
    DeliveryStatus,
    Inspection,
    LineDisposition,
    NotificationKind,
    Obligation,
    Outcome,
    RefundCase,
    RefundResult,
    RefundStatus,
    RuleResult,
    ShippedUnit,
    Step,
)
from core.money import Money
from core.ports import (
    ErpGateway,
    ExternalRefund,
    InboxEntry,
    Notifier,
    OutgoingMessage,
    PaymentGateway,
    RefundOrder,
    RefundRequested,
    RefundUpdate,
    ReturnBooking,
    ShipmentLookup,
    StatusOutcome,
    StatusUpdate,
    StatusWriter,
    UnitOfWork,
    WebhookEvent,
)
from core.request import NormalizedRefundRequest
from core.rules import (
    EvaluationContext,
    RuleSet,
    ShopPolicy,
    over_refund_guard,
    payment_route_guard,
    units_guard,
)

log = logging.getLogger("refundbridge.services")


@dataclass(frozen=True)
class ShopGateways:
    """The connectors one shop uses for each role (built by the composition root). The
    optional ports are set only when the shop's connector declares the capability."""

    payment: PaymentGateway
    erp: ErpGateway
    notifier: Notifier
    shipments: ShipmentLookup | None = None
    storefront: StatusWriter | None = None
    storefront_name: str | None = None


@dataclass(frozen=True)
class Services:
    uow: Callable[[], UnitOfWork]
    policy: Callable[[str], ShopPolicy]
    gateways: Callable[[str], ShopGateways]
    rules: Callable[[str], RuleSet]
    clock: Callable[[], datetime]
    # How long a job's claim on a case's ERP booking keeps other jobs from calling the ERP:
    # longer than a job may run, so a live claim is never taken over.
    booking_lease: timedelta = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Received:
    case_id: str
    created: bool


def _nothing_to_do(svc: Services, uow: UnitOfWork, case: RefundCase, step: Step) -> None:
    """A step found its work done already (by another job, or before a retry): mark its
    work done, and close the case if this step was all that kept it open."""
    case.close_if_done(svc.clock())
    uow.outbox.complete(case.id, step)
    uow.commit()


def _record(svc: Services, snapshot: RefundCase, step: Step,
            change: Callable[[RefundCase], None], *, done: bool = True) -> None:
    """Phase two of a step: apply `change` to the case as phase one read it, mark the step's
    work done (unless `done` is False: it is to be tried again), and commit.

    Saving checks the case's version, so if anyone wrote the case while the provider was
    being called, this raises `ConcurrencyConflict` inside; then the case is read again (and
    locked) and `change` applied to that. Most of the time nobody did, and the second read
    is saved.
    """
    try:
        with svc.uow() as uow:
            uow.cases.attach(snapshot)
            change(snapshot)
            if done:
                uow.outbox.complete(snapshot.id, step)
            uow.commit()
        return
    except ConcurrencyConflict:
        pass
    with svc.uow() as uow:
        case = uow.cases.get(snapshot.id)
        change(case)
        if done:
            uow.outbox.complete(case.id, step)
        uow.commit()


# ------------------------------------------------------------------ intake


def receive_request(
    svc: Services, shop_id: str, connector: str, request: NormalizedRefundRequest,
    fingerprint: str | None = None,
) -> Received:
    """Open a case for a new request; a replay returns the first case.

    Raises `DuplicateDelivery(same_body=False)` when the external id is known with another body
    (`fingerprint`, by default the request's own digest, says which is which), and
    `InvalidRequest` on `order.currency` when the order is known in another currency: no
    worker could evaluate that case against the order's ledger.
    """
    fingerprint = fingerprint or request.fingerprint()
    with svc.uow() as uow:
        known = uow.orders.known_currency(shop_id, request.order.id)
        if known is not None and known != request.currency:
            raise InvalidRequest(
                "order.currency", f"order {request.order.id} is known in {known}; a request "
                                  f"on it in {request.currency} cannot be refunded")
        # No look-up first: the inbox's unique key decides, also between concurrent copies.
        case = RefundCase.open(
            request, shop_id=shop_id, source=connector,
            refund_timing=svc.policy(shop_id).refund_timing, at=svc.clock(),
        )
        uow.cases.add(case)
        uow.inbox.add(shop_id, connector, request.external_id, InboxEntry(case.id, fingerprint))
        try:
            uow.commit()
        except DuplicateDelivery:
            pass  # known already: a replay, or a concurrent copy that committed first
        else:
            return Received(case.id, created=True)
    return _known_delivery(svc, shop_id, connector, request.external_id, fingerprint)


@dataclass(frozen=True, slots=True)
class RefundNewsApplied:
    """A provider's news of a refund: `case_id` None when the refund is not one of ours."""

    case_id: str | None
    applied: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ExternalRefundRecorded:
    order_id: str
    external_id: str
    recorded: bool  # False: recorded before


@dataclass(frozen=True, slots=True)
class NothingToDo:
    reason: str


WebhookOutcome = Received | RefundNewsApplied | ExternalRefundRecorded | NothingToDo


def apply_webhook_event(svc: Services, shop_id: str, connector: str,
                        event: WebhookEvent) -> WebhookOutcome:
    """What a verified webhook asks for, done: a new case, a refund settled, an outside
    refund counted, or nothing."""
    if isinstance(event, RefundRequested):
        return receive_request(svc, shop_id, connector, event.request, event.fingerprint)
    if isinstance(event, RefundUpdate):
        try:
            case_id = apply_refund_update(svc, event.result, case_id=event.case_id,
                                          idempotency_key=event.idempotency_key,
                                          actor=f"connector:{connector}")
        except NotFound:
            # Signed, so genuine, but about a case this deployment does not have (another
            # deployment on the same account, or test data). Acknowledged: refusing it
            # would have the provider deliver it again for days.
            log.warning("%s/%s: refund news for unknown case %r (event %s) acknowledged",
                        shop_id, connector, event.case_id, event.event_id)
            return RefundNewsApplied(None, False, "no such case here")
        return RefundNewsApplied(case_id, case_id is not None)
    if isinstance(event, ExternalRefund):
        return ExternalRefundRecorded(event.order_id, event.external_id,
                                      record_external_refund(svc, shop_id, event))
    return NothingToDo(event.reason)


def _known_delivery(svc: Services, shop_id: str, connector: str, external_id: str,
                    fingerprint: str) -> Received:
    with svc.uow() as uow:
        known = uow.inbox.find(shop_id, connector, external_id)
        if known is None:  # pragma: no cover - the unique key said it exists
            raise DuplicateDelivery("unknown", same_body=False)
        if known.fingerprint != fingerprint:
            raise DuplicateDelivery(known.case_id, same_body=False)
        return Received(known.case_id, created=False)


# ------------------------------------------------------------------ evaluate


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
                _nothing_to_do(svc, uow, case, Step.EVALUATE)
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
    ctx = _context(svc, uow, case, now, paid - held)
    route = _route(svc, case.shop_id, request, case.source)
    case.decide(rules_decision(svc.rules(case.shop_id), ctx, route))
    _queue_write_back(svc, case)
    uow.outbox.complete(case.id, Step.EVALUATE)
    uow.commit()


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


def _context(svc: Services, uow: UnitOfWork, case: RefundCase, now: datetime,
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


def review(svc: Services, case_id: str, outcome: Outcome, reviewer: str, internal_note: str,
           customer_message: str = "") -> None:
    """A person decides a case the rules sent to review. The over-refund and units guards
    still hold.

    `internal_note` is kept in the case and its trail and never leaves RefundBridge;
    `customer_message` goes to the customer with the decision (email, storefront note).
    """
    chosen = outcome
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        request = case.request
        paid = uow.orders.lock(case.shop_id, request.order.id, request.paid)
        now = svc.clock()
        rules: tuple[RuleResult, ...] = ()
        lines: tuple[LineDisposition, ...] = ()
        obligations: tuple[Obligation, ...] = ()
        if outcome is Outcome.APPROVE:
            held = uow.orders.reserved(case.shop_id, request.order.id, case.currency, case.id)
            ctx = _context(svc, uow, case, now, paid - held, decided=Outcome.APPROVE)
            rules = (over_refund_guard(ctx), units_guard(ctx))
            if any(guard.outcome is Outcome.DENY for guard in rules):
                outcome = Outcome.DENY
            else:
                # What the approval starts (R07: a refund without goods is due from today).
                verdict = svc.rules(case.shop_id).evaluate(ctx)
                lines, obligations = verdict.lines, verdict.obligations
        # A message written for the reviewer's outcome is not sent with another (an approval
        # the guard turned into a denial): the customer gets the plain message of that one.
        message = customer_message if outcome is chosen else ""
        case.decide(Decision(outcome, request.requested, rules, f"operator:{reviewer}", now,
                             internal_note, lines, obligations, message))
        _queue_write_back(svc, case)
        uow.commit()


# ------------------------------------------------------------------ money


def issue_refund(svc: Services, case_id: str) -> None:
    """Pay the approved amount once.

    1. Reserve the attempt and its idempotency key, and commit, before any call.
    2. If the attempt existed (a crash or a duplicate job), ask the provider for it first.
    3. Call the provider with the same key (it pays once per key), record the answer.
    """
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        if Step.REFUND not in case.steps_needed():
            _nothing_to_do(svc, uow, case, Step.REFUND)
            return
        known_before = case.current_attempt is not None and case.current_attempt.status in {
            RefundStatus.STARTED, RefundStatus.PENDING, RefundStatus.SUCCEEDED,
            RefundStatus.UNKNOWN,
        }
        attempt = case.reserve_attempt(svc.clock())
        order = _refund_order(case)
        uow.commit()
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
        _record(svc, case, Step.REFUND, lambda c: c.fail(
            Step.REFUND, f"could not read the refund's status: {unreadable.message}",
            svc.clock(), unreadable.code))
        return
    if result is None:
        try:
            result = payment.issue_refund(order)
        except PermanentProviderError as exc:  # the provider refused: no money moved
            result = RefundResult(RefundStatus.FAILED, None, message=exc.message)
    answer, actor = result, f"connector:{payment.name}"
    _record(svc, case, Step.REFUND,
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


# ------------------------------------------------------------------ goods and stock


def record_receipt(svc: Services, case_id: str, inspections: list[Inspection],
                   actor: str) -> None:
    """The goods are back and inspected: record that, and decide again where each unit goes
    (R08: only an inspection pass may put a unit back on the shelf)."""
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        now = svc.clock()
        case.receive_goods(inspections, now, actor)
        # Only an approved case has goods to receive.
        ctx = _context(svc, uow, case, now, case.approved or case.requested,
                       decided=Outcome.APPROVE)
        verdict = svc.rules(case.shop_id).evaluate(ctx)
        case.reassess(verdict.lines, verdict.obligations, now)
        uow.commit()


def record_external_refund(svc: Services, shop_id: str, refund: ExternalRefund) -> bool:
    """A refund made outside RefundBridge (in the storefront's admin): count it against the
    order so the over-refund guard stays true. Returns False for one recorded before."""
    with svc.uow() as uow:
        recorded = uow.orders.record_external(shop_id, refund)
        uow.commit()
        return recorded


def write_back(svc: Services, case_id: str) -> None:
    """Tell the storefront what became of its request. Like an email, a failure is recorded
    and never undoes the decision or the refund."""
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        updates = case.pending_write_backs()
        if not updates:
            _nothing_to_do(svc, uow, case, Step.WRITE_BACK)
            return
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
    _record(svc, case, Step.WRITE_BACK,
            lambda c: c.record_write_backs(results, svc.clock()))


def adjust_stock(svc: Services, case_id: str) -> None:
    """Book the case's return in the ERP once, as `issue_refund` pays once:

    1. Claim the booking under the case's lock and commit, before any call; a job that
       finds a live claim of another job leaves the booking to it.
    2. The ERP connector looks for the case's documents before it creates any, so a claim
       taken over from a job that died finishes that job's booking instead of repeating it.
    3. Record the answer; a refusal fails the case only if nobody booked it meanwhile.
    """
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        if case.claim_stock_booking(svc.clock(), svc.booking_lease) is None:
            _nothing_to_do(svc, uow, case, Step.STOCK)
            return
        moves = case.planned_stock_moves()
        amount = case.approved or case.requested
        booking = ReturnBooking(case.id, case.request.order.id, amount, tuple(moves),
                                case.request)
        uow.commit()
    erp = svc.gateways(case.shop_id).erp
    try:
        reference = erp.book_return(booking)
    except PermanentProviderError as exc:
        refused = exc
        _record(svc, case, Step.STOCK, lambda c: _refused_booking(svc, c, refused))
        return
    actor = f"connector:{erp.name}"
    _record(svc, case, Step.STOCK,
            lambda c: c.record_stock_booked(reference, moves, svc.clock(), actor=actor))


def _refused_booking(svc: Services, case: RefundCase, refused: PermanentProviderError) -> None:
    if case.erp_booked:  # another job's booking landed first: the refusal was about that one
        case.close_if_done(svc.clock())
    else:
        case.step_failed(Step.STOCK, refused.message, svc.clock(), refused.code)


# ------------------------------------------------------------------ notifications


def send_notifications(svc: Services, case_id: str) -> None:
    """Send what the customer has not been told yet. A failed email never undoes a refund,
    but the case stays open until every message it owes is sent (or waived by a person).

    A refusal for good marks the message failed, for a person to resend or waive. A
    transient failure (after the connector's own retries) is recorded as an attempt and
    raised, so the step's work stays open and the reconciler hands it out again, later
    each time and a bounded number of times.
    """
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        pending = case.pending_notifications()
        messages = [_message(case, n.kind) for n in pending]
        if not messages:
            _nothing_to_do(svc, uow, case, Step.NOTIFY)
            return
    notifier = svc.gateways(case.shop_id).notifier
    outcomes: list[tuple[NotificationKind, DeliveryStatus, str | None]] = []
    transient: TransientProviderError | None = None
    for message in messages:
        try:
            notifier.send(message)
        except PermanentProviderError as exc:
            outcomes.append((message.kind, DeliveryStatus.FAILED, exc.message))
        except TransientProviderError as exc:
            outcomes.append((message.kind, DeliveryStatus.PENDING, exc.message))
            transient = transient or exc
        else:
            outcomes.append((message.kind, DeliveryStatus.SENT, None))

    def settle(c: RefundCase) -> None:
        c.record_notifications(outcomes, svc.clock(), attempted=True)

    if transient is None:
        _record(svc, case, Step.NOTIFY, settle)
        return
    _record(svc, case, Step.NOTIFY, settle, done=False)
    raise transient


def _message(case: RefundCase, kind: NotificationKind) -> OutgoingMessage:
    """What a notifier gets for one message. Only what the customer may read goes in: a
    decision's internal note never does, its customer message does."""
    request = case.request
    decision = case.decisions[-1] if case.decisions else None
    amount = case.refunded if kind is NotificationKind.REFUNDED and case.refunded else (
        case.approved or case.requested)
    return OutgoingMessage(
        case_id=case.id, kind=kind, locale=request.customer.locale,
        email=str(request.customer.email) if request.customer.email else None,
        phone=request.customer.phone, message_id=f"{case.id}.{kind.value}",
        context={
            "case_id": case.id, "shop_id": case.shop_id, "order_id": request.order.id,
            "amount": str(amount.amount), "currency": amount.currency,
            "customer_id": request.customer.id, "reason_text": request.reason.text,
            "lines": [{"sku": li.sku, "name": li.name, "quantity": li.quantity}
                      for li in request.lines],
            "is_return": case.is_return,
            "customer_message": decision.customer_message if decision else "",
        },
    )


def waive_notification(svc: Services, case_id: str, kind: NotificationKind, actor: str,
                       reason: str) -> None:
    """A person decides the customer need not get a message; the case then closes if that
    was all it waited for."""
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        case.waive_notification(kind, svc.clock(), actor, reason)
        uow.commit()


def resend_notification(svc: Services, case_id: str, kind: NotificationKind,
                        actor: str) -> None:
    """A person asks for a failed (or waived) message to go out again: a notify step is
    queued, and the case closes once it is sent if nothing else is left."""
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        case.resend_notification(kind, svc.clock(), actor)
        uow.commit()


# ------------------------------------------------------------------ operator actions


def fail_step(svc: Services, case_id: str, step: Step, message: str,
              code: str | None = None) -> None:
    """A job's step failed for a reason retrying will not mend, or the reconciler gave up on
    it: show that on the case (`RefundCase.step_failed`) and close the step's work."""
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        case.step_failed(step, message[:1000], svc.clock(), code)
        uow.outbox.complete(case_id, step)
        uow.commit()


def revive(svc: Services, case_id: str, limit: int) -> list[Step]:
    """The reconciler found the case idle: queue the steps its state needs (or fail it for a
    person after `limit` revivals without progress). Returns the steps queued."""
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        steps = case.revive(svc.clock(), limit)
        uow.commit()
        return steps


def retry(svc: Services, case_id: str, actor: str) -> None:
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        case.retry(svc.clock(), actor)
        uow.commit()


def cancel(svc: Services, case_id: str, actor: str, reason: str) -> None:
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        case.cancel(svc.clock(), actor, reason)
        uow.commit()


STEP_HANDLERS: dict[Step, Callable[[Services, str], None]] = {
    Step.EVALUATE: evaluate,
    Step.REFUND: issue_refund,
    Step.STOCK: adjust_stock,
    Step.NOTIFY: send_notifications,
    Step.WRITE_BACK: write_back,
}
