"""Issue 8 item 6 through the product: an injury described in Chinese free text, an opened
outer box, and an exclusion the buyer confirmed on the order line. Real PostgreSQL and Redis;
only third-party HTTP is faked."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from refundbridge.api.app import create_app
from tests.conftest import drain, open_case
from tests.factories import AUTH


def _case(client: Any, case_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/cases/{case_id}", headers=AUTH)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _rules(case: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for rule in case["decisions"][0]["rules"]:
        found.setdefault(rule["id"], []).append(rule["outcome"])
    return found


def _receive_as_new(client: Any, container: Any, case_id: str) -> dict[str, Any]:
    receipt = client.post(f"/v1/cases/{case_id}/receipt", headers=AUTH, json={"lines": [
        {"line": 0, "seal_intact": True, "condition": "as_new", "inspector": "wang.fang"}]})
    assert receipt.status_code == 200, receipt.text
    drain(container)
    return _case(client, case_id)


def test_an_injury_described_in_chinese_goes_to_a_person_as_an_adverse_event(
        client, container, providers):
    _, stripe_fake, erp = providers
    case_id, _ = open_case(client, erp, kind="return_and_refund",
                           **{"reason.code": "changed_mind",
                              "reason.text": "用了之后手上起了一片红疹，不想用了"})
    drain(container)
    case = _case(client, case_id)
    assert case["state"] == "awaiting_review"
    assert _rules(case)["R14"] == ["review"]
    assert [d["disposition"] for d in case["dispositions"]] == ["keep_as_evidence"]
    assert [o["kind"] for o in case["obligations"]].count("adverse_event_report") == 1
    assert stripe_fake.posts == []


def test_a_shops_own_injury_term_is_read(make_container, providers):
    _, stripe_fake, erp = providers
    container = make_container(policy={
        "refund_timing": "on_receipt", "auto_approve_limits": {"CNY": "500"},
        "injury_terms": ["视物模糊"]})
    with TestClient(create_app(container)) as client:
        case_id, _ = open_case(client, erp, **{"reason.text": "戴上以后视物模糊"})
        drain(container)
        case = _case(client, case_id)
    assert case["state"] == "awaiting_review"
    assert _rules(case)["R14"] == ["review"]
    assert stripe_fake.posts == []


def test_a_device_whose_outer_box_was_opened_is_not_restocked_as_new(client, container,
                                                                       providers):
    _, _, erp = providers
    case_id, _ = open_case(client, erp, kind="return_and_refund",
                           **{"lines.0.package_opened": True})
    drain(container)
    assert _case(client, case_id)["state"] == "awaiting_return"
    case = _receive_as_new(client, container, case_id)
    assert case["state"] == "closed"
    assert [(d["disposition"], d["rule"]) for d in case["dispositions"]] == [
        ("quarantine", "R12")]
    assert [m["disposition"] for m in case["stock_moves"]] == ["quarantine"]
    assert erp.returns[0]["items"][0]["warehouse"] != "Stores - RB"


def test_a_shop_that_resells_open_box_units_restocks_them(make_container, providers):
    _, _, erp = providers
    container = make_container(policy={
        "refund_timing": "on_receipt", "auto_approve_limits": {"CNY": "500"},
        "open_box_resale": True})
    with TestClient(create_app(container)) as client:
        case_id, _ = open_case(client, erp, kind="return_and_refund",
                               **{"lines.0.package_opened": True})
        drain(container)
        case = _receive_as_new(client, container, case_id)
    assert [m["disposition"] for m in case["stock_moves"]] == ["restock"]


def test_an_exclusion_the_buyer_confirmed_on_the_order_line_is_honoured(client, container,
                                                                       providers):
    _, stripe_fake, erp = providers
    case_id, _ = open_case(client, erp, kind="return_and_refund",
                           **{"lines.0.no_reason_exclusion_confirmed": True})
    drain(container)
    case = _case(client, case_id)
    assert case["state"] == "denied"
    assert _rules(case)["R04"] == ["deny"]
    assert stripe_fake.posts == []
