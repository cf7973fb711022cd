"""Through the real app, workers and store, with Stripe faked at the HTTP boundary: a refund in
a currency whose Stripe units differ from CLDR's pays the full amount, and one Stripe cannot
represent fails the case visibly with no call made."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from refundbridge.api.app import create_app
from refundbridge.bootstrap import Container
from tests.conftest import drain
from tests.factories import AUTH, SHOP, request_body, signed
from tests.fakes.erpnext import ERPNextFake

POLICY = {"refund_timing": "on_receipt",
          "auto_approve_limits": {"CNY": "500", "ISK": "100000", "KWD": "100"}}


def open_case(api: TestClient, erp: ERPNextFake, currency: str, unit: str, total: str) -> str:
    body = request_body(**{"order.currency": currency, "order.paid_total": total,
                           "lines.0.unit_price": unit, "requested_amount": total})
    erp.add_invoice(body["order"]["id"], [("GLU-METER-01", 2, unit)], currency)
    raw, headers = signed(body)
    answer = api.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["case_id"])


@pytest.fixture
def client(make_container: Callable[..., Container]) -> Iterator[tuple[TestClient, Container]]:
    container = make_container(policy=POLICY)
    with TestClient(create_app(container)) as test_client:
        yield test_client, container


def test_isk_refund_pays_the_whole_amount(client: tuple[TestClient, Container],
                                          providers: Any) -> None:
    api, container = client
    _, stripe_fake, erp = providers
    stripe_fake.currency = "isk"
    case_id = open_case(api, erp, "ISK", "3980", "7960")

    drain(container)

    [post] = stripe_fake.posts
    assert "amount=796000" in post.content.decode()  # 7960 ISK, not 79.60
    case = api.get(f"/v1/cases/{case_id}", headers=AUTH).json()
    assert case["state"] == "closed", (case["failure"], case["timeline"][-3:])
    assert stripe_fake.paid()[0]["amount"] == 796000


def test_amount_stripe_cannot_represent_fails_the_case_and_moves_nothing(
        client: tuple[TestClient, Container], providers: Any) -> None:
    api, container = client
    _, stripe_fake, erp = providers
    stripe_fake.currency = "kwd"
    case_id = open_case(api, erp, "KWD", "1.234", "2.468")

    drain(container)

    case = api.get(f"/v1/cases/{case_id}", headers=AUTH).json()
    assert case["state"] == "failed", case
    assert case["failure"]["step"] == "refund"
    assert "2.468 KWD" in case["failure"]["message"]
    assert "steps of 0.010" in case["failure"]["message"]
    assert stripe_fake.posts == []
    assert stripe_fake.paid() == []
