"""What the customer is told: sending, and an operator's resend or waiver."""

from __future__ import annotations

from refundbridge.core.errors import (
    PermanentProviderError,
    TransientProviderError,
)
from refundbridge.core.model import (
    DeliveryStatus,
    NotificationKind,
    RefundCase,
    Step,
)
from refundbridge.core.ports import (
    OutgoingMessage,
)
from refundbridge.core.services.common import Services, finish_idle_step, record_step
from refundbridge.core.status_links import StatusLinks


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
        messages = [_message(case, n.kind, svc.status_links) for n in pending]
        if not messages:
            finish_idle_step(svc, uow, case, Step.NOTIFY)
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
        record_step(svc, case, Step.NOTIFY, settle)
        return
    record_step(svc, case, Step.NOTIFY, settle, done=False)
    raise transient


def _message(case: RefundCase, kind: NotificationKind,
             links: StatusLinks | None = None) -> OutgoingMessage:
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
            # The customer's status page (/status/{token}); None when links are off.
            "status_url": links.link_for(case.id, case.shop_id) if links else None,
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
