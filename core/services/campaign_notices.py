"""Telling consignees: the recall notice and its reminders, by email and SMS, each
consignee claimed before they are told and never told twice (see `notify_consignees`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from refundbridge.core.campaigns import (
    NOTICE_BATCH,
    CampaignRepository,
    CampaignStep,
    ConsigneeRecord,
    NoticeState,
    RecallCampaign,
    reminder_due,
)
from refundbridge.core.errors import (
    DeliveryUncertain,
    PermanentProviderError,
    SendDeferred,
    TransientProviderError,
)
from refundbridge.core.model import NotificationKind
from refundbridge.core.ports import ConsigneeUnits, OutgoingMessage, SmsSender
from refundbridge.core.services.campaign_common import campaign_repo, save_campaign
from refundbridge.core.services.common import Services

MAX_NOTICE_ATTEMPTS = 5  # transient failures of one consignee's notice before it is failed


def consignee_locale(svc: Services, shop_id: str, record: ConsigneeRecord) -> str:
    """The consignee's language: the ERP's, else the shop's country's."""
    if record.locale:
        return record.locale
    return "zh-CN" if svc.policy(shop_id).country == "CN" else "en"


def recall_message(svc: Services, campaign: RecallCampaign, record: ConsigneeRecord,
                   reminder: int = 0) -> OutgoingMessage:
    """What a consignee is sent: their own units only, the instructions, their link."""
    links = svc.status_links
    assert links is not None, "open_campaign refuses a deployment without status links"
    ack_url = links.recall_link_for(campaign.id, record.id, campaign.shop_id)
    notice = campaign.notice
    kind = NotificationKind.RECALL_REMINDER if reminder else NotificationKind.RECALL_NOTICE
    suffix = f"reminder{reminder}" if reminder else "notice"
    return OutgoingMessage(
        case_id=campaign.id, kind=kind, locale=consignee_locale(svc, campaign.shop_id, record),
        email=record.email, phone=record.phone,
        message_id=f"{campaign.id}.{record.id}.{suffix}",
        context={
            "campaign_id": campaign.id, "shop_id": campaign.shop_id,
            "reference": notice.reference, "recall_class": notice.recall_class.value,
            "notice_date": notice.notice_date.isoformat(), "consignee_name": record.name,
            "product": {"sku": notice.sku, "gtin": notice.gtin},
            "units": [_unit_json(u) for u in record.units], "quantity": record.quantity,
            "actions": [a.value for a in notice.actions],
            "instructions": notice.instructions, "ack_url": ack_url, "reminder": reminder,
            "return_address": svc.policy(campaign.shop_id).return_address,
        })


def _unit_json(unit: ConsigneeUnits) -> dict[str, Any]:
    return {"sku": unit.sku, "quantity": unit.quantity, "lot": unit.lot,
            "serial": unit.serial, "document": unit.document,
            "shipped_on": unit.shipped_on.isoformat() if unit.shipped_on else None}


@dataclass
class _Tally:
    email_sent: int = 0
    sms_sent: int = 0
    failed: int = 0
    unconfirmed: int = 0
    retrying: int = 0

    def as_json(self) -> dict[str, int]:
        return {"email_sent": self.email_sent, "sms_sent": self.sms_sent,
                "failed": self.failed, "unconfirmed": self.unconfirmed,
                "retrying": self.retrying}


def notify_consignees(svc: Services, campaign_id: str) -> None:
    """Tell the next batch of consignees; a dead job's claims are settled first."""
    repo = campaign_repo(svc)
    campaign = repo.get(campaign_id)
    if not campaign.is_open:
        repo.save(campaign, done=CampaignStep.NOTIFY)
        return
    now = svc.clock()
    fresh, stale = repo.claim_notices(campaign_id, NOTICE_BATCH, now,
                                      stale_before=now - svc.booking_lease)
    gateways = svc.gateways(campaign.shop_id)
    tally = _Tally()
    transient: TransientProviderError | None = None
    ledger = _Ledger(repo)
    try:
        for record in stale:
            transient = _settle_stale(svc, campaign, record, gateways.sms, tally,
                                      ledger) or transient
        for record in fresh:
            error = _tell(svc, campaign, record, tally, ledger)
            transient = transient or error
    finally:
        ledger.flush()
    remaining = repo.unnotified(campaign_id)
    claimed = len(fresh) + len(stale)

    def record_batch(c: RecallCampaign) -> bool:
        more = claimed >= NOTICE_BATCH and remaining > 0 and transient is None
        c.notices_sent(tally.as_json(), svc.clock(), more=more, remaining=remaining)
        return True

    # A transient failure leaves the step open: the reconciler runs it again, later.
    save_campaign(svc, campaign_id, None if transient else CampaignStep.NOTIFY, record_batch)
    if transient is not None:
        raise transient


class _Ledger:
    """The batch's writes of consignee records: one consignee's outcome goes in the same
    commit as the next one's `sending` mark, so a consignee costs one commit, and a job that
    dies still leaves at most one consignee whose calls' outcome is unknown."""

    def __init__(self, repo: CampaignRepository) -> None:
        self._repo = repo
        self._done: ConsigneeRecord | None = None

    def sending(self, record: ConsigneeRecord) -> None:
        self._repo.record_notices([r for r in (self._done, record) if r is not None])
        self._done = None

    def done(self, record: ConsigneeRecord) -> None:
        self._done = record

    def flush(self) -> None:
        if self._done is not None:
            self._repo.record_notices([self._done])
            self._done = None


def _tell(svc: Services, campaign: RecallCampaign, record: ConsigneeRecord,
          tally: _Tally, ledger: _Ledger) -> TransientProviderError | None:
    """Send one consignee's notice on each claimed channel. The channels are marked
    `sending` (committed) before any call, so a job that dies mid-call leaves a record that
    says so (`_settle_stale`); the outcome is committed with the next consignee's mark."""
    message = recall_message(svc, campaign, record)
    gateways = svc.gateways(campaign.shop_id)
    transient: TransientProviderError | None = None
    record.attempts += 1
    if record.email_state is NoticeState.CLAIMED:
        record.email_state = NoticeState.SENDING
    if record.sms_state is NoticeState.CLAIMED:
        record.sms_state = NoticeState.SENDING
    ledger.sending(record)
    if record.email_state is NoticeState.SENDING:
        try:
            gateways.notifier.send(message)
        except DeliveryUncertain as exc:
            # Taken but never answered: told at most once, as a dead job's send is.
            record.email_state, record.last_error = NoticeState.UNCONFIRMED, exc.message
            tally.unconfirmed += 1
        except PermanentProviderError as exc:
            record.email_state, record.last_error = NoticeState.FAILED, exc.message
        except TransientProviderError as exc:
            record.email_state, record.last_error = _again(record), exc.message
            transient = exc
        else:
            record.email_state = NoticeState.SENT
            tally.email_sent += 1
    if record.sms_state is NoticeState.SENDING:
        transient = _text(svc, campaign, record, message, gateways.sms, tally) or transient
    _finish(svc, campaign, record, tally)
    ledger.done(record)
    return transient


def _again(record: ConsigneeRecord) -> NoticeState:
    return NoticeState.FAILED if record.attempts >= MAX_NOTICE_ATTEMPTS else NoticeState.PENDING


def _text(svc: Services, campaign: RecallCampaign, record: ConsigneeRecord,
          message: OutgoingMessage, sms: SmsSender | None, tally: _Tally
          ) -> TransientProviderError | None:
    if sms is None or record.phone is None:
        record.sms_state = NoticeState.NONE
        return None
    with svc.uow() as uow:
        opted_out = uow.sms_opt_outs.has(campaign.shop_id, record.phone)
    if opted_out:
        # The number said STOP to this shop's SMS; the email carries the notice.
        record.sms_state = NoticeState.NONE
        return None
    try:
        receipt = sms.send_sms(message)
    except SendDeferred as exc:
        record.sms_state, record.last_error = NoticeState.PENDING, exc.message
        return exc
    except PermanentProviderError as exc:
        record.sms_state, record.last_error = NoticeState.FAILED, exc.message
        return None
    except TransientProviderError as exc:
        record.sms_state, record.last_error = _again(record), exc.message
        return exc
    record.sms_state, record.delivery = NoticeState.SENT, receipt.state.value
    tally.sms_sent += 1
    with svc.uow() as uow:
        uow.sms_sends.remember(campaign.shop_id, receipt.provider_id,
                               f"{campaign.id}.{record.id}", message.kind)
        uow.commit()
    return None


def _finish(svc: Services, campaign: RecallCampaign, record: ConsigneeRecord,
            tally: _Tally) -> None:
    told = {NoticeState.SENT, NoticeState.UNCONFIRMED}
    if record.notified_at is None and (record.email_state in told
                                       or record.sms_state in told):
        record.notified_at = svc.clock()
        record.next_reminder_at = reminder_due(campaign.notice.recall_class,
                                               record.notified_at, record.reminders)
    if (record.email_state in {NoticeState.FAILED, NoticeState.NONE}
            and record.sms_state in {NoticeState.FAILED, NoticeState.NONE}):
        tally.failed += 1


def _settle_stale(svc: Services, campaign: RecallCampaign, record: ConsigneeRecord,
                  sms: SmsSender | None, tally: _Tally, ledger: _Ledger
                  ) -> TransientProviderError | None:
    """A job died holding this consignee. What it had only claimed is sent now. A call it
    had started: an email cannot be asked about, so it is recorded unconfirmed and not sent
    again (the reminders follow); an SMS provider is asked whether the send went out, and
    it is sent only if it did not."""
    if record.email_state is NoticeState.SENDING:
        record.email_state = NoticeState.UNCONFIRMED
        tally.unconfirmed += 1
    if record.sms_state is NoticeState.SENDING:
        found = None
        if sms is not None and record.phone is not None:
            message = recall_message(svc, campaign, record)
            found = sms.find_sms(message, (svc.clock() - svc.booking_lease).date())
        if found is not None:
            record.sms_state, record.delivery = NoticeState.SENT, found.state.value
        else:
            record.sms_state = NoticeState.CLAIMED
    return _tell(svc, campaign, record, tally, ledger)


# ------------------------------------------------------------------ reminders


def remind_consignees(svc: Services, campaign_id: str) -> None:
    """Remind the next batch of consignees who have not acknowledged."""
    repo = campaign_repo(svc)
    campaign = repo.get(campaign_id)
    if not campaign.is_open:
        repo.save(campaign, done=CampaignStep.REMIND)
        return
    due = repo.claim_reminders(campaign_id, svc.clock(), NOTICE_BATCH)
    gateways = svc.gateways(campaign.shop_id)
    tally = _Tally()
    for record in due:
        message = recall_message(svc, campaign, record, reminder=record.reminders)
        if record.email:
            try:
                gateways.notifier.send(message)
                tally.email_sent += 1
            except (DeliveryUncertain, PermanentProviderError, TransientProviderError) as exc:
                # A lost reminder is not retried hot: the next one is scheduled anyway.
                record.last_error = exc.message
                tally.failed += 1
        if record.phone is not None and record.sms_state is NoticeState.SENT:
            scratch = _Tally()
            record.sms_state = NoticeState.SENDING
            _text(svc, campaign, record, message, gateways.sms, scratch)
            record.sms_state = NoticeState.SENT
            tally.sms_sent += scratch.sms_sent
        anchor = record.notified_at or svc.clock()
        record.next_reminder_at = reminder_due(campaign.notice.recall_class, anchor,
                                               record.reminders)
        repo.record_notice(record)

    def record_batch(c: RecallCampaign) -> bool:
        c.reminders_sent(tally.as_json(), svc.clock(), more=len(due) >= NOTICE_BATCH)
        return True

    save_campaign(svc, campaign_id, CampaignStep.REMIND, record_batch)
