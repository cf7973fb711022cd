"""A recall campaign through Shopify and Odoo fakes (their wire formats, respx): Odoo names
the consignees of the lot, each acknowledges, and those returning units get exactly one
recall case each, refunded through Shopify by rule R13 once the goods are back."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
import respx
from aiosmtpd.controller import Controller
from pydantic import SecretStr
from redis import Redis
from sqlalchemy import Engine, text

from refundbridge.bootstrap import Container, bootstrap
from refundbridge.core.campaigns import Acknowledgement, CampaignState, RecallNotice
from refundbridge.core.evidence import Scope, verify_package
from refundbridge.core.model import Inspection
from refundbridge.core.recalls import RecallClass
from refundbridge.core.services import export_evidence, record_receipt
from refundbridge.core.services.campaigns import (
    acknowledge,
    open_campaign,
    open_recall_cases,
)
from tests.conftest import Mailbox, drain, test_settings
from tests.factories import SHOP
from tests.fakes import shopify as shopify_fake
from tests.fakes.odoo import STOCK, OdooFake
from tests.fakes.shopify import ShopifyFake
from tests.integration.conftest import SECRET, race_workers
from tests.integration.test_recall_campaigns import mails
from tests.integration.test_shop_setups import ODOO, SHOPIFY


@pytest.fixture
def shop(db: Engine, redis_conn: Redis, smtp_server: tuple[Controller, Mailbox],
         database_url: str) -> Iterator[tuple[Container, ShopifyFake, OdooFake]]:
    storefront, erp = ShopifyFake(), OdooFake(version=17)
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        storefront.install(router)
        erp.install(router)
        settings = test_settings(
            database_url, smtp_server[0].port, storefront="shopify", payment="shopify",
            erp="odoo", shopify=SHOPIFY, odoo=ODOO,
            policy={"refund_timing": "on_receipt", "auto_approve_limits": {"USD": "80.00"}})
        settings = settings.model_copy(update={"status_link_secret": SecretStr(SECRET)})
        yield bootstrap(settings, redis=redis_conn, engine=db), storefront, erp


def buyer(storefront: ShopifyFake, erp: OdooFake, name: str, quantity: int,
          lot: str = "L2401") -> str:
    now = datetime.now(UTC)
    order_id = storefront.add_order(
        [shopify_fake.Line("GLU-METER-01", "Glucose meter", quantity, "49.95")],
        placed_at=now - timedelta(days=40), delivered_at=now - timedelta(days=38))
    partner = erp.add_partner(name, email=f"{name.lower()}@example.com")
    erp.add_order(order_id, [("GLU-METER-01", lot, quantity)], {"GLU-METER-01": "49.95"},
                  currency="USD", partner=partner)
    return order_id


def test_acknowledgements_open_one_recall_case_each_refunded_after_receipt(
        shop: tuple[Container, ShopifyFake, OdooFake], mailbox: Mailbox) -> None:
    container, storefront, erp = shop
    buyer(storefront, erp, "Ana", 2)
    buyer(storefront, erp, "Bo", 1)
    buyer(storefront, erp, "Cy", 3)
    buyer(storefront, erp, "Other", 1, lot="L9999")
    notice = RecallNotice(reference="FSCA-2026-07", recall_class=RecallClass.II,
                          notice_date=date.today(), sku="GLU-METER-01", lots=("L2401",))
    campaign_id = open_campaign(container.services, SHOP, notice, "operator:qa").campaign_id
    drain(container)
    repo = container.campaigns
    assert repo.get(campaign_id).state is CampaignState.MONITORING
    people = {r.name: r for r in repo.consignees(campaign_id)}
    assert sorted(people) == ["Ana", "Bo", "Cy"]
    assert len(mailbox.messages) == 3
    svc = container.services
    acknowledge(svc, campaign_id, people["Ana"].id,
                Acknowledgement(stopped_use=True, quantity_held=2, wants_return=True))
    acknowledge(svc, campaign_id, people["Bo"].id,
                Acknowledgement(stopped_use=True, quantity_held=0, wants_return=False))
    acknowledge(svc, campaign_id, people["Cy"].id,
                Acknowledgement(stopped_use=True, quantity_held=1, wants_return=True))
    # A second answer changes nothing: the first one stands.
    again = acknowledge(svc, campaign_id, people["Ana"].id,
                        Acknowledgement(stopped_use=False, quantity_held=1,
                                        wants_return=True))
    assert not again.recorded and again.consignee.acknowledgement is not None
    assert again.consignee.acknowledgement.quantity_held == 2
    # Two workers race to open the cases: the inbox key makes it one case each.
    race_workers(svc, campaign_id, (open_recall_cases,), rounds=1)
    drain(container)
    people = {r.name: r for r in repo.consignees(campaign_id)}
    assert people["Bo"].case_id is None
    cases = {name: people[name].case_id for name in ("Ana", "Cy")}
    assert all(cases.values()) and len(set(cases.values())) == 2
    with container.engine.connect() as conn:
        opened = conn.execute(text("SELECT count(*) FROM cases")).scalar_one()
    assert opened == 2
    for name, held in (("Ana", 2), ("Cy", 1)):
        case = container.reads.case_detail(str(cases[name]))
        assert case["state"] == "awaiting_return", case
        assert any(r["id"] == "R13" and r["outcome"] == "approve"
                   for r in case["decisions"][-1]["rules"])
        assert sum(line["quantity"] for line in case["lines"]) == held
        unit = Inspection(line=0, seal_intact=True, condition="as_new",
                          inspector="operator:zhao", quantity=held)
        record_receipt(svc, str(cases[name]), [unit], "operator:zhao")
    drain(container)
    for name in ("Ana", "Cy"):
        # Refunded after receipt, and the returned units go to quarantine, never the shelf.
        case = container.reads.case_detail(str(cases[name]))
        assert case["state"] == "closed", case["state"]
        assert {d["disposition"] for d in case["decisions"][-1]["lines"]} == {"quarantine"}
    counts = repo.counts(campaign_id)
    assert counts.acknowledged == 3 and counts.cases == 2
    assert counts.units_held == 3 and counts.units_to_return == 3
    assert counts.refunds_paid == 2 and counts.refunded == {"USD": "149.85"}

    # The lot's evidence package holds the recall cases and the campaign, each chain
    # verifiable offline; the export is on the campaign's own trail too.
    package = export_evidence(svc, container.reads.evidence,
                              container.reads.evidence.cases_for_lot(SHOP, "L2401"),
                              "operator:auditor", Scope.for_lot(SHOP, "L2401"))
    result = verify_package(package)
    assert result.ok, result.problem
    assert "1 recall campaigns" in result.describe()
    assert {c.case_id for c in result.cases} == {campaign_id, *cases.values()}
    assert repo.events(campaign_id)[-1].name == "evidence_exported"
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    path = f"campaigns/{campaign_id}/events.json"
    files[path] = files[path].replace(b'"quantity_held": 2', b'"quantity_held": 0', 1)
    tampered = io.BytesIO()
    with zipfile.ZipFile(tampered, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    broken = verify_package(tampered.getvalue())
    assert not broken.ok and path in str(broken.problem)


def test_a_serial_only_recall_finds_exactly_the_buyers_of_those_serials(
        shop: tuple[Container, ShopifyFake, OdooFake], mailbox: Mailbox) -> None:
    container, storefront, erp = shop
    erp.add_product("PUMP-INS-1", tracking="serial")
    now = datetime.now(UTC)
    for name, serial in (("Dee", "SN-100"), ("Eve", "SN-101"), ("Fay", "SN-200")):
        order_id = storefront.add_order(
            [shopify_fake.Line("PUMP-INS-1", "Insulin pump", 1, "899.00")],
            placed_at=now - timedelta(days=90), delivered_at=now - timedelta(days=88))
        partner = erp.add_partner(name, email=f"{name.lower()}@example.com")
        erp.add_order(order_id, [("PUMP-INS-1", serial, 1)], {"PUMP-INS-1": "899.00"},
                      currency="USD", partner=partner)
    erp.add_quant("PUMP-INS-1", STOCK, 1, lot="SN-102")
    notice = RecallNotice(reference="FSN-PUMP-3", recall_class=RecallClass.I,
                          notice_date=date.today(), sku="PUMP-INS-1",
                          serials=("SN-100", "SN-101", "SN-102"))
    campaign_id = open_campaign(container.services, SHOP, notice, "operator:qa").campaign_id
    drain(container)
    repo = container.campaigns
    people = {r.name: r for r in repo.consignees(campaign_id)}
    assert sorted(people) == ["Dee", "Eve"]
    assert [u.serial for u in people["Dee"].units] == ["SN-100"]
    assert sorted(str(m["To"]) for m in mails(mailbox)) == ["dee@example.com",
                                                            "eve@example.com"]
    campaign = repo.get(campaign_id)
    assert campaign.quarantined_units == 1 and campaign.quarantine_document
