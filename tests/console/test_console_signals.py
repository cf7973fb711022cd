"""The quality-signal pages: the list and one signal's page (the operator's shops only), the
cases behind a signal linked, its rate and units shipped, the "Open CAPA" link carrying the
signal, product, lot and cases, acknowledging it (CAPA permission, CSRF, in the trail), and
`/v1/signals` with the same shop rules."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from redis import Redis
from sqlalchemy import Engine, text

from refundbridge.api.console import signals as signal_pages
from refundbridge.api.console.web import HERE, catalog
from refundbridge.bootstrap import Container, bootstrap
from refundbridge.core.audit import verify_chain
from refundbridge.demo import Mailbox
from refundbridge.store.operators import SqlOperatorDirectory
from refundbridge.workers.signals import run_signal_job
from tests.conftest import test_settings
from tests.console.conftest import CHEAP_HASHER, OTHER_SHOP, Session
from tests.factories import AUTH, REVIEWER_AUTH, SHOP, request_body, signed

SIGNALS = {"quality_contact": {"email": "quality@acme-medical.example.com"}}
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def console_container(db: Engine, redis_conn: Redis, smtp_server: tuple[Controller, Mailbox],
                      database_url: str) -> Iterator[Container]:
    """Two shops on the sandbox ERP (it shipped 60 units of lot L-SMALL), signals on."""
    shipments = [{"customer": "C1", "name": "Clinic", "sku": "GLU-METER-01", "quantity": 60,
                  "document": "DN-1", "lot": "L-SMALL",
                  "shipped_on": (NOW - timedelta(days=100)).date().isoformat()}]
    settings = test_settings(database_url, smtp_server[0].port, erp="sandbox_erp",
                             notifier="sandbox_notifier", sandbox_erp={"shipments": shipments},
                             policy={"signals": SIGNALS})
    shops = dict(settings.shops)
    shops[OTHER_SHOP] = shops[SHOP].model_copy()
    settings = settings.model_copy(update={"shops": shops})
    container = bootstrap(settings, redis=redis_conn, engine=db)
    container.operators = SqlOperatorDirectory(db, CHEAP_HASHER)
    yield container
    container.close()


def seed(client: TestClient, engine: Engine, shop: str, lot: str, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        body = request_body(**{"lines.0.lot": lot, "lines.0.quantity": 1,
                               "requested_amount": "199.00",
                               "reason": {"code": "defective", "text": "读数不准"}})
        raw, headers = signed(body)
        answer = client.post(f"/webhooks/{shop}/generic", content=raw, headers=headers)
        assert answer.status_code == 202, answer.text
        ids.append(str(answer.json()["case_id"]))
    with engine.begin() as conn:
        conn.execute(text("UPDATE cases SET created_at = :at WHERE id = ANY(:ids)"),
                     {"at": NOW - timedelta(hours=1), "ids": ids})
    return ids


@pytest.fixture
def raised(console_container: Container, console_app: Any) -> dict[str, Any]:
    """Three returns of lot L-BAD and two of lot L-SMALL (of 60 shipped) in our shop, three
    of L-BAD in the other one; the run raises their signals."""
    with TestClient(console_app) as client:
        ours = seed(client, console_container.engine, SHOP, "L-BAD", 3)
        small = seed(client, console_container.engine, SHOP, "L-SMALL", 2)
        theirs = seed(client, console_container.engine, OTHER_SHOP, "L-BAD", 3)
    report = run_signal_job(console_container, now=NOW)
    store = console_container.services.signals
    assert store is not None
    by_lot = {(s.shop_id, s.lot, s.threshold.name.value): s
              for s in store.for_shops(None)}
    assert len(report.raised) == len(by_lot) == 3
    return {"ours": by_lot[(SHOP, "L-BAD", "quality_count")],
            "rate": by_lot[(SHOP, "L-SMALL", "quality_rate")],
            "theirs": by_lot[(OTHER_SHOP, "L-BAD", "quality_count")],
            "our_cases": ours, "small_cases": small, "their_cases": theirs}


def test_the_list_shows_the_operators_shops_signals_with_rate_and_shipped_units(
        login_as: Callable[..., Session], raised: dict[str, Any]) -> None:
    reviewer = login_as("li.na", "reviewer")
    page = reviewer.client.get("/console/signals")
    assert page.status_code == 200
    assert 'href="/console/signals"' in page.text  # the menu entry
    assert f'data-signal="{raised["ours"].id}"' in page.text
    assert f'data-signal="{raised["rate"].id}"' in page.text
    assert raised["theirs"].id not in page.text
    row = re.search(rf'<tr data-signal="{raised["rate"].id}">(.*?)</tr>', page.text, re.S)
    assert row is not None
    assert "3.3333 %" in row.group(1) and ">60<" in row.group(1)
    assert "Quality-return rate" in row.group(1)


def test_a_signals_page_lists_the_cases_behind_it_and_links_a_capa_with_them(
        login_as: Callable[..., Session], raised: dict[str, Any]) -> None:
    quality = login_as("wu", "quality")
    signal = raised["ours"]
    page = quality.client.get(f"/console/signals/{signal.id}")
    assert page.status_code == 200
    for case_id in raised["our_cases"]:
        assert f'href="/console/cases/{case_id}"' in page.text
    link = re.search(r'href="([^"]+)" data-testid="open-capa"', page.text)
    assert link is not None
    url = urlsplit(link.group(1).replace("&amp;", "&"))
    assert url.path == "/console/capa/new"
    query = parse_qs(url.query)
    assert query["signal"] == [signal.id] and query["sku"] == ["GLU-METER-01"]
    assert query["lot"] == ["L-BAD"] and sorted(query["case"]) == sorted(raised["our_cases"])
    assert "chain verifies" in page.text
    # A reviewer reads it but may neither open a CAPA nor acknowledge.
    reviewer = login_as("li.na", "reviewer")
    read_only = reviewer.client.get(f"/console/signals/{signal.id}").text
    assert 'data-testid="open-capa"' not in read_only
    assert 'data-testid="acknowledge"' not in read_only
    answer = reviewer.post(f"/console/signals/{signal.id}/acknowledge", {"note": "x"})
    assert answer.status_code == 403


def test_another_shops_signal_is_a_404_and_a_bad_id_too(
        login_as: Callable[..., Session], raised: dict[str, Any]) -> None:
    quality = login_as("wu", "quality")
    for path in (f"/console/signals/{raised['theirs'].id}", "/console/signals/sig_nope",
                 "/console/signals/" + "x" * 5000,
                 f"/console/signals/{raised['theirs'].id}/acknowledge"):
        answer = (quality.post(path, {"note": ""}) if path.endswith("acknowledge")
                  else quality.client.get(path))
        assert answer.status_code == 404, path
        assert OTHER_SHOP not in answer.text and "GLU-METER-01" not in answer.text


def test_acknowledging_a_signal_is_recorded_in_its_trail_under_the_operators_name(
        login_as: Callable[..., Session], raised: dict[str, Any],
        console_container: Container) -> None:
    quality = login_as("wu", "quality")
    signal = raised["ours"]
    no_csrf = quality.client.post(f"/console/signals/{signal.id}/acknowledge",
                                  data={"note": "x"}, follow_redirects=False)
    assert no_csrf.status_code == 403
    bad = quality.post(f"/console/signals/{signal.id}/acknowledge", {"note": "a\x00b"})
    assert bad.status_code == 422 and "control characters" in bad.text
    done = quality.post(f"/console/signals/{signal.id}/acknowledge",
                        {"note": "Lot L-BAD held; supplier asked"})
    assert done.status_code == 303
    page = quality.client.get(done.headers["location"]).text
    assert "Signal acknowledged." in page and "operator:wu" not in page  # shown as a name
    assert 'data-testid="operator">wu<' in page
    store = console_container.services.signals
    assert store is not None
    events = store.events(signal.id)
    assert events[-1].name == "acknowledge" and events[-1].actor == "operator:wu"
    assert verify_chain(events).verifies
    again = quality.post(f"/console/signals/{signal.id}/acknowledge", {"note": ""})
    assert again.status_code == 422


def test_the_pages_speak_chinese(login_as: Callable[..., Session],
                                 raised: dict[str, Any]) -> None:
    quality = login_as("wu", "quality")
    quality.client.cookies.set("rb_lang", "zh-CN")
    page = quality.client.get(f"/console/signals/{raised['rate'].id}").text
    assert "质量退货率" in page and "相关案件" in page and "发起 CAPA" in page


def test_every_text_of_the_pages_has_a_chinese_entry() -> None:
    texts: set[str] = set()
    for name in ("signals.html", "signal.html"):
        source = (HERE / "templates" / name).read_text(encoding="utf-8")
        texts |= set(re.findall(r"""_\(["']([^"']+)["']""", source))
    texts |= {label for label, _ in signal_pages.STATES.values()}
    texts |= {label for label, _ in signal_pages.NOTICES.values()}
    texts |= set(signal_pages.THRESHOLDS.values()) | set(signal_pages.DONE.values())
    texts |= set(signal_pages.EVENTS.values()) | {"Signals"}
    missing = sorted(t for t in texts if t not in catalog())
    assert missing == []


# ------------------------------------------------------------------ /v1


def test_v1_lists_and_shows_signals_with_the_shop_rules_of_every_v1_route(
        console_app: Any, raised: dict[str, Any]) -> None:
    with TestClient(console_app) as client:
        listed = client.get(f"/v1/signals?shop={SHOP}", headers=AUTH)
        assert listed.status_code == 200
        ids = {s["id"] for s in listed.json()["signals"]}
        assert ids == {raised["ours"].id, raised["rate"].id}
        one = client.get(f"/v1/signals/{raised['rate'].id}", headers=REVIEWER_AUTH).json()
        assert (one["shipped_units"], one["rate_percent"], one["lot"]) == (
            60, "3.3333", "L-SMALL")
        assert sorted(one["case_ids"]) == sorted(raised["small_cases"])
        assert one["audit"]["verifies"] and one["audit"]["trail"][0]["name"] == "raise"
        assert client.get("/v1/signals").status_code == 401
        assert client.get("/v1/signals/sig_" + "0" * 24, headers=AUTH).status_code == 404
        assert client.get("/v1/signals?shop=nope", headers=AUTH).status_code == 404
        refused = client.post(f"/v1/signals/{raised['ours'].id}/acknowledge",
                              json={"note": "x"}, headers=REVIEWER_AUTH)
        assert refused.status_code == 403  # a reviewer has no CAPA permission
        done = client.post(f"/v1/signals/{raised['ours'].id}/acknowledge",
                           json={"note": "on it"}, headers=AUTH)
        assert done.status_code == 200 and done.json()["state"] == "acknowledged"
        assert client.post(f"/v1/signals/{raised['ours'].id}/acknowledge", json={},
                           headers=AUTH).status_code == 409
        assert client.post(f"/v1/signals/{raised['rate'].id}/acknowledge",
                           json={"note": "a\x00"}, headers=AUTH).status_code == 422


# ------------------------------------------------------------------ evidence


def test_the_lots_evidence_package_holds_its_signals_and_verifies(
        login_as: Callable[..., Session], raised: dict[str, Any]) -> None:
    import io
    import json
    import zipfile

    from refundbridge.core.evidence import verify_package

    auditor = login_as("sun", "auditor")
    answer = auditor.post("/console/evidence/lot", {"shop": SHOP, "lot": "L-BAD"})
    assert answer.status_code == 200, answer.text[:300]
    result = verify_package(answer.content)
    assert result.ok, result.problem
    assert "1 quality signals" in result.describe()
    files = {i.filename: zipfile.ZipFile(io.BytesIO(answer.content)).read(i.filename)
             for i in zipfile.ZipFile(io.BytesIO(answer.content)).infolist()}
    signal = raised["ours"]
    manifest = json.loads(files["manifest.json"])
    assert [e["signal_id"] for e in manifest["signals"]] == [signal.id]
    evidence = json.loads(files[f"signals/{signal.id}/signal.json"])
    assert sorted(evidence["case_ids"]) == sorted(raised["our_cases"])
    assert (evidence["count"], evidence["threshold"]["count"]) == (3, 3)
    events = json.loads(files[f"signals/{signal.id}/events.json"])
    assert events[0]["name"] == "raise"
    assert events[-1]["name"] == "evidence_exported" and events[-1]["actor"] == "operator:sun"
    assert "Quality signal" in files["report.html"].decode()
    # The other shop's signal on a lot of the same name is not in it.
    assert raised["theirs"].id not in files["manifest.json"].decode()

    # An edited signal event is caught by the verifier, naming the file.
    events[0]["data"]["count"] = 2
    files[f"signals/{signal.id}/events.json"] = json.dumps(events).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    broken = verify_package(buffer.getvalue())
    assert not broken.ok and f"signals/{signal.id}/events.json" in (broken.problem or "")
