"""`/v1/recall-campaigns`: open, follow, page the consignees, close; scoped by shop, then
role; every hostile input a clear 4xx naming the field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from refundbridge.api.app import create_app
from refundbridge.bootstrap import Container
from tests.conftest import drain
from tests.factories import AUTH, REVIEWER_AUTH, SHOP
from tests.integration.test_recall_campaigns import shipments

BODY: dict[str, Any] = {"shop": SHOP, "reference": "NMPA-2026-0042", "class": "I",
                        "notice_date": "2026-12-01", "sku": "GLU-METER-01",
                        "lots": ["L2401"], "actions": ["stop_use", "return"],
                        "instructions": "Stop use.\nReturn the meter."}


@pytest.fixture
def api(campaign_container: Callable[..., Container]) -> tuple[Container, TestClient]:
    container = campaign_container(shipments(12))
    return container, TestClient(create_app(container))


def test_open_follow_page_and_close(api: tuple[Container, TestClient]) -> None:
    container, client = api
    opened = client.post("/v1/recall-campaigns", json=BODY, headers=AUTH)
    assert opened.status_code == 201, opened.text
    campaign = opened.json()
    assert campaign["created"] and campaign["state"] == "identifying"
    assert campaign["notice_due"] == "2026-12-02"  # class I: one day
    again = client.post("/v1/recall-campaigns", json={**BODY, "class": "III"}, headers=AUTH)
    assert again.json()["created"] is False and again.json()["id"] == campaign["id"]
    drain(container)
    shown = client.get(f"/v1/recall-campaigns/{campaign['id']}", headers=AUTH).json()
    assert shown["state"] == "monitoring" and shown["audit"]["verifies"]
    assert shown["counts"]["consignees"] == shown["counts"]["notified"] == 12
    assert shown["notice"]["class"] == "I"  # the second open changed nothing
    first = client.get(f"/v1/recall-campaigns/{campaign['id']}/consignees?limit=5",
                       headers=AUTH).json()
    second = client.get(f"/v1/recall-campaigns/{campaign['id']}/consignees?limit=5"
                        f"&after={first['next_after']}", headers=AUTH).json()
    keys = [c["key"] for c in first["consignees"] + second["consignees"]]
    assert len(keys) == 10 == len(set(keys))
    listed = client.get(f"/v1/recall-campaigns?shop={SHOP}", headers=AUTH).json()
    assert [c["id"] for c in listed["campaigns"]] == [campaign["id"]]
    # A reviewer reads, but may not close; closing needs the effectiveness check's result.
    assert client.get(f"/v1/recall-campaigns/{campaign['id']}",
                      headers=REVIEWER_AUTH).status_code == 200
    refused = client.post(f"/v1/recall-campaigns/{campaign['id']}/close",
                          json={"note": "done"}, headers=REVIEWER_AUTH)
    assert refused.status_code == 403
    empty = client.post(f"/v1/recall-campaigns/{campaign['id']}/close", json={"note": ""},
                        headers=AUTH)
    assert empty.status_code == 422 and "note" in empty.text
    closed = client.post(f"/v1/recall-campaigns/{campaign['id']}/close",
                         json={"note": "Level A: 12 of 12 told; 0 answered yet"},
                         headers=AUTH)
    assert closed.status_code == 200, closed.text
    assert closed.json()["state"] == "closed"
    twice = client.post(f"/v1/recall-campaigns/{campaign['id']}/close",
                        json={"note": "again"}, headers=AUTH)
    assert twice.status_code == 409


def test_a_reviewer_may_not_open_one_and_an_unknown_campaign_is_404(
        api: tuple[Container, TestClient]) -> None:
    _, client = api
    assert client.post("/v1/recall-campaigns", json=BODY,
                       headers=REVIEWER_AUTH).status_code == 403
    assert client.get("/v1/recall-campaigns/rcp_nothing", headers=AUTH).status_code == 404
    assert client.get("/v1/recall-campaigns/rcp_nothing/consignees",
                      headers=AUTH).status_code == 404
    assert client.post("/v1/recall-campaigns", json=BODY).status_code == 401


HOSTILE: list[tuple[str, dict[str, Any], str]] = [
    ("no reference", {"reference": None}, "reference"),
    ("blank reference", {"reference": "   "}, "reference"),
    ("long reference", {"reference": "R" * 500}, "reference"),
    ("control characters", {"reference": "RC\x00-1"}, "reference"),
    ("bad class", {"class": "IV"}, "class"),
    ("bad date", {"notice_date": "2026-13-40"}, "notice_date"),
    ("no product", {"sku": None}, "sku"),
    ("bad gtin", {"sku": None, "gtin": "12345"}, "gtin"),
    ("gtin check digit", {"gtin": "06901234567891"}, "gtin"),
    ("too many lots", {"lots": ["L"] * 501}, "lots"),
    ("long lot", {"lots": ["L" * 65]}, "lots.0"),
    ("empty lot", {"lots": [""]}, "lots"),
    ("unknown action", {"actions": ["pray"]}, "actions"),
    ("no action", {"actions": []}, "actions"),
    ("long instructions", {"instructions": "x" * 4001}, "instructions"),
    ("level B without percent", {"check_level": "B"}, "check_percent"),
    ("level C with 50 %", {"check_level": "C", "check_percent": 50}, "check_percent"),
    ("unknown field", {"reviewer": "me"}, "reviewer"),
    ("unknown shop", {"shop": "nope"}, "shop"),
    ("number as text", {"reference": 12}, "reference"),
]


@pytest.mark.parametrize(("change", "field"), [(c, f) for _, c, f in HOSTILE],
                         ids=[name for name, _, _ in HOSTILE])
def test_hostile_campaign_bodies_get_a_clear_4xx(api: tuple[Container, TestClient],
                                                 change: dict[str, Any], field: str) -> None:
    _, client = api
    body = {**BODY, **change}
    answer = client.post("/v1/recall-campaigns", json=body, headers=AUTH)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert field in answer.text
    assert client.get("/v1/recall-campaigns", headers=AUTH).json()["campaigns"] == []


def test_a_body_that_is_not_json_is_a_400(api: tuple[Container, TestClient]) -> None:
    _, client = api
    answer = client.post("/v1/recall-campaigns", content=b"\xff{", headers={
        **AUTH, "Content-Type": "application/json"})
    assert answer.status_code == 400 and "parsing the body" in answer.text
