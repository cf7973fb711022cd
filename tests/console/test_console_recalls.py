"""The recall-campaign pages: the list and one campaign's page, each of the operator's shops
only; the form that opens a campaign (every bad field named, the same reference leading to
the same campaign); closing it (RECALL permission and the effectiveness check's result);
and hostile input answered with a page, never a 500.

The shops' ERP is the sandbox one holding a few shipments of the recalled lot, so the real
workers (`drain`) find the consignees and tell them through the SMTP sink."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from pydantic import SecretStr
from redis import Redis
from sqlalchemy import Engine
from starlette.datastructures import FormData

from refundbridge.api.console.recalls import PAGE_SIZE, TEXTS, read_notice
from refundbridge.api.console.web import catalog
from refundbridge.bootstrap import Container, bootstrap
from refundbridge.core.audit import verify_chain
from refundbridge.core.campaigns import (
    Acknowledgement,
    CampaignState,
    RecallAction,
    RecallNotice,
)
from refundbridge.core.recalls import RecallClass
from refundbridge.core.services.campaigns import acknowledge, open_campaign
from refundbridge.demo import Mailbox
from refundbridge.store.operators import SqlOperatorDirectory
from tests.conftest import drain, test_settings
from tests.console.conftest import CHEAP_HASHER, OTHER_SHOP, Session
from tests.factories import SHOP

LOT = "L2401"
SECRET = "status-link-secret-for-tests-0123456789"
LONG = "x" * 100_000
NUL = "bad\x00value"


def shipments(count: int, *, lot: str = LOT) -> list[dict[str, Any]]:
    return [{"customer": f"CUST-{i:04d}", "name": f"客户 {i}", "sku": "GLU-METER-01",
             "quantity": 1 + i % 3, "document": f"DN-{i:04d}", "lot": lot,
             "order_id": f"SO-{i:04d}", "email": f"buyer{i}@example.com",
             "shipped_on": "2026-10-01"} for i in range(count)]


def recall_container(database_url: str, smtp_port: int, redis: Redis, engine: Engine,
                     rows: list[dict[str, Any]]) -> Container:
    """The console tests' two shops, each with a sandbox ERP that shipped `rows` (and holds
    a few units of the lot), and the key that signs acknowledgement links."""
    erp = {"shipments": rows, "stock": [{"sku": "GLU-METER-01", "lot": LOT, "quantity": 7}]}
    settings = test_settings(database_url, smtp_port, erp="sandbox_erp", sandbox_erp=erp)
    shops = dict(settings.shops)
    shops[OTHER_SHOP] = shops[SHOP].model_copy()
    settings = settings.model_copy(update={"shops": shops,
                                           "status_link_secret": SecretStr(SECRET)})
    container = bootstrap(settings, redis=redis, engine=engine)
    container.operators = SqlOperatorDirectory(engine, CHEAP_HASHER)
    return container


@pytest.fixture
def console_container(db: Engine, redis_conn: Redis, smtp_server: tuple[Controller, Mailbox],
                      database_url: str) -> Iterator[Container]:
    """Overrides the console's container: the same two shops, their ERP the sandbox one."""
    container = recall_container(database_url, smtp_server[0].port, redis_conn, db,
                                 shipments(PAGE_SIZE + 5) + shipments(3, lot="OTHER"))
    yield container
    container.close()


def notice(**overrides: Any) -> RecallNotice:
    values: dict[str, Any] = {
        "reference": "RC-2026-001", "recall_class": RecallClass.II,
        "notice_date": date(2026, 12, 1), "sku": "GLU-METER-01", "lots": (LOT,),
        "actions": (RecallAction.STOP_USE, RecallAction.RETURN),
        "instructions": "Stop using meters of lot L2401; strips read high."}
    values.update(overrides)
    return RecallNotice(**values)


def form(**overrides: str | list[str]) -> dict[str, Any]:
    """The open form as a browser sends it, filled in correctly."""
    values: dict[str, Any] = {
        "shop": SHOP, "reference": "RC-2026-007", "class": "I", "notice_date": "2026-12-02",
        "sku": "GLU-METER-01", "gtin": "", "lots": f"{LOT}\n", "serials": "",
        "actions": ["stop_use", "return"],
        "instructions": "Stop using the meter; strips of lot L2401 read 20 % high.",
        "check_level": "A", "check_percent": ""}
    values.update(overrides)
    return values


def campaign_of(answer: Any) -> str:
    assert answer.status_code == 303, answer.text[:500]
    found = re.fullmatch(r"/console/recalls/(rcp_[0-9a-f]+)\?done=(\w+)",
                         answer.headers["location"])
    assert found, answer.headers["location"]
    return found.group(1)


def field_errors(html: str) -> set[str]:
    return set(re.findall(r'class="error field-error"[^>]*data-field="(\w+)"', html))


# ---- the list and the page, by shop ---------------------------------------------------------

def test_the_list_and_a_page_show_the_operators_shops_only(
        login_as: Callable[..., Session], console_container: Container) -> None:
    svc = console_container.api_services
    ours = open_campaign(svc, SHOP, notice(), "operator:qa").campaign_id
    theirs = open_campaign(svc, OTHER_SHOP, notice(reference="RC-BETA-9"),
                           "operator:qa").campaign_id
    reviewer = login_as("li.na", "reviewer")
    listed = reviewer.client.get("/console/recalls")
    assert listed.status_code == 200
    assert f'data-campaign="{ours}"' in listed.text and "RC-2026-001" in listed.text
    assert theirs not in listed.text and "RC-BETA-9" not in listed.text
    assert 'href="/console/recalls"' in listed.text  # the menu entry, for every role
    assert "Open a campaign" not in listed.text  # a reviewer may not open one
    page = reviewer.client.get(f"/console/recalls/{ours}")
    assert page.status_code == 200 and "Stop using meters of lot L2401" in page.text
    for path in (f"/console/recalls/{theirs}", f"/console/recalls/{theirs}/chart.svg"):
        answer = reviewer.client.get(path)
        assert answer.status_code == 404, path
        assert "RC-BETA-9" not in answer.text and OTHER_SHOP not in answer.text
    admin = login_as("root", "admin", ())
    everything = admin.client.get("/console/recalls").text
    assert ours in everything and theirs in everything


def test_the_notice_deadline_is_overdue_until_everyone_is_told(
        login_as: Callable[..., Session], console_container: Container) -> None:
    svc = console_container.api_services
    late = open_campaign(svc, SHOP, notice(reference="RC-LATE", notice_date=date(2026, 1, 5),
                                           recall_class=RecallClass.I), "operator:qa")
    auditor = login_as("wu.audit", "auditor")
    row = _row(auditor.client.get("/console/recalls").text, late.campaign_id)
    assert "2026-01-06" in row and "Overdue" in row  # class I: one day from the notice
    drain(console_container)
    row = _row(auditor.client.get("/console/recalls").text, late.campaign_id)
    # Everyone told, but after the due day: said so, not hidden.
    assert "Everyone told, late" in row and "Overdue" not in row
    assert f"{PAGE_SIZE + 5} / {PAGE_SIZE + 5}" in row


def _row(html: str, campaign_id: str) -> str:
    found = re.search(rf'<tr data-campaign="{campaign_id}">(.*?)</tr>', html, re.S)
    assert found, campaign_id
    return found.group(1)


def test_a_campaign_page_shows_progress_consignees_in_pages_and_answers(
        login_as: Callable[..., Session], console_container: Container) -> None:
    svc = console_container.api_services
    campaign_id = open_campaign(svc, SHOP, notice(), "operator:qa").campaign_id
    drain(console_container)
    repo = console_container.campaigns
    first, second = repo.consignees(campaign_id, limit=2)
    acknowledge(svc, campaign_id, first.id, Acknowledgement(
        stopped_use=True, quantity_held=first.quantity, wants_return=True, note="在药房柜台"))
    acknowledge(svc, campaign_id, second.id, Acknowledgement(
        stopped_use=True, quantity_held=0, wants_return=False))
    drain(console_container)  # the recall case (here: a refund by hand, no order look-up)
    quality = login_as("zhou.qa", "quality")
    page = quality.client.get(f"/console/recalls/{campaign_id}")
    html = page.text
    assert page.status_code == 200
    count = PAGE_SIZE + 5
    assert f'data-count="consignees">{count}<' in html
    assert f'data-count="notified">{count}<' in html
    assert 'data-count="acknowledged">2<' in html
    assert 'data-testid="quarantine"' in html and "SBX-QUAR-" in html
    assert "chain verifies" in html
    assert verify_chain(repo.events(campaign_id)).verifies
    rows = re.findall(r'<tr data-consignee="(\d+)">', html)
    assert len(rows) == PAGE_SIZE and rows[0] == str(first.id)
    mine = re.search(rf'<tr data-consignee="{first.id}">(.*?)</tr>', html, re.S)
    assert mine and "refund by hand" in mine.group(1) and "在药房柜台" in mine.group(1)
    assert first.email is not None and first.email in mine.group(1)
    # The effectiveness check: level A wants every consignee; 2 of 55 have answered.
    assert "Below the target" in html and "2 of 55 consignees acknowledged (3.6 %)" in html
    next_url = re.search(r'href="([^"]+)" rel="next"', html)
    assert next_url, "no next page"
    rest = quality.client.get(next_url.group(1).replace("&amp;", "&")).text
    assert len(re.findall(r'<tr data-consignee="', rest)) == 5
    assert 'rel="next"' not in rest and 'rel="first"' in rest
    chart = quality.client.get(f"/console/recalls/{campaign_id}/chart.svg")
    assert chart.status_code == 200 and chart.headers["content-type"] == "image/svg+xml"
    assert "<script" not in chart.text and "Acknowledged" in chart.text
    assert "default-src 'none'" in chart.headers["content-security-policy"]
    quality.client.cookies.set("rb_lang", "zh-CN")
    chinese = quality.client.get(f"/console/recalls/{campaign_id}").text
    for text in ("召回活动", "召回级别", "通知截止", "已通知", "已确认", "回收数量", "有效性检查"):
        assert text in chinese, text


# ---- opening ---------------------------------------------------------------------------------

def test_the_open_form_names_every_bad_field_and_keeps_what_was_typed(
        login_as: Callable[..., Session], console_container: Container) -> None:
    quality = login_as("zhou.qa", "quality")
    assert quality.client.get("/console/recalls/new").status_code == 200
    answer = quality.post("/console/recalls", form(
        reference="  ", notice_date="2026-02-30", sku="", gtin="", check_level="B",
        check_percent="", lots=f"{LOT}\n{'L' * 65}", actions=[],
        instructions="Keep this text, please."))
    assert answer.status_code == 422
    assert field_errors(answer.text) == {"reference", "notice_date", "sku", "lots",
                                         "check_percent", "actions"}
    assert "line 2" in answer.text  # which lot is too long
    assert "Keep this text, please." in answer.text and "L" * 65 in answer.text
    assert console_container.campaigns.for_shops(None) == []


def test_opening_the_same_reference_twice_leads_to_the_same_campaign(
        login_as: Callable[..., Session], console_container: Container) -> None:
    quality = login_as("zhou.qa", "quality")
    first = quality.post("/console/recalls", form())
    campaign_id = campaign_of(first)
    assert first.headers["location"].endswith("done=opened")
    again = quality.post("/console/recalls", form(reference="rc-2026-007 ",
                                                  instructions="something else"))
    assert campaign_of(again) == campaign_id and again.headers["location"].endswith("exists")
    page = quality.client.get(again.headers["location"]).text
    assert "already open" in page
    campaign = console_container.campaigns.get(campaign_id)
    assert campaign.opened_by == "operator:zhou.qa"
    assert campaign.notice.instructions.startswith("Stop using the meter")
    assert campaign.notice.recall_class is RecallClass.I
    assert len(console_container.campaigns.for_shops(None)) == 1


def test_only_the_recall_permission_opens_a_campaign(
        login_as: Callable[..., Session], console_container: Container) -> None:
    reviewer = login_as("li.na", "reviewer")
    assert reviewer.client.get("/console/recalls/new").status_code == 403
    assert reviewer.post("/console/recalls", form()).status_code == 403
    quality = login_as("zhou.qa", "quality")
    refused = quality.post("/console/recalls", form(shop=OTHER_SHOP))
    assert refused.status_code == 422 and field_errors(refused.text) == {"shop"}
    missing_csrf = quality.client.post("/console/recalls", data=form(),
                                       follow_redirects=False)
    assert missing_csrf.status_code == 403
    assert console_container.campaigns.for_shops(None) == []


# ---- closing ---------------------------------------------------------------------------------

def test_closing_needs_the_recall_permission_and_the_checks_result(
        login_as: Callable[..., Session], console_container: Container) -> None:
    quality = login_as("zhou.qa", "quality")
    campaign_id = campaign_of(quality.post("/console/recalls", form()))
    early = quality.client.get(f"/console/recalls/{campaign_id}").text
    assert 'data-testid="close-form"' not in early  # identifying: not yet
    drain(console_container)
    repo = console_container.campaigns
    assert repo.get(campaign_id).state is CampaignState.MONITORING
    assert 'data-testid="close-form"' in quality.client.get(
        f"/console/recalls/{campaign_id}").text
    reviewer = login_as("li.na", "reviewer")
    assert 'data-testid="close-form"' not in reviewer.client.get(
        f"/console/recalls/{campaign_id}").text
    assert reviewer.post(f"/console/recalls/{campaign_id}/close",
                         {"note": "done"}).status_code == 403
    empty = quality.post(f"/console/recalls/{campaign_id}/close", {"note": "   "})
    assert empty.status_code == 422 and "effectiveness check" in empty.text
    assert repo.get(campaign_id).state is CampaignState.MONITORING
    note = "Level A: 55 of 55 consignees reached; 7 units quarantined."
    closed = quality.post(f"/console/recalls/{campaign_id}/close", {"note": note})
    assert closed.status_code == 303
    campaign = repo.get(campaign_id)
    assert campaign.state is CampaignState.CLOSED and campaign.close_note == note
    assert campaign.closed_by == "operator:zhou.qa"
    events = repo.events(campaign_id)
    assert events[-1].name == "close" and events[-1].data["note"] == note
    assert verify_chain(events).verifies
    page = quality.client.get(closed.headers["location"]).text
    assert note in page and 'data-testid="close-form"' not in page
    twice = quality.post(f"/console/recalls/{campaign_id}/close", {"note": note})
    assert twice.status_code == 409 and "text/html" in twice.headers["content-type"]


# ---- texts -----------------------------------------------------------------------------------

def test_every_label_and_message_of_the_pages_has_its_chinese() -> None:
    missing = [text for text in (*TEXTS, "Recalls") if text not in catalog()]
    assert not missing, missing
    # The notice's own checks (core.campaigns.RecallNotice) as the form shows them.
    bad = FormData([("shop", "nope"), ("reference", ""), ("class", "IV"),
                    ("notice_date", "x"), ("sku", ""), ("lots", ""), ("actions", "boom"),
                    ("check_level", "B"), ("check_percent", "x"), ("instructions", "a\x00")])
    _shop, made, errors, _values = read_notice(bad, [SHOP])
    assert made is None and len(errors) >= 8
    shown = [e.message for e in errors]
    assert not [m for m in shown if m not in catalog()], shown


# ---- hostile input ---------------------------------------------------------------------------

CAMPAIGN = "{campaign}"
OTHERS = "{theirs}"
ROWS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("list-done", "GET", "/console/recalls", {"done": LONG[:5000]}),
    ("page-id-long", "GET", "/console/recalls/" + "r" * 5000, {}),
    ("page-id-odd", "GET", "/console/recalls/%3Cscript%3E", {}),
    ("page-id-near", "GET", "/console/recalls/rcp_" + "g" * 32, {}),
    ("page-after-text", "GET", f"/console/recalls/{CAMPAIGN}", {"after": "abc"}),
    ("page-after-huge", "GET", f"/console/recalls/{CAMPAIGN}", {"after": "9" * 40}),
    ("page-after-negative", "GET", f"/console/recalls/{CAMPAIGN}", {"after": "-5"}),
    ("page-theirs", "GET", f"/console/recalls/{OTHERS}", {}),
    ("chart-unknown", "GET", "/console/recalls/rcp_" + "0" * 32 + "/chart.svg", {}),
    ("open-reference-nul", "POST", "/console/recalls", form(reference=NUL)),
    ("open-reference-long", "POST", "/console/recalls", form(reference=LONG)),
    ("open-instructions-long", "POST", "/console/recalls", form(instructions=LONG)),
    ("open-instructions-nul", "POST", "/console/recalls", form(instructions=NUL)),
    ("open-lots-many", "POST", "/console/recalls", form(lots="\n".join(
        f"L{i}" for i in range(2000)))),
    ("open-lot-nul", "POST", "/console/recalls", form(lots=NUL)),
    ("open-serials-long", "POST", "/console/recalls", form(serials="S" * 5000)),
    ("open-class", "POST", "/console/recalls", form(**{"class": "IV"})),
    ("open-date", "POST", "/console/recalls", form(notice_date="2026-13-45")),
    ("open-date-long", "POST", "/console/recalls", form(notice_date=LONG)),
    ("open-actions", "POST", "/console/recalls", form(actions=["explode", NUL])),
    ("open-level", "POST", "/console/recalls", form(check_level="Z")),
    ("open-percent-huge", "POST", "/console/recalls", form(check_level="B",
                                                          check_percent="9" * 50)),
    ("open-percent-float", "POST", "/console/recalls", form(check_level="B",
                                                           check_percent="1e9")),
    ("open-gtin-bad", "POST", "/console/recalls", form(gtin="12345678901234")),
    ("open-gtin-long", "POST", "/console/recalls", form(gtin=LONG)),
    ("open-sku-long", "POST", "/console/recalls", form(sku=LONG)),
    ("open-shop-foreign", "POST", "/console/recalls", form(shop="elsewhere")),
    ("open-shop-nul", "POST", "/console/recalls", form(shop=NUL)),
    ("close-unknown", "POST", "/console/recalls/rcp_" + "0" * 32 + "/close", {"note": "x"}),
    ("close-theirs", "POST", f"/console/recalls/{OTHERS}/close", {"note": "x"}),
    ("close-not-monitoring", "POST", f"/console/recalls/{CAMPAIGN}/close", {"note": "ok"}),
    ("close-note-empty", "POST", f"/console/recalls/{CAMPAIGN}/close", {"note": ""}),
    ("close-note-nul", "POST", f"/console/recalls/{CAMPAIGN}/close", {"note": NUL}),
    ("close-note-long", "POST", f"/console/recalls/{CAMPAIGN}/close", {"note": LONG}),
    ("close-no-note", "POST", f"/console/recalls/{CAMPAIGN}/close", {}),
]


@pytest.fixture
def quality_with_campaigns(login_as: Callable[..., Session], console_container: Container
                           ) -> tuple[Session, str, str]:
    svc = console_container.api_services
    ours = open_campaign(svc, SHOP, notice(), "operator:qa").campaign_id
    theirs = open_campaign(svc, OTHER_SHOP, notice(), "operator:qa").campaign_id
    return login_as("zhou.qa", "quality"), ours, theirs


def _stored(container: Container) -> list[tuple[str, str, int]]:
    repo = container.campaigns
    return [(c.id, c.state.value, len(repo.events(c.id))) for c in repo.for_shops(None)]


@pytest.mark.parametrize(("method", "path", "values"), [r[1:] for r in ROWS],
                         ids=[r[0] for r in ROWS])
def test_hostile_input_gets_a_page_and_changes_nothing(
        quality_with_campaigns: tuple[Session, str, str], console_container: Container,
        method: str, path: str, values: dict[str, Any]) -> None:
    session, ours, theirs = quality_with_campaigns
    before = _stored(console_container)
    url = path.replace(CAMPAIGN, ours).replace(OTHERS, theirs)
    if method == "GET":
        answer = session.client.get(url, params=values, follow_redirects=False)
    else:
        answer = session.post(url, values)
    assert answer.status_code < 500, answer.text[:500]
    if answer.status_code >= 400:
        assert "text/html" in answer.headers["content-type"]
        assert "Traceback" not in answer.text
    if method == "POST":
        assert 400 <= answer.status_code < 500, answer.status_code
    assert _stored(console_container) == before


# ---- the chart -------------------------------------------------------------------------------

def test_the_chart_counts_up_in_steps_from_the_opening() -> None:
    from datetime import UTC, datetime, timedelta

    from refundbridge.api.console.recalls import _cumulative

    start = datetime(2026, 12, 1, 8, tzinfo=UTC)
    hour = timedelta(hours=1)
    points = _cumulative([(start + 3 * hour, 2), (start + hour, 1)], start, start + 5 * hour)
    assert points == [(start, 0), (start + hour, 0), (start + hour, 1),
                      (start + 3 * hour, 1), (start + 3 * hour, 3), (start + 5 * hour, 3)]
    # Something recorded before the opening (a clock a little off) starts at the opening.
    assert _cumulative([(start - hour, 1)], start, start + hour)[1:] == [
        (start, 0), (start, 1), (start + hour, 1)]
