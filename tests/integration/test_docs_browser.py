"""A real browser opens `/docs` and `/redoc` with every request off this machine refused: the
pages must render from the app's own assets, and "Authorize" must offer the bearer token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from refundbridge.api.app import create_app
from refundbridge.bootstrap import Container
from tests.browser import chromium, needs_chromium, offline_page, serve, shot
from tests.factories import OPERATOR_TOKEN

pytestmark = needs_chromium


@pytest.fixture
def base_url(container: Container) -> Iterator[str]:
    with serve(create_app(container, dashboard=False)) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


_offline_page = offline_page
_shot = shot


def test_swagger_ui_renders_offline_and_authorize_offers_the_bearer_token(
        browser: Browser, base_url: str, tmp_path: Path) -> None:
    elsewhere: list[str] = []
    errors: list[str] = []
    page = _offline_page(browser, base_url, elsewhere)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{base_url}/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=20_000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert any("/v1/cases/{case_id}" in p.replace("\u200b", "") for p in paths), paths
    page.locator("button.authorize").first.click()
    dialog = page.locator(".dialog-ux .modal-ux")
    dialog.wait_for(timeout=5_000)
    assert "operatorToken" in dialog.inner_text()
    assert "Bearer" in dialog.inner_text()
    _shot(page, tmp_path, "docs-authorize.png")
    dialog.locator("input").fill(OPERATOR_TOKEN)
    dialog.locator("button.modal-btn.authorize").click()
    dialog.locator("button.modal-btn.btn-done").click()

    # "Try it out" on an operator route now sends the token: 200, where none is a 401.
    operation = page.locator("#operations-cases-list_cases_v1_cases_get")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for(timeout=10_000)
    assert status.inner_text().strip() == "200", operation.locator(
        ".live-responses-table").inner_text()
    _shot(page, tmp_path, "docs-try-it-out.png")
    assert elsewhere == [], f"/docs reached outside the app: {elsewhere}"
    assert errors == []


def test_redoc_renders_offline(browser: Browser, base_url: str, tmp_path: Path) -> None:
    elsewhere: list[str] = []
    page = _offline_page(browser, base_url, elsewhere)
    page.goto(f"{base_url}/redoc")
    page.wait_for_selector("h1", timeout=20_000)
    assert "RefundBridge" in page.locator("h1").first.inner_text()
    page.get_by_text("operatorToken").first.wait_for(timeout=5_000)
    _shot(page, tmp_path, "redoc.png")
    assert elsewhere == [], f"/redoc reached outside the app: {elsewhere}"
