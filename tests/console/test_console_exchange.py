"""An exchange's case page in the console: the replacement's lines, its ERP document and
delivery, its progress and key; the timeline's replacement events; in a real browser, in
English and Chinese (`case-exchange*.png`)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from playwright.sync_api import Browser
from redis import Redis
from sqlalchemy import Engine

from refundbridge.bootstrap import Container, bootstrap
from refundbridge.core.access import OperatorRole
from refundbridge.core.evidence import verify_package
from refundbridge.demo import Mailbox
from refundbridge.store.operators import SqlOperatorDirectory
from tests.browser import chromium, needs_chromium, offline_page, serve, shot
from tests.conftest import drain, test_settings
from tests.console.conftest import CHEAP_HASHER, PASSWORD, Session
from tests.factories import AUTH, SHOP, request_body, signed


@pytest.fixture
def console_container(db: Engine, redis_conn: Redis, smtp_server: tuple[Controller, Mailbox],
                      database_url: str) -> Iterator[Container]:
    """Overrides the console's container: the shop on the sandbox ERP and payment, which
    order replacements."""
    settings = test_settings(database_url, smtp_server[0].port, erp="sandbox_erp",
                             payment="sandbox_payment")
    container = bootstrap(settings, redis=redis_conn, engine=db)
    container.operators = SqlOperatorDirectory(db, CHEAP_HASHER)
    yield container
    container.close()


def _closed_exchange(client: Any, container: Container) -> str:
    body = request_body(kind="exchange", requested_amount="40.00",
                        reason={"code": "wrong_item", "text": "想换二代"},
                        replacements=[{"sku": "GLU-METER-02", "name": "血糖仪二代",
                                       "quantity": 2, "unit_price": "179.00",
                                       "replaces_sku": "GLU-METER-01"}])
    raw, headers = signed(body)
    answer = client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
    assert answer.status_code == 202, answer.text
    case_id = str(answer.json()["case_id"])
    drain(container)
    received = client.post(f"/v1/cases/{case_id}/receipt", headers=AUTH, json={"lines": [
        {"line": 0, "seal_intact": True, "condition": "as_new", "inspector": "wang.fang",
         "quantity": 2}]})
    assert received.status_code == 200, received.text
    drain(container)
    return case_id


def test_the_case_page_shows_the_replacement(login_as: Any,
                                             console_container: Container) -> None:
    li: Session = login_as("li.na", "reviewer")
    case_id = _closed_exchange(li.client, console_container)
    detail = li.client.get(f"/v1/cases/{case_id}", headers=AUTH).json()
    assert detail["state"] == "closed", detail["failure"]
    page = li.client.get(f"/console/cases/{case_id}")
    assert page.status_code == 200
    html = page.text
    assert 'data-testid="replacement"' in html
    assert detail["replacement"]["document"] in html
    assert detail["replacement"]["delivery"] in html
    assert f"{case_id}-replacement" in html
    assert "GLU-METER-02" in html and "Shipped" in html
    assert "Replacement ordered in the ERP" in html  # the timeline's event
    # The evidence package's report shows the replacement too, and verifies.
    package = li.post(f"/console/cases/{case_id}/evidence.zip")
    assert package.status_code == 200
    assert verify_package(package.content).ok
    with zipfile.ZipFile(io.BytesIO(package.content)) as archive:
        report = archive.read("report.html").decode()
    assert "Replacement (exchange)" in report and detail["replacement"]["delivery"] in report
    li.client.cookies.set("rb_lang", "zh-CN")
    zh = li.client.get(f"/console/cases/{case_id}").text
    assert "换货" in zh and "已发货" in zh


def test_the_warehouse_receives_an_exchanges_unit_in_the_console(
        login_as: Any, console_container: Container) -> None:
    zhao: Session = login_as("zhao.wh", "warehouse")
    body = request_body(kind="exchange", requested_amount="0",
                        reason={"code": "wrong_item", "text": "换同款"},
                        replacements=[{"sku": "GLU-METER-01", "name": "血糖仪", "quantity": 2,
                                       "unit_price": "199.00"}])
    raw, headers = signed(body)
    case_id = zhao.client.post(f"/webhooks/{SHOP}/generic", content=raw,
                               headers=headers).json()["case_id"]
    drain(console_container)
    assert 'href="/console/receive?case=' in zhao.client.get(f"/console/cases/{case_id}").text
    form = zhao.client.get(f"/console/receive/{case_id}")
    assert form.status_code == 200 and 'name="seal_0"' in form.text
    answer = zhao.post(f"/console/receive/{case_id}", {
        "seal_0": "yes", "condition_0": "as_new", "passed_0": "yes", "quantity_0": "2",
        "udi_0": ""})
    assert answer.status_code == 303, answer.text
    drain(console_container)
    detail = zhao.client.get(f"/v1/cases/{case_id}", headers=AUTH).json()
    assert detail["state"] == "closed", detail["failure"]
    assert detail["replacement"]["progress"] == "shipped"
    assert detail["inspections"][0]["inspector"] == "zhao.wh"


def test_a_return_case_has_no_replacement_section(login_as: Any,
                                                  console_container: Container) -> None:
    li: Session = login_as("li.na", "reviewer")
    raw, headers = signed(request_body())
    answer = li.client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
    case_id = answer.json()["case_id"]
    drain(console_container)
    assert 'data-testid="replacement"' not in li.client.get(f"/console/cases/{case_id}").text


@needs_chromium
def test_the_exchange_case_page_in_a_browser(console_container: Container, console_app: Any,
                                             login_as: Any, tmp_path: Path) -> None:
    li: Session = login_as("li.na", "reviewer")
    case_id = _closed_exchange(li.client, console_container)
    console_container.operators.add("wang.fang", OperatorRole.WAREHOUSE, [SHOP], PASSWORD)
    with chromium() as browser, serve(console_app) as base_url:
        _look(browser, base_url, case_id, tmp_path)


def _look(browser: Browser, base_url: str, case_id: str, tmp_path: Path) -> None:
    elsewhere: list[str] = []
    page = offline_page(browser, base_url, elsewhere, width=1280, height=900)
    page.goto(f"{base_url}/console/login")
    page.get_by_label("Name").fill("wang.fang")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    page.goto(f"{base_url}/console/cases/{case_id}")
    section = page.get_by_test_id("replacement")
    section.scroll_into_view_if_needed()
    assert section.is_visible()
    assert page.get_by_test_id("replacement-progress").inner_text() == "Shipped"
    assert page.get_by_test_id("replacement-delivery").inner_text().startswith("SBX-DN-")
    shot(page, tmp_path, "case-exchange.png", full_page=True)
    wide = page.evaluate("""() => [...document.querySelectorAll('*')].filter(
        e => e.getBoundingClientRect().right > 1281 && e.children.length == 0).slice(0, 8).map(
        e => e.tagName + '.' + e.className + ' ' + (e.textContent || '').slice(0, 60))""")
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280, wide
    page.goto(f"{base_url}/console/language/zh-CN?next=/console/cases/{case_id}")
    assert page.get_by_test_id("replacement-progress").inner_text() == "已发货"
    page.get_by_test_id("replacement").screenshot(
        path=str(tmp_path / "case-exchange-replacement-zh.png"))
    assert elsewhere == []
