"""A recall campaign in a real browser (Debian's Chromium, driven by Playwright), every
request off this machine refused: a quality manager opens it through the form, the workers
find and tell the consignees, the manager follows its progress, closes it with the
effectiveness check's result, and the trail verifies. Screenshots go to
$REFUNDBRIDGE_SCREENSHOTS (docs/console/), else to the test's tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from playwright.sync_api import Browser
from redis import Redis
from sqlalchemy import Engine

from refundbridge.bootstrap import Container
from refundbridge.core.access import OperatorRole
from refundbridge.core.audit import verify_chain
from refundbridge.core.campaigns import Acknowledgement, CampaignState
from refundbridge.core.services.campaigns import acknowledge
from refundbridge.demo import Mailbox
from tests.browser import chromium, needs_chromium, offline_page, serve, shot
from tests.conftest import drain
from tests.console.conftest import PASSWORD
from tests.console.test_console_browser import log_in
from tests.console.test_console_recalls import LOT, recall_container, shipments
from tests.factories import SHOP

pytestmark = needs_chromium
CONSIGNEES = 12


@pytest.fixture
def console_container(db: Engine, redis_conn: Redis, smtp_server: tuple[Controller, Mailbox],
                      database_url: str) -> Iterator[Container]:
    """Overrides the console's container: its shops' ERP the sandbox one, a few shipments."""
    container = recall_container(database_url, smtp_server[0].port, redis_conn, db,
                                 shipments(CONSIGNEES) + shipments(2, lot="OTHER"))
    yield container
    container.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def base_url(console_app: Any) -> Iterator[str]:
    with serve(console_app) as url:
        yield url


def test_a_quality_manager_runs_a_recall_campaign_from_the_form_to_its_close(
        browser: Browser, base_url: str, console_container: Container, tmp_path: Path,
        mailbox: Mailbox) -> None:
    console_container.operators.add("zhou.qa", OperatorRole.QUALITY, [SHOP], PASSWORD)
    elsewhere: list[str] = []
    problems: list[str] = []
    page = offline_page(browser, base_url, elsewhere, width=1280, height=900)
    # The form's own 422 is the test's business (Chromium logs it as an error too); a
    # script, style or image that fails to load is a broken page (the response handler).
    page.on("console", lambda m: problems.append(m.text) if m.type == "error"
            and not m.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}")
            if r.status >= 400 and r.request.resource_type != "document" else None)
    log_in(page, base_url, "zhou.qa")
    assert page.url.endswith("/console/recalls")  # the quality manager's first page
    page.get_by_role("link", name="Open a campaign").click()

    # A first try without a class and with a bad lot line: named beside each field, kept.
    page.get_by_label("Reference").fill("RC-2026-042")
    page.get_by_label("Notice date").fill("2026-12-02")
    page.get_by_label("SKU").fill("GLU-METER-01")
    page.get_by_label("Lots").fill(f"{LOT}\n{'L' * 70}")
    page.get_by_label("Instructions").fill(
        "Stop using the meter. Strips of lot L2401 read 20 % high; return the meter for a "
        "full refund.")
    page.get_by_role("button", name="Open the campaign").click()
    errors = page.get_by_test_id("form-errors")
    assert "Recall class" in errors.inner_text() and "line 2" in errors.inner_text()
    assert page.get_by_label("Reference").input_value() == "RC-2026-042"
    shot(page, tmp_path, "recall-new.png", full_page=True)

    page.get_by_label("Lots").fill(LOT)
    page.get_by_label("Class I (most severe)").check()
    page.get_by_label("Destroy it").check()
    page.get_by_role("button", name="Open the campaign").click()
    assert "/console/recalls/rcp_" in page.url
    assert "Campaign opened" in page.get_by_test_id("notice").inner_text()
    campaign_id = page.url.split("/console/recalls/")[1].split("?")[0]

    drain(console_container)  # the workers: the ERP walk, the quarantine, the notices
    repo = console_container.campaigns
    assert repo.get(campaign_id).state is CampaignState.MONITORING
    assert len(mailbox.messages) == CONSIGNEES
    svc = console_container.api_services
    records = repo.consignees(campaign_id, limit=CONSIGNEES)
    for record, (held, back) in zip(records, [(record_qty, True) for record_qty in (1, 2)]
                                    + [(0, False)] * 6, strict=False):
        acknowledge(svc, campaign_id, record.id, Acknowledgement(
            stopped_use=True, quantity_held=min(held, record.quantity), wants_return=back))
    drain(console_container)

    page.goto(f"{base_url}/console/recalls")
    row = page.get_by_test_id("campaigns").locator(f'tr[data-campaign="{campaign_id}"]')
    assert "RC-2026-042" in row.inner_text() and f"{CONSIGNEES} / {CONSIGNEES}" in \
        row.inner_text()
    shot(page, tmp_path, "recalls.png")

    row.get_by_role("link", name="RC-2026-042").click()
    assert page.get_by_test_id("state").inner_text() == "Monitoring"
    consignees = page.get_by_test_id("consignees")
    assert consignees.locator("tr[data-consignee]").count() == CONSIGNEES
    assert "buyer0@example.com" in consignees.inner_text()
    assert "refund by hand" in consignees.inner_text()
    assert page.locator('[data-count="acknowledged"]').inner_text() == "8"
    assert page.locator('[data-count="notified"]').inner_text() == str(CONSIGNEES)
    chart = page.locator("img.chart-img")
    assert chart.evaluate("i => i.complete && i.naturalWidth > 0")
    assert "chain verifies" in page.get_by_test_id("chain").inner_text()
    shot(page, tmp_path, "recall.png", full_page=True)

    # Closing wants the effectiveness check's result.
    note = f"Level A: 8 of {CONSIGNEES} acknowledged; the rest reminded, followed by phone."
    page.get_by_label("Effectiveness check result").fill(note)
    page.get_by_role("button", name="Close the campaign").click()
    assert page.get_by_test_id("state").inner_text() == "Closed"
    assert page.get_by_test_id("close-note").inner_text() == note
    assert "chain verifies" in page.get_by_test_id("chain").inner_text()
    assert "zhou.qa" in page.get_by_test_id("trail").inner_text()
    assert verify_chain(repo.events(campaign_id)).verifies

    # A warehouse tablet held upright, in Chinese.
    page.set_viewport_size({"width": 800, "height": 1200})
    page.goto(f"{base_url}/console/language/zh-CN?next=/console/recalls/{campaign_id}")
    assert "召回活动" in page.content() and "通知截止" in page.content()
    shot(page, tmp_path, "recall-tablet-zh.png", full_page=True)
    page.goto(f"{base_url}/console/recalls")
    page.screenshot(path=str(tmp_path / "recalls-tablet-zh.png"))  # to look at, not for docs
    page.goto(f"{base_url}/console/recalls/new")
    page.screenshot(path=str(tmp_path / "recall-new-tablet-zh.png"), full_page=True)
    assert elsewhere == [] and problems == [], (elsewhere, problems)
