"""`refundbridge demo` end to end: its own embedded stack (SQLite, fakeredis, uvicorn and
aiosmtpd on 127.0.0.1, sandbox connectors), and the compliance scenarios it scripts."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from refundbridge.demo import (
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
    assert (result.recalls_added, result.recalls_readded) == (3, 0)
    assert [(title, p["decision"]) for title, p in result.previews] == [
        ("recalled lot, asked on day 45", "approve"), ("no-reason return on day 8", "deny")]

    found = result.findings
    # Every case the rules sent to a person was decided by the reviewer, both ways.
    sent_to_review = found.decisions[("rules", "review")]
    assert sent_to_review == (found.decisions[("reviewer", "approve")]
                              + found.decisions[("reviewer", "deny")])
    assert found.decisions[("reviewer", "approve")] > found.decisions[("reviewer", "deny")] > 0
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
                 "scenarios as expected"):
        assert line in report
    assert "17/17" in report


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
    assert approved["reviewer"] and "customer_message" not in approved


def test_the_warehouse_inspects_every_line_with_what_the_scenario_found() -> None:
    detail = {"lines": [{"package_opened": True}, {"package_opened": False}]}
    scenario = Scenario("t", {}, "closed", receipt=({}, {"temperature_log_ok": True}))
    first, second = inspections(detail, scenario)
    assert first == {"line": 0, "seal_intact": False, "condition": "used",
                     "inspector": "warehouse.wang", "passed": False}
    assert second["line"] == 1 and second["seal_intact"] is True
    assert second["temperature_log_ok"] is True and second["passed"] is True
