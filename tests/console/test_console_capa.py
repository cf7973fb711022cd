"""The CAPA pages: the list with its KPIs (checked against seeded records), the form that
opens one (prefilled from a signal's or a case's link, every bad field named), a record's
steps by role, the case page's link, and hostile input answered with a page, never a 500."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from redis import Redis
from sqlalchemy import Engine, update

from refundbridge.api.console.capa import TEXTS
from refundbridge.api.console.web import catalog
from refundbridge.bootstrap import Container
from refundbridge.core.capa import CapaOpening, CapaState, LotRef
from refundbridge.core.services.capa import change_capa, open_capa
from refundbridge.demo import Mailbox
from refundbridge.store import tables as t
from tests.console.conftest import OTHER_SHOP, Session
from tests.console.kit import open_in
from tests.console.test_console_recalls import LONG, NUL, recall_container, shipments
from tests.factories import SHOP
from tests.integration.test_capa_api import raise_signal

QA = "operator:zhou.qa"


@pytest.fixture
def console_container(db: Engine, redis_conn: Redis, smtp_server: tuple[Controller, Mailbox],
                      database_url: str) -> Iterator[Container]:
    """The console's two shops on the sandbox ERP (escalation opens real campaigns)."""
    container = recall_container(database_url, smtp_server[0].port, redis_conn, db,
                                 shipments(4))
    yield container
    container.close()


def capa_of(answer: Any) -> str:
    assert answer.status_code == 303, answer.text[:800]
    found = re.fullmatch(r"/console/capa/(capa_[0-9a-f]{20})\?done=(\w+)",
                         answer.headers["location"])
    assert found, answer.headers["location"]
    return found.group(1)


def field_errors(html: str) -> set[str]:
    return set(re.findall(r'class="error field-error"[^>]*data-field="(\w+)"', html))


def key_of(html: str) -> str:
    found = re.search(r'name="key" value="([0-9a-f]+)"', html)
    assert found
    return found.group(1)


def test_every_text_of_the_pages_has_its_chinese() -> None:
    missing = [text for text in TEXTS if text not in catalog()]
    assert missing == []


def test_the_form_is_filled_in_from_a_signals_link_and_opens_one_record(
        login_as: Callable[..., Session], console_container: Container) -> None:
    quality = login_as("zhou.qa", "quality")
    case_a = open_in(quality.client, None)
    case_b = open_in(quality.client, None)
    signal_id = raise_signal(console_container, "GLU-METER-01", "L2401", datetime.now(UTC),
                             (case_a, case_b))
    url = (f"/console/capa/new?signal={signal_id}&sku=GLU-METER-01&lot=L2401"
           f"&case={case_a}&case={case_b}")
    form = quality.client.get(url)
    assert form.status_code == 200
    html = form.text
    assert f'name="signal" value="{signal_id}"' in html
    assert 'name="lot_sku" value="GLU-METER-01"' in html and 'value="L2401"' in html
    assert f"{case_a}\n{case_b}" in html
    assert f'<option value="{SHOP}" selected>' in html  # the case's shop, chosen
    key = key_of(html)
    sent = {"shop": SHOP, "problem": "3 quality returns of L2401 in 30 days", "key": key,
            "signal": signal_id, "cases": f"{case_a}\n{case_b}",
            "lot_sku": ["GLU-METER-01", ""], "lot_lot": ["L2401", ""]}
    capa_id = capa_of(quality.post("/console/capa", sent))
    again = quality.post("/console/capa", sent)  # a double submit
    assert capa_of(again) == capa_id and again.headers["location"].endswith("done=exists")
    page = quality.client.get(f"/console/capa/{capa_id}").text
    assert signal_id in page and case_a in page and "chain verifies" in page
    bogus = quality.post("/console/capa", {**sent, "signal": "sig-none", "key": "other"})
    assert bogus.status_code == 422 and "signal" in field_errors(bogus.text)
    assert 'data-testid="investigation-form"' in page


def test_a_case_page_links_to_the_form_and_shows_its_capas(
        login_as: Callable[..., Session], console_container: Container) -> None:
    quality = login_as("zhou.qa", "quality")
    case_id = open_in(quality.client, None)
    page = quality.client.get(f"/console/cases/{case_id}").text
    assert f'href="/console/capa/new?case={case_id}"' in page
    form = quality.client.get(f"/console/capa/new?case={case_id}").text
    # No lot typed: the case's own lot is taken.
    capa_id = capa_of(quality.post("/console/capa", {
        "shop": SHOP, "problem": "The meter reads high", "cases": case_id,
        "key": key_of(form), "lot_sku": "", "lot_lot": ""}))
    record = console_container.api_services.capas.get(capa_id)  # type: ignore[union-attr]
    assert record.lots == (LotRef("GLU-METER-01", "L2401"),)
    page = quality.client.get(f"/console/cases/{case_id}").text
    assert 'data-testid="case-capas"' in page and f"/console/capa/{capa_id}" in page
    reviewer = login_as("li.na", "reviewer")
    seen = reviewer.client.get(f"/console/cases/{case_id}").text
    assert "/console/capa/new" not in seen and f"/console/capa/{capa_id}" in seen


def test_a_bad_form_names_every_field_and_keeps_what_was_typed(
        login_as: Callable[..., Session], console_container: Container) -> None:
    quality = login_as("zhou.qa", "quality")
    answer = quality.post("/console/capa", {
        "shop": OTHER_SHOP, "problem": "", "cases": "case_none\n" + "c" * 50,
        "lot_sku": ["", "A" * 200], "lot_lot": ["L1", "L2"], "signal": "s" * 100,
        "key": "k"})
    assert answer.status_code == 422
    assert field_errors(answer.text) >= {"shop", "problem", "cases", "lots", "signal"}
    assert "case_none" in answer.text
    unknown = quality.post("/console/capa", {"shop": SHOP, "problem": "p",
                                             "cases": "case_none", "key": "k2"})
    assert unknown.status_code == 422 and "no such case in the shop" in unknown.text


def test_readers_read_and_only_quality_and_admins_change(
        login_as: Callable[..., Session], console_container: Container) -> None:
    svc = console_container.api_services
    ours = open_capa(svc, SHOP, CapaOpening("Ours", lots=(LotRef("GLU-METER-01", "L2401"),)),
                     QA).capa_id
    theirs = open_capa(svc, OTHER_SHOP, CapaOpening("Theirs", lots=(LotRef("X", ""),)),
                       QA).capa_id
    reviewer = login_as("li.na", "reviewer")
    listed = reviewer.client.get("/console/capa").text
    assert f'data-capa="{ours}"' in listed and theirs not in listed
    assert 'href="/console/capa"' in listed and "Open a CAPA" not in listed
    page = reviewer.client.get(f"/console/capa/{ours}").text
    assert "Ours" in page and "investigation-form" not in page
    assert reviewer.client.get(f"/console/capa/{theirs}").status_code == 404
    assert reviewer.client.get("/console/capa/new").status_code == 403
    assert reviewer.post(f"/console/capa/{ours}/investigation", {}).status_code == 403
    quality = login_as("zhou.qa", "quality")
    assert quality.post(f"/console/capa/{theirs}/investigation", {}).status_code == 404
    no_csrf = quality.client.post(f"/console/capa/{ours}/investigation", data={},
                                  follow_redirects=False)
    assert no_csrf.status_code == 403
    assert quality.post(f"/console/capa/{ours}/investigation", {}).status_code == 303
    # A step the state no longer allows (a colleague was quicker): the 409 page.
    late = quality.post(f"/console/capa/{ours}/investigation", {})
    assert late.status_code == 409 and "Not allowed in this state" in late.text
    admin = login_as("root", "admin", ())
    assert theirs in admin.client.get("/console/capa").text


def test_the_list_filters_by_state_and_shop(
        login_as: Callable[..., Session], console_container: Container) -> None:
    svc = console_container.api_services
    first = open_capa(svc, SHOP, CapaOpening("First", lots=(LotRef("A", "1"),)), QA).capa_id
    second = open_capa(svc, SHOP, CapaOpening("Second", lots=(LotRef("B", "1"),)), QA).capa_id
    other = open_capa(svc, OTHER_SHOP, CapaOpening("Other", lots=(LotRef("C", ""),)),
                      QA).capa_id
    change_capa(svc, second, lambda r: r.cancel("duplicate", QA, svc.clock()))
    admin = login_as("root", "admin", ())
    cancelled = admin.client.get("/console/capa?state=cancelled").text
    assert second in cancelled and first not in cancelled and other not in cancelled
    ours = admin.client.get(f"/console/capa?shop={SHOP}").text
    assert first in ours and second in ours and other not in ours
    junk = admin.client.get("/console/capa?state=nonsense&shop=nowhere")
    assert junk.status_code == 200 and first in junk.text and other in junk.text


def _age(engine: Engine, capa_id: str, opened: datetime,
         closed: datetime | None = None) -> None:
    with engine.begin() as conn:
        conn.execute(update(t.capa_records).where(t.capa_records.c.id == capa_id)
                     .values(opened_at=opened, closed_at=closed))


def test_the_kpis_match_the_seeded_records(
        login_as: Callable[..., Session], console_container: Container) -> None:
    svc = console_container.api_services
    engine = console_container.engine
    now = datetime.now(UTC)
    quality = login_as("zhou.qa", "quality")
    case_id = open_in(quality.client, None)
    with engine.begin() as conn:
        conn.execute(update(t.cases).where(t.cases.c.id == case_id)
                     .values(created_at=now - timedelta(days=2, hours=12)))

    def opened(problem: str, **kw: Any) -> str:
        return open_capa(svc, SHOP, CapaOpening(problem, **kw), QA).capa_id

    opened("young", cases=(case_id,))  # opened now: 60 h after its case
    middle = opened("middle", lots=(LotRef("A", "1"),))
    _age(engine, middle, now - timedelta(days=20))
    old = opened("old", lots=(LotRef("B", "1"),))
    _age(engine, old, now - timedelta(days=120))
    change_capa(svc, old, lambda r: r.start_investigation(QA, now))
    change_capa(svc, old, lambda r: r.add_action("corrective", "late one", "wang",
                                                 date.today() - timedelta(days=3), QA, now))
    change_capa(svc, old, lambda r: r.add_action("preventive", "not yet due", "li",
                                                 date.today() + timedelta(days=3), QA, now))
    done = opened("closed in 4 days", lots=(LotRef("GLU-METER-01", "L2401"),))
    for step in (lambda r: r.start_investigation(QA, now),
                 lambda r: r.record_root_cause("printer", QA, now),
                 lambda r: r.add_action("corrective", "fix", "wang", date.today(), QA, now),
                 lambda r: r.complete_action(1, QA, now),
                 lambda r: r.plan_effectiveness_check("no returns", date.today(), QA, now),
                 lambda r: r.record_effectiveness("effective", "none", QA, now),
                 lambda r: r.close("closed", QA, now)):
        change_capa(svc, done, step)
    _age(engine, done, now - timedelta(days=10), now - timedelta(days=6))
    html = quality.client.get("/console/capa").text

    def kpi(name: str) -> str:
        found = re.search(rf'data-kpi="{name}">(.*?)</td>', html, re.S)
        assert found, name
        return re.sub(r"<[^>]+>", "", found.group(1)).strip()

    def age(name: str) -> str:
        found = re.search(rf'data-age="{name}">(\d+)<', html)
        assert found, name
        return found.group(1)

    assert [age(n) for n in ("0-7 days", "8-30 days", "31-90 days", "over 90 days")] == [
        "1", "1", "0", "1"]
    assert kpi("open_total") == "3" and kpi("closed") == "1"
    assert kpi("mean_days_to_close") == "4.0"
    assert kpi("overdue_actions") == "1"
    assert kpi("actions_done") == "1 / 3"
    assert kpi("mean_response_hours") == "60.0"
    assert kpi("recurrences") == "0"  # no signal after it closed (or no signals at all)
    api = quality.client.get("/v1/capa-records/kpis")
    assert api.status_code == 401  # /v1 wants a token, not a console session


def test_a_record_is_walked_through_its_steps_with_forms(
        login_as: Callable[..., Session], console_container: Container) -> None:
    quality = login_as("zhou.qa", "quality")
    case_id = open_in(quality.client, None)
    form = quality.client.get(f"/console/capa/new?case={case_id}").text
    capa_id = capa_of(quality.post("/console/capa", {
        "shop": SHOP, "problem": "Meters read high", "cases": case_id, "key": key_of(form)}))
    base = f"/console/capa/{capa_id}"
    assert quality.post(f"{base}/investigation", {"note": "retained samples"}
                        ).status_code == 303
    bad = quality.post(f"{base}/root-cause", {"root_cause": " "})
    assert bad.status_code == 422 and "root_cause" in field_errors(bad.text)
    assert quality.post(f"{base}/root-cause", {"root_cause": "printer"}).status_code == 303
    bad = quality.post(f"{base}/actions", {"kind": "corrective", "description": "fix it",
                                           "owner": "", "due": "someday"})
    assert bad.status_code == 422 and field_errors(bad.text) == {"owner", "due"}
    assert "fix it" in bad.text  # what was typed is kept
    assert quality.post(f"{base}/actions", {"kind": "corrective", "description": "fix it",
                                            "owner": "wang", "due": "2026-12-31"}
                        ).status_code == 303
    assert quality.post(f"{base}/actions/1/complete", {"note": "fixed"}).status_code == 303
    assert quality.post(f"{base}/effectiveness-check", {
        "measure": "no returns", "due": "2027-02-01"}).status_code == 303
    assert quality.post(f"{base}/effectiveness-result", {
        "result": "not_effective", "note": "two more"}).status_code == 303
    record = console_container.api_services.capas.get(capa_id)  # type: ignore[union-attr]
    assert record.state is CapaState.ACTIONS_PLANNED
    assert quality.post(f"{base}/nonsense", {}).status_code == 404
    assert quality.post(f"{base}/actions/99/complete", {}).status_code == 422
    escalated = quality.post(f"{base}/escalate", {"reference": "RC-C-1", "class": "II",
                                                  "actions": ["stop_use", "return"]})
    assert escalated.status_code == 303 and escalated.headers["location"].endswith(
        "done=escalated")
    page = quality.client.get(f"{base}?done=escalated").text
    assert 'data-testid="campaign"' in page and "escalate-form" not in page
    assert "chain verifies" in page


HOSTILE: list[tuple[str, str, dict[str, Any]]] = [
    ("list", "/console/capa?state=" + "s" * 5000, {}),
    ("new", "/console/capa/new?signal=" + "s" * 5000, {}),
    ("new-case", "/console/capa/new?case=" + "c" * 5000, {}),
    ("page", "/console/capa/" + "c" * 5000, {}),
    ("page-nul", "/console/capa/capa_%00", {}),
]
HOSTILE_POSTS: list[tuple[str, str, dict[str, Any]]] = [
    ("open-problem-nul", "/console/capa", {"shop": SHOP, "problem": NUL,
                                           "lot_sku": "A", "lot_lot": ""}),
    ("open-problem-long", "/console/capa", {"shop": SHOP, "problem": LONG,
                                            "lot_sku": "A"}),
    ("open-lot-nul", "/console/capa", {"shop": SHOP, "problem": "p", "lot_sku": NUL}),
    ("open-key-long", "/console/capa", {"shop": SHOP, "problem": "p", "lot_sku": "A",
                                        "lot_lot": LONG, "key": LONG}),
    ("root-cause-long", "{base}/root-cause", {"root_cause": LONG}),
    ("note-nul", "{base}/investigation", {"note": NUL}),
    ("action-due-long", "{base}/actions", {"kind": LONG, "description": NUL, "owner": LONG,
                                           "due": LONG}),
    ("complete-huge", "{base}/actions/99999999999999999999/complete", {}),
    ("result-bad", "{base}/effectiveness-result", {"result": LONG, "note": NUL}),
    ("escalate-bad", "{base}/escalate", {"reference": NUL, "class": LONG,
                                         "actions": [LONG]}),
    ("cancel-long", "{base}/cancel", {"reason": LONG}),
]


def test_hostile_input_is_a_page_never_a_500(
        login_as: Callable[..., Session], console_container: Container) -> None:
    svc = console_container.api_services
    capa_id = open_capa(svc, SHOP, CapaOpening("p", lots=(LotRef("GLU-METER-01", "L1"),)),
                        QA).capa_id
    quality = login_as("zhou.qa", "quality")
    for name, url, _ in HOSTILE:
        answer = quality.client.get(url)
        assert 400 <= answer.status_code < 500 or answer.status_code == 200, name
        assert answer.headers["content-type"].startswith("text/html"), name
    for name, url, data in HOSTILE_POSTS:
        answer = quality.post(url.replace("{base}", f"/console/capa/{capa_id}"), data)
        assert 400 <= answer.status_code < 500, (name, answer.status_code, answer.text[:300])
    record = svc.capas.get(capa_id)  # type: ignore[union-attr]
    assert record.state is CapaState.OPEN and record.audit_seq == 1
