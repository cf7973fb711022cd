"""`refundbridge demo` end to end: its own embedded stack (SQLite, fakeredis, uvicorn and
aiosmtpd on 127.0.0.1, sandbox connectors), the compliance scenarios it scripts, and
`--serve` handing the running system over to a person."""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from typer.testing import CliRunner

from refundbridge.cli import app as cli
from refundbridge.demo import (
    DemoResult,
    Scenario,
    inspections,
    recall_csv,
    review_decision,
    run,
    scenarios,
    shop_policy,
)


def test_the_demo_runs_every_scenario_to_its_expected_end(tmp_path: Path) -> None:
    out = io.StringIO()
    result = run(cases=50, database=str(tmp_path / "demo.db"),
                 console=Console(file=out, width=200))
    report = out.getvalue()

    assert result.stuck == {}
    assert [r.scenario.title for r in result.unexpected] == []
    assert len(result.findings.scenarios) == len(scenarios(datetime.now(UTC)))
    assert result.cases == 50
    assert result.verified == 50
    assert result.duplicates == 5
    # Every consumer gave a phone: their messages went by SMS too, none failed for good.
    assert result.sms["queued"] >= 50 and result.sms.get("failed", 0) == 0
    assert (result.recalls_added, result.recalls_readded) == (3, 0)
    assert [(title, p["decision"]) for title, p in result.previews] == [
        ("recalled lot, asked on day 45", "approve"), ("no-reason return on day 8", "deny")]

    found = result.findings
    # Every case the rules sent to a person was decided by the reviewer, both ways.
    sent_to_review = found.decisions[("rules", "review")]
    assert sent_to_review == (found.decisions[("reviewer", "approve")]
                              + found.decisions[("reviewer", "deny")])
    assert found.decisions[("reviewer", "approve")] > found.decisions[("reviewer", "deny")] > 0
    # The trail names who did what: each of the demo's people through a token of their own.
    assert {actor for actor, _ in found.acts} == {
        "token:reviewer.li", "token:reviewer.chen", "token:warehouse.zhao"}
    assert found.acts[("token:reviewer.li", "approve")] > 0
    assert found.acts[("token:reviewer.li", "deny")] == found.decisions[("reviewer", "deny")]
    # The adverse event takes four eyes: the second reviewer confirms what the first proposed.
    assert found.acts[("token:reviewer.chen", "approve")] == found.acts[
        ("token:reviewer.li", "review_proposed")] > 0
    assert found.acts[("token:warehouse.zhao", "receive_goods")] > 0
    assert {"R06", "R14", "R15", "R19", "R20"} <= set(found.review_rules)
    assert {"R02", "R03", "R04", "R05"} <= set(found.deny_rules)
    assert {"restock", "quarantine", "scrap", "return_to_manufacturer", "keep_as_evidence",
            "not_returned"} <= set(found.disposition_units)
    assert {"adverse_event_report", "recall_notice", "refund_deadline"} <= set(
        found.earliest_due)
    # The goods that came back went where the rules said: the ERP booked the same units.
    returned = {k: v for k, v in found.disposition_units.items() if k != "not_returned"}
    assert returned == result.figures["stock_moves"]

    for line in ("to review by R14: possible adverse event", "obligation: recall_notice",
                 "disposition: keep_as_evidence", "decisions: deny by the reviewer",
                 "audit chains verified", "cases closed", "refunded CNY", "stock moves: scrap",
                 "scenarios as expected", "by token:reviewer.li: approve",
                 "by token:warehouse.zhao: receive_goods"):
        assert line in report
    scripted = len(scenarios(datetime.now(UTC)))
    assert scripted == 18  # 17 compliance scenarios and an exchange
    assert f"{scripted}/{scripted}" in report
    # The recall campaign of lot BP2403: 40 customers found (not the other lot's), all told,
    # the 12 units on hand quarantined, opened twice as one campaign, its trail verifying.
    campaign = result.campaign
    assert campaign is not None and result.campaign_done
    assert campaign["counts"]["consignees"] == campaign["counts"]["notified"] == 40
    assert campaign["quarantine"]["units"] == 12
    assert "recall campaign NMPA-RC-2025-0117" in report


def test_the_scenarios_cover_what_the_demo_promises() -> None:
    now = datetime.now(UTC)
    scripted = scenarios(now)
    bodies = [s.body for s in scripted]
    skus = shop_policy()["skus"]
    assert {flag for flags in skus.values() for flag in flags} >= {
        "no_reason_excluded", "cold_chain", "custom_made", "implantable"}
    assert any(b["customer"]["type"] == "business" for b in bodies)
    scans = [r["udi_scan"] for s in scripted for r in s.receipt if "udi_scan" in r]
    assert len(scans) == 2 and all(scan.startswith("(01)") for scan in scans)
    cold = [s for s in scripted if s.body["lines"][0]["sku"] == "IVD-HBA1C-20"]
    assert sorted(bool(s.receipt and s.receipt[0].get("temperature_log_ok")) for s in cold) == [
        False, True]
    assert "reference" in recall_csv(now.date()).splitlines()[0]
    assert sum(b["customer"]["id"] == "cust-zhao.lei" for b in bodies) == 4


def _detail(review: list[str]) -> dict[str, object]:
    return {"decisions": [{"decided_by": "rules", "outcome": "review", "rules": [
        {"id": rule, "outcome": "review"} for rule in review] + [
        {"id": "R02", "outcome": "pass"}]}]}


def test_the_reviewer_refuses_a_lapsed_licence_or_a_fourth_request_and_approves_the_rest(
) -> None:
    refused = review_decision(_detail(["R15", "R20"]))
    assert refused["decision"] == "deny"
    assert "lapsed" in refused["internal_note"]
    # The customer reads why, not the reviewer's working notes.
    assert "licence" in refused["customer_message"]
    assert "lapsed" not in refused["customer_message"]
    assert review_decision(_detail(["R19"]))["decision"] == "deny"
    approved = review_decision(_detail(["R14", "R20"]))
    assert approved["decision"] == "approve"
    assert "adverse event" in approved["internal_note"] and "Amount" in approved["internal_note"]
    # Nobody types their name: the reviewer's token is what the trail records.
    assert "reviewer" not in approved and "customer_message" not in approved


def test_the_warehouse_inspects_every_line_with_what_the_scenario_found() -> None:
    detail = {"lines": [{"package_opened": True}, {"package_opened": False}]}
    scenario = Scenario("t", {}, "closed", receipt=({}, {"temperature_log_ok": True}))
    first, second = inspections(detail, scenario)
    assert first == {"line": 0, "seal_intact": False, "condition": "used",
                     "inspector": "warehouse.zhao", "passed": False}
    assert second["line"] == 1 and second["seal_intact"] is True
    assert second["temperature_log_ok"] is True and second["passed"] is True


# ------------------------------------------------------------------ --serve

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF_FIELD.search(html)
    assert found, "the login form has no CSRF field"
    return found.group(1)


def _printed(out: io.StringIO, marker: str, thread: threading.Thread) -> str:
    deadline = time.monotonic() + 120
    while marker not in out.getvalue():
        assert thread.is_alive(), out.getvalue()
        assert time.monotonic() < deadline, out.getvalue()
        time.sleep(0.1)
    return out.getvalue()


def _case_when(http: httpx.Client, url: str, auth: dict[str, str],
               done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        case: dict[str, Any] = http.get(url, headers=auth).raise_for_status().json()
        if done(case) or time.monotonic() > deadline:
            return case
        time.sleep(0.1)


def test_serve_prints_console_logins_and_keeps_working_new_requests(tmp_path: Path) -> None:
    out = io.StringIO()
    stop = threading.Event()
    results: list[DemoResult] = []
    thread = threading.Thread(target=lambda: results.append(run(
        cases=1, serve=True, database=str(tmp_path / "demo.db"),
        console=Console(file=out, width=200), stop=stop)), daemon=True)
    thread.start()
    try:
        printed = _printed(out, "Ctrl-C to stop", thread)
        found = re.search(r"(http://127\.0\.0\.1:\d+)/console/login", printed)
        assert found, printed
        base = found.group(1)
        logins = dict(re.findall(r"login (\S+) +password (\S+)", printed))
        assert set(logins) == {"reviewer.li", "warehouse.zhao", "auditor.sun", "quality.wu",
                               "admin.demo"}
        assert len(set(logins.values())) == 5

        with httpx.Client(base_url=base, timeout=30) as browser:
            assert browser.get("/console/me", follow_redirects=False).status_code == 303
            form = browser.get("/console/login")
            logged_in = browser.post("/console/login", follow_redirects=False, data={
                "name": "reviewer.li", "password": logins["reviewer.li"],
                "csrf_token": csrf_of(form.text), "next": "/console/"})
            assert logged_in.status_code == 303, logged_in.text
            me = browser.get("/console/me")
            assert me.status_code == 200 and "reviewer.li" in me.text

        # A consignee's recall link, as printed, opens their acknowledgement form.
        recall = re.search(re.escape(base) + r"(/status/recall/\S+)", printed)
        assert recall, printed
        with httpx.Client(base_url=base) as consignee:
            form = consignee.get(recall.group(1))
            assert form.status_code == 200 and 'name="quantity_held"' in form.text

        # A customer's status link, as printed, opens their page without a login.
        link = re.search(re.escape(base) + r"(/status/(?!recall/)\S+)", printed)
        assert link, printed
        with httpx.Client(base_url=base) as customer:
            page = customer.get(link.group(1))
            assert page.status_code == 200, page.text
            assert "noindex" in page.text

        # The printed command sends a new request; the worker that is still running takes
        # it to a person, and on after the reviewer's decision.
        command = re.search(r"refundbridge demo send (.+)", printed)
        assert command, printed
        sent = CliRunner().invoke(cli, ["demo", "send", *command.group(1).split()])
        assert sent.exit_code == 0, sent.output
        case_id = re.search(r"case (rc_\w+): " + re.escape(base) + r"/console/cases/",
                            sent.output)
        assert case_id, sent.output
        token = re.search(r"Bearer (\S+) +\(token:reviewer\.li\)", printed)
        assert token, printed
        reviewer = {"Authorization": f"Bearer {token.group(1)}"}
        url = f"/v1/cases/{case_id.group(1)}"
        with httpx.Client(base_url=base, timeout=30) as http:
            case = _case_when(http, url, reviewer, lambda c: c["state"] != "received")
            assert case["state"] == "awaiting_review", case
            http.post(f"{url}/review", headers=reviewer, json={
                "decision": "approve", "internal_note": "defect confirmed by phone"},
            ).raise_for_status()
            case = _case_when(http, url, reviewer, lambda c: c["state"] == "awaiting_return")
            assert case["state"] == "awaiting_return", case
            assert case["decisions"][-1]["decided_by"] == "token:reviewer.li"
            keeper = re.search(r"Bearer (\S+) +\(token:warehouse\.zhao\)", printed)
            assert keeper, printed
            http.post(f"{url}/receipt", headers={"Authorization": f"Bearer {keeper.group(1)}"},
                      json={"lines": [{"line": 0, "seal_intact": True, "condition": "used",
                                       "inspector": "warehouse.zhao"}]}).raise_for_status()
            case = _case_when(http, url, reviewer, lambda c: c["state"] == "closed")
            assert case["state"] == "closed", case
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert results and not results[0].stuck and not results[0].unexpected
