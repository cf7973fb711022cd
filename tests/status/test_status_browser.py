"""The status page in a real browser (Debian's Chromium, Playwright), on a phone-sized
screen, every request off this machine refused: the link from the received email, the
states as the case moves, an expired link and its look-up form, a forged link.
Screenshots (`status-*.png`) go to $REFUNDBRIDGE_SCREENSHOTS, else to tmp_path."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import respx
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page

from refundbridge.api.app import create_app
from refundbridge.bootstrap import Container
from refundbridge.core.status_links import StatusLinks
from refundbridge.demo import Mailbox
from tests.browser import chromium, needs_chromium, offline_page, serve, shot
from tests.conftest import drain, open_case
from tests.factories import AUTH, SHOP
from tests.fakes.erpnext import ERPNextFake
from tests.fakes.stripe import StripeFake
from tests.status.conftest import LINK_SECRET, PUBLIC, link_in, links_sent, mails

pytestmark = needs_chromium
Providers = tuple[respx.MockRouter, StripeFake, ERPNextFake]
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def base_url(status_container: Container) -> Iterator[str]:
    with serve(create_app(status_container, dashboard=False)) as url:
        yield url


def watched(browser: Browser, base_url: str, elsewhere: list[str], errors: list[str],
            locale: str) -> Page:
    page = offline_page(browser, base_url, elsewhere, locale=locale, **PHONE)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and
            "status of 4" not in m.text else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and r.request.resource_type != "document" else None)
    return page


def served(link: str, base_url: str) -> str:
    """The emailed link (made for PUBLIC) on the test's server."""
    assert link.startswith(PUBLIC)
    return base_url + link.removeprefix(PUBLIC)


def wait_for_mail(box: Mailbox, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(box.messages) < count:
        assert time.monotonic() < deadline, "no email arrived"
        time.sleep(0.05)


def test_a_customer_follows_a_return_from_the_email_link_on_a_phone(
        browser: Browser, base_url: str, status_client: TestClient,
        status_container: Container, providers: Providers, mailbox: Mailbox,
        tmp_path: Path) -> None:
    _, _, erp = providers
    case_id, body = open_case(status_client, erp, kind="return_and_refund", **{
        "lines.0.name": "一次性采血针 Safety lancets"})
    drain(status_container)
    [link] = links_sent(mailbox, "received")
    elsewhere: list[str] = []
    errors: list[str] = []
    page = watched(browser, base_url, elsewhere, errors, "zh-CN")

    answer = page.goto(served(link, base_url))
    assert answer is not None and answer.status == 200
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert page.get_by_test_id("status").get_attribute("data-phase") == "send_back"
    assert page.get_by_test_id("case-id").inner_text() == case_id
    now = page.get_by_test_id("now").inner_text()
    assert f"请将商品寄回给我们，并在包裹上注明申请编号 {case_id}" in now
    assert "张江路 88 号" in page.get_by_test_id("return-address").inner_text()
    assert page.get_by_test_id("pack-sharps").is_visible()  # the packing notes are open
    assert page.get_by_test_id("amount").inner_text() == "¥398.00"
    # mobile first: nothing wider than the phone
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    shot(page, tmp_path, "status-send-back.png", full_page=True)

    page.get_by_role("link", name="English").click()
    assert "Please send the items back to us" in page.get_by_test_id("now").inner_text()
    assert page.get_by_test_id("amount").inner_text() == "CN¥398.00"

    received = status_client.post(f"/v1/cases/{case_id}/receipt", headers=AUTH, json={
        "lines": [{"line": 0, "seal_intact": True, "condition": "as_new",
                   "inspector": "wang.fang"}]})
    assert received.status_code == 200, received.text
    page.reload()
    assert page.get_by_test_id("status").get_attribute("data-phase") == "goods_back"
    assert "at the latest" in page.get_by_test_id("expected").inner_text()
    drain(status_container)
    page.reload()
    assert page.get_by_test_id("status").get_attribute("data-phase") == "refunded"
    steps = page.get_by_test_id("steps").locator("li")
    assert [steps.nth(i).get_attribute("data-done") for i in range(steps.count())] == [
        "yes"] * 4
    assert "Confirmation of your refund" in page.get_by_test_id("messages").inner_text()
    shot(page, tmp_path, "status-refunded.png", full_page=True)
    text = page.content()
    assert "wang.fang" not in text and "li.wei@example.com" not in text
    assert body["customer"]["phone"] not in text
    assert elsewhere == [] and errors == []


def test_an_expired_link_gets_a_fresh_one_by_email_and_a_forged_one_is_refused(
        browser: Browser, base_url: str, status_client: TestClient,
        status_container: Container, providers: Providers, mailbox: Mailbox,
        tmp_path: Path) -> None:
    _, _, erp = providers
    case_id, body = open_case(status_client, erp)
    drain(status_container)
    mailbox.messages.clear()
    long_ago = datetime.now(UTC) - timedelta(days=120)
    expired = StatusLinks(LINK_SECRET, PUBLIC, clock=lambda: long_ago).link_for(case_id, SHOP)
    elsewhere: list[str] = []
    errors: list[str] = []
    page = watched(browser, base_url, elsewhere, errors, "en-US")

    answer = page.goto(served(expired, base_url) + "?lang=en")
    assert answer is not None and answer.status == 410
    assert page.get_by_test_id("link-expired").is_visible()
    assert case_id not in page.content() and body["order"]["id"] not in page.content()
    shot(page, tmp_path, "status-expired.png", full_page=True)

    page.get_by_label("Order number").fill(body["order"]["id"])
    page.get_by_label("Email address you used for the order").fill("li.wei@example.com")
    page.get_by_role("button", name="Email me a new link").click()
    assert page.get_by_test_id("lookup-sent").is_visible()
    sent_page = page.content()
    assert case_id not in sent_page and "/status/ey" not in sent_page
    shot(page, tmp_path, "status-lookup-sent.png", full_page=True)
    wait_for_mail(mailbox, 1)
    [mail] = mails(mailbox)
    fresh = page.goto(served(link_in(mail), base_url))
    assert fresh is not None and fresh.status == 200
    assert page.get_by_test_id("case-id").inner_text() == case_id
    assert page.locator("html").get_attribute("lang") == "zh-CN"

    # The same form for an order nobody has: the same page, and no email.
    page.goto(f"{base_url}/status/{SHOP}/lookup?lang=en")
    page.get_by_label("Order number").fill("SO-nobody")
    page.get_by_label("Email address you used for the order").fill("li.wei@example.com")
    page.get_by_role("button", name="Email me a new link").click()
    assert page.content() == sent_page
    time.sleep(0.3)
    assert len(mailbox.messages) == 1

    forged = served(expired, base_url)
    forged = forged[:-10] + ("A" if forged[-10] != "A" else "B") + forged[-9:]
    answer = page.goto(forged + "?lang=en")
    assert answer is not None and answer.status == 404
    assert page.get_by_test_id("link-invalid").is_visible()
    assert case_id not in page.content()
    shot(page, tmp_path, "status-forged.png", full_page=True)
    assert elsewhere == [] and errors == []


def test_the_link_in_a_text_message_opens_the_same_page(
        browser: Browser, status_container: Container, providers: Providers,
        tmp_path: Path) -> None:
    import re

    from refundbridge.bootstrap import bootstrap
    from refundbridge.connectors.sandbox import SandboxSmsConnector

    settings = status_container.settings
    shop = settings.shops[SHOP].model_copy(update={"sms": "sandbox_sms"})
    texting = bootstrap(settings.model_copy(update={"shops": {**settings.shops, SHOP: shop}}),
                        redis=status_container.redis, engine=status_container.engine)
    try:
        with TestClient(create_app(texting, dashboard=False)) as client:
            case_id, _ = open_case(client, providers[2],
                                   **{"customer.phone": "138 0013 8000"})
        drain(texting)
        sms = texting.shops[SHOP].by_name["sandbox_sms"]
        assert isinstance(sms, SandboxSmsConnector)
        [received] = [s for s in sms.sent if s.message.case_id == case_id
                      and s.message.kind.value == "received"]
        assert received.message.phone == "+8613800138000"
        found = re.search(r"https?://\S+/status/[A-Za-z0-9._-]+", received.text)
        assert found, received.text
        with serve(create_app(texting, dashboard=False)) as base_url:
            page = offline_page(browser, base_url, [], **PHONE)
            answer = page.goto(served(found.group(0), base_url))
            assert answer is not None and answer.status == 200
            assert case_id in page.content()
            shot(page, tmp_path, "status-from-sms.png")
    finally:
        texting.close()
