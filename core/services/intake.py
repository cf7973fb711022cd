"""Intake: a new request opens a case once, and a verified webhook does what it asks."""

from __future__ import annotations

from dataclasses import dataclass

from refundbridge.core.errors import (
    DuplicateDelivery,
    InvalidRequest,
    NotFound,
)
from refundbridge.core.model import (
    RefundCase,
)
from refundbridge.core.phones import to_e164
from refundbridge.core.ports import (
    CurrencyConflict,
    ExternalRefund,
    IntakeOutcome,
    KnownDelivery,
    RefundRequested,
    RefundUpdate,
    WebhookEvent,
)
from refundbridge.core.request import NormalizedRefundRequest
from refundbridge.core.services.common import Received, Services, log
from refundbridge.core.services.money import apply_refund_update


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
    new = open_new_case(svc, shop_id, connector, request, fingerprint)
    with svc.uow() as uow:
        outcome = uow.intake.open_case(new.case, connector, new.external_id, new.fingerprint)
    return received(new, outcome)


@dataclass(frozen=True, slots=True)
class NewCase:
    """A request's case, opened but not stored yet, its inbox key's fingerprint and the
    request as it was sent (the case's may hold the phone number rewritten)."""

    case: RefundCase
    fingerprint: str
    sent: NormalizedRefundRequest

    def is_replay_of(self, stored: str) -> bool:
        """Whether the inbox's fingerprint for this external id says this is the same
        request again (also in the form the request's fingerprint had before 2026-12)."""
        return stored == self.fingerprint or self.sent.has_fingerprint(stored)

    @property
    def external_id(self) -> str:
        return self.case.request.external_id


def open_new_case(svc: Services, shop_id: str, connector: str,
                  request: NormalizedRefundRequest, fingerprint: str | None = None) -> NewCase:
    """`receive_request`'s first half, pure: the case to store (`IntakeWriter.open_case`,
    or its async twin); `received` reads what storing it did."""
    fingerprint = fingerprint or request.fingerprint()
    policy = svc.policy(shop_id)
    case = RefundCase.open(with_e164_phone(request, policy.phone_region), shop_id=shop_id,
                           source=connector, refund_timing=policy.refund_timing, at=svc.clock(),
                           replacement_timing=policy.replacement_timing)
    return NewCase(case, fingerprint, request)


def received(new: NewCase, outcome: IntakeOutcome) -> Received:
    """`receive_request`'s answer to what storing `new` did (its errors included)."""
    request = new.case.request
    if isinstance(outcome, CurrencyConflict):
        raise InvalidRequest(
            "order.currency", f"order {request.order.id} is known in {outcome.known_currency}; "
                              f"a request on it in {request.currency} cannot be refunded")
    if isinstance(outcome, KnownDelivery):
        # A replay, or a concurrent copy that committed first: the inbox's unique key
        # decided (no look-up before the insert).
        if not new.is_replay_of(outcome.entry.fingerprint):
            raise DuplicateDelivery(outcome.entry.case_id, same_body=False)
        return Received(outcome.entry.case_id, created=False)
    return Received(new.case.id, created=True)


def with_e164_phone(request: NormalizedRefundRequest,
                    region: str | None) -> NormalizedRefundRequest:
    """The request with its customer's phone in E.164 (read in the shop's region); raises
    `InvalidRequest` on `customer.phone` for a number that is not one. The fingerprint is
    the request's as sent, so a redelivery is known whatever the number's form."""
    phone = request.customer.phone
    if not phone:
        return request
    e164 = to_e164(phone, region)
    if e164 == phone:
        return request
    customer = request.customer.model_copy(update={"phone": e164})
    return request.model_copy(update={"customer": customer})


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


def record_external_refund(svc: Services, shop_id: str, refund: ExternalRefund) -> bool:
    """A refund made outside RefundBridge (in the storefront's admin): count it against the
    order so the over-refund guard stays true. Returns False for one recorded before."""
    with svc.uow() as uow:
        recorded = uow.orders.record_external(shop_id, refund)
        uow.commit()
        return recorded
