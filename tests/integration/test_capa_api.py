"""`/v1/capa-records`: open from a case (its lots taken, not retyped) or from a signal, walk
every step, read the trail; roles and shops; escalation into a recall campaign (once, even
raced); and every hostile input a clear 4xx naming the field, never a 500."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from refundbridge.api.app import create_app
from refundbridge.bootstrap import Container
from refundbridge.config.settings import ApiTokenSettings
from refundbridge.core.access import OperatorRole
from refundbridge.core.audit import verify_chain
from refundbridge.core.capa import CapaState
from refundbridge.core.services.capa import escalate_capa
from refundbridge.core.signals import (
    Crossing,
    QualitySignal,
    SignalPolicy,
    thresholds,
    window_containing,
)
from refundbridge.store import tables as t
from tests.conftest import drain
from tests.console.kit import open_in
from tests.factories import AUTH, REVIEWER_AUTH, SHOP
from tests.integration.test_recall_campaigns import shipments

QA_TOKEN = "qa_" + secrets.token_hex(16)
QA = {"Authorization": f"Bearer {QA_TOKEN}"}
OTHER_QA_TOKEN = "qb_" + secrets.token_hex(16)
OTHER_QA = {"Authorization": f"Bearer {OTHER_QA_TOKEN}"}


@pytest.fixture
def api(campaign_container: Callable[..., Container]) -> tuple[Container, TestClient]:
    container = campaign_container(shipments(6))
    settings = container.settings
    tokens = [*settings.api_tokens,
              ApiTokenSettings(name="zhou.qa", token=SecretStr(QA_TOKEN),
                               role=OperatorRole.QUALITY, shops=[SHOP]),
              ApiTokenSettings(name="other.qa", token=SecretStr(OTHER_QA_TOKEN),
                               role=OperatorRole.QUALITY, shops=["beta-health"])]
    container.settings = settings.model_copy(update={"api_tokens": tokens})
    return container, TestClient(create_app(container))


def opened(client: TestClient, **body: Any) -> dict[str, Any]:
    case_id = open_in(client, None)
    answer = client.post("/v1/capa-records", json={
        "shop": SHOP, "problem": "Three meters of lot L2401 read 20 % high",
        "cases": [case_id], **body}, headers=QA)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def step(client: TestClient, capa_id: str, path: str, body: dict[str, Any],
         auth: dict[str, str] = QA) -> dict[str, Any]:
    answer = client.post(f"/v1/capa-records/{capa_id}/{path}", json=body, headers=auth)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def walk_to_effective(client: TestClient, capa_id: str) -> None:
    step(client, capa_id, "investigation", {"note": "Pulled the retained samples"})
    step(client, capa_id, "root-cause", {"root_cause": "Wrong calibration code printed"})
    step(client, capa_id, "actions", {"kind": "corrective", "description": "Relabel",
                                      "owner": "wang.wh", "due": "2026-12-20"})
    step(client, capa_id, "actions", {"kind": "preventive", "description": "Check codes",
                                      "owner": "li.qa", "due": "2027-01-15"})
    step(client, capa_id, "actions/1/complete", {"note": "Relabelled 40 boxes"})
    done = step(client, capa_id, "actions/2/complete", {})
    assert done["state"] == "actions_done"
    step(client, capa_id, "effectiveness-check", {
        "measure": "No quality return of lot L2401 for 60 days", "due": "2027-03-01"})
    step(client, capa_id, "effectiveness-result", {"result": "effective",
                                                   "note": "None in 60 days"})


def test_a_capa_from_a_case_through_every_step_with_its_trail(
        api: tuple[Container, TestClient]) -> None:
    _container, client = api
    capa = opened(client)
    assert capa["created"] and capa["state"] == "open"
    # The case's product and lot, taken from the case: nobody typed them.
    assert capa["lots"] == [{"sku": "GLU-METER-01", "lot": "L2401"}]
    assert capa["next_steps"] == ["start_investigation", "cancel", "escalate"]
    capa_id = capa["id"]
    walk_to_effective(client, capa_id)
    closed = step(client, capa_id, "close", {"note": "Effective: closed"})
    assert closed["state"] == "closed" and closed["closed_by"] == "token:zhou.qa"
    assert [a["done_by"] for a in closed["actions"]] == ["token:zhou.qa"] * 2
    shown = client.get(f"/v1/capa-records/{capa_id}", headers=REVIEWER_AUTH).json()
    audit = shown["audit"]
    assert audit["verifies"] and audit["events"] == 11
    assert [e["name"] for e in audit["trail"]] == [
        "open", "start_investigation", "record_root_cause", "add_action", "add_action",
        "complete_action", "complete_action", "actions_done", "plan_effectiveness_check",
        "check_effective", "close"]
    assert {e["actor"] for e in audit["trail"]} == {"token:zhou.qa"}
    listed = client.get(f"/v1/capa-records?shop={SHOP}&state=closed", headers=AUTH).json()
    assert [r["id"] for r in listed["capa_records"]] == [capa_id]
    assert client.get("/v1/capa-records?state=open", headers=AUTH).json()[
        "capa_records"] == []


def test_roles_and_shops(api: tuple[Container, TestClient]) -> None:
    _container, client = api
    capa_id = opened(client)["id"]
    refused = client.post(f"/v1/capa-records/{capa_id}/investigation", json={},
                          headers=REVIEWER_AUTH)
    assert refused.status_code == 403
    assert client.post("/v1/capa-records", json={"shop": SHOP, "problem": "x",
                                                  "lots": [{"sku": "A"}]},
                       headers=REVIEWER_AUTH).status_code == 403
    # Another shop's quality manager: as if it did not exist.
    assert client.get(f"/v1/capa-records/{capa_id}", headers=OTHER_QA).status_code == 404
    assert client.post(f"/v1/capa-records/{capa_id}/investigation", json={},
                       headers=OTHER_QA).status_code == 404
    assert client.get("/v1/capa-records", headers=OTHER_QA).json()["capa_records"] == []
    # A case of the shop only: another shop's case (or none) is named.
    answer = client.post("/v1/capa-records", json={"shop": SHOP, "problem": "x",
                                                   "cases": ["case_nope"]}, headers=QA)
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "cases[0]"


def test_from_a_signal_one_record_however_often_it_is_opened(
        api: tuple[Container, TestClient]) -> None:
    container, client = api
    signal_id = raise_signal(container, "GLU-METER-01", "L2401", datetime.now(UTC))
    body = {"shop": SHOP, "problem": "Signal: 3 quality returns of L2401 in 30 days",
            "signal": signal_id, "lots": [{"sku": "GLU-METER-01", "lot": "L2401"}]}
    first = client.post("/v1/capa-records", json=body, headers=QA).json()
    again = client.post("/v1/capa-records", json={**body, "problem": "typed again"},
                        headers=QA).json()
    assert first["created"] and not again["created"] and again["id"] == first["id"]
    assert again["problem"] == body["problem"] and again["signal"] == signal_id
    retried = [client.post("/v1/capa-records", json={
        "shop": SHOP, "problem": "p", "lots": [{"sku": "X"}], "request_id": "r-1"},
        headers=QA).json() for _ in range(2)]
    assert retried[0]["id"] == retried[1]["id"] and not retried[1]["created"]


def test_escalation_opens_the_campaign_of_the_capas_lots_once(
        api: tuple[Container, TestClient]) -> None:
    container, client = api
    capa_id = opened(client)["id"]
    step(client, capa_id, "investigation", {})
    first = step(client, capa_id, "escalate", {"reference": "RC-CAPA-1", "class": "II",
                                               "actions": ["stop_use", "return"]})
    assert first["created"] and first["campaign_id"].startswith("rcp_")
    campaign = container.campaigns.get(first["campaign_id"])
    assert campaign.capa_id == capa_id
    assert (campaign.notice.sku, campaign.notice.lots) == ("GLU-METER-01", ("L2401",))
    assert campaign.notice.reference == "RC-CAPA-1"
    events = container.campaigns.events(campaign.id)
    assert [e.name for e in events] == ["open", "from_capa"]
    assert events[1].data == {"capa_id": capa_id} and events[1].actor == "token:zhou.qa"
    trail = client.get(f"/v1/capa-records/{capa_id}", headers=QA).json()["audit"]
    assert [e["name"] for e in trail["trail"]][-2:] == ["escalate", "campaign_opened"]
    assert trail["trail"][-1]["data"]["campaign_id"] == campaign.id
    # A second escalation, whatever it says, changes nothing.
    again = step(client, capa_id, "escalate", {"reference": "RC-OTHER", "class": "I",
                                               "actions": ["destroy"]})
    assert not again["created"] and again["campaign_id"] == campaign.id
    assert client.get(f"/v1/capa-records/{capa_id}", headers=QA).json()["audit"][
        "events"] == trail["events"]
    with container.engine.connect() as conn:
        assert conn.execute(t.recall_campaigns.select()).all().__len__() == 1
    assert "escalate" not in again["next_steps"]
    drain(container)  # the campaign runs as any other: the ERP walk, the notices
    assert container.campaigns.counts(campaign.id).consignees == 6
    assert verify_chain(container.campaigns.events(campaign.id)).verifies


def test_two_escalations_racing_open_one_campaign(
        api: tuple[Container, TestClient]) -> None:
    container, client = api
    capa_id = opened(client)["id"]
    svc = container.api_services
    barrier = threading.Barrier(2)
    results: list[str] = []
    errors: list[BaseException] = []

    def escalate(reference: str) -> None:
        barrier.wait()
        try:
            results.append(escalate_capa(svc, capa_id, reference=reference, recall_class="I",
                                         actions=["return"], actor="token:zhou.qa"
                                         ).campaign_id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=escalate, args=(ref,)) for ref in ("RC-A", "RC-B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(set(results)) == 1
    with container.engine.connect() as conn:
        assert len(conn.execute(t.recall_campaigns.select()).all()) == 1
    record = container.api_services.capas.get(capa_id)  # type: ignore[union-attr]
    names = [e.name for e in container.api_services.capas.events(capa_id)]  # type: ignore[union-attr]
    assert names.count("escalate") == 1 and names.count("campaign_opened") == 1
    assert record.campaign_id == results[0]


def test_two_operators_completing_steps_at_once_lose_nothing(
        api: tuple[Container, TestClient]) -> None:
    _container, client = api
    capa_id = opened(client)["id"]
    step(client, capa_id, "investigation", {})
    barrier = threading.Barrier(4)
    codes: list[int] = []

    def add(n: int) -> None:
        barrier.wait()
        codes.append(client.post(f"/v1/capa-records/{capa_id}/actions", json={
            "kind": "corrective", "description": f"action {n}", "owner": "wang",
            "due": "2026-12-31"}, headers=QA).status_code)

    threads = [threading.Thread(target=add, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [200] * 4
    shown = client.get(f"/v1/capa-records/{capa_id}", headers=QA).json()
    assert sorted(a["number"] for a in shown["actions"]) == [1, 2, 3, 4]
    assert shown["audit"]["verifies"] and shown["audit"]["events"] == 6


LONG = "x" * 100_000
BAD_ID = "capa_" + "0" * 20


def hostile_cases() -> list[tuple[str, str, Any, int, str]]:
    """(method, path under the record, body, status, a field the answer must name);
    `{id}` is a live record's id (in state open)."""
    return [
        ("POST", "/v1/capa-records", {}, 422, "shop"),
        ("POST", "/v1/capa-records", {"shop": SHOP}, 422, "problem"),
        ("POST", "/v1/capa-records", {"shop": SHOP, "problem": LONG}, 422, "problem"),
        ("POST", "/v1/capa-records", {"shop": SHOP, "problem": "p", "cases": "c"}, 422,
         "cases"),
        ("POST", "/v1/capa-records", {"shop": SHOP, "problem": "p", "cases": [LONG]}, 422,
         "cases.0"),
        ("POST", "/v1/capa-records", {"shop": SHOP, "problem": "p",
                                      "lots": [{"sku": "A", "lot": LONG}]}, 422, "lots.0.lot"),
        ("POST", "/v1/capa-records", {"shop": SHOP, "problem": "p",
                                      "lots": [{"lot": "L"}]}, 422, "lots.0.sku"),
        ("POST", "/v1/capa-records", {"shop": SHOP, "problem": "p\x00",
                                      "lots": [{"sku": "A"}]}, 422, "problem"),
        ("POST", "/v1/capa-records", {"shop": SHOP, "problem": "p"}, 422, "cases"),
        ("POST", "/v1/capa-records", {"shop": SHOP, "problem": "p", "signal": LONG}, 422,
         "signal"),
        ("POST", "/v1/capa-records", {"shop": SHOP, "problem": "p", "lots": [{"sku": "A"}],
                                      "extra": 1}, 422, "extra"),
        ("POST", "/v1/capa-records", {"shop": "nowhere", "problem": "p",
                                      "lots": [{"sku": "A"}]}, 404, "nowhere"),
        ("POST", "/v1/capa-records", {"shop": SHOP, "problem": "p", "lots": [{"sku": "A"}],
                                      "request_id": ""}, 422, "request_id"),
        ("GET", "/v1/capa-records?state=sideways", None, 422, "state"),
        ("GET", f"/v1/capa-records?shop={'s' * 100}", None, 422, "shop"),
        ("GET", "/v1/capa-records/nope", None, 404, "nope"),
        ("GET", f"/v1/capa-records/{BAD_ID}", None, 404, BAD_ID),
        ("GET", f"/v1/capa-records/{'c' * 5000}", None, 422, "capa_id"),
        ("POST", f"/v1/capa-records/{BAD_ID}/investigation", {}, 404, BAD_ID),
        ("POST", "/v1/capa-records/{id}/investigation", {"note": 5}, 422, "note"),
        ("POST", "/v1/capa-records/{id}/investigation", {"note": LONG}, 422, "note"),
        ("POST", "/v1/capa-records/{id}/root-cause", {}, 422, "root_cause"),
        ("POST", "/v1/capa-records/{id}/root-cause", {"root_cause": "too early"}, 409,
         "record_root_cause"),
        ("POST", "/v1/capa-records/{id}/actions", {"kind": "corrective"}, 422,
         "description"),
        ("POST", "/v1/capa-records/{id}/actions", {
            "kind": "sideways", "description": "d", "owner": "o", "due": "2026-12-01"}, 422,
         "kind"),
        ("POST", "/v1/capa-records/{id}/actions", {
            "kind": "corrective", "description": "d", "owner": "o", "due": "soon"}, 422,
         "due"),
        ("POST", "/v1/capa-records/{id}/actions", {
            "kind": "corrective", "description": "d", "owner": "o\nx", "due": "2026-12-01"},
         422, "owner"),
        ("POST", "/v1/capa-records/{id}/actions", {
            "kind": "corrective", "description": "d", "owner": "o", "due": "2026-12-01"},
         409, "add_action"),
        ("POST", "/v1/capa-records/{id}/actions/0/complete", {}, 422, "number"),
        ("POST", "/v1/capa-records/{id}/actions/abc/complete", {}, 422, "number"),
        ("POST", "/v1/capa-records/{id}/actions/1/complete", {}, 409, "complete_action"),
        ("POST", "/v1/capa-records/{id}/effectiveness-check", {"measure": "m"}, 422, "due"),
        ("POST", "/v1/capa-records/{id}/effectiveness-check", {
            "measure": "m", "due": "2027-01-01"}, 409, "plan_effectiveness_check"),
        ("POST", "/v1/capa-records/{id}/effectiveness-result", {
            "result": "maybe", "note": "n"}, 422, "result"),
        ("POST", "/v1/capa-records/{id}/effectiveness-result", {
            "result": "effective", "note": "n"}, 409, "check_effective"),
        ("POST", "/v1/capa-records/{id}/close", {"note": ""}, 422, "note"),
        ("POST", "/v1/capa-records/{id}/close", {"note": "n"}, 409, "close"),
        ("POST", "/v1/capa-records/{id}/cancel", {"reason": ["x"]}, 422, "reason"),
        ("POST", "/v1/capa-records/{id}/escalate", {"reference": "R", "class": "IV",
                                                    "actions": ["return"]}, 422, "class"),
        ("POST", "/v1/capa-records/{id}/escalate", {"reference": "R", "class": "I",
                                                    "actions": []}, 422, "actions"),
        ("POST", "/v1/capa-records/{id}/escalate", {"reference": "R", "class": "I",
                                                    "actions": ["pray"]}, 422, "actions.0"),
        ("POST", "/v1/capa-records/{id}/escalate", {"reference": LONG, "class": "I",
                                                    "actions": ["return"]}, 422, "reference"),
        ("POST", "/v1/capa-records/{id}/escalate", {"reference": "R", "class": "I",
                                                    "actions": ["return"], "sku": "NOPE"},
         422, "sku"),
    ]


def test_hostile_input_is_a_clear_4xx_naming_the_field(
        api: tuple[Container, TestClient]) -> None:
    _container, client = api
    capa_id = opened(client)["id"]
    for method, path, body, status, named in hostile_cases():
        url = path.replace("{id}", capa_id)
        answer = (client.get(url, headers=QA) if method == "GET"
                  else client.post(url, json=body, headers=QA))
        assert answer.status_code == status, (method, path, answer.status_code,
                                              answer.text[:300])
        assert named in answer.text, (path, named, answer.text[:300])
    # Nothing above changed the record but its opening.
    shown = client.get(f"/v1/capa-records/{capa_id}", headers=QA).json()
    assert shown["state"] == CapaState.OPEN.value and shown["audit"]["events"] == 1
    # And a wrong state after the end: a closed record refuses every step.
    assert client.post(f"/v1/capa-records/{capa_id}/cancel", json={"reason": "dup"},
                       headers=QA).status_code == 200
    for path, body in (("investigation", {}), ("cancel", {"reason": "again"}),
                       ("escalate", {"reference": "R", "class": "I", "actions": ["return"]})):
        answer = client.post(f"/v1/capa-records/{capa_id}/{path}", json=body, headers=QA)
        assert answer.status_code == 409, (path, answer.text)


def test_no_token_is_a_401(api: tuple[Container, TestClient]) -> None:
    _container, client = api
    assert client.get("/v1/capa-records").status_code == 401
    assert client.post(f"/v1/capa-records/{BAD_ID}/close", json={"note": "n"}
                       ).status_code == 401


def raise_signal(container: Container, sku: str, lot: str | None, at: datetime,
                 cases: tuple[str, ...] = ()) -> str:
    """A quality signal raised as the signal job raises one (core/signals.py); its id."""
    threshold = thresholds(SignalPolicy())[0]
    crossing = Crossing(SHOP, sku, lot, threshold,
                        window_containing(at.date(), threshold.window_days), cases,
                        units=len(cases), shipped=None, rate_percent=None)
    signal = QualitySignal.raise_for(crossing, at, email=None, phone=None)
    assert container.api_services.signals is not None
    assert container.api_services.signals.add(signal)
    return signal.id


def test_from_a_signal_its_lot_is_taken_and_recurrence_is_counted(
        api: tuple[Container, TestClient]) -> None:
    container, client = api
    now = datetime.now(UTC)
    signal_id = raise_signal(container, "GLU-METER-01", "L2401", now - timedelta(days=30))
    first = client.post("/v1/capa-records", json={
        "shop": SHOP, "problem": "Signal on L2401", "signal": signal_id}, headers=QA)
    assert first.status_code == 201, first.text
    capa_id = first.json()["id"]
    assert first.json()["lots"] == [{"sku": "GLU-METER-01", "lot": "L2401"}]
    # The signal is answered by the record, on its own trail.
    signal = container.api_services.signals.get(signal_id)  # type: ignore[union-attr]
    assert signal.capa_id == capa_id and signal.state.value == "linked"
    unknown = client.post("/v1/capa-records", json={
        "shop": SHOP, "problem": "p", "signal": "sig-none"}, headers=QA)
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "signal"
    other = client.post("/v1/capa-records", json={
        "shop": SHOP, "problem": "Another product", "lots": [{"sku": "OTHER-1"}]},
        headers=QA).json()["id"]
    for record in (capa_id, other):
        walk_to_effective(client, record)
        step(client, record, "close", {"note": "closed"})
    figures = client.get(f"/v1/capa-records/kpis?shop={SHOP}", headers=QA).json()
    assert figures["closed"] == 2 and figures["recurrences"] == 0
    # A new signal on the meter after its CAPA closed: a recurrence. One on the other
    # product raised before its CAPA closed is not.
    raise_signal(container, "GLU-METER-01", "L2402", now + timedelta(minutes=5))
    raise_signal(container, "OTHER-1", None, now - timedelta(days=3))
    figures = client.get(f"/v1/capa-records/kpis?shop={SHOP}", headers=REVIEWER_AUTH).json()
    assert figures["recurrences"] == 1 and figures["recurrence_skus"] == ["GLU-METER-01"]
    assert figures["open_total"] == 0 and figures["actions_done"] == 4
    assert client.get("/v1/capa-records/kpis?shop=nowhere", headers=AUTH).status_code == 404
    assert container.api_services.capas is not None
