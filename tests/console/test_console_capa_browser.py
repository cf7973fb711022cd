"""A CAPA record in a real browser (Debian's Chromium, driven by Playwright), every request off
this machine refused: a quality manager opens it from a case's page, investigates, records
the root cause, adds and completes a corrective and a preventive action, escalates it into a
recall campaign, plans the effectiveness check, records its result and closes it; then the
trail verifies. Screenshots (desktop, and a tablet held upright in Chinese) go to
$REFUNDBRIDGE_SCREENSHOTS, else to the test's tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page
from redis import Redis
from sqlalchemy import Engine

from refundbridge.bootstrap import Container
from refundbridge.core.access import OperatorRole
from refundbridge.core.audit import verify_chain
from refundbridge.core.capa import CapaState
from refundbridge.demo import Mailbox
from tests.browser import chromium, needs_chromium, offline_page, serve, shot
from tests.conftest import drain
from tests.console.conftest import PASSWORD
from tests.console.kit import open_in
from tests.console.test_console_browser import log_in
from tests.console.test_console_recalls import recall_container, shipments
from tests.factories import SHOP

pytestmark = needs_chromium


@pytest.fixture
def console_container(db: Engine, redis_conn: Redis, smtp_server: tuple[Controller, Mailbox],
                      database_url: str) -> Iterator[Container]:
    container = recall_container(database_url, smtp_server[0].port, redis_conn, db,
                                 shipments(3))
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


def _saved(page: Page) -> None:
    assert "Saved" in page.get_by_test_id("notice").inner_text()


def test_a_quality_manager_takes_a_capa_through_every_step(
        browser: Browser, base_url: str, console_container: Container, console_app: Any,
        tmp_path: Path) -> None:
    console_container.operators.add("zhou.qa", OperatorRole.QUALITY, [SHOP], PASSWORD)
    with TestClient(console_app) as client:
        case_id = open_in(client, None)
    elsewhere: list[str] = []
    problems: list[str] = []
    page = offline_page(browser, base_url, elsewhere, width=1280, height=900)
    page.on("console", lambda m: problems.append(m.text) if m.type == "error"
            and not m.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}")
            if r.status >= 400 and r.request.resource_type != "document" else None)
    log_in(page, base_url, "zhou.qa")

    # From the case's page: its link fills in the case (and, left empty, its lot).
    page.goto(f"{base_url}/console/cases/{case_id}")
    page.get_by_test_id("open-capa").click()
    assert page.get_by_label("Linked cases").input_value() == case_id
    page.get_by_role("button", name="Open the CAPA").click()
    assert "Problem statement" in page.get_by_test_id("form-errors").inner_text()
    page.get_by_label("Problem statement").fill(
        "Three glucose meters of lot L2401 returned in 30 days, each reading 20 % high.")
    page.get_by_role("button", name="Open the CAPA").click()
    assert "CAPA opened" in page.get_by_test_id("notice").inner_text()
    capa_id = page.url.split("/console/capa/")[1].split("?")[0]
    assert page.get_by_test_id("state").inner_text() == "Open"
    assert "L2401" in page.get_by_test_id("links").inner_text()

    page.get_by_label("Investigation note").fill("Pulled the retained samples of L2401.")
    page.get_by_role("button", name="Start the investigation").click()
    _saved(page)
    assert page.get_by_test_id("state").inner_text() == "Investigating"
    page.get_by_test_id("root-cause-form").get_by_label("Root cause").fill(
        "The strips' calibration code was printed for lot L2400.")
    page.get_by_role("button", name="Record the root cause").click()
    assert page.get_by_test_id("state").inner_text() == "Actions under way"

    for kind, text, owner, due in (
            ("Corrective", "Relabel the strips on hand with the right code", "wang.wh",
             "2026-12-20"),
            ("Preventive", "Check the calibration code at goods receipt", "li.qa",
             "2027-01-15")):
        form = page.get_by_test_id("action-form")
        form.get_by_label(kind).check()
        form.get_by_label("Action").fill(text)
        form.get_by_label("Owner").fill(owner)
        form.get_by_label("Due date").fill(due)
        form.get_by_role("button", name="Add the action").click()
        _saved(page)
    assert page.get_by_test_id("actions").locator("tr[data-action]").count() == 2
    shot(page, tmp_path, "capa-actions.png", full_page=True)

    page.locator('tr[data-action="1"]').get_by_label("Note").fill("40 boxes relabelled")
    page.get_by_role("button", name="Mark action 1 done").click()
    _saved(page)
    page.get_by_role("button", name="Mark action 2 done").click()
    assert page.get_by_test_id("state").inner_text() == "Actions done"

    # Escalation asks only what the CAPA lacks; the lot comes from the CAPA.
    escalate = page.get_by_test_id("escalate-form")
    escalate.get_by_label("Recall reference").fill("RC-CAPA-2026-01")
    escalate.get_by_label("Class II:").check()
    escalate.get_by_role("button", name="Open the recall campaign").click()
    assert "recall campaign is open" in page.get_by_test_id("notice").inner_text()
    campaign_id = page.get_by_test_id("campaign").inner_text()
    campaign = console_container.campaigns.get(campaign_id)
    assert campaign.capa_id == capa_id and campaign.notice.lots == ("L2401",)
    assert page.get_by_test_id("escalate-form").count() == 0
    drain(console_container)

    check = page.get_by_test_id("check-form")
    check.get_by_label("What is measured").fill(
        "No quality return of the meter for 60 days after the relabelling")
    check.get_by_label("Due date").fill("2027-03-01")
    check.get_by_role("button", name="Plan the check").click()
    assert page.get_by_test_id("state").inner_text() == "Effectiveness check"
    result = page.get_by_test_id("result-form")
    result.get_by_label("Effective", exact=True).check()
    result.get_by_label("What the check found").fill("No return in 60 days.")
    result.get_by_role("button", name="Record the result").click()
    assert page.get_by_test_id("state").inner_text() == "Effective"
    page.get_by_test_id("close-form").get_by_label("Closing note").fill(
        "Effective: closed by the quality manager.")
    page.get_by_test_id("close").click()
    assert page.get_by_test_id("state").inner_text() == "Closed"
    assert "closed by the quality manager" in page.get_by_test_id("closure").inner_text()

    # The trail: every step, by the operator, verifying on the page and offline.
    assert "chain verifies" in page.get_by_test_id("chain").inner_text()
    trail = page.get_by_test_id("trail")
    assert trail.locator("li[data-event]").count() == 13
    assert "zhou.qa" in trail.inner_text()
    events = console_container.api_services.capas.events(capa_id)  # type: ignore[union-attr]
    assert verify_chain(events).verifies and len(events) == 13
    assert {e.actor for e in events} == {"operator:zhou.qa"}
    record = console_container.api_services.capas.get(capa_id)  # type: ignore[union-attr]
    assert record.state is CapaState.CLOSED and record.campaign_id == campaign_id
    shot(page, tmp_path, "capa.png", full_page=True)

    page.goto(f"{base_url}/console/capa")
    row = page.get_by_test_id("capas").locator(f'tr[data-capa="{capa_id}"]')
    assert "Closed" in row.inner_text() and campaign_id in row.inner_text()
    assert page.locator('[data-kpi="closed"]').inner_text() == "1"
    shot(page, tmp_path, "capas.png", full_page=True)

    # A tablet held upright, in Chinese.
    page.set_viewport_size({"width": 800, "height": 1200})
    page.goto(f"{base_url}/console/language/zh-CN?next=/console/capa/{capa_id}")
    assert "根本原因" in page.content() and "纠正与预防措施" in page.content()
    shot(page, tmp_path, "capa-tablet-zh.png", full_page=True)
    page.goto(f"{base_url}/console/capa")
    shot(page, tmp_path, "capas-tablet-zh.png", full_page=True)
    page.goto(f"{base_url}/console/capa/new?signal=sig-1&sku=GLU-METER-01&lot=L2401"
              f"&case={case_id}")
    assert page.get_by_label("质量信号").input_value() == "sig-1"
    shot(page, tmp_path, "capa-new-tablet-zh.png", full_page=True)
    assert elsewhere == [] and problems == [], (elsewhere, problems)
