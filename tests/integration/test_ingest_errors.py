"""Bad input gets a clear problem+json answer naming the field, and nothing is stored."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from refundbridge.api import errors
from refundbridge.core.errors import PermanentProviderError, TransientProviderError
from refundbridge.core.request import NormalizedRefundRequest, _canonical
from refundbridge.workers.relay import relay_once
from tests.conftest import TABLES, drain, stored_rows
from tests.factories import AUTH, SHOP, request_body, signed

EMPTY = dict.fromkeys(TABLES, 0)


def _post(client, raw, headers, shop=SHOP, connector="generic"):
    return client.post(f"/webhooks/{shop}/{connector}", content=raw, headers=headers)


def _problem(answer, status):
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    return answer.json()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"order.paid_total": "-5.00"}, "order.paid_total"),
        ({"requested_amount": "-1"}, "requested_amount"),
        ({"requested_amount": "abc"}, "requested_amount"),
        ({"requested_amount": 398.0}, "requested_amount"),  # a JSON number, not a string
        ({"lines.0.unit_price": "1e"}, "lines.0.unit_price"),
        ({"order.currency": "XYZ"}, "order.currency"),
        ({"requested_amount": "398.001"}, "requested_amount"),  # CNY has 2 decimals
        ({"requested_amount": "500.00"}, "requested_amount"),  # more than was paid
        ({"requested_amount": "0"}, "requested_amount"),
        ({"kind": "swap"}, "kind"),
        # An exchange is a kind now, but it must say what goes out instead.
        ({"kind": "exchange"}, "replacements"),
        ({"customer.email": "not-an-address"}, "customer.email"),
        ({"lines": []}, "lines"),
    ],
)
def test_invalid_body_is_422_naming_the_field_and_stores_nothing(client, db, overrides, field):
    raw, headers = signed(request_body(**overrides))
    problem = _problem(_post(client, raw, headers), 422)
    assert field in [e["field"] for e in problem["errors"]], problem
    assert field in problem["detail"]
    assert stored_rows(db) == EMPTY


def test_malformed_json_is_422_on_body(client, db):
    raw, headers = signed(b'{"external_id": "x", ')
    problem = _problem(_post(client, raw, headers), 422)
    assert problem["errors"][0]["field"] == "body"
    assert "JSON" in problem["detail"]
    assert stored_rows(db) == EMPTY


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda raw, h: (raw, {**h, "X-RefundBridge-Signature": h[
            "X-RefundBridge-Signature"][:-4] + "0000"}), "does not match"),
        (lambda raw, h: (raw + b" ", h), "does not match"),
        (lambda raw, h: (raw, {"Content-Type": "application/json"}), "missing"),
        (lambda raw, h: signed(json.loads(raw), secret="another-shop-secret"), "does not match"),
        (lambda raw, h: signed(json.loads(raw), timestamp=int(time.time()) - 301), "away"),
        (lambda raw, h: signed(json.loads(raw), timestamp=int(time.time()) + 301), "away"),
    ],
    ids=["forged", "body-changed", "unsigned", "wrong-secret", "stale", "future"],
)
def test_bad_or_stale_signature_is_401_and_stores_nothing(client, db, mangle, reason):
    raw, headers = mangle(*signed(request_body()))
    problem = _problem(_post(client, raw, headers), 401)
    assert reason in problem["detail"]
    assert stored_rows(db) == EMPTY


def test_unknown_shop_and_unknown_connector_get_the_same_404(client, db):
    """An unauthenticated caller cannot tell a configured shop from an unknown one."""
    raw, headers = signed(request_body())
    answers = [_post(client, raw, headers, shop="no-such-shop"),
               _post(client, raw, headers, connector="nope"),
               # erpnext is configured for the shop, but it takes no webhooks
               _post(client, raw, headers, connector="erpnext")]
    bodies = [_problem(answer, 404) for answer in answers]
    assert bodies[0] == bodies[1] == bodies[2]
    assert "no-such-shop" not in bodies[0]["detail"] and SHOP not in bodies[0]["detail"]
    assert stored_rows(db) == EMPTY


def test_replay_is_200_with_the_same_case_and_changed_body_is_409(client, db):
    body = request_body()
    raw, headers = signed(body)
    first = _post(client, raw, headers)
    assert first.status_code == 202
    case_id = first.json()["case_id"]
    replay = _post(client, *signed(body))  # re-signed later, same content
    assert replay.status_code == 200 and replay.json()["case_id"] == case_id
    rows = stored_rows(db)

    changed = dict(body, reason={"code": "defective", "text": "屏幕不亮"})
    problem = _problem(_post(client, *signed(changed)), 409)
    assert problem["case_id"] == case_id
    assert stored_rows(db) == rows  # nothing new, nothing lost


def test_a_request_stored_before_the_fingerprint_changed_form_is_still_a_replay(client, db):
    # Inbox rows written before 2026-12 hold the fingerprint in its first form, the
    # SHA-256 of json.dumps' text: a redelivery across the upgrade is still a replay.
    body = request_body(**{"reason.text": "血糖仪读数不准"})
    first = _post(client, *signed(body))
    assert first.status_code == 202
    request = NormalizedRefundRequest.model_validate(body)
    fields = request.model_dump(mode="python", exclude={"replacements"})
    first_form = hashlib.sha256(json.dumps(fields, sort_keys=True, default=_canonical,
                                           ensure_ascii=False).encode()).hexdigest()
    assert first_form != request.fingerprint()
    with db.begin() as conn:
        assert conn.execute(text("UPDATE inbox SET fingerprint = :f"),
                            {"f": first_form}).rowcount == 1
    rows = stored_rows(db)

    replay = _post(client, *signed(body))
    assert replay.status_code == 200, replay.text
    assert replay.json()["case_id"] == first.json()["case_id"]
    changed = dict(body, reason={"code": "defective", "text": "屏幕不亮"})
    assert _problem(_post(client, *signed(changed)), 409)["case_id"] == first.json()["case_id"]
    assert stored_rows(db) == rows


def test_second_request_beyond_what_the_order_can_refund_is_denied_without_calling_stripe(
        client, container, providers):
    _, stripe_fake, erp = providers
    first = request_body(**{"requested_amount": "300.00"})
    erp.add_invoice(first["order"]["id"], [("GLU-METER-01", 2, "199.00")])
    second = request_body(**{"requested_amount": "199.00", "order": first["order"]})
    a = _post(client, *signed(first)).json()["case_id"]
    drain(container)
    b = _post(client, *signed(second)).json()["case_id"]
    drain(container)

    assert client.get(f"/v1/cases/{a}", headers=AUTH).json()["state"] == "closed"
    denied = client.get(f"/v1/cases/{b}", headers=AUTH).json()
    assert denied["state"] == "denied"
    guard = denied["decisions"][0]["rules"][0]
    assert guard["id"] == "G01" and guard["outcome"] == "deny"
    assert "98.00 CNY" in guard["message"]
    assert len(stripe_fake.posts) == 1


def test_operator_endpoints_need_a_valid_token(client, db, container):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
        for path in ("/v1/cases", "/v1/cases/rc_x", "/v1/cases/rc_x/evidence", "/ops/rq/"):
            answer = client.get(path, headers=headers)
            assert answer.status_code == 401, (path, headers)
            assert "rc_x" not in answer.text
    # Every configured token works, so tokens can be rotated.
    for token in container.settings.operator_tokens:
        answer = client.get("/v1/cases", headers={
            "Authorization": f"Bearer {token.get_secret_value()}"})
        assert answer.status_code == 200
    assert client.get("/v1/cases/rc_nope", headers=AUTH).status_code == 404


def test_rq_dashboard_is_mounted_behind_the_token_and_refuses_csrf(client, db, container):
    page = client.get("/ops/rq/", headers=AUTH)
    assert page.status_code == 200 and "RQ" in page.text
    assert client.get("/ops/rq/static/css/main.css", headers=AUTH).status_code == 200
    raw, headers = signed(request_body())
    client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
    relay_once(container)  # one job waits in the queue now
    queues = client.get("/ops/rq/0/data/queues.json", headers=AUTH).json()["queues"]
    assert [(q["name"], q["count"]) for q in queues] == [("refundbridge", 1)]
    assert client.get("/ops/rq/requeue/failed", headers=AUTH).status_code == 405
    assert client.post("/ops/rq/requeue/failed", headers=AUTH).status_code == 403


def test_health_and_readiness(client, db):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}


def test_case_listing_filters_and_pages(client, container, db):
    ids = [_post(client, *signed(request_body())).json()["case_id"] for _ in range(5)]
    page1 = client.get("/v1/cases", params={"shop": SHOP, "limit": 2}, headers=AUTH).json()
    page2 = client.get("/v1/cases", params={"limit": 2, "cursor": page1["next_cursor"]},
                       headers=AUTH).json()
    seen = [c["id"] for c in page1["items"] + page2["items"]]
    assert seen == list(reversed(ids))[:4]
    received = client.get("/v1/cases", params={"state": "received"}, headers=AUTH).json()
    assert len(received["items"]) == 5
    bad = client.get("/v1/cases", params={"state": "bogus"}, headers=AUTH)
    assert bad.status_code == 422 and "state" in bad.json()["detail"]


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        (TransientProviderError("shopify", "order look-up: HTTP 503"), 503, "30"),
        (TransientProviderError("shopify", "order look-up: HTTP 429", retry_after=2.5), 503,
         "3"),
        (PermanentProviderError("woocommerce", "order look-up: HTTP 403"), 502, None),
    ],
    ids=["transient", "transient-with-retry-after", "permanent"],
)
def test_a_provider_failure_during_ingest_tells_the_sender_whether_to_send_again(
        error, status, retry_after):
    app = FastAPI()
    errors.install(app)

    @app.post("/webhooks/{shop}/{connector}")
    def fail(shop: str, connector: str) -> None:
        raise error

    with TestClient(app) as bare:
        answer = bare.post(f"/webhooks/{SHOP}/shopify", content=b"{}")
    assert _problem(answer, status)["detail"] == str(error)
    assert answer.headers.get("retry-after") == retry_after
