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
    ExternalRefund,
    InboxEntry,
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
    fingerprint = fingerprint or request.fingerprint()
    request = with_e164_phone(request, svc.policy(shop_id).phone_region)
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


def _known_delivery(svc: Services, shop_id: str, connector: str, external_id: str,
                    fingerprint: str) -> Received:
    with svc.uow() as uow:
        known = uow.inbox.find(shop_id, connector, external_id)
        if known is None:  # pragma: no cover - the unique key said it exists
            raise DuplicateDelivery("unknown", same_body=False)
        if known.fingerprint != fingerprint:
            raise DuplicateDelivery(known.case_id, same_body=False)
        return Received(known.case_id, created=False)


def record_external_refund(svc: Services, shop_id: str, refund: ExternalRefund) -> bool:
    """A refund made outside RefundBridge (in the storefront's admin): count it against the
    order so the over-refund guard stays true. Returns False for one recorded before."""
    with svc.uow() as uow:
        recorded = uow.orders.record_external(shop_id, refund)
        uow.commit()
        return recorded
