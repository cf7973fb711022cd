"""What the customer is told: sending, and an operator's resend or waiver."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from refundbridge.core.errors import (
    DeliveryUncertain,
    InvalidRequest,
    NotFound,
    PermanentProviderError,
    SendDeferred,
    TransientProviderError,
)
from refundbridge.core.model import (
    CAMPAIGN_KINDS,
    DeliveryState,
    DeliveryStatus,
    NotificationKind,
    RefundCase,
    Step,
    sms_message_id,
)
from refundbridge.core.packing import packing_of
from refundbridge.core.phones import to_e164
from refundbridge.core.policy import ShopPolicy
from refundbridge.core.ports import (
    DeliveryReport,
    OutgoingMessage,
    SmsCallback,
    SmsSender,
)
from refundbridge.core.request import check_text
from refundbridge.core.services.common import (
    FirstPhase,
    Services,
    ShopGateways,
    finish_idle_step,
    first_phase,
    record_step,
)
from refundbridge.core.status_links import StatusLinks


def send_notifications(svc: Services, case_id: str) -> None:
    """Send what the customer has not been told yet. A failed email never undoes a refund,
    but the case stays open until every message it owes is sent (or waived by a person).

    A refusal for good marks the message failed, for a person to resend or waive. A
    transient failure (after the connector's own retries) is recorded as an attempt and
    raised, so the step's work stays open and the reconciler hands it out again, later
    each time and a bounded number of times.
    """
    found = first_phase(svc, case_id, DUE_MESSAGES)
    if found is None:
        return
    case, messages, gateways, texting = found
    if not messages:
        assert gateways.sms is not None
        _finish_sms(svc, case_id, gateways.sms)
        return
    notifier = gateways.notifier
    outcomes: list[tuple[NotificationKind, DeliveryStatus, str | None]] = []
    transient: TransientProviderError | None = None
    for message in messages:
        try:
            notifier.send(message)
        except DeliveryUncertain as exc:
            # Probably delivered; sending it again could deliver it twice. Shown on the
            # case, where a person may resend it.
            outcomes.append((message.kind, DeliveryStatus.SENT, f"unconfirmed: {exc.message}"))
        except PermanentProviderError as exc:
            outcomes.append((message.kind, DeliveryStatus.FAILED, exc.message))
        except TransientProviderError as exc:
            outcomes.append((message.kind, DeliveryStatus.PENDING, exc.message))
            transient = transient or exc
        else:
            outcomes.append((message.kind, DeliveryStatus.SENT, None))

    def settle(c: RefundCase) -> None:
        if texting:
            for message in messages:
                c.add_sms(message.kind)
        c.record_notifications(outcomes, svc.clock(), attempted=True)

    if transient is None and not texting:
        record_step(svc, case, Step.NOTIFY, settle)
        return
    record_step(svc, case, Step.NOTIFY, settle, done=False)
    if gateways.sms is not None and texting:
        _finish_sms(svc, case_id, gateways.sms, email_error=transient)
    if transient is not None:
        raise transient


def _due(svc: Services, case: RefundCase
         ) -> tuple[RefundCase, list[OutgoingMessage], ShopGateways, bool] | None:
    """Phase one: the messages the customer is owed now (None: none, and no SMS either)."""
    pending = case.pending_notifications()
    policy = svc.policy(case.shop_id)
    messages = [_message(case, n.kind, svc.status_links, policy) for n in pending]
    gateways = svc.gateways(case.shop_id)
    # SMS go beside the emails, when the shop has an SMS connector and the customer a
    # phone number (`_send_sms`); an SMS never keeps the case open.
    texting = gateways.sms is not None and case.request.customer.phone is not None
    if not messages and not (texting and case.pending_sms()):
        return None
    return case, messages, gateways, texting


DUE_MESSAGES = FirstPhase(Step.NOTIFY, _due, writes=False)


def _message(case: RefundCase, kind: NotificationKind,
             links: StatusLinks | None = None,
             policy: ShopPolicy | None = None) -> OutgoingMessage:
    """What a notifier gets for one message. Only what the customer may read goes in: a
    decision's internal note never does, its customer message does. `policy` (the shop's)
    adds its return address and its SKUs' sterile / cold-chain flags to the lines."""
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
            # Each line with what its packing needs (core/packing.py): the approved email's
            # advice for sterile, cold-chain and sharp items.
            "lines": [{"sku": li.sku, "name": li.name, "quantity": li.quantity,
                       **_packing(li.sku, li.name, li.sterile, li.cold_chain, policy)}
                      for li in request.lines],
            # Where the goods go back to ("": the shop has not set one), and how the money
            # comes back: the order's payment provider ("stripe", "alipay", …).
            "return_address": policy.return_address if policy else "",
            "payment": request.order.payment.provider,
            # Whether the money is back with the customer now (the goods-received email
            # says so when the refund went out before the goods came back).
            "refund_paid": bool(case.refunded and case.refunded.amount > 0),
            "is_return": case.is_return,
            # An exchange's: what goes out, how far its order has got, and whether a price
            # difference is refunded (`amount` then is that difference).
            **_exchange_context(case),
            "customer_message": decision.customer_message if decision else "",
            # The customer's status page (/status/{token}); None when links are off.
            "status_url": links.link_for(case.id, case.shop_id) if links else None,
        },
    )


def _exchange_context(case: RefundCase) -> dict[str, Any]:
    if not case.is_exchange:
        return {"is_exchange": False}
    replacement = case.replacement
    return {
        "is_exchange": True,
        "replacements": [{"sku": r.sku, "name": r.name, "quantity": r.quantity}
                         for r in case.request.replacements],
        "replacement_on_approval": case.replacement_timing == "on_approval",
        "replacement_document": replacement.document if replacement else None,
        "replacement_delivery": replacement.delivery if replacement else None,
        "refund_due": bool(case.approved and case.approved.is_positive()),
        "goods_back": case.goods_received,
    }


def _packing(sku: str, name: str, sterile: bool, cold_chain: bool,
             policy: ShopPolicy | None) -> dict[str, bool]:
    packing = packing_of(sku=sku, name=name, sterile=sterile, cold_chain=cold_chain,
                         policy=policy)
    return {"sterile": packing.sterile, "cold_chain": packing.cold_chain,
            "sharp": packing.sharp}


def waive_notification(svc: Services, case_id: str, kind: NotificationKind, actor: str,
                       reason: str) -> None:
    """A person decides the customer need not get a message; the case then closes if that
    was all it waited for."""
    check_text(reason, "reason", multiline=True)
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


# ------------------------------------------------------------------ SMS

# Twilio's opt-out words, and the Chinese carriers' (退订, TD): the reply's first word.
OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT",
                           "退订", "TD"})


def _finish_sms(svc: Services, case_id: str, sender: SmsSender,
                email_error: TransientProviderError | None = None) -> None:
    """Send the case's pending SMS, then end the notify step: done when nothing is left to
    send, else open: a deferred SMS postpones the step's work until it may go (never a
    failure of the case), another transient error is raised for the reconciler."""
    held, still_open = _send_sms(svc, case_id, sender)
    if email_error is not None:
        return  # the caller raises it; the step stays open
    if isinstance(held, SendDeferred):
        # Held back on purpose (quiet hours, a provider's per-number limit): the step's
        # work waits until then, without using up the hand-overs a lost job gets, so a
        # message deferred overnight is still sent in the morning.
        until = svc.clock() + timedelta(seconds=held.retry_after or DEFER_DEFAULT_SECONDS)
        with svc.uow() as uow:
            uow.outbox.postpone(case_id, Step.NOTIFY, until)
            uow.commit()
        return
    if held is not None:
        raise held
    if still_open:
        return  # another job is mid-call on one of them: it, or the reconciler, ends the step
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        if case.pending_notifications() and Step.NOTIFY not in case.new_steps:
            # Queued while this run was sending (its own work was still open, so no new
            # run was written then): it gets one now, after this one's is closed.
            case.new_steps.append(Step.NOTIFY)
        finish_idle_step(svc, uow, case, Step.NOTIFY)


def _send_sms(svc: Services, case_id: str, sender: SmsSender
              ) -> tuple[TransientProviderError | None, bool]:
    """Send each pending SMS once. Each is marked being sent (attempt n) and committed
    before the call, so a job that finds a mark left by a dead job asks the provider for that
    send (`find_sms`) before sending again: providers' sends are not idempotent. Returns the
    error to raise (a deferral, a transient failure) and whether an SMS is still open."""
    now = svc.clock()
    calls: list[tuple[OutgoingMessage, date | None]] = []
    held: TransientProviderError | None = None
    still_open = False
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        policy = svc.policy(case.shop_id)
        phone = case.request.customer.phone
        zone = ZoneInfo(policy.timezone)
        for sms in case.pending_sms():
            kind = sms.kind
            if phone is None:
                case.skip_sms(kind, now, "the customer has no phone number")
                continue
            if uow.sms_opt_outs.has(case.shop_id, phone):
                case.skip_sms(kind, now, "the number opted out of this shop's SMS")
                continue
            if (sms.in_flight and sms.sending_since is not None
                    and now - sms.sending_since < svc.booking_lease):
                still_open = True  # another job is calling the provider for it right now
                continue
            until = sms.next_attempt_at if sms.next_attempt_at and sms.next_attempt_at > now \
                else None
            if until is None and not kind.urgent:
                until = policy.quiet_until(now)
                if until is not None:
                    case.defer_sms(kind, now, until, "quiet hours")
            if until is not None:
                still_open = True
                held = held or SendDeferred(
                    sender.name, f"SMS '{kind.value}' deferred until {until.isoformat()}",
                    retry_after=(until - now).total_seconds())
                continue
            lost = sms.sending_since.astimezone(zone).date() if sms.sending_since else None
            case.claim_sms(kind, now)
            message = _message(case, kind, svc.status_links, policy)
            calls.append((replace(message, message_id=sms_message_id(case.id, kind),
                                  phone=phone), lost))
        uow.commit()
    outcomes: list[tuple[NotificationKind, Callable[[RefundCase], None], str | None]] = []
    for message, lost in calls:
        kind, at = message.kind, svc.clock()
        try:
            receipt = sender.find_sms(message, lost) if lost is not None else None
            found = receipt is not None
            if receipt is None:
                receipt = sender.send_sms(message)
        except SendDeferred as exc:
            wait = timedelta(seconds=exc.retry_after or DEFER_DEFAULT_SECONDS)
            outcomes.append((kind, _deferred(kind, at, at + wait, exc.message), None))
            held, still_open = held or exc, True
        except TransientProviderError as exc:
            outcomes.append((kind, _unsure(kind, at, exc.message), None))
            held, still_open = held or exc, True
        except PermanentProviderError as exc:
            outcomes.append((kind, _settled(kind, at, DeliveryState.FAILED, None,
                                            exc.message, False), None))
        else:
            outcomes.append((kind, _settled(kind, at, receipt.state, receipt.provider_id,
                                            receipt.detail, found), receipt.provider_id))
    if outcomes:
        with svc.uow() as uow:
            case = uow.cases.get(case_id)
            for kind, change, provider_id in outcomes:
                change(case)
                if provider_id:
                    uow.sms_sends.remember(case.shop_id, provider_id, case.id, kind)
            uow.commit()
    return held, still_open


DEFER_DEFAULT_SECONDS = 60.0


def _settled(kind: NotificationKind, at: datetime, state: DeliveryState,
             provider_id: str | None, error: str | None, found: bool
             ) -> Callable[[RefundCase], None]:
    return lambda c: c.record_sms(kind, at, state=state, provider_id=provider_id,
                                  error=error, found=found)


def _deferred(kind: NotificationKind, at: datetime, until: datetime,
              reason: str) -> Callable[[RefundCase], None]:
    return lambda c: c.defer_sms(kind, at, until, reason)


def _unsure(kind: NotificationKind, at: datetime, error: str) -> Callable[[RefundCase], None]:
    return lambda c: c.sms_unsure(kind, at, error)


@dataclass(frozen=True, slots=True)
class SmsCallbackApplied:
    reports: int  # delivery reports that changed a message's record
    unknown: int  # reports naming no message of this shop (or repeating what it knows)
    opted_out: int  # numbers newly opted out


def apply_sms_callback(svc: Services, shop_id: str, connector: str,
                       callback: SmsCallback) -> SmsCallbackApplied:
    """A provider's verified push: delivery reports move the records of the messages they
    name (by our message id, else the provider's id of the send), and STOP / 退订 replies
    opt their number out of the shop's SMS."""
    applied = unknown = opted = 0
    for report in callback.reports:
        if _apply_report(svc, shop_id, report):
            applied += 1
        else:
            unknown += 1
    region = svc.policy(shop_id).phone_region
    for reply in callback.replies:
        if not is_opt_out(reply.text):
            continue
        try:
            phone = to_e164(reply.phone if reply.phone.startswith("+") or region
                            else "+" + reply.phone, region)
        except InvalidRequest:
            phone = reply.phone
        with svc.uow() as uow:
            if uow.sms_opt_outs.add(shop_id, phone, reply.at or svc.clock(), connector,
                                    reply.text):
                opted += 1
            uow.commit()
    return SmsCallbackApplied(applied, unknown, opted)


def is_opt_out(text: str) -> bool:
    words = text.strip().split()
    return bool(words) and words[0].strip(".!。！").upper() in OPT_OUT_WORDS


def _apply_report(svc: Services, shop_id: str, report: DeliveryReport) -> bool:
    with svc.uow() as uow:
        target = _report_target(report.message_id)
        if target is None and report.provider_id:
            target = uow.sms_sends.find(shop_id, report.provider_id)
        notice = _campaign_target(report.message_id) or (
            _campaign_target(f"{target[0]}.x") if target and target[1] in CAMPAIGN_KINDS
            else None)
        if notice is not None:
            return _apply_campaign_report(svc, shop_id, *notice, report)
        if target is None:
            return False
        case_id, kind = target
        try:
            case = uow.cases.get(case_id)
        except NotFound:
            return False
        if case.shop_id != shop_id:
            return False
        changed = case.sms_report(kind, report.at or svc.clock(), state=report.state,
                                  provider_id=report.provider_id, error=report.error)
        if changed and report.provider_id:
            uow.sms_sends.remember(shop_id, report.provider_id, case.id, kind)
        uow.commit()
        return changed


def _campaign_target(message_id: str | None) -> tuple[str, int] | None:
    """A recall message's id (`<campaign>.<consignee>.<notice|reminderN>`) → its campaign
    and consignee."""
    parts = (message_id or "").split(".")
    if len(parts) != 3 or not parts[0].startswith("rcp_") or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1])


def _apply_campaign_report(svc: Services, shop_id: str, campaign_id: str, consignee: int,
                           report: DeliveryReport) -> bool:
    campaigns = svc.campaigns
    if campaigns is None:
        return False
    try:
        if campaigns.get(campaign_id).shop_id != shop_id:
            return False
    except NotFound:
        return False
    campaigns.set_delivery(campaign_id, consignee, report.state.value)
    return True


def _report_target(message_id: str | None) -> tuple[str, NotificationKind] | None:
    """Our SMS message id (`sms_message_id`) → its case and kind."""
    parts = (message_id or "").split(".")
    if len(parts) != 3 or parts[2] != "sms":
        return None
    try:
        return parts[0], NotificationKind(parts[1])
    except ValueError:
        return None
