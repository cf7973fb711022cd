"""Hostile input, through the real app and a real PostgreSQL: every one is a clear 4xx in
`application/problem+json` naming what is wrong, and nothing is stored.

Each row of `HOSTILE` is one request an attacker, a broken sender or a fuzzer may send:
amounts that are not the documented pattern or do not fit a column, control characters,
duplicate keys in signed JSON, oversized arrays and bodies, deep nesting, huge numbers in
signature headers, query parameters and cursors.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from rq.job import Job
from rq.registry import FailedJobRegistry
from sqlalchemy import text

from refundbridge.api.app import create_app
from refundbridge.bootstrap import bootstrap
from refundbridge.store.db import make_engine
from tests.conftest import STRIPE_WEBHOOK_SECRET, TABLES, drain, stored_rows, test_settings
from tests.factories import AUTH, GENERIC_SECRET, SHOP, request_body, signed

EMPTY = dict.fromkeys(TABLES, 0)
PROBLEM = "application/problem+json"
MiB = 1024 * 1024


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    content: bytes | Iterator[bytes] | None = None
    params: dict[str, str] | None = None


def generic(body: dict[str, Any] | bytes) -> Call:
    """A correctly signed generic webhook: only the body is hostile."""
    raw, headers = signed(body)
    return Call("POST", f"/webhooks/{SHOP}/generic", headers, raw)


def request(**overrides: Any) -> Call:
    return generic(request_body(**overrides))


def raw_request(transform: Callable[[str], str]) -> Call:
    """A request whose JSON text is edited by hand (duplicate keys, literals json.dumps
    would never write)."""
    return generic(transform(json.dumps(request_body(), ensure_ascii=False)).encode())


def with_signature_header(value: str) -> Call:
    raw = json.dumps(request_body()).encode()
    return Call("POST", f"/webhooks/{SHOP}/generic",
                {"Content-Type": "application/json",
                 "X-RefundBridge-Signature": value.encode()}, raw)  # type: ignore[dict-item]


def signed_at(timestamp: str) -> Call:
    """Signed with the shop's real secret, but over a timestamp no clock has."""
    raw = json.dumps(request_body()).encode()
    digest = hmac.new(GENERIC_SECRET.encode(), f"{timestamp}.".encode() + raw,
                      hashlib.sha256).hexdigest()
    return with_signature_header(f"t={timestamp},v1={digest}")


def stripe_event(refund: dict[str, Any] | None = None, raw: bytes | None = None,
                 timestamp: str | None = None) -> Call:
    """A Stripe `refund.updated` event, signed as Stripe signs (t=…,v1=HMAC of "t.body")."""
    if raw is None:
        obj = {"id": "re_3N" + "a" * 10, "object": "refund", "amount": 100, "currency": "cny",
               "status": "succeeded", "metadata": {"case_id": "rc_unknown"}, **(refund or {})}
        raw = json.dumps({"id": "evt_1", "object": "event", "type": "refund.updated",
                          "created": int(time.time()), "data": {"object": obj}}).encode()
    ts = timestamp or str(int(time.time()))
    digest = hmac.new(STRIPE_WEBHOOK_SECRET.encode(), f"{ts}.".encode() + raw,
                      hashlib.sha256).hexdigest()
    return Call("POST", f"/webhooks/{SHOP}/stripe",
                {"Content-Type": "application/json", "Stripe-Signature": f"t={ts},v1={digest}"},
                raw)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def operator(method: str, path: str, body: Any = None, raw: bytes | None = None,
             content_type: str = "application/json", **params: str) -> Call:
    content = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    return Call(method, path, {**AUTH, "Content-Type": content_type}, content, params or None)


def review(**fields: Any) -> Call:
    body = {"decision": "approve", "internal_note": "ok", **fields}
    return operator("POST", "/v1/cases/rc_x/review", body)


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """A body sent without Content-Length (chunked): only the streaming read can stop it."""
    sent = 0
    while sent < total:
        yield b" " * size
        sent += size


LONG = "x" * 5000
H = (  # (id, call builder, status, the field the answer must name)
    # -- amounts: not the documented pattern, or too large for a BIGINT of minor units
    ("amount-exponent-huge", lambda: request(**{"order.paid_total": "1e999999"}), 422,
     "order.paid_total"),
    ("amount-thousands-of-digits", lambda: request(requested_amount="9" * 5000), 422,
     "requested_amount"),
    ("amount-15-integer-digits", lambda: request(**{"order.paid_total": "1" * 15 + ".00"}),
     422, "order.paid_total"),
    ("amount-underscore", lambda: request(**{"lines.0.unit_price": "1_99.00"}), 422,
     "lines.0.unit_price"),
    ("amount-arabic-indic-digits", lambda: request(requested_amount="٣٩٨.٠٠"), 422,
     "requested_amount"),
    ("amount-fullwidth-digits", lambda: request(requested_amount="３９８.00"), 422,
     "requested_amount"),
    ("amount-leading-space", lambda: request(requested_amount=" 398.00"), 422,
     "requested_amount"),
    ("amount-trailing-newline", lambda: request(requested_amount="398.00\n"), 422,
     "requested_amount"),
    ("amount-plus-sign", lambda: request(requested_amount="+398.00"), 422, "requested_amount"),
    ("amount-negative", lambda: request(**{"order.paid_total": "-0.01"}), 422,
     "order.paid_total"),
    ("amount-hex", lambda: request(requested_amount="0x18E"), 422, "requested_amount"),
    ("amount-nan-string", lambda: request(requested_amount="NaN"), 422, "requested_amount"),
    ("amount-infinity-string", lambda: request(requested_amount="Infinity"), 422,
     "requested_amount"),
    ("amount-thousands-separator", lambda: request(**{"order.paid_total": "1,398.00"}), 422,
     "order.paid_total"),
    ("amount-five-decimals", lambda: request(requested_amount="398.00000"), 422,
     "requested_amount"),
    ("amount-json-number", lambda: request(requested_amount=398), 422, "requested_amount"),
    ("amount-json-huge-int", lambda: request(requested_amount=10**30), 422,
     "requested_amount"),
    ("amount-json-float-overflow", lambda: raw_request(
        lambda t: t.replace('"requested_amount": "398.00"', '"requested_amount": 1e400')),
     422, "requested_amount"),
    ("amount-bool", lambda: request(requested_amount=True), 422, "requested_amount"),
    ("amount-null", lambda: request(requested_amount=None), 422, "requested_amount"),
    # -- wrong types and out-of-range numbers elsewhere
    ("quantity-huge", lambda: request(**{"lines.0.quantity": 10**30}), 422,
     "lines.0.quantity"),
    ("quantity-negative", lambda: request(**{"lines.0.quantity": -1}), 422,
     "lines.0.quantity"),
    ("quantity-fraction", lambda: request(**{"lines.0.quantity": 1.5}), 422,
     "lines.0.quantity"),
    ("external-id-number", lambda: request(external_id=5), 422, "external_id"),
    ("lines-object", lambda: request(lines={"0": {}}), 422, "lines"),
    ("lines-501", lambda: request(lines=[request_body()["lines"][0]] * 501), 422, "lines"),
    ("kind-upper-case", lambda: request(kind="REFUND_ONLY"), 422, "kind"),
    ("placed-at-not-a-date", lambda: request(**{"order.placed_at": "yesterday"}), 422,
     "order.placed_at"),
    ("placed-at-year-99999", lambda: request(**{"order.placed_at": "99999-01-01T00:00:00Z"}),
     422, "order.placed_at"),
    ("requested-at-huge-int", lambda: request(requested_at=10**20), 422, "requested_at"),
    ("currency-symbol", lambda: request(**{"order.currency": "€"}), 422, "order.currency"),
    ("unknown-field", lambda: request(admin=True), 422, "admin"),
    # -- strings: too long for their column, or carrying control characters
    ("external-id-256", lambda: request(external_id="e" * 256), 422, "external_id"),
    ("order-id-129", lambda: request(**{"order.id": "o" * 129}), 422, "order.id"),
    ("customer-id-129", lambda: request(**{"customer.id": "c" * 129}), 422, "customer.id"),
    ("external-id-nul", lambda: request(external_id="ext\x00-1"), 422, "external_id"),
    ("order-id-escape", lambda: request(**{"order.id": "SO-\x1b[2J"}), 422, "order.id"),
    ("currency-nul", lambda: request(**{"order.currency": "CN\x00"}), 422, "order.currency"),
    ("sku-newline", lambda: request(**{"lines.0.sku": "GLU\nMETER"}), 422, "lines.0.sku"),
    ("name-c1-control", lambda: request(**{"lines.0.name": "me\x85ter"}), 422,
     "lines.0.name"),
    ("lot-line-separator", lambda: request(**{"lines.0.lot": "L24\u202801"}), 422,
     "lines.0.lot"),
    ("reason-text-nul", lambda: request(reason={"code": "defective", "text": "坏了\x00"}),
     422, "reason.text"),
    ("reason-text-bell", lambda: request(reason={"code": "defective", "text": "a\x07"}), 422,
     "reason.text"),
    ("reason-text-lone-surrogate", lambda: raw_request(
        lambda t: t.replace('"不需要了"', '"\\ud800"')), 422, "body"),
    ("email-nul", lambda: request(**{"customer.email": "li\x00@example.com"}), 422,
     "customer.email"),
    ("payment-reference-delete", lambda: request(**{"order.payment.reference": "pi_\x7f"}),
     422, "order.payment.reference"),
    # -- the JSON itself
    ("duplicate-key-nested", lambda: raw_request(lambda t: t.replace(
        '"paid_total": "398.00"', '"paid_total": "1.00", "paid_total": "398.00"')), 422,
     "order.paid_total"),
    ("duplicate-key-top", lambda: raw_request(lambda t: t.replace(
        '"requested_amount": "398.00"', '"requested_amount": "1.00", '
                                        '"requested_amount": "398.00"')), 422,
     "requested_amount"),
    ("nan-literal", lambda: raw_request(
        lambda t: t.replace('"requested_amount": "398.00"', '"requested_amount": NaN')), 422,
     "body"),
    ("nested-too-deep", lambda: raw_request(
        lambda t: t.replace('"不需要了"', nested(40))), 422, "body"),
    ("nested-past-the-recursion-limit", lambda: generic(nested(100_000).encode()), 422,
     "body"),
    ("truncated-json", lambda: generic(b'{"external_id": "x", '), 422, "body"),
    ("not-utf8", lambda: generic('{"external_id": "é"}'.encode("latin-1")), 422, "body"),
    ("utf8-bom", lambda: generic(b"\xef\xbb\xbf" + json.dumps(request_body()).encode()), 422,
     "body"),
    ("json-array", lambda: generic(b"[]"), 422, "body"),
    ("json-null", lambda: generic(b"null"), 422, "body"),
    ("empty-body", lambda: generic(b""), 422, "body"),
    # -- the signature header
    ("timestamp-4000-digits", lambda: with_signature_header(f"t={'9' * 4000},v1=00"), 401,
     "x-refundbridge-signature"),
    ("timestamp-4000-digits-signed", lambda: signed_at("9" * 4000), 401,
     "x-refundbridge-signature"),
    ("timestamp-arabic-digits", lambda: signed_at("١٧٠٠٠٠٠٠٠٠"), 401,
     "x-refundbridge-signature"),
    ("timestamp-superscript", lambda: with_signature_header("t=²³,v1=00"), 401,
     "x-refundbridge-signature"),
    ("timestamp-negative", lambda: signed_at("-5"), 401, "x-refundbridge-signature"),
    ("signature-100k", lambda: with_signature_header(f"t={int(time.time())},v1={'a' * 100_000}"),
     401, "signature"),
    # -- body size: refused before more than the limit is read
    ("body-2mib-with-length", lambda: Call("POST", f"/webhooks/{SHOP}/generic",
                                           {"Content-Type": "application/json"},
                                           b" " * (2 * MiB)), 413, "body"),
    ("body-2mib-chunked", lambda: Call("POST", f"/webhooks/{SHOP}/generic",
                                       {"Content-Type": "application/json"},
                                       chunks(2 * MiB)), 413, "body"),
    ("body-2mib-unknown-shop", lambda: Call("POST", "/webhooks/nobody/generic", {},
                                            b" " * (2 * MiB)), 413, "body"),
    ("body-2mib-operator-json", lambda: operator("POST", "/v1/cases/rc_x/retry",
                                                 raw=b" " * (2 * MiB)), 413, "body"),
    ("content-length-not-a-number", lambda: Call(
        "POST", f"/webhooks/{SHOP}/generic", {"Content-Length": "1e3"}, b"{}"), 400,
     "content-length"),
    # -- Stripe: signed events that are not Stripe's documented format
    ("stripe-amount-huge", lambda: stripe_event({"amount": 10**30}), 422,
     "data.object.amount"),
    ("stripe-refund-id-300", lambda: stripe_event({"id": "re_" + "x" * 300}), 422,
     "data.object.id"),
    ("stripe-metadata-nul", lambda: stripe_event({"metadata": {"case_id": "rc_\x00"}}), 422,
     "data.object.metadata"),
    ("stripe-duplicate-key", lambda: stripe_event(raw=(
        b'{"id": "evt_1", "object": "event", "type": "refund.updated", "created": 1, '
        b'"data": {"object": {"id": "re_1", "object": "refund", "amount": 100, '
        b'"amount": 9000, "currency": "cny", "status": "succeeded"}}}')), 422,
     "data.object.amount"),
    ("stripe-deep-object", lambda: stripe_event(raw=(
        b'{"id": "evt_1", "object": "event", "type": "refund.updated", "created": 1, '
        b'"data": {"object": ' + nested(50).encode() + b"}}")), 422, "body"),
    ("stripe-timestamp-4000-digits", lambda: stripe_event(timestamp="9" * 4000), 401,
     "timestamp"),
    # -- query parameters and paths
    ("query-nul", lambda: operator("GET", "/v1/cases", shop="acme\x00"), 422, "query.shop"),
    ("query-escape", lambda: operator("GET", "/v1/cases", shop="a\x1bb"), 422, "query.shop"),
    ("query-not-utf8", lambda: Call("GET", "/v1/cases?shop=%C3%28", AUTH), 422, "query"),
    ("cursor-20-digits", lambda: operator("GET", "/v1/cases", cursor="9" * 20), 422,
     "query.cursor"),
    ("cursor-past-bigint", lambda: operator("GET", "/v1/cases", cursor=str(2**63)), 422,
     "query.cursor"),
    ("cursor-negative", lambda: operator("GET", "/v1/cases", cursor="-1"), 422,
     "query.cursor"),
    ("limit-huge", lambda: operator("GET", "/v1/cases", limit=str(10**30)), 422,
     "query.limit"),
    ("state-unknown", lambda: operator("GET", "/v1/cases", state="paid\x00"), 422,
     "query.state"),
    ("path-nul", lambda: Call("GET", "/v1/cases/rc_%00x", AUTH), 422, "path"),
    ("path-nul-evidence", lambda: Call("GET", "/v1/cases/rc_%00x/evidence", AUTH), 422,
     "path"),
    # -- operator bodies
    # A typed name is no longer taken (the trail records the caller): refused, named.
    ("review-reviewer-typed", lambda: review(reviewer="Dr. Wang"), 422, "reviewer"),
    ("review-reviewer-nul", lambda: review(reviewer="Dr.\x00Wang"), 422, "reviewer"),
    ("review-reviewer-null", lambda: review(reviewer=None), 422, "reviewer"),
    ("review-decision-unknown", lambda: review(decision="maybe"), 422, "decision"),
    ("review-not-json", lambda: operator("POST", "/v1/cases/rc_x/review", raw=b"decision=1",
                                         content_type="text/plain"), 422, "body"),
    ("receipt-no-lines", lambda: operator("POST", "/v1/cases/rc_x/receipt", {"lines": []}),
     422, "lines"),
    ("receipt-inspector-nul", lambda: operator("POST", "/v1/cases/rc_x/receipt", {"lines": [
        {"line": 0, "seal_intact": True, "condition": "as_new", "inspector": "Li\x00"}]}),
     422, "lines.0.inspector"),
    ("receipt-line-huge", lambda: operator("POST", "/v1/cases/rc_x/receipt", {"lines": [
        {"line": 10**30, "seal_intact": True, "condition": "as_new", "inspector": "Li"}]}),
     422, "lines.0.line"),
    ("retry-actor-long", lambda: operator("POST", "/v1/cases/rc_x/retry", {"actor": LONG}),
     422, "actor"),
    ("cancel-actor-typed", lambda: operator("POST", "/v1/cases/rc_x/cancel",
                                            {"actor": "zhao", "reason": "x"}), 422, "actor"),
    ("waive-actor-typed", lambda: operator("POST", "/v1/cases/rc_x/notifications/approved/"
                                           "waive", {"actor": "zhao", "reason": "x"}), 422,
     "actor"),
    ("resend-actor-typed", lambda: operator("POST", "/v1/cases/rc_x/notifications/approved/"
                                            "resend", {"actor": "zhao"}), 422, "actor"),
    ("cancel-reason-control", lambda: operator("POST", "/v1/cases/rc_x/cancel",
                                               {"reason": "x\x07"}), 422, "reason"),
    # -- evaluate and recalls
    ("evaluate-amount-exponent", lambda: operator(
        "POST", "/v1/evaluate", request_body(**{"order.paid_total": "1e999999"}), shop=SHOP),
     422, "order.paid_total"),
    ("evaluate-duplicate-request", lambda: operator(
        "POST", "/v1/evaluate", raw=b'{"request": {}, "request": {}}', shop=SHOP), 422,
     "request"),
    ("evaluate-deep", lambda: operator("POST", "/v1/evaluate", raw=nested(100_000).encode(),
                                       shop=SHOP), 422, "body"),
    ("evaluate-at-year-99999", lambda: operator("POST", "/v1/evaluate", request_body(),
                                                shop=SHOP, at="99999-01-01"), 422, "query.at"),
    ("recalls-xml", lambda: operator("POST", "/v1/recalls", raw=b"<recalls/>",
                                     content_type="application/xml", shop=SHOP), 415,
     "content-type"),
    ("recalls-json-nul", lambda: operator("POST", "/v1/recalls", {"recalls": [
        {"sku": "GLU\x00", "class": "II", "notice_date": "2026-11-20", "reference": "N-1"}]},
        shop=SHOP), 422, "recalls.0.sku"),
    ("recalls-csv-nul", lambda: operator(
        "POST", "/v1/recalls", raw=b"sku,class,notice_date,reference\nGLU\x00,II,2026-11-20,N-1\n",
        content_type="text/csv", shop=SHOP), 422, "line 2"),
)
HOSTILE = [pytest.param(build, status, name, id=case_id) for case_id, build, status, name in H]


def _send(client: TestClient, call: Call) -> Any:
    return client.request(call.method, call.path, headers=call.headers, content=call.content,
                          params=call.params)


def test_the_table_is_large_enough() -> None:
    assert len(HOSTILE) >= 60
    assert len({case_id for case_id, *_ in H}) == len(H)


@pytest.mark.parametrize(("build", "status", "field_name"), HOSTILE)
def test_hostile_input_is_a_clear_4xx_naming_the_field_and_stores_nothing(
        client: TestClient, db: Any, build: Callable[[], Call], status: int,
        field_name: str) -> None:
    answer = _send(client, build())
    assert answer.status_code == status, answer.text[:2000]
    assert answer.headers["content-type"] == PROBLEM
    problem = answer.json()
    assert problem["status"] == status
    named = [str(e["field"]).lower() for e in problem.get("errors", [])]
    assert field_name in named or field_name in problem["detail"].lower(), problem
    assert "Traceback" not in answer.text and "sqlalchemy" not in answer.text.lower()
    assert answer.headers.get("x-request-id")
    assert stored_rows(db) == EMPTY


# ------------------------------------------------------------------ beyond the table


def _problem(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text[:2000]
    assert answer.headers["content-type"] == PROBLEM
    return dict(answer.json())


def test_a_request_on_an_order_known_in_another_currency_is_refused_before_the_202(
        client: TestClient, container: Any, providers: Any, db: Any) -> None:
    _, _, erp = providers
    first = request_body()
    erp.add_invoice(first["order"]["id"], [("GLU-METER-01", 2, "199.00")])
    assert _send(client, generic(first)).status_code == 202
    in_usd = request_body(**{"order.id": first["order"]["id"], "order.currency": "USD",
                             "order.paid_total": "100.00", "requested_amount": "50.00",
                             "lines.0.unit_price": "50.00"})
    before = stored_rows(db)
    # Known only from the waiting case (not evaluated yet), then from the order's ledger.
    problem = _problem(_send(client, generic(in_usd)), 422)
    assert problem["errors"][0]["field"] == "order.currency"
    assert "CNY" in problem["detail"]
    assert stored_rows(db) == before
    drain(container)
    with db.connect() as conn:
        assert conn.execute(text("SELECT currency FROM orders")).scalar_one() == "CNY"
    after_evaluation = stored_rows(db)
    in_usd["external_id"] = "ext-another"
    assert _problem(_send(client, generic(in_usd)), 422)["errors"][0]["field"] == (
        "order.currency")
    assert stored_rows(db) == after_evaluation
    # The same currency on the same order is still a request like any other.
    second = request_body(**{"order": first["order"], "requested_amount": "10.00"})
    assert _send(client, generic(second)).status_code == 202


def test_a_database_that_refuses_connections_is_a_503_with_retry_after(
        database_url: str, redis_conn: Any, smtp_server: Any) -> None:
    refusing = make_engine("postgresql://postgres@127.0.0.1:1/nowhere")
    container = bootstrap(test_settings(database_url, smtp_server[0].port), redis=redis_conn,
                          engine=refusing)
    with TestClient(create_app(container, dashboard=False)) as refused:
        for answer in (refused.get("/v1/cases", headers=AUTH),
                       refused.get("/v1/cases/rc_x", headers=AUTH),
                       _send(refused, request())):
            problem = _problem(answer, 503)
            assert answer.headers["retry-after"].isdigit()
            assert "127.0.0.1" not in answer.text and ":1" not in problem["detail"]
    refusing.dispose()


def test_an_unexpected_error_is_problem_json_without_internals_and_logged_with_its_id(
        container: Any, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(container, dashboard=False)

    @app.get("/v1/explode")
    def explode() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    with TestClient(app, raise_server_exceptions=False) as bare:
        answer = bare.get("/v1/explode", headers={"X-Request-ID": "req-42"})
        fresh = bare.get("/v1/explode")
    problem = _problem(answer, 500)
    assert "hunter2" not in answer.text and "RuntimeError" not in answer.text
    assert answer.headers["x-request-id"] == "req-42" == problem["request_id"]
    assert fresh.headers["x-request-id"] == fresh.json()["request_id"] != "req-42"
    logged = [r for r in caplog.records if "req-42" in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback is in the log only


def test_a_caller_request_id_that_is_not_plain_is_replaced(client: TestClient, db: Any) -> None:
    answer = client.get("/healthz", headers={"X-Request-ID": "a b<script>"})
    assert answer.headers["x-request-id"] != "a b<script>"
    assert len(answer.headers["x-request-id"]) == 32


def test_a_stripe_event_for_a_case_this_deployment_does_not_have_is_acknowledged(
        client: TestClient, db: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="refundbridge.api"):
        answer = _send(client, stripe_event({"metadata": {"case_id": "rc_elsewhere"}}))
    assert answer.status_code == 200, answer.text
    assert answer.json()["applied"] is False
    assert any("rc_elsewhere" in r.getMessage() for r in caplog.records)
    assert stored_rows(db) == EMPTY


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("HEAD", "/ops/rq/requeue/failed", {}, 405),  # HEAD used to run the action
        ("GET", "/ops/rq/requeue/failed", {}, 405),
        ("PUT", "/ops/rq/requeue/failed", {"X-Requested-With": "XMLHttpRequest"}, 405),
        ("DELETE", "/ops/rq/job/abc/delete", {"X-Requested-With": "XMLHttpRequest"}, 405),
        ("HEAD", "/ops/rq/queue/refundbridge/failed/empty", {}, 405),
        ("POST", "/ops/rq/requeue/failed", {}, 403),
        ("POST", "/ops/rq/0/data/queues.json", {"X-Requested-With": "XMLHttpRequest"}, 405),
        ("PATCH", "/ops/rq/", {}, 405),
    ],
)
def test_the_dashboard_guard_lets_only_reads_read_and_only_posts_act(
        client: TestClient, container: Any, method: str, path: str, headers: dict[str, str],
        status: int) -> None:
    failed = FailedJobRegistry("refundbridge", connection=container.redis)
    job = Job.create(print, connection=container.redis, id="failed-one")
    job.save()
    failed.add(job, ttl=600)
    answer = client.request(method, path, headers={**AUTH, **headers})
    assert answer.status_code == status
    if method != "HEAD":
        assert answer.headers["content-type"] == PROBLEM
    assert failed.get_job_ids() == ["failed-one"]  # nothing was requeued or emptied


def test_the_dashboard_guard_still_serves_reads_and_authorised_actions(
        client: TestClient, container: Any) -> None:
    assert client.head("/ops/rq/", headers=AUTH).status_code == 200
    assert client.get("/ops/rq/0/data/queues.json", headers=AUTH).status_code == 200
    posted = client.post("/ops/rq/requeue/failed",
                         headers={**AUTH, "X-Requested-With": "XMLHttpRequest"})
    assert posted.status_code == 200


async def _asgi_post(app: Any, body_chunks: list[bytes], headers: list[tuple[bytes, bytes]]
                     ) -> tuple[int, int]:
    """POST straight into the ASGI app, one chunk per `receive`; returns the status and how
    many chunks the app asked for."""
    asked = 0
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        if asked > len(body_chunks):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": body_chunks[asked - 1],
                "more_body": asked < len(body_chunks)}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": f"/webhooks/{SHOP}/generic",
             "raw_path": f"/webhooks/{SHOP}/generic".encode(), "root_path": "",
             "query_string": b"", "headers": headers, "client": ("127.0.0.1", 1),
             "server": ("testserver", 80), "state": {}}
    await app(scope, receive, send)
    return statuses[0], asked


def test_a_large_body_is_refused_without_reading_past_the_limit(
        make_container: Any, db: Any) -> None:
    container = make_container()
    assert container.settings.max_body_bytes == MiB  # the default: 1 MiB on every route
    container.settings = container.settings.model_copy(update={"max_body_bytes": 4096})
    app = create_app(container, dashboard=False)
    chunk = b" " * 1024
    # Streamed (no Content-Length): the app stops asking after the chunk past the limit.
    status, asked = asyncio.run(_asgi_post(app, [chunk] * 1000, []))
    assert status == 413 and asked == 5
    # Announced: refused before a single chunk is read.
    status, asked = asyncio.run(_asgi_post(app, [chunk] * 1000,
                                           [(b"content-length", b"1024000")]))
    assert status == 413 and asked == 0
    # Under the limit, the same route reads the body and judges its signature.
    raw, headers = signed(request_body())
    with TestClient(app) as small:
        assert len(raw) < 4096
        assert small.post(f"/webhooks/{SHOP}/generic", content=raw,
                          headers=headers).status_code == 202
    assert stored_rows(db)["cases"] == 1
