"""The recall acknowledgement page in a real browser (Debian's Chromium, Playwright), on a
phone-sized screen, every request off this machine refused: the consignee opens their link,
answers, and sends the form twice from two tabs; the answer is recorded once.
Screenshots (`recall_ack.png`, `recall_ack_done.png`, `recall_ack_zh.png`) go to
$REFUNDBRIDGE_SCREENSHOTS, else to tmp_path."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from playwright.sync_api import Browser, Page
from redis import Redis
from sqlalchemy import Engine, text

from refundbridge.api.app import create_app
from refundbridge.demo import Mailbox
from tests.browser import chromium, needs_chromium, offline_page, serve, shot
from tests.conftest import drain
from tests.fakes import shopify as shopify_fake
from tests.fakes.shopify import ShopifyFake
from tests.status.test_recall_ack import (
    A_NAME,
    B_SECRETS,
    SHOPIFY,
    Recall,
    recall_factory,
    shipments,
)

pytestmark = needs_chromium
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def make_recall(db: Engine, redis_conn: Redis, smtp_server: tuple[Controller, Mailbox],
                database_url: str) -> Iterator[Callable[..., Recall]]:
    yield from recall_factory(db, redis_conn, smtp_server, database_url)


def watched(browser: Browser, base_url: str, elsewhere: list[str], errors: list[str]
            ) -> Page:
    page = offline_page(browser, base_url, elsewhere, locale="en-GB", **PHONE)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}")
            if r.status >= 400 else None)
    return page


def test_a_consignee_answers_on_a_phone_and_the_answer_is_recorded_once(
        browser: Browser, make_recall: Callable[..., Recall], tmp_path: Path) -> None:
    rc = make_recall()
    link = rc.path("CUST-A")
    elsewhere: list[str] = []
    errors: list[str] = []
    with serve(create_app(rc.container, dashboard=False)) as base_url:
        page = watched(browser, base_url, elsewhere, errors)
        answer = page.goto(base_url + link)
        assert answer is not None and answer.status == 200
        units = page.get_by_test_id("recall-units").inner_text()
        assert A_NAME in units and "L2401" in units and "L2402" in units
        assert all(other not in page.content() for other in B_SECRETS)
        assert page.get_by_test_id("unit").count() == 2
        # phone first: nothing wider than the screen, every control a large target
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        for target in page.locator("label.check, button, input#quantity_held").all():
            box = target.bounding_box()
            assert box is not None and box["height"] >= 44, target.inner_text()

        # The browser's own checks (no script of ours) stop a number above what they got.
        page.get_by_label("Units I still hold").fill("9")
        page.get_by_role("button", name="Send my answer").click()
        assert page.url == base_url + link
        assert not page.locator("#quantity_held").evaluate("e => e.validity.valid")

        # A second tab with the same form, as a person who opened the link twice.
        second = page.context.new_page()
        second.goto(base_url + link)

        page.get_by_text("I have stopped using them").click()
        page.get_by_label("Units I still hold").fill("3")
        page.get_by_text("Yes, I want to return them").click()
        page.get_by_label("Note (optional)").fill("Three meters in the store room, labelled.")
        shot(page, tmp_path, "recall_ack.png", full_page=True)
        page.get_by_role("button", name="Send my answer").click()
        done = page.get_by_test_id("recall-done")
        assert done.get_attribute("data-recorded") == "yes"
        assert "Thank you: your answer is recorded" in done.inner_text()
        assert page.get_by_test_id("answer-quantity").inner_text() == "3"
        assert "We are opening a return and refund case" in page.get_by_test_id(
            "next-steps").inner_text()
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        shot(page, tmp_path, "recall_ack_done.png", full_page=True)

        # The other tab sends another answer: the first stands.
        second.get_by_label("Units I still hold").fill("1")
        second.get_by_text("No", exact=True).click()
        second.get_by_role("button", name="Send my answer").click()
        repeat = second.get_by_test_id("recall-done")
        assert repeat.get_attribute("data-recorded") == "no"
        assert second.get_by_test_id("answer-quantity").inner_text() == "3"
        assert rc.acks() == 1
        ack = rc.record("CUST-A").acknowledgement
        assert ack is not None and ack.quantity_held == 3 and ack.wants_return
        assert ack.stopped_use and ack.note == "Three meters in the store room, labelled."

        # The workers take it on (the generic storefront cannot look orders up, so the
        # shop arranges the return by hand); the link now opens the answer.
        drain(rc.container)
        drain(rc.container)
        page.goto(base_url + link)
        assert page.get_by_test_id("recall-done").get_attribute("data-recorded") == "no"
        assert "The shop will contact you" in page.get_by_test_id("next-steps").inner_text()
        assert page.locator("form").count() == 0
        assert rc.acks() == 1
        page.context.close()

        # B's link opens in B's language (zh-CN), with B's units only.
        chinese = watched(browser, base_url, elsewhere, errors)
        chinese.goto(base_url + rc.path("CUST-B"))
        assert chinese.title().startswith("召回确认")
        assert "共计：4 件" in chinese.get_by_test_id("recall-units").inner_text()
        assert A_NAME not in chinese.content() and "L2401" not in chinese.content()
        assert chinese.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        shot(chinese, tmp_path, "recall_ack_zh.png", full_page=True)
        chinese.context.close()
    assert elsewhere == [] and errors == []


def test_answers_in_the_browser_open_exactly_one_recall_case_each(
        browser: Browser, make_recall: Callable[..., Recall], providers: Any) -> None:
    router, _, _ = providers
    shop = ShopifyFake()
    shop.install(router)
    a_order = shop.add_order([shopify_fake.Line("GLU-METER-01", "Glucose meter", 5, "49.95")],
                             email="dr.lin@example.com")
    b_order = shop.add_order([shopify_fake.Line("GLU-METER-01", "Glucose meter", 4, "49.95")],
                             email="beta.buyer@example.com", locale="zh-CN")
    rc = make_recall(shipments(a_order=a_order, b_order=b_order), storefront="shopify",
                     shopify=SHOPIFY)
    elsewhere: list[str] = []
    errors: list[str] = []
    with serve(create_app(rc.container, dashboard=False)) as base_url:
        for key, held in (("CUST-A", "2"), ("CUST-B", "4")):
            page = watched(browser, base_url, elsewhere, errors)
            page.goto(base_url + rc.path(key) + "?lang=en")
            page.get_by_text("I have stopped using them").click()
            page.get_by_label("Units I still hold").fill(held)
            page.get_by_text("Yes, I want to return them").click()
            page.get_by_role("button", name="Send my answer").click()
            assert page.get_by_test_id("recall-done").get_attribute("data-recorded") == "yes"
            # Back to the form: the page is not kept (no-store), so it shows the answer,
            # with no form to send again.
            page.go_back()
            assert page.get_by_test_id("recall-done").get_attribute("data-recorded") == "no"
            assert page.locator("form").count() == 0
            page.context.close()
        drain(rc.container)
        drain(rc.container)
        cases = {key: rc.record(key).case_id for key in ("CUST-A", "CUST-B")}
        assert all(cases.values()) and len(set(cases.values())) == 2, cases
        for key, held in (("CUST-A", 2), ("CUST-B", 4)):
            case = rc.container.reads.case_detail(str(cases[key]))
            assert case["reason"]["code"] == "recall"
            assert sum(line["quantity"] for line in case["lines"]) == held
        with rc.container.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM cases")).scalar_one() == 2
        opened = [e for e in rc.container.campaigns.events(rc.campaign_id)
                  if e.name == "recall_case_opened"]
        assert len(opened) == 2 and rc.acks() == 2
        # The consignee's page now leads to their case.
        page = watched(browser, base_url, elsewhere, errors)
        page.goto(base_url + rc.path("CUST-A") + "?lang=en")
        page.get_by_test_id("case-link").click()
        assert str(cases["CUST-A"]) in page.content()
        page.context.close()
    assert elsewhere == [] and errors == []
