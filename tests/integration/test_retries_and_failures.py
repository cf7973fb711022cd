"""Transient errors are retried with the same idempotency key; permanent ones fail the case
visibly, and an operator's retry after the fix completes it."""

from __future__ import annotations

import httpx

from refundbridge.workers.reconcile import reconcile
from tests.conftest import drain, open_case
from tests.factories import AUTH, REVIEWER_ACTOR, REVIEWER_AUTH, SHOP, request_body, signed


def test_stripe_503_twice_then_200_pays_once_with_one_key(client, container, providers):
    _, stripe_fake, erp = providers
    answers = iter([httpx.Response(503, json={"error": {"message": "try later"}}),
                    httpx.Response(503, headers={"Retry-After": "0"})])
    stripe_fake.before_post.append(lambda request: next(answers, None))
    case_id, _ = open_case(client, erp)

    drain(container)

    assert len(stripe_fake.posts) == 3
    assert stripe_fake.keys_posted() == [f"{case_id}-refund-1"] * 3
    assert len(stripe_fake.paid()) == 1
    assert client.get(f"/v1/cases/{case_id}", headers=AUTH).json()["state"] == "closed"


def test_stripe_400_fails_the_case_and_operator_retry_completes_it(client, container,
                                                                    providers):
    _, stripe_fake, erp = providers
    refusal = httpx.Response(400, json={"error": {
        "type": "invalid_request_error", "code": "charge_disputed",
        "message": "Charge ch_123 has been charged back; cannot issue a refund."}})
    stripe_fake.before_post.append(lambda request: refusal)
    case_id, _ = open_case(client, erp)

    drain(container)

    case = client.get(f"/v1/cases/{case_id}", headers=AUTH).json()
    assert case["state"] == "failed"
    assert case["failure"]["step"] == "refund"
    assert "charged back" in case["failure"]["message"]
    assert case["refund_attempts"][0]["status"] == "failed"
    assert len(stripe_fake.posts) == 1  # a 4xx is never retried
    assert stripe_fake.paid() == []

    stripe_fake.before_post.clear()  # the cause is fixed (dispute resolved)
    retried = client.post(f"/v1/cases/{case_id}/retry", headers=REVIEWER_AUTH)
    assert retried.status_code == 200, retried.text
    drain(container)

    case = client.get(f"/v1/cases/{case_id}", headers=AUTH).json()
    assert case["state"] == "closed"
    # Stripe replays a stored 400 for the same key, so the retry is a new attempt and key.
    assert stripe_fake.keys_posted() == [f"{case_id}-refund-1", f"{case_id}-refund-2"]
    assert len(stripe_fake.paid()) == 1
    retry_events = [e for e in case["timeline"] if e["name"] == "retry"]
    assert retry_events and retry_events[0]["actor"] == REVIEWER_ACTOR


def test_retry_of_a_case_that_did_not_fail_is_refused(client, container, providers):
    _, _, erp = providers
    case_id, _ = open_case(client, erp)
    answer = client.post(f"/v1/cases/{case_id}/retry", headers=AUTH, json={})
    assert answer.status_code == 409
    assert answer.headers["content-type"] == "application/problem+json"
    assert "retry" in answer.json()["detail"]


def test_erp_permanent_error_fails_the_case_after_the_refund_without_paying_again(
        client, container, providers):
    _, stripe_fake, erp = providers
    body = request_body()  # no invoice registered in the ERP for this order
    raw, headers = signed(body)
    case_id = client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers).json()[
        "case_id"]
    drain(container)
    case = client.get(f"/v1/cases/{case_id}", headers=AUTH).json()
    assert case["state"] == "failed" and case["failure"]["step"] == "stock"
    assert case["refunded"]["amount"] == "398.00"

    erp.add_invoice(body["order"]["id"], [("GLU-METER-01", 2, "199.00")])
    client.post(f"/v1/cases/{case_id}/retry", headers=AUTH, json={})
    drain(container)
    assert client.get(f"/v1/cases/{case_id}", headers=AUTH).json()["state"] == "closed"
    assert len(stripe_fake.posts) == 1


class WorkerCrashed(ConnectionError):
    """Stands in for a worker dying after Stripe paid, before it heard the answer (a lost
    connection: the job ends unfinished and its work is left for the reconciler)."""


def test_unreadable_refund_status_fails_the_case_but_never_pays_twice(client, container,
                                                                      providers):
    _, stripe_fake, erp = providers

    def crash_after_paying(refund):
        raise WorkerCrashed("connection lost after the refund was made")

    stripe_fake.after_pay.append(crash_after_paying)
    case_id, _ = open_case(client, erp)
    drain(container)  # the refund job dies with the attempt stored as "started"
    stripe_fake.after_pay.clear()
    unauthorized = httpx.Response(401, json={"error": {
        "type": "invalid_request_error", "message": "Invalid API Key provided: sk_test_****"}})
    stripe_fake.before_get.append(lambda request: unauthorized)

    reconcile(container, stale_after=0, pending_after=0)
    drain(container)

    case = client.get(f"/v1/cases/{case_id}", headers=AUTH).json()
    assert case["state"] == "failed"
    assert "could not read the refund's status" in case["failure"]["message"]
    assert "Invalid API Key" in case["failure"]["message"]
    assert case["refund_attempts"][0]["status"] == "started"  # the key stays in use

    stripe_fake.before_get.clear()  # the key is fixed
    client.post(f"/v1/cases/{case_id}/retry", headers=AUTH)
    drain(container)

    case = client.get(f"/v1/cases/{case_id}", headers=AUTH).json()
    assert case["state"] == "closed"
    assert stripe_fake.keys_posted() == [f"{case_id}-refund-1"]  # found, not paid again
    assert len(stripe_fake.paid()) == 1
