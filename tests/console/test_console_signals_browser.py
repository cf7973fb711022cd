"""Quality signals in a real browser (Debian's Chromium, driven by Playwright), every request
off this machine refused: a quality manager sees the signals list, opens the signal of a
lot whose returns crossed the shop's thresholds, follows a case behind it, acknowledges it,
and finds the "Open CAPA" link carrying the signal. Screenshots go to
$REFUNDBRIDGE_SCREENSHOTS (docs/console/), else to the test's tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser

from refundbridge.bootstrap import Container
from refundbridge.core.access import OperatorRole
from tests.browser import chromium, needs_chromium, offline_page, serve, shot
from tests.console.conftest import PASSWORD
from tests.console.test_console_browser import log_in
from tests.console.test_console_signals import console_container, raised  # noqa: F401
from tests.factories import SHOP

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def base_url(console_app: Any) -> Iterator[str]:
    with serve(console_app) as url:
        yield url


def test_a_quality_manager_follows_a_signal_to_its_cases_and_acknowledges_it(
        browser: Browser, base_url: str, console_container: Container,  # noqa: F811
        raised: dict[str, Any], tmp_path: Path) -> None:  # noqa: F811
    console_container.operators.add("zhou.qa", OperatorRole.QUALITY, [SHOP], PASSWORD)
    elsewhere: list[str] = []
    problems: list[str] = []
    page = offline_page(browser, base_url, elsewhere, width=1280, height=900)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}")
            if r.status >= 400 and r.request.resource_type != "document" else None)
    log_in(page, base_url, "zhou.qa")
    page.get_by_role("link", name="Signals").first.click()
    page.wait_for_load_state()
    assert page.url.endswith("/console/signals")
    rows = page.locator("[data-signal]")
    assert rows.count() == 2
    shot(page, tmp_path, "signals.png", full_page=True)

    signal = raised["rate"]
    page.locator(f'[data-signal="{signal.id}"] a').first.click()
    page.wait_for_load_state()
    assert page.get_by_test_id("measured").inner_text().strip() == "3.3333 %"
    assert page.get_by_test_id("shipped").inner_text().strip() == "60"
    capa = page.get_by_test_id("open-capa").get_attribute("href") or ""
    assert capa.startswith(f"/console/capa/new?signal={signal.id}&sku=GLU-METER-01&lot=L-SMALL")
    assert capa.count("&case=") == 2
    shot(page, tmp_path, "signal.png", full_page=True)

    page.get_by_label("Note").fill("Lot L-SMALL on hold; supplier informed")
    page.get_by_role("button", name="Acknowledge").click()
    page.wait_for_load_state()
    assert page.get_by_test_id("notice").inner_text() == "Signal acknowledged."
    assert page.get_by_test_id("state").inner_text() == "Acknowledged"
    assert "chain verifies" in page.get_by_test_id("chain").inner_text()

    first_case = raised["small_cases"][0]
    page.locator(f'[data-case="{first_case}"] a').click()
    page.wait_for_load_state()
    assert page.url.endswith(f"/console/cases/{first_case}")
    assert elsewhere == [] and problems == []
