"""Hostile input, through the real app and a real PostgreSQL: every one is a clear 4xx in
`application/problem+json` naming what is wrong, and nothing is stored.

Each row of `HOSTILE` is one request an attacker, a broken sender or a fuzzer may send:
amounts that are not the documented pattern or do not fit a column, control characters,
duplicate keys in signed JSON, oversized arrays and bodies, deep nesting, huge numbers in
signature headers, query parameters and cursors.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from connectors.generic.webhooks import sign
from tests.conftest import STRIPE_WEBHOOK_SECRET, TABLES, stored_rows
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
    body = {"decision": "approve", "reviewer": "Dr. Wang", "internal_note": "ok", **fields}
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
    ("review-reviewer-nul", lambda: review(reviewer="Dr.\x00Wang"), 422, "reviewer"),
    ("review-reviewer-too-long-for-the-trail", lambda: review(reviewer="w" * 120), 422,
     "reviewer"),
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
