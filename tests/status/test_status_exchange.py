"""An exchange on the customer's status page, in a real browser on a phone: approved and
waiting for the returned unit, the unit back and the replacement ordered, the replacement
shipped with its delivery number, the price difference refunded; in Chinese and English.
The reviewer's internal note never shows; the customer message does. Screenshots
(`status-exchange-*.png`) go to $REFUNDBRIDGE_SCREENSHOTS, else to tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from playwright.sync_api import Browser
from pydantic import SecretStr
from redis import Redis
from sqlalchemy import Engine

from refundbridge.api.app import create_app
from refundbridge.bootstrap import Container, bootstrap
from refundbridge.demo import Mailbox
from tests.browser import chromium, needs_chromium, offline_page, serve, shot
from tests.conftest import drain, test_settings
from tests.factories import AUTH, REVIEWER_AUTH, SHOP, request_body, signed
from tests.status.conftest import LINK_SECRET, PUBLIC, RETURN_ADDRESS, links_sent

PHONE = {"width": 390, "height": 844}
INTERNAL = "客户曾三次投诉同一批次，内部跟进"
TO_CUSTOMER = "新款血糖仪已为您预留"


@pytest.fixture
def exchange_container(db: Engine, redis_conn: Redis,
                       smtp_server: tuple[Controller, Mailbox],
                       database_url: str) -> Iterator[Container]:
    settings = test_settings(
        database_url, smtp_server[0].port, erp="sandbox_erp", payment="sandbox_payment",
        policy={"return_address": RETURN_ADDRESS, "auto_approve_limits": {"CNY": "500"}})
    settings = settings.model_copy(update={
        "status_link_secret": SecretStr(LINK_SECRET), "public_base_url": PUBLIC})
    container = bootstrap(settings, redis=redis_conn, engine=db)
    yield container
    container.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


def _exchange(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "kind": "exchange", "requested_amount": "40.00",
        "reason": {"code": "defective", "text": "屏幕不亮"},
        "replacements": [{"sku": "GLU-METER-02", "name": "血糖仪二代 Glucose meter II",
                          "quantity": 2, "unit_price": "179.00"}]}
    fields.update(overrides)
    return request_body(**fields)


def _steps(page: Any) -> list[tuple[str | None, str | None]]:
    items = page.get_by_test_id("steps").locator("li")
    return [(items.nth(i).get_attribute("data-step"), items.nth(i).get_attribute("data-done"))
            for i in range(items.count())]


@needs_chromium
def test_a_customer_follows_an_exchange_on_the_status_page(
        browser: Browser, exchange_container: Container, mailbox: Mailbox,
        tmp_path: Path) -> None:
    container = exchange_container
    with TestClient(create_app(container, dashboard=False), base_url=PUBLIC) as client, \
            serve(create_app(container, dashboard=False)) as base_url:
        raw, headers = signed(_exchange())
        answer = client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
        assert answer.status_code == 202, answer.text
        case_id = answer.json()["case_id"]
        drain(container)
        # A defect claim goes to a person (R06): approved with a note for the customer.
        decided = client.post(f"/v1/cases/{case_id}/review", headers=REVIEWER_AUTH, json={
            "decision": "approve", "internal_note": INTERNAL,
            "customer_message": TO_CUSTOMER})
        assert decided.status_code == 200, decided.text
        drain(container)
        [link] = links_sent(mailbox, "received")
        elsewhere: list[str] = []
        page = offline_page(browser, base_url, elsewhere, locale="zh-CN", **PHONE)
        opened = page.goto(base_url + link.removeprefix(PUBLIC))
        assert opened is not None and opened.status == 200

        assert page.locator("h1").inner_text() == "您的换货申请"
        assert page.get_by_test_id("status").get_attribute("data-phase") == "send_back"
        now = page.get_by_test_id("now").inner_text()
        assert "收到您寄回的商品后，我们会立即为您安排换货" in now
        assert page.get_by_test_id("replacement").get_attribute("data-progress") == "waiting"
        assert "血糖仪二代" in page.get_by_test_id("replacement").inner_text()
        assert page.get_by_test_id("amount").inner_text() == "¥40.00"
        assert _steps(page) == [("received", "yes"), ("decided", "yes"),
                                ("goods_back", "no"), ("replacement_ordered", "no"),
                                ("replacement_shipped", "no"), ("refunded", "no")]
        assert TO_CUSTOMER in page.get_by_test_id("customer-message").inner_text()
        assert INTERNAL not in page.content()
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        shot(page, tmp_path, "status-exchange-send-back.png", full_page=True)

        received = client.post(f"/v1/cases/{case_id}/receipt", headers=AUTH, json={
            "lines": [{"line": 0, "seal_intact": True, "condition": "as_new",
                       "inspector": "wang.fang", "quantity": 2}]})
        assert received.status_code == 200, received.text
        page.reload()
        assert page.get_by_test_id("status").get_attribute("data-phase") == "replacing"
        assert page.get_by_test_id("replacement").get_attribute("data-progress") == (
            "ordering")

        drain(container)
        detail = client.get(f"/v1/cases/{case_id}", headers=AUTH).json()
        assert detail["state"] == "closed", detail["failure"]
        page.reload()
        assert page.get_by_test_id("status").get_attribute("data-phase") == "replaced"
        card = page.get_by_test_id("replacement")
        assert card.get_attribute("data-progress") == "shipped"
        assert page.get_by_test_id("delivery").inner_text() == (
            detail["replacement"]["delivery"])
        assert "已发出" in card.inner_text()
        assert [done for _, done in _steps(page)] == ["yes"] * 6
        messages = page.get_by_test_id("messages").inner_text()
        assert "换货已发出的通知" in messages
        assert INTERNAL not in page.content() and "wang.fang" not in page.content()
        shot(page, tmp_path, "status-exchange-shipped-zh.png", full_page=True)

        page.get_by_role("link", name="English").click()
        assert page.locator("h1").inner_text() == "Your exchange request"
        assert "Shipped" in page.get_by_test_id("replacement").inner_text()
        assert "Your replacement is on its way" in page.get_by_test_id("messages").inner_text()
        shot(page, tmp_path, "status-exchange-shipped-en.png", full_page=True)
        assert elsewhere == []


def test_an_advance_replacement_shows_first_and_a_swap_shows_no_money(
        exchange_container: Container, mailbox: Mailbox) -> None:
    container = exchange_container
    policy = container.settings.shops[SHOP].policy.model_copy(
        update={"replacement_timing": "on_approval"})
    shops = {SHOP: container.settings.shops[SHOP].model_copy(update={"policy": policy})}
    advance = bootstrap(container.settings.model_copy(update={"shops": shops}),
                        redis=container.redis, engine=container.engine)
    try:
        with TestClient(create_app(advance, dashboard=False), base_url=PUBLIC) as client:
            raw, headers = signed(_exchange(
                requested_amount="0", reason={"code": "wrong_item", "text": "发错型号"},
                replacements=[{"sku": "GLU-METER-01", "name": "血糖仪 Glucose meter",
                               "quantity": 2, "unit_price": "199.00"}]))
            answer = client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
            assert answer.status_code == 202, answer.text
            drain(advance)
            [link] = links_sent(mailbox, "received")
            html = client.get(link.removeprefix(PUBLIC) + "?lang=en").text
            assert 'data-phase="send_back"' in html
            assert 'data-progress="shipped"' in html
            assert "Your replacement is on its way. Please still send back" in html
            assert 'data-testid="money"' not in html  # a swap: nothing to refund
            order = [s for s in ("replacement_ordered", "replacement_shipped", "goods_back")
                     if f'data-step="{s}"' in html]
            assert order == ["replacement_ordered", "replacement_shipped", "goods_back"]
            assert html.index('data-step="replacement_shipped"') < html.index(
                'data-step="goods_back"')
    finally:
        advance.close()
