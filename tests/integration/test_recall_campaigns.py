"""Recall campaigns end to end on the real store, queue and SMTP sink: the ERP walk, the
quarantine, one notice per consignee, reminders, acknowledgements and the recall cases."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from datetime import date, timedelta
from email.message import EmailMessage
from typing import Any

from refundbridge.bootstrap import Container
from refundbridge.core.audit import verify_chain
from refundbridge.core.campaigns import (
    NOTICE_BATCH,
    Acknowledgement,
    CampaignState,
    NoticeState,
    RecallAction,
    RecallNotice,
)
from refundbridge.core.model import DeliveryState
from refundbridge.core.ports import DeliveryReport, SmsCallback
from refundbridge.core.recalls import RecallClass
from refundbridge.core.services import apply_sms_callback
from refundbridge.core.services.campaigns import (
    acknowledge,
    identify_consignees,
    notify_consignees,
    open_campaign,
    quarantine_stock,
    recall_message,
)
from refundbridge.workers.reconcile import reconcile
from tests.conftest import Mailbox, drain
from tests.factories import SHOP
from tests.integration.conftest import Clock, race_workers

LOT = "L2401"


def mails(mailbox: Mailbox) -> list[EmailMessage]:
    return [email.message_from_bytes(m, policy=email.policy.default)  # type: ignore[misc]
            for m in mailbox.messages]



def shipments(count: int, *, lot: str = LOT) -> list[dict[str, Any]]:
    return [{"customer": f"CUST-{i:04d}", "name": f"客户 {i}", "sku": "GLU-METER-01",
             "quantity": 1 + i % 3, "document": f"DN-{i:04d}", "lot": lot,
             "order_id": f"SO-{i:04d}", "email": f"buyer{i}@example.com",
             "shipped_on": "2026-10-01"} for i in range(count)]


def notice(**overrides: Any) -> RecallNotice:
    values: dict[str, Any] = {
        "reference": "RC-2026-001", "recall_class": RecallClass.II,
        "notice_date": date(2026, 12, 1), "sku": "GLU-METER-01", "lots": (LOT,),
        "actions": (RecallAction.STOP_USE, RecallAction.RETURN),
        "instructions": "Stop using meters of lot L2401; strips read high."}
    values.update(overrides)
    return RecallNotice(**values)


def test_a_campaign_tells_every_consignee_once_and_its_trail_verifies(
        campaign_container: Callable[..., Container], mailbox: Mailbox) -> None:
    rows = shipments(450) + shipments(5, lot="OTHER")
    container = campaign_container(rows, [{"sku": "GLU-METER-01", "lot": LOT, "quantity": 7}])
    opened = open_campaign(container.services, SHOP, notice(), "operator:qa")
    assert opened.created
    drain(container)
    repo = container.campaigns
    campaign = repo.get(opened.campaign_id)
    assert campaign.state is CampaignState.MONITORING
    assert campaign.quarantined_units == 7 and campaign.quarantine_document
    counts = repo.counts(opened.campaign_id)
    assert counts.consignees == 450 and counts.notified == 450
    assert counts.units_shipped == sum(r["quantity"] for r in rows[:450])
    recipients = [m["To"] for m in mails(mailbox)]
    assert len(recipients) == 450 == len(set(recipients))
    assert verify_chain(repo.events(opened.campaign_id)).verifies
    again = open_campaign(container.services, SHOP, notice(instructions="changed"), "x")
    assert not again.created and again.campaign_id == opened.campaign_id
    drain(container)
    assert len(mailbox.messages) == 450
    records = repo.consignees(opened.campaign_id, limit=1000)
    assert {r.email_state for r in records} == {NoticeState.SENT}
    assert all(r.next_reminder_at == r.notified_at + timedelta(days=3)  # type: ignore[operator]
               for r in records)



def identify_only(container: Container, campaign_id: str) -> None:
    """Walk the ERP by hand (the queued jobs wait for `drain`)."""
    svc = container.services
    while container.campaigns.get(campaign_id).state is CampaignState.IDENTIFYING:
        identify_consignees(svc, campaign_id)


def test_a_worker_dead_mid_batch_then_the_reconciler_tells_everyone_exactly_once(
        campaign_container: Callable[..., Container], mailbox: Mailbox,
        clock: Clock) -> None:
    container = campaign_container(shipments(260))
    campaign_id = open_campaign(container.services, SHOP, notice(), "operator:qa").campaign_id
    identify_only(container, campaign_id)
    repo = container.campaigns
    # A notify job claimed a batch, started telling its first consignee (the email left)
    # and was killed: its claims stay, and nobody else may take them.
    now = clock()
    dead, _ = repo.claim_notices(campaign_id, NOTICE_BATCH, now, stale_before=now)
    first = dead[0]
    first.email_state = NoticeState.SENDING
    repo.record_notice(first)
    campaign = repo.get(campaign_id)
    container.services.gateways(SHOP).notifier.send(
        recall_message(container.services, campaign, first))
    drain(container)
    assert repo.get(campaign_id).state is CampaignState.NOTIFYING
    assert len(mailbox.messages) == 1 + 260 - NOTICE_BATCH
    # Later than any job may run: the reconciler hands the dead job's consignees out.
    clock.offset = container.services.booking_lease + timedelta(seconds=1)
    report = reconcile(container, now=clock())
    assert campaign_id in report.campaigns
    drain(container)
    recipients = [m["To"] for m in mails(mailbox)]
    assert len(recipients) == 260 == len(set(recipients))
    assert repo.get(campaign_id).state is CampaignState.MONITORING
    states = {r.id: r.email_state for r in repo.consignees(campaign_id, limit=1000)}
    assert states.pop(first.id) is NoticeState.UNCONFIRMED
    assert set(states.values()) == {NoticeState.SENT}
    assert repo.counts(campaign_id).notified == 260


def test_two_workers_racing_every_step_tell_each_consignee_once(
        campaign_container: Callable[..., Container], mailbox: Mailbox) -> None:
    container = campaign_container(shipments(300),
                                   [{"sku": "GLU-METER-01", "lot": LOT, "quantity": 4}],
                                   sms="sandbox_sms", sandbox_sms={})
    campaign_id = open_campaign(container.services, SHOP, notice(), "operator:qa").campaign_id
    svc = container.services
    race_workers(svc, campaign_id, (identify_consignees, quarantine_stock, notify_consignees),
                 rounds=40)
    drain(container)
    repo = container.campaigns
    assert repo.get(campaign_id).state is CampaignState.MONITORING
    recipients = [m["To"] for m in mails(mailbox)]
    assert len(recipients) == 300 == len(set(recipients))
    erp = container.shop(SHOP).by_name["sandbox_erp"]
    assert len(erp.quarantines) == 1
    assert repo.get(campaign_id).quarantined_units == 4


def test_notices_go_by_sms_too_in_the_consignees_language_and_reminders_follow(
        campaign_container: Callable[..., Container], mailbox: Mailbox,
        clock: Clock) -> None:
    rows = shipments(3)
    rows[0].update(phone="13800138000", locale="zh-CN")
    rows[1].update(phone="+8613900139000", email=None)
    container = campaign_container(rows, sms="sandbox_sms", sandbox_sms={},
                                   policy={"country": "CN"})
    campaign_id = open_campaign(
        container.services, SHOP, notice(recall_class=RecallClass.I), "operator:qa"
    ).campaign_id
    drain(container)
    sms = container.shop(SHOP).by_name["sandbox_sms"]
    assert sorted(s.message.phone for s in sms.sent) == ["+8613800138000", "+8613900139000"]
    assert len(mailbox.messages) == 2
    chinese = next(m for m in mails(mailbox) if m["To"] == "buyer0@example.com")
    assert "召回" in str(chinese["Subject"])
    repo = container.campaigns
    # The carrier's delivery report finds the consignee by the provider's id of the send.
    assert repo.counts(campaign_id).delivered == 2  # the emails
    delivered = next(s for s in sms.sent if s.message.phone == "+8613900139000")
    applied = apply_sms_callback(container.services, SHOP, "sandbox_sms", SmsCallback(
        reports=(DeliveryReport(provider_id=delivered.provider_id, message_id=None,
                                phone=None, state=DeliveryState.DELIVERED),)))
    assert applied.reports == 1
    assert repo.counts(campaign_id).delivered == 3  # and buyer1's SMS, which had no email
    # Class I: a reminder a day later to those who have not acknowledged.
    first = {r.key: r for r in repo.consignees(campaign_id)}
    acknowledge(container.services, campaign_id, first["CUST-0002"].id,
                Acknowledgement(stopped_use=True, quantity_held=0, wants_return=False))
    clock.offset = timedelta(days=1, minutes=1)
    reconcile(container, now=clock())
    drain(container)
    assert len(mailbox.messages) == 3  # the reminder to CUST-0000 only (0002 answered)
    reminded = {r.key: r.reminders for r in repo.consignees(campaign_id)}
    assert reminded == {"CUST-0000": 1, "CUST-0001": 1, "CUST-0002": 0}
    assert len(sms.sent) == 4
    reconcile(container, now=clock())
    drain(container)
    assert len(mailbox.messages) == 3  # not due again before another day
    assert verify_chain(repo.events(campaign_id)).verifies
