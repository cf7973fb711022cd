"""The units guard (G03) through the real app and workers: a unit an earlier case of the order
holds is not refunded again, however much money the order could still refund."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from refundbridge.bootstrap import Container
from tests.conftest import drain
from tests.factories import AUTH, REVIEWER_ACTOR, REVIEWER_AUTH, SHOP, request_body, signed
from tests.fakes.erpnext import ERPNextFake
from tests.fakes.stripe import StripeFake

GLU, BP = "GLU-METER-01", "BP-MON-01"
Providers = tuple[Any, StripeFake, ERPNextFake]


def _send(client: TestClient, body: dict[str, Any]) -> str:
    raw, headers = signed(body)
    answer = client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["case_id"])


def _one_meter(kind: str, paid: str, **overrides: Any) -> dict[str, Any]:
    """A request for one glucose meter (199.00) on an order that paid `paid`."""
    return request_body(kind=kind, **{"order.paid_total": paid, "lines.0.quantity": 1,
                                      "requested_amount": "199.00", **overrides})


def _again(first: dict[str, Any], kind: str) -> dict[str, Any]:
    """Another request of the same customer on the same order, for one meter again."""
    return _one_meter(kind, first["order"]["paid_total"], order=first["order"],
                      customer=first["customer"])


def _case(client: TestClient, case_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/cases/{case_id}", headers=AUTH)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _guard(case: dict[str, Any], decision: int = -1) -> dict[str, Any]:
    return next(r for r in case["decisions"][decision]["rules"] if r["id"] == "G03")


def _returned_and_closed(client: TestClient, container: Container,
                         body: dict[str, Any]) -> str:
    case_id = _send(client, body)
    drain(container)
    assert _case(client, case_id)["state"] == "awaiting_return"
    receipt = client.post(f"/v1/cases/{case_id}/receipt", headers=AUTH, json={"lines": [
        {"line": 0, "seal_intact": True, "condition": "as_new", "inspector": "wang.fang",
         "quantity": 1}]})
    assert receipt.status_code == 200, receipt.text
    drain(container)
    assert _case(client, case_id)["state"] == "closed"
    return case_id


@pytest.mark.parametrize("second_kind", ["refund_only", "return_and_refund"])
def test_a_unit_already_returned_is_not_refunded_again(
        client: TestClient, container: Container, providers: Providers,
        second_kind: str) -> None:
    _, stripe_fake, erp = providers
    # One meter and one monitor shipped and paid: after the meter's refund the order can
    # still refund 199.00, so the money guard alone lets a second meter refund through.
    first = _one_meter("return_and_refund", "398.00")
    erp.add_invoice(first["order"]["id"], [(GLU, 1, "199.00"), (BP, 1, "199.00")])
    _returned_and_closed(client, container, first)
    assert len(stripe_fake.posts) == 1 and len(erp.returns) == 1

    second = _send(client, _again(first, second_kind))
    drain(container)

    case = _case(client, second)
    assert case["state"] == "denied", case
    guard = _guard(case)
    assert guard["outcome"] == "deny"
    # In the customer's language (zh-CN), naming the SKU, what remains and what was asked.
    assert guard["message"].startswith(f"SKU {GLU}：申请 1 件")
    assert "仅剩 0 件" in guard["message"]
    assert len(stripe_fake.posts) == 1  # no money moved for the second case
    assert len(erp.returns) == 1


def test_the_other_unit_of_two_is_refunded_and_a_third_is_not(
        client: TestClient, container: Container, providers: Providers) -> None:
    _, stripe_fake, erp = providers
    first = _one_meter("return_and_refund", "597.00",
                       **{"lines.0.unit_price": "199.00"})
    erp.add_invoice(first["order"]["id"], [(GLU, 2, "199.00"), (BP, 1, "199.00")])
    _returned_and_closed(client, container, first)

    second = _send(client, _again(first, "refund_only"))
    drain(container)
    case = _case(client, second)
    assert case["state"] == "closed", case
    assert _guard(case, 0)["outcome"] == "pass"
    assert len(stripe_fake.posts) == 2 and len(erp.returns) == 2

    third = _send(client, _again(first, "refund_only"))
    drain(container)
    case = _case(client, third)
    assert case["state"] == "denied", case
    assert "仅剩 0 件" in _guard(case)["message"]
    assert len(stripe_fake.posts) == 2 and len(erp.returns) == 2


def test_a_reviewer_cannot_approve_a_unit_another_case_took(
        client: TestClient, container: Container, providers: Providers) -> None:
    _, stripe_fake, erp = providers
    first_body = _one_meter("refund_only", "398.00", **{"reason.code": "other"})
    erp.add_invoice(first_body["order"]["id"], [(GLU, 1, "199.00"), (BP, 1, "199.00")])
    first = _send(client, first_body)
    drain(container)
    assert _case(client, first)["state"] == "awaiting_review"

    # The one meter is asked for twice: while the first request waits for a person, the
    # second (a plain no-reason refund) goes to that person too instead of being paid.
    second = _send(client, _again(first_body, "refund_only"))
    drain(container)
    case = _case(client, second)
    assert case["state"] == "awaiting_review", case
    assert _guard(case)["outcome"] == "review"
    assert stripe_fake.posts == []

    for case_id in (second, first):
        decided = client.post(f"/v1/cases/{case_id}/review", headers=REVIEWER_AUTH, json={
            "decision": "approve", "internal_note": "checked"})
        assert decided.status_code == 200, decided.text
    drain(container)

    assert _case(client, second)["state"] == "closed"
    refused = _case(client, first)
    assert refused["state"] == "denied", refused
    assert refused["decisions"][-1]["decided_by"] == REVIEWER_ACTOR
    assert _guard(refused)["outcome"] == "deny"
    assert len(stripe_fake.posts) == 1 and len(erp.returns) == 1
