"""`/v1` under named API tokens: each token reaches only its shops (another shop's case is a
404, as if it did not exist), may do only what its role may (403 otherwise), and is what the
audit trail records for what it did. The `operator_tokens` keep every permission on every
shop. Real PostgreSQL and Redis; only the third parties' HTTP is faked."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import respx
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from redis import Redis
from sqlalchemy import Engine

from refundbridge.api.app import create_app
from refundbridge.bootstrap import Container, bootstrap
from refundbridge.config.settings import ApiTokenSettings
from refundbridge.demo import Mailbox
from tests.conftest import drain, test_settings
from tests.factories import (
    AUTH,
    OPERATOR_TOKEN,
    REVIEWER_ACTOR,
    REVIEWER_AUTH,
    SHOP,
    request_body,
    signed,
)
from tests.fakes.erpnext import ERPNextFake
from tests.fakes.stripe import StripeFake

Providers = tuple[respx.MockRouter, StripeFake, ERPNextFake]
OTHER_SHOP = "beta-health"


def _token() -> str:
    return "tk_" + secrets.token_hex(12)


# name → (role, shops, secret)
TOKENS: dict[str, tuple[str, list[str], str]] = {
    "acme.reviewer": ("reviewer", [SHOP], _token()),
    "acme.warehouse": ("warehouse", [SHOP], _token()),
    "acme.auditor": ("auditor", [SHOP], _token()),
}


def auth(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name][2]}"}


@pytest.fixture
def two_shops(db: Engine, redis_conn: Redis, smtp_server: tuple[Controller, Mailbox],
              database_url: str) -> Iterator[Container]:
    """The usual shop, a second one on the same connectors, and a token per role scoped to
    the first shop (beside the test settings' `li.na`, a reviewer of every shop)."""
    settings = test_settings(database_url, smtp_server[0].port)
    shops = dict(settings.shops)
    shops[OTHER_SHOP] = shops[SHOP].model_copy()
    tokens = [*settings.api_tokens, *(
        ApiTokenSettings.model_validate({"name": name, "token": secret, "role": role,
                                         "shops": scope})
        for name, (role, scope, secret) in TOKENS.items())]
    settings = settings.model_copy(update={"shops": shops, "api_tokens": tokens})
    container = bootstrap(settings, redis=redis_conn, engine=db)
    yield container
    container.close()


@pytest.fixture
def api(two_shops: Container) -> Iterator[TestClient]:
    with TestClient(create_app(two_shops)) as client:
        yield client


def _open(client: TestClient, container: Container, erp: ERPNextFake, shop: str = SHOP,
          **overrides: Any) -> str:
    body = request_body(**overrides)
    erp.add_invoice(body["order"]["id"], [("GLU-METER-01", 2, "199.00")])
    raw, headers = signed(body)
    answer = client.post(f"/webhooks/{shop}/generic", content=raw, headers=headers)
    assert answer.status_code == 202, answer.text
    drain(container)
    return str(answer.json()["case_id"])


def _case(client: TestClient, case_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/cases/{case_id}", headers=AUTH)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _listed(client: TestClient, headers: dict[str, str], **params: str) -> set[str]:
    answer = client.get("/v1/cases", headers=headers, params=params)
    assert answer.status_code == 200, answer.text
    return {item["id"] for item in answer.json()["items"]}


REVIEW = {"decision": "approve", "internal_note": "checked with the customer"}


# ------------------------------------------------------------------ shops


def test_a_token_of_one_shop_sees_only_that_shops_cases(
        api: TestClient, two_shops: Container, providers: Providers) -> None:
    erp = providers[2]
    mine = _open(api, two_shops, erp, **{"reason.code": "other"})
    theirs = _open(api, two_shops, erp, OTHER_SHOP, **{"reason.code": "other"})
    scoped = auth("acme.reviewer")

    assert _listed(api, scoped) == {mine}
    assert _listed(api, scoped, shop=OTHER_SHOP) == set()
    assert _listed(api, scoped, shop=SHOP) == {mine}
    assert _listed(api, AUTH) == {mine, theirs}

    assert api.get(f"/v1/cases/{mine}", headers=scoped).status_code == 200
    for method, path, body in [
            ("GET", "", None), ("GET", "/evidence", None), ("POST", "/review", REVIEW),
            ("POST", "/retry", None), ("POST", "/cancel", {"reason": "x"})]:
        answer = api.request(method, f"/v1/cases/{theirs}{path}", headers=scoped, json=body)
        assert answer.status_code == 404, (path, answer.text)
        # The same answer as for a case that does not exist: nothing tells it is there.
        assert answer.json()["detail"] == f"no case {theirs}"
    assert _case(api, theirs)["state"] == "awaiting_review"
    assert [d["decided_by"] for d in _case(api, theirs)["decisions"]] == ["rules"]


# ------------------------------------------------------------------ roles


def test_a_warehouse_token_records_receipts_and_decides_nothing(
        api: TestClient, two_shops: Container, providers: Providers) -> None:
    erp = providers[2]
    in_review = _open(api, two_shops, erp, **{"reason.code": "other"})
    returning = _open(api, two_shops, erp, kind="return_and_refund")
    assert _case(api, returning)["state"] == "awaiting_return"
    warehouse = auth("acme.warehouse")

    for case_id, path, body in [(in_review, "/review", REVIEW), (in_review, "/retry", None),
                                (returning, "/cancel", {"reason": "never came"}),
                                (in_review, "/evidence", None)]:
        method = "GET" if path == "/evidence" else "POST"
        answer = api.request(method, f"/v1/cases/{case_id}{path}", headers=warehouse,
                             json=body)
        assert answer.status_code == 403, (path, answer.text)
        assert "warehouse" in answer.json()["detail"]
    assert _case(api, in_review)["state"] == "awaiting_review"

    received = api.post(f"/v1/cases/{returning}/receipt", headers=warehouse, json={"lines": [
        {"line": 0, "seal_intact": True, "condition": "as_new", "inspector": "wang.fang"}]})
    assert received.status_code == 200, received.text
    drain(two_shops)
    case = _case(api, returning)
    assert case["state"] == "closed", case
    assert [e["actor"] for e in case["timeline"] if e["name"] == "receive_goods"] == [
        "token:acme.warehouse"]


def test_an_auditor_token_reads_and_exports_and_changes_nothing(
        api: TestClient, two_shops: Container, providers: Providers) -> None:
    erp = providers[2]
    returning = _open(api, two_shops, erp, kind="return_and_refund")
    auditor = auth("acme.auditor")

    assert api.get(f"/v1/cases/{returning}", headers=auditor).status_code == 200
    evidence = api.get(f"/v1/cases/{returning}/evidence", headers=auditor)
    assert evidence.status_code == 200, evidence.text
    assert evidence.json()["verifies"] is True

    for path, body in [("/cancel", {"reason": "auditing"}), ("/retry", None),
                       ("/receipt", {"lines": [{"line": 0, "seal_intact": True,
                                                "condition": "as_new", "inspector": "x"}]})]:
        answer = api.post(f"/v1/cases/{returning}{path}", headers=auditor, json=body)
        assert answer.status_code == 403, (path, answer.text)
        assert "auditor" in answer.json()["detail"]
    case = _case(api, returning)
    assert case["state"] == "awaiting_return"
    assert not any(e["actor"] == "token:acme.auditor" for e in case["timeline"])


# ------------------------------------------------------------------ who acted


def test_a_review_is_recorded_under_the_tokens_name_and_a_typed_name_is_refused(
        api: TestClient, two_shops: Container, providers: Providers) -> None:
    case_id = _open(api, two_shops, providers[2], **{"reason.code": "other"})

    typed = api.post(f"/v1/cases/{case_id}/review", headers=REVIEWER_AUTH,
                     json={**REVIEW, "reviewer": "someone.else"})
    assert typed.status_code == 422, typed.text
    assert [e["field"] for e in typed.json()["errors"]] == ["reviewer"]
    assert "caller" in typed.json()["errors"][0]["message"]
    assert _case(api, case_id)["state"] == "awaiting_review"

    decided = api.post(f"/v1/cases/{case_id}/review", headers=REVIEWER_AUTH, json=REVIEW)
    assert decided.status_code == 200, decided.text
    assert decided.json()["decisions"][-1]["decided_by"] == REVIEWER_ACTOR
    evidence = api.get(f"/v1/cases/{case_id}/evidence", headers=AUTH).json()
    approvals = [e for e in evidence["chain"] if e["name"] == "approve"]
    assert [e["actor"] for e in approvals] == [REVIEWER_ACTOR]
    assert evidence["verifies"] is True


def test_operator_tokens_still_do_everything_on_every_shop_under_their_position(
        api: TestClient, two_shops: Container, providers: Providers) -> None:
    erp = providers[2]
    rotated = two_shops.settings.operator_tokens[1].get_secret_value()
    second = {"Authorization": f"Bearer {rotated}"}
    in_review = _open(api, two_shops, erp, OTHER_SHOP, **{"reason.code": "other"})
    returning = _open(api, two_shops, erp, kind="return_and_refund")
    cancelled = _open(api, two_shops, erp, OTHER_SHOP, kind="return_and_refund")

    for headers in (AUTH, second):
        assert _listed(api, headers) == {in_review, returning, cancelled}
        assert api.get(f"/v1/cases/{in_review}/evidence", headers=headers).status_code == 200
    assert api.post(f"/v1/cases/{in_review}/review", headers=second,
                    json=REVIEW).status_code == 200
    assert api.post(f"/v1/cases/{returning}/receipt", headers=AUTH, json={"lines": [
        {"line": 0, "seal_intact": True, "condition": "as_new",
         "inspector": "wang.fang"}]}).status_code == 200
    assert api.post(f"/v1/cases/{cancelled}/cancel", headers=second,
                    json={"reason": "never shipped back"}).status_code == 200
    drain(two_shops)

    assert _case(api, in_review)["decisions"][-1]["decided_by"] == "token:operator_tokens.1"
    assert [e["actor"] for e in _case(api, returning)["timeline"]
            if e["name"] == "receive_goods"] == ["token:operator_tokens.0"]
    assert _case(api, cancelled)["state"] == "cancelled"


def test_an_unknown_token_is_refused(api: TestClient) -> None:
    for headers in ({"Authorization": "Bearer " + _token()}, {}):
        assert api.get("/v1/cases", headers=headers).status_code == 401


@pytest.mark.parametrize(("tokens", "operator", "key"), [
    ([{"name": "a", "token": "x" * 16, "shops": ["*"]},
      {"name": "a", "token": "y" * 16, "shops": ["*"]}], [], "api_tokens.1.name"),
    ([{"name": "operator_tokens.0", "token": "x" * 16, "shops": ["*"]}], [],
     "api_tokens.0.name"),
    ([{"name": "b", "token": "z" * 20, "shops": ["*"]}], ["z" * 20], "api_tokens.0.token"),
    ([{"name": "b", "token": "q" * 20, "shops": ["nowhere"]}], [], "api_tokens.0.shops"),
    ([{"name": "b", "token": "short", "shops": ["*"]}], [], "api_tokens.0.token"),
    ([], ["t" * 20, "t" * 20], "operator_tokens"),
])
def test_tokens_that_would_blur_who_acted_are_refused_naming_the_key(
        tokens: list[dict[str, Any]], operator: list[str], key: str) -> None:
    from refundbridge.config.settings import load_settings
    from refundbridge.core.errors import ConfigError
    from tests.conftest import shop_config

    with pytest.raises(ConfigError) as refused:
        load_settings(None, demo=True, api_tokens=tokens, operator_tokens=operator,
                      shops={"acme": shop_config(25)})
    assert refused.value.key == key


def test_the_bearer_scheme_is_case_blind(client: TestClient) -> None:
    for scheme in ("bearer", "BEARER", "Bearer"):
        answer = client.get("/v1/cases", headers={"Authorization": f"{scheme} {OPERATOR_TOKEN}"})
        assert answer.status_code == 200, scheme
    assert client.get("/v1/cases", headers={"Authorization": f"Basic {OPERATOR_TOKEN}"}
                      ).status_code == 401
