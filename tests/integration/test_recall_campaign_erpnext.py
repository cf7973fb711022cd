"""A recall campaign on ERPNext (its REST wire format, respx): the consignees of a batch from
Delivery Notes and stock-updating invoices, the stock on hand moved to quarantine by exactly
one Stock Entry while two workers race, one notice per consignee."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from pydantic import SecretStr

from refundbridge.bootstrap import Container, bootstrap
from refundbridge.core.campaigns import CampaignState, RecallNotice
from refundbridge.core.recalls import RecallClass
from refundbridge.core.services.campaigns import (
    identify_consignees,
    notify_consignees,
    open_campaign,
    quarantine_stock,
)
from tests.conftest import Mailbox, drain, test_settings
from tests.factories import SHOP
from tests.integration.conftest import SECRET, race_workers
from tests.integration.test_recall_campaigns import mails

METER, LOT = "GLU-METER-01", "L2401"


def seed(site: Any, customers: int) -> None:
    site.add_item(METER, batched=True)
    site.add_batch(LOT, "2027-01-31", item=METER)
    site.add_batch("L9999", "2027-06-30", item=METER)
    for i in range(customers):
        name = f"C-{i:03d}"
        site.add_customer(name, customer_name=f"Clinic {i}", email_id=f"c{i}@clinic.example")
        items = [(METER, 1 + i % 2, "199.00", {"batch_no": LOT})]
        if i % 3 == 0:
            site.add_invoice(f"SO-{i}", items, customer=name)
        else:
            site.add_delivery_note(f"SO-{i}", items, customer=name)
    site.add_delivery_note("SO-X", [(METER, 5, "199.00", {"batch_no": "L9999"})],
                           customer="C-000")
    site.add_stock(METER, "Stores - RB", 9, LOT)
    site.add_stock(METER, "Stores - RB", 4, "L9999")


def test_an_erpnext_campaign_quarantines_once_while_two_workers_race(
        db: Any, redis_conn: Any, smtp_server: Any, database_url: str, providers: Any,
        mailbox: Mailbox) -> None:
    _, _, site = providers
    seed(site, 30)
    # ERPNext takes its time over the Stock Entry: long enough for a second job to look for
    # it, find none, and move the stock again, if anything let it.
    site.before_insert.append(lambda doctype, doc: time.sleep(0.3))
    settings = test_settings(database_url, smtp_server[0].port)
    settings = settings.model_copy(update={"status_link_secret": SecretStr(SECRET)})
    container: Container = bootstrap(settings, redis=redis_conn, engine=db)
    notice = RecallNotice(reference="RC-ERP-1", recall_class=RecallClass.I,
                          notice_date=date.today(), sku=METER, lots=(LOT,))
    svc = container.services
    campaign_id = open_campaign(svc, SHOP, notice, "operator:qa").campaign_id
    race_workers(svc, campaign_id, (quarantine_stock, identify_consignees, notify_consignees),
                 rounds=10)
    drain(container)
    campaign = container.campaigns.get(campaign_id)
    assert campaign.state is CampaignState.MONITORING
    assert len(site.stock_entries) == 1
    assert campaign.quarantine_document == site.stock_entries[0]["name"]
    assert campaign.quarantined_units == 9
    assert site.on_hand(METER, "Quarantine - RB", LOT) == 9
    assert site.on_hand(METER, "Stores - RB", "L9999") == 4  # another lot stays on sale
    recipients = sorted(str(m["To"]) for m in mails(mailbox))
    assert recipients == sorted(f"c{i}@clinic.example" for i in range(30))
    counts = container.campaigns.counts(campaign_id)
    assert counts.consignees == 30
    assert counts.units_shipped == sum(1 + i % 2 for i in range(30))


def test_a_walk_the_erp_refuses_for_good_still_ends_and_says_why(
        db: Any, redis_conn: Any, smtp_server: Any, database_url: str, providers: Any,
        mailbox: Mailbox) -> None:
    _, _, site = providers
    seed(site, 2)
    settings = test_settings(database_url, smtp_server[0].port)
    settings = settings.model_copy(update={"status_link_secret": SecretStr(SECRET)})
    container: Container = bootstrap(settings, redis=redis_conn, engine=db)
    notice = RecallNotice(reference="RC-ERP-404", recall_class=RecallClass.III,
                          notice_date=date.today(), sku="NO-SUCH-ITEM", lots=(LOT,))
    campaign_id = open_campaign(container.services, SHOP, notice, "operator:qa").campaign_id
    drain(container)
    campaign = container.campaigns.get(campaign_id)
    assert campaign.state is CampaignState.MONITORING
    assert campaign.walk_failed and "NO-SUCH-ITEM" in campaign.walk_failed
    names = [e.name for e in container.campaigns.events(campaign_id)]
    assert "step_failed" in names and names.count("consignees_identified") == 1
    assert mailbox.messages == []
