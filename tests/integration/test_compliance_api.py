"""The compliance engine through the product's surfaces: decisions stored with their rules,
dispositions and obligations; reassessment at receipt; the evaluate preview over HTTP and
from the command line. Real PostgreSQL and Redis; only third-party HTTP is faked."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from refundbridge.cli import app as cli
from refundbridge.core.errors import DuplicateDelivery
from refundbridge.core.money import Money
from refundbridge.core.ports import ExternalRefund
from refundbridge.core.services import record_external_refund
from tests.conftest import drain, open_case, stored_rows
from tests.factories import AUTH, REVIEWER_ACTOR, REVIEWER_AUTH, SHOP, request_body, signed

SHANGHAI = ZoneInfo("Asia/Shanghai")


def _case(client: Any, case_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/cases/{case_id}", headers=AUTH)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _rules(case: dict[str, Any], index: int = 0) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for rule in case["decisions"][index]["rules"]:
        found.setdefault(rule["id"], []).append(rule["outcome"])
    return found


def test_a_recalled_lot_is_refunded_outside_the_window_and_quarantined(client, container,
                                                                        providers):
    _, stripe_fake, erp = providers
    today = datetime.now(SHANGHAI).date()  # the shop's calendar
    recall = {"recalls": [{"sku": "GLU-METER-01", "lot": "L2401", "class": "I",
                           "notice_date": today.isoformat(),
                           "reference": "NMPA-2026-0099"}]}
    assert client.post("/v1/recalls", params={"shop": SHOP}, json=recall,
                       headers=AUTH).status_code == 200
    long_ago = datetime.now(UTC) - timedelta(days=40)
    case_id, _ = open_case(client, erp, kind="return_and_refund",
                           **{"order.delivered_at": long_ago.isoformat()})
    drain(container)

    case = _case(client, case_id)
    assert case["state"] == "awaiting_return"
    rules = _rules(case)
    assert rules["R02"] == ["deny"]  # no-reason window long past …
    assert rules["R13"] == ["approve"]  # … but the lot is recalled
    assert case["dispositions"] == [{"line": 0, "sku": "GLU-METER-01", "lot": "L2401",
                                     "serial": None, "disposition": "quarantine",
                                     "rule": "R13"}]
    notice = [o for o in case["obligations"] if o["kind"] == "recall_notice"]
    assert [o["due"] for o in notice] == [(today + timedelta(days=1)).isoformat()]

    receipt = client.post(f"/v1/cases/{case_id}/receipt", headers=AUTH, json={"lines": [
        {"line": 0, "seal_intact": True, "condition": "as_new", "inspector": "wang.fang"}]})
    assert receipt.status_code == 200, receipt.text
    drain(container)
    case = _case(client, case_id)
    assert case["state"] == "closed"
    # Even after a clean inspection a recalled unit never goes back on the shelf.
    assert [m["disposition"] for m in case["stock_moves"]] == ["quarantine"]
    assert len(stripe_fake.posts) == 1
    evidence = client.get(f"/v1/cases/{case_id}/evidence", headers=AUTH).json()
    assert evidence["verifies"] is True


def test_an_adverse_event_waits_for_a_person_and_the_unit_is_kept_as_evidence(
        client, container, providers):
    _, stripe_fake, erp = providers
    case_id, body = open_case(client, erp, kind="return_and_refund",
                              **{"reason.code": "defective",
                                 "reason.text": "扎针后手指一直出血，还起了红肿"})
    drain(container)
    case = _case(client, case_id)
    assert case["state"] == "awaiting_review"
    assert _rules(case)["R14"] == ["review"]
    report = [o for o in case["obligations"] if o["kind"] == "adverse_event_report"]
    requested = datetime.fromisoformat(body["requested_at"]).astimezone(UTC).date()
    assert len(report) == 1
    due = date.fromisoformat(report[0]["due"])
    assert 6 <= (due - requested).days <= 8  # 7 days in the shop's calendar
    assert stripe_fake.posts == []

    decided = client.post(f"/v1/cases/{case_id}/review", headers=REVIEWER_AUTH, json={
        "decision": "approve", "internal_note": "按不良事件上报；先退款"})
    assert decided.status_code == 200, decided.text
    # A possible adverse event takes four eyes: the first review only proposes.
    assert decided.json()["state"] == "awaiting_review"
    assert decided.json()["pending_review"]["proposed_by"] == REVIEWER_ACTOR
    confirmed = client.post(f"/v1/cases/{case_id}/review/confirm", headers=AUTH,
                            json={"agree": True})
    assert confirmed.status_code == 200, confirmed.text
    client.post(f"/v1/cases/{case_id}/receipt", headers=AUTH, json={"lines": [
        {"line": 0, "seal_intact": True, "condition": "used", "inspector": "wang.fang"}]})
    drain(container)
    case = _case(client, case_id)
    assert case["state"] == "closed"
    assert [d["decided_by"] for d in case["decisions"]] == ["rules",
                                                            "token:operator_tokens.0"]
    assert case["decisions"][-1]["proposed_by"] == REVIEWER_ACTOR
    assert [m["disposition"] for m in case["stock_moves"]] == ["keep_as_evidence"]
    assert erp.returns[0]["items"][0]["warehouse"] != "Stores - RB"


def test_receipt_reassesses_where_units_go_and_starts_the_refund_clock(client, container,
                                                                         providers):
    _, _, erp = providers
    case_id, _ = open_case(client, erp, kind="return_and_refund",
                           **{"lines.0.cold_chain": True})
    drain(container)
    before = _case(client, case_id)
    assert [d["disposition"] for d in before["dispositions"]] == ["pending_inspection"]
    deadline = [o for o in before["obligations"] if o["kind"] == "refund_deadline"]
    assert [o["due"] for o in deadline] == [None]

    client.post(f"/v1/cases/{case_id}/receipt", headers=AUTH, json={"lines": [
        {"line": 0, "seal_intact": True, "condition": "as_new", "inspector": "wang.fang",
         "temperature_log_ok": False}]})
    drain(container)
    case = _case(client, case_id)
    assert [d["disposition"] for d in case["dispositions"]] == ["quarantine"]
    assert [m["disposition"] for m in case["stock_moves"]] == ["quarantine"]
    deadline = [o for o in case["obligations"] if o["kind"] == "refund_deadline"]
    assert [o["due"] for o in deadline] != [None]
    assert any(e["name"] == "reassessed" for e in case["timeline"])


def test_a_refund_without_goods_approved_by_a_person_is_due_from_the_approval(
        client, container, providers):
    _, _, erp = providers
    case_id, _ = open_case(client, erp, **{"reason.code": "other"})
    drain(container)
    case = _case(client, case_id)
    assert case["state"] == "awaiting_review"
    assert [o for o in case["obligations"] if o["kind"] == "refund_deadline"] == []

    decided = client.post(f"/v1/cases/{case_id}/review", headers=REVIEWER_AUTH, json={
        "decision": "approve", "internal_note": "customer called; refund"})
    assert decided.status_code == 200, decided.text
    case = _case(client, case_id)
    approved_on = datetime.fromisoformat(case["decisions"][-1]["at"]).astimezone(SHANGHAI)
    deadline = [o["due"] for o in case["obligations"] if o["kind"] == "refund_deadline"]
    assert deadline == [(approved_on.date() + timedelta(days=7)).isoformat()]


def test_frequent_refunds_by_one_customer_go_to_review(client, container, providers):
    _, _, erp = providers
    states = []
    for _ in range(4):
        case_id, _ = open_case(client, erp, **{"customer.id": "cust-frequent"})
        drain(container)
        states.append(_case(client, case_id)["state"])
    assert states == ["closed", "closed", "closed", "awaiting_review"]


def test_a_refund_made_outside_counts_against_the_order(client, container, providers):
    _, stripe_fake, erp = providers
    body = request_body()
    outside = ExternalRefund(body["order"]["id"], "shopify-refund-1",
                             Money(Decimal("100.00"), "CNY"), "refunded at the counter")
    assert record_external_refund(container.api_services, SHOP, outside) is True
    assert record_external_refund(container.api_services, SHOP, outside) is False
    erp.add_invoice(body["order"]["id"], [("GLU-METER-01", 2, "199.00")])
    raw, headers = signed(body)  # asks for the whole 398.00 again
    case_id = client.post(f"/webhooks/{SHOP}/generic", content=raw,
                          headers=headers).json()["case_id"]
    drain(container)
    case = _case(client, case_id)
    assert case["state"] == "denied"
    assert _rules(case) == {"G01": ["deny"]}
    assert stripe_fake.posts == []


# ------------------------------------------------------------------ the preview


def test_evaluate_previews_the_decision_and_stores_nothing(client, db):
    body = request_body(kind="return_and_refund",
                        **{"lines.0.sterile": True, "lines.0.package_opened": True})
    before = stored_rows(db)
    answer = client.post("/v1/evaluate", params={"shop": SHOP}, headers=AUTH, json=body)
    assert answer.status_code == 200, answer.text
    decision = answer.json()
    assert decision["decision"] == "deny"
    assert {r["id"] for r in decision["rules"] if r["outcome"] == "deny"} == {"R05"}
    assert decision["refund_amount"] == "398.00" and decision["currency"] == "CNY"
    assert decision["lines"][0]["disposition"] == "scrap"
    assert stored_rows(db) == before


def test_evaluate_with_inspections_and_a_fixed_day(client):
    body = request_body(kind="return_and_refund", **{"lines.0.expiry_date": "2027-01-31"})
    wrapped = {"request": body, "inspections": [
        {"line": 0, "seal_intact": True, "condition": "as_new", "inspector": "qa"}]}
    on_time = client.post("/v1/evaluate", params={"shop": SHOP, "at": "2027-01-31"},
                          headers=AUTH, json=wrapped).json()
    late = client.post("/v1/evaluate", params={"shop": SHOP, "at": "2027-02-01"},
                       headers=AUTH, json=wrapped).json()
    assert on_time["lines"][0]["disposition"] != "scrap"
    assert late["lines"][0]["disposition"] == "scrap"  # expired yesterday
    assert late["evaluated_at"].startswith("2027-02-01T12:00:00+08:00")


def test_evaluate_names_the_bad_field(client):
    body = request_body(**{"lines.0.quantity": 0})
    answer = client.post("/v1/evaluate", params={"shop": SHOP}, headers=AUTH, json=body)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "lines.0.quantity"
    wrapped = client.post("/v1/evaluate", params={"shop": SHOP}, headers=AUTH,
                          json={"request": body})
    assert wrapped.json()["errors"][0]["field"] == "request.lines.0.quantity"
    assert client.post("/v1/evaluate", params={"shop": "nope"}, headers=AUTH,
                       json=body).status_code == 404
    assert client.post("/v1/evaluate", params={"shop": SHOP}, json=body).status_code == 401


def test_the_command_line_prints_the_same_decision(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("REFUNDBRIDGE_CONFIG", raising=False)
    body = request_body(**{"reason.code": "injury", "reason.severity": "serious_injury",
                           "requested_at": "2026-03-05T10:00:00+08:00",
                           "order.delivered_at": "2026-03-03T10:00:00+08:00"})
    case_file = tmp_path / "case.json"
    case_file.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
    result = CliRunner().invoke(cli, ["evaluate", str(case_file), "--at", "2026-03-06"])
    assert result.exit_code == 0, result.output
    decision = json.loads(result.output)
    assert decision["decision"] == "review"
    assert decision["evaluated_at"] == "2026-03-06T12:00:00+08:00"
    assert [(o["kind"], o["due"]) for o in decision["obligations"]
            if o["kind"] == "adverse_event_report"] == [("adverse_event_report",
                                                         "2026-03-25")]
    again = CliRunner().invoke(cli, ["evaluate", str(case_file), "--at", "2026-03-06"])
    assert again.output == result.output  # reproducible

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(request_body(**{"order.currency": "XYZ"})), encoding="utf-8")
    refused = CliRunner().invoke(cli, ["evaluate", str(bad)])
    assert refused.exit_code == 2
    assert "order.currency" in refused.output


def test_a_connector_fingerprint_makes_a_redelivery_a_replay(container):
    from refundbridge.core.request import NormalizedRefundRequest
    from refundbridge.core.services import receive_request

    body = request_body()
    first = NormalizedRefundRequest.model_validate(body)
    moved_on = NormalizedRefundRequest.model_validate(
        {**body, "customer": {**body["customer"], "email": "changed@example.com"}})
    svc = container.api_services
    opened = receive_request(svc, SHOP, "shopify", first, "shopify:body-digest")
    again = receive_request(svc, SHOP, "shopify", moved_on, "shopify:body-digest")
    assert opened.created and not again.created and again.case_id == opened.case_id
    with pytest.raises(DuplicateDelivery) as conflict:
        receive_request(svc, SHOP, "shopify", moved_on, "shopify:another-body")
    assert conflict.value.case_id == opened.case_id and not conflict.value.same_body
