"""Recall campaigns end to end on the real store, queue and SMTP sink: the ERP walk, the
quarantine, one notice per consignee, reminders, acknowledgements and the recall cases."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from email.message import EmailMessage
from datetime import date, timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from pydantic import SecretStr
from redis import Redis
from sqlalchemy import Engine

from refundbridge.bootstrap import Container, bootstrap
from refundbridge.core.audit import verify_chain
from refundbridge.core.campaigns import (
    CampaignState,
    NoticeState,
    RecallAction,
    RecallNotice,
)
from refundbridge.core.recalls import RecallClass
from refundbridge.core.services.campaigns import open_campaign
from tests.conftest import Mailbox, drain, test_settings
from tests.factories import SHOP

LOT = "L2401"


def mails(mailbox: Mailbox) -> list[EmailMessage]:
    return [email.message_from_bytes(m, policy=email.policy.default)  # type: ignore[misc]
            for m in mailbox.messages]
SECRET = "status-link-secret-for-tests-0123456789"


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


@pytest.fixture
def campaign_container(db: Engine, redis_conn: Redis,
                       smtp_server: tuple[Controller, Mailbox],
                       database_url: str) -> Callable[..., Container]:
    def build(rows: list[dict[str, Any]], stock: list[dict[str, Any]] | None = None,
              **shop: Any) -> Container:
        settings = test_settings(database_url, smtp_server[0].port, erp="sandbox_erp",
                                 sandbox_erp={"shipments": rows, "stock": stock or []},
                                 **shop)
        settings = settings.model_copy(update={"status_link_secret": SecretStr(SECRET)})
        return bootstrap(settings, redis=redis_conn, engine=db)
    return build


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

