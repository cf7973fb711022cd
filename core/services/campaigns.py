"""Recall campaigns: open one from a notice, walk the ERP, stop the stock, tell everyone,
remind, take acknowledgements, open the recall cases, close.

Each step is a job (`CAMPAIGN_HANDLERS`) that does one bounded batch and asks for another run
when more is left, so 50,000 consignees are many short jobs, not one long one. Every step is
idempotent: the walk merges pages by ERP line, the quarantine carries a key derived from the
campaign, a consignee is claimed before they are told and never told twice, and a recall case
goes through the inbox under a key derived from the consignee.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from refundbridge.core.campaigns import (
    ACK_NOTE_MAX,
    NOTICE_BATCH,
    PAGE_SIZE,
    Acknowledgement,
    CampaignRepository,
    CampaignState,
    CampaignStep,
    ConsigneeRecord,
    NoticeState,
    RecallCampaign,
    RecallNotice,
    merge_page,
    reminder_due,
)
from refundbridge.core.errors import (
    ConcurrencyConflict,
    ConfigError,
    DomainError,
    InvalidRequest,
    NotFound,
    NotSupported,
    PermanentProviderError,
    SendDeferred,
    TransientProviderError,
)
from refundbridge.core.model import NotificationKind
from refundbridge.core.phones import to_e164
from refundbridge.core.ports import (
    ConsigneeUnits,
    OrderSnapshot,
    OutgoingMessage,
    QuarantineOrder,
    SmsSender,
)
from refundbridge.core.request import (
    CustomerInfo,
    NormalizedRefundRequest,
    OrderInfo,
    PaymentRef,
    Reason,
    ReasonCode,
    RequestKind,
    RequestLine,
)
from refundbridge.core.services.common import Services, log
from refundbridge.core.services.intake import receive_request

# The inbox's connector name for the cases campaigns open (their external id is
# "<campaign id>.<consignee id>": one case per consignee, however often it is asked).
CAMPAIGN_SOURCE = "recall_campaign"
MAX_NOTICE_ATTEMPTS = 5  # transient failures of one consignee's notice before it is failed
CASE_BATCH = 50


class CampaignClosed(DomainError):
    """The campaign is closed: it takes no more acknowledgements."""


@dataclass(frozen=True, slots=True)
class CampaignOpened:
    campaign_id: str
    created: bool


def _repo(svc: Services) -> CampaignRepository:
    if svc.campaigns is None:  # pragma: no cover - every composition root sets it
        raise NotSupported("campaigns", "recall campaigns")
    return svc.campaigns


def _saved(svc: Services, campaign_id: str, step: CampaignStep | None,
           change: Callable[[RecallCampaign], bool]) -> RecallCampaign | None:
    """Apply `change` to the campaign and save it; on a lost version race read it again and
    apply `change` to that. `change` returns False when there is nothing (left) to do."""
    repo = _repo(svc)
    for _ in range(5):
        campaign = repo.get(campaign_id)
        if not change(campaign):
            if step is not None:
                repo.save(campaign, done=step)
            return None
        try:
            repo.save(campaign, done=step)
        except ConcurrencyConflict:
            continue
        return campaign
    raise ConcurrencyConflict(f"campaign {campaign_id}: too many writers at once")


# ------------------------------------------------------------------ opening


def open_campaign(svc: Services, shop_id: str, notice: RecallNotice, actor: str
                  ) -> CampaignOpened:
    """Open the shop's campaign for this notice; the same reference again changes nothing
    (`created` False), whatever the second notice says."""
    if svc.status_links is None:
        # Every notice carries the consignee's acknowledgement link; without the key that
        # signs them, nobody could answer.
        raise ConfigError("status_link_secret", "is needed for recall campaigns: every "
                                                "notice carries an acknowledgement link")
    gateways = svc.gateways(shop_id)
    campaign = RecallCampaign.open(shop_id, notice, actor=actor, at=svc.clock(),
                                   can_quarantine=gateways.quarantine is not None)
    if gateways.consignees is None:
        # Nobody can be found for it: said in the trail, and the walk ends at once.
        campaign.record("consignees_unavailable", svc.clock(), "system", {
            "reason": "the shop's ERP connector cannot list consignees (erp.consignees)"})
    created = _repo(svc).add(campaign)
    return CampaignOpened(campaign.id, created)


# ------------------------------------------------------------------ the ERP walk


def identify_consignees(svc: Services, campaign_id: str) -> None:
    """Read the next page of consignees and merge it; ask for the next page or, after the
    last, for the notices."""
    repo = _repo(svc)
    campaign = repo.get(campaign_id)
    if campaign.state is not CampaignState.IDENTIFYING:
        repo.save(campaign, done=CampaignStep.IDENTIFY)
        return
    lookup = svc.gateways(campaign.shop_id).consignees
    cursor = campaign.cursor
    if lookup is None:
        found, new, next_cursor = 0, 0, None
    else:
        page = lookup.consignees(campaign.notice.scope, cursor, PAGE_SIZE)
        merged = merge_page(page.consignees)
        region = svc.policy(campaign.shop_id).phone_region
        texting = svc.gateways(campaign.shop_id).sms is not None
        phones = {key: (_e164(c.phone, region) if texting else None)
                  for key, c in merged.items()}
        new = repo.merge_consignees(campaign_id, list(merged.values()), phones)
        found, next_cursor = len(page.consignees), page.cursor

    def advance(c: RecallCampaign) -> bool:
        if c.state is not CampaignState.IDENTIFYING or c.cursor != cursor:
            return False  # another job read this page and moved on
        c.page_read(next_cursor, found, new, svc.clock())
        return True

    _saved(svc, campaign_id, CampaignStep.IDENTIFY, advance)


def _e164(phone: str | None, region: str | None) -> str | None:
    if not phone:
        return None
    try:
        return to_e164(phone, region)
    except InvalidRequest:
        return None  # the ERP's number is not one: email only, and the console shows it


# ------------------------------------------------------------------ quarantine


def quarantine_stock(svc: Services, campaign_id: str) -> None:
    """Stop the stock on hand: one move into quarantine, under a key of the campaign. The
    claim is saved first, so two jobs racing never both ask the ERP to move stock."""
    repo = _repo(svc)
    campaign = repo.get(campaign_id)
    quarantine = svc.gateways(campaign.shop_id).quarantine
    if campaign.quarantine_document is not None or quarantine is None:
        repo.save(campaign, done=CampaignStep.QUARANTINE)
        return
    now = svc.clock()
    claimed = campaign.quarantine_claimed_at
    if claimed is not None and now - claimed < svc.booking_lease:
        raise TransientProviderError("campaigns", "another job is moving the stock")
    campaign.quarantine_claimed_at = now
    repo.save(campaign)  # a ConcurrencyConflict here: another job claimed it first
    result = quarantine.quarantine_stock(QuarantineOrder(
        idempotency_key=f"{campaign.id}.quarantine", reference=campaign.notice.reference,
        scope=campaign.notice.scope))
    moved = [{"sku": u.sku, "quantity": u.quantity, "lot": u.lot, "serial": u.serial,
              "from": u.source} for u in result.units]

    def record(c: RecallCampaign) -> bool:
        c.stock_quarantined(result.document, sum(u.quantity for u in result.units), moved,
                            svc.clock())
        return True

    _saved(svc, campaign_id, CampaignStep.QUARANTINE, record)


# ------------------------------------------------------------------ notices


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
    repo = _repo(svc)
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
    _saved(svc, campaign_id, None if transient else CampaignStep.NOTIFY, record_batch)
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


def campaign_tick(svc: Services, campaign_ids: list[str]) -> list[str]:
    """The reconciler's round over open campaigns: ask for the runs whose work is due and
    has no job (reminders due, notices a dead job left, recall cases to open). A step that
    has an open outbox row is not asked twice. Returns the campaigns asked."""
    repo = _repo(svc)
    now = svc.clock()
    asked = []
    for campaign_id in campaign_ids:
        steps = []
        if repo.due_reminders(campaign_id, now):
            steps.append(CampaignStep.REMIND)
        # Notices left (a dead job's claims), or none left but the campaign not yet moved on
        # (two batches that ended together each saw the other's consignees still open).
        if repo.unnotified(campaign_id) or (
                repo.get(campaign_id).state is CampaignState.NOTIFYING):
            steps.append(CampaignStep.NOTIFY)
        if repo.awaiting_cases(campaign_id, 1):
            steps.append(CampaignStep.OPEN_CASES)
        if not steps:
            continue

        def ask(c: RecallCampaign, steps: list[CampaignStep] = steps) -> bool:
            if not c.is_open:
                return False
            c.new_steps.extend(steps)
            return True

        if _saved(svc, campaign_id, None, ask) is not None:
            asked.append(campaign_id)
    return asked


def remind_consignees(svc: Services, campaign_id: str) -> None:
    """Remind the next batch of consignees who have not acknowledged."""
    repo = _repo(svc)
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
            except (PermanentProviderError, TransientProviderError) as exc:
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

    _saved(svc, campaign_id, CampaignStep.REMIND, record_batch)


# ------------------------------------------------------------------ acknowledgements


@dataclass(frozen=True, slots=True)
class AcknowledgementRecorded:
    consignee: ConsigneeRecord
    recorded: bool  # False: they had acknowledged before; the first answer stands


def acknowledge(svc: Services, campaign_id: str, consignee_id: int,
                ack: Acknowledgement) -> AcknowledgementRecorded:
    """A consignee's answer from their link. Units to return open a recall case (by the
    next `rc_cases` job): one per consignee, whatever is sent twice."""
    repo = _repo(svc)
    record = repo.consignee(campaign_id, consignee_id)
    if record.acknowledged_at is not None:
        return AcknowledgementRecorded(record, False)
    if not 0 <= ack.quantity_held <= record.quantity:
        raise InvalidRequest("quantity_held", f"must be between 0 and {record.quantity}, the "
                                              "units you received")
    if ack.wants_return and ack.quantity_held == 0:
        raise InvalidRequest("wants_return", "there is nothing to return when you hold no "
                                             "units")
    if len(ack.note) > ACK_NOTE_MAX:
        raise InvalidRequest("note", f"is longer than {ACK_NOTE_MAX} characters")
    now = svc.clock()
    record.acknowledged_at, record.acknowledgement = now, ack
    for _ in range(5):
        campaign = repo.get(campaign_id)
        if campaign.state is CampaignState.CLOSED:
            raise CampaignClosed(f"campaign {campaign.notice.reference} is closed")
        campaign.record("acknowledged", now, f"consignee:{record.key}", {
            "consignee": record.id, "stopped_use": ack.stopped_use,
            "quantity_held": ack.quantity_held, "wants_return": ack.wants_return,
            "passed_on": ack.passed_on})
        if ack.wants_return:
            campaign.new_steps.append(CampaignStep.OPEN_CASES)
        try:
            recorded = repo.acknowledge(campaign, record)
        except ConcurrencyConflict:
            continue
        if not recorded:
            return AcknowledgementRecorded(repo.consignee(campaign_id, consignee_id), False)
        return AcknowledgementRecorded(record, True)
    raise ConcurrencyConflict(f"campaign {campaign_id}: too many writers at once")


def open_recall_cases(svc: Services, campaign_id: str) -> None:
    """Open the recall case of every consignee who asked to return units and has none yet."""
    repo = _repo(svc)
    campaign = repo.get(campaign_id)
    waiting = repo.awaiting_cases(campaign_id, CASE_BATCH)
    opened: list[dict[str, Any]] = []
    for record in waiting:
        case_id, problem = _open_case(svc, campaign, record)
        repo.link_case(campaign_id, record.id, case_id, problem)
        opened.append({"consignee": record.id, "case": case_id, "problem": problem})

    def record_batch(c: RecallCampaign) -> bool:
        for item in opened:
            c.record("recall_case_opened" if item["case"] else "recall_case_by_hand",
                     svc.clock(), "system", item)
        if len(waiting) >= CASE_BATCH:
            c.new_steps.append(CampaignStep.OPEN_CASES)
        return True

    _saved(svc, campaign_id, CampaignStep.OPEN_CASES, record_batch)


def _open_case(svc: Services, campaign: RecallCampaign, record: ConsigneeRecord
               ) -> tuple[str | None, str | None]:
    """(case id, None), or (None, why a person must arrange the refund)."""
    ack = record.acknowledgement
    assert ack is not None
    orders = [u.order_id for u in record.units if u.order_id]
    lookup = svc.gateways(campaign.shop_id).orders
    if not orders:
        return None, "the ERP names no storefront order for these units"
    if lookup is None:
        return None, ("the shop's storefront cannot look orders up; arrange the refund of "
                      f"order {orders[0]} by hand")
    # One case per consignee, on the order that shipped them the most recalled units.
    by_order: dict[str, int] = {}
    for unit in record.units:
        if unit.order_id:
            by_order[unit.order_id] = by_order.get(unit.order_id, 0) + unit.quantity
    order_id = max(by_order, key=lambda o: (by_order[o], o))
    try:
        snapshot = lookup.lookup_order(order_id)
    except PermanentProviderError as exc:
        return None, f"order {order_id}: {exc.message}"
    try:
        request = _recall_request(campaign, record, ack, snapshot, order_id,
                                  record.acknowledged_at or svc.clock())
    except (InvalidRequest, ValueError) as exc:
        return None, f"order {order_id}: {exc}"
    # The case is the consignee's answer, not the order's state as read now: two jobs that
    # build it moments apart (prices, addresses read twice) still name one delivery.
    fingerprint = hashlib.sha256(request.external_id.encode()).hexdigest()
    received = receive_request(svc, campaign.shop_id, CAMPAIGN_SOURCE, request, fingerprint)
    problem = None
    if len(by_order) > 1:
        others = ", ".join(sorted(o for o in by_order if o != order_id))
        problem = f"units of orders {others} are for a person to refund"
    return received.case_id, problem


def _recall_request(campaign: RecallCampaign, record: ConsigneeRecord, ack: Acknowledgement,
                    order: OrderSnapshot, order_id: str, now: datetime
                    ) -> NormalizedRefundRequest:
    prices = {line.sku.casefold(): line for line in order.lines}
    left = ack.quantity_held
    lines: list[RequestLine] = []
    for unit in sorted(record.units, key=lambda u: u.line_id):
        if unit.order_id != order_id or left <= 0:
            continue
        priced = prices.get(unit.sku.casefold())
        if priced is None:
            raise ValueError(f"the order has no line for {unit.sku}")
        quantity = min(unit.quantity, left)
        left -= quantity
        lines.append(RequestLine(
            sku=unit.sku, name=priced.name, quantity=quantity,
            unit_price=priced.unit_price.amount, lot=unit.lot, serial=unit.serial,
            gtin=campaign.notice.gtin))
    if not lines:
        raise ValueError("no recalled units on the order")
    amount = sum((li.unit_price * li.quantity for li in lines), Decimal(0))
    notice = campaign.notice
    return NormalizedRefundRequest(
        external_id=f"{campaign.id}.{record.id}", kind=RequestKind.RETURN_AND_REFUND,
        order=OrderInfo(id=order_id, currency=order.paid_total.currency,
                        paid_total=order.paid_total.amount, placed_at=order.placed_at,
                        delivered_at=order.delivered_at,
                        payment=PaymentRef(provider=order.payment_provider,
                                           reference=order.payment_reference)),
        customer=CustomerInfo(id=order.customer_id or record.key,
                              email=order.customer_email or record.email,
                              phone=order.customer_phone or record.phone,
                              locale=record.locale or order.customer_locale or "en"),
        lines=lines,
        reason=Reason(code=ReasonCode.RECALL,
                      text=f"Recall {notice.reference} (class {notice.recall_class.value}): "
                           "returned through the recall campaign"),
        requested_amount=amount, requested_at=now)


# ------------------------------------------------------------------ closing


def close_campaign(svc: Services, campaign_id: str, actor: str, note: str) -> RecallCampaign:
    """A person closes the campaign after the effectiveness check; the totals go in the
    trail."""
    if not note.strip():
        raise InvalidRequest("note", "say why the campaign may close: the effectiveness "
                                     "check's result")
    if len(note) > 2000:
        raise InvalidRequest("note", "is longer than 2000 characters")
    counts = _repo(svc).counts(campaign_id).as_json()

    def close(c: RecallCampaign) -> bool:
        c.close(actor, note.strip(), svc.clock(), {"totals": counts})
        return True

    closed = _saved(svc, campaign_id, None, close)
    assert closed is not None
    return closed


def record_report(svc: Services, campaign_id: str, actor: str, report_format: str) -> None:
    """Who took the campaign's report, and when: on its trail before the report is built,
    so the report's own head names its making, as an evidence export does."""

    def record(c: RecallCampaign) -> bool:
        c.record("report_exported", svc.clock(), actor, {"format": report_format})
        return True

    _saved(svc, campaign_id, None, record)


def fail_campaign_step(svc: Services, campaign_id: str, step: CampaignStep,
                       message: str) -> None:
    """A step given up on (a permanent error, or too many tries): said in the trail, for a
    person to see on the campaign's page."""
    log.error("campaign %s: %s failed: %s", campaign_id, step.value, message)

    def record(c: RecallCampaign) -> bool:
        c.record("step_failed", svc.clock(), "system", {"step": step.value,
                                                         "error": message[:500]})
        if step is CampaignStep.IDENTIFY:
            c.walk_given_up(message, svc.clock())
        return True

    try:
        _saved(svc, campaign_id, step, record)
    except NotFound:
        log.error("campaign %s is gone; nothing to record", campaign_id)


CAMPAIGN_HANDLERS: dict[CampaignStep, Callable[[Services, str], None]] = {
    CampaignStep.IDENTIFY: identify_consignees,
    CampaignStep.QUARANTINE: quarantine_stock,
    CampaignStep.NOTIFY: notify_consignees,
    CampaignStep.REMIND: remind_consignees,
    CampaignStep.OPEN_CASES: open_recall_cases,
}
