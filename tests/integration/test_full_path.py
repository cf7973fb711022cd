"""The product's spine, end to end: signed webhook in, refund paid once, ERP booked,
customer emailed, case closed, audit chain intact."""

from __future__ import annotations

import email
import email.policy
import json
import time
from concurrent.futures import ThreadPoolExecutor

import stripe
from fastapi.testclient import TestClient

from refundbridge.bootstrap import Container
from tests.conftest import STRIPE_WEBHOOK_SECRET, Mailbox, drain, open_case
from tests.factories import AUTH, SHOP, request_body, signed


def test_refund_only_case_goes_from_webhook_to_closed(client, container, providers, mailbox):
    _, stripe_fake, erp = providers
    body = request_body()
    erp.add_invoice(body["order"]["id"], [("GLU-METER-01", 2, "199.00")])
    raw, headers = signed(body)

    answer = client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)

    assert answer.status_code == 202, answer.text
    case_id = answer.json()["case_id"]
    assert answer.json()["case_url"] == f"/v1/cases/{case_id}"
    drain(container)

    case = client.get(f"/v1/cases/{case_id}", headers=AUTH).json()
    assert case["state"] == "closed", case
    assert case["refunded"] == {"amount": "398.00", "currency": "CNY"}
    assert [d["outcome"] for d in case["decisions"]] == ["approve"]
    rules = {r["id"]: r["outcome"] for r in case["decisions"][0]["rules"]}
    assert {"G01", "R02", "R13", "R14", "R19", "R20"} <= set(rules)
    assert set(rules.values()) == {"pass"}
    assert case["obligations"][0]["kind"] == "refund_deadline"
    # Stripe was asked once, in minor units, with the case-derived idempotency key.
    assert len(stripe_fake.posts) == 1
    form = stripe_fake.posts[0].content.decode()
    assert "amount=39800" in form
    assert f"payment_intent={body['order']['payment']['reference']}" in form
    assert stripe_fake.keys_posted() == [f"{case_id}-refund-1"]
    # ERPNext got a submitted credit note against the order's invoice.
    assert len(erp.returns) == 1 and erp.returns[0]["docstatus"] == 1
    assert case_id in erp.returns[0]["remarks"]
    assert case["erp_reference"] == erp.returns[0]["name"]
    # The customer got one email per state change they care about, in their language.
    mails = [email.message_from_bytes(m, policy=email.policy.default) for m in mailbox.messages]
    assert sorted(m["Message-ID"] for m in mails) == sorted(
        f"<{case_id}.{kind}@refundbridge>" for kind in ("received", "approved", "refunded"))
    assert all(m["To"] == "li.wei@example.com" for m in mails)
    assert any("退款" in m["Subject"] for m in mails)
    # The timeline is the state machine's path, and the evidence chain verifies.
    path = [e["to_state"] for e in case["timeline"] if e["from_state"] != e["to_state"]]
    assert path == ["received", "evaluating", "approved", "refunding", "refunded", "closed"]
    evidence = client.get(f"/v1/cases/{case_id}/evidence", headers=AUTH).json()
    assert evidence["verifies"] is True and evidence["events"] == len(case["timeline"])


def test_return_is_refunded_on_receipt_and_restocked_by_inspection(client, container,
                                                                    providers, mailbox):
    _, stripe_fake, erp = providers
    case_id, _ = open_case(client, erp, kind="return_and_refund",
                           **{"reason.code": "changed_mind"})
    drain(container)
    assert client.get(f"/v1/cases/{case_id}", headers=AUTH).json()["state"] == "awaiting_return"
    assert stripe_fake.posts == []  # refund_timing = on_receipt: no money before the goods

    receipt = client.post(f"/v1/cases/{case_id}/receipt", headers=AUTH, json={"lines": [
        {"line": 0, "seal_intact": True, "condition": "as_new", "inspector": "wang.fang",
         "quantity": 2}]})
    assert receipt.status_code == 200, receipt.text
    drain(container)

    case = client.get(f"/v1/cases/{case_id}", headers=AUTH).json()
    assert case["state"] == "closed"
    assert case["stock_moves"] == [{"line": 0, "sku": "GLU-METER-01", "quantity": 2,
                                    "disposition": "restock", "lot": "L2401", "serial": None}]
    assert erp.returns[0]["update_stock"] == 1
    assert len(stripe_fake.posts) == 1


def test_stripe_webhook_reports_a_refund_that_later_failed(client, container, providers):
    _, stripe_fake, erp = providers
    case_id, _ = open_case(client, erp)
    drain(container)
    refund = stripe_fake.paid()[0]
    assert client.get(f"/v1/cases/{case_id}", headers=AUTH).json()["state"] == "closed"

    event = {"id": "evt_1", "object": "event", "type": "refund.failed", "api_version": "2024-06-20",
             "created": int(time.time()), "livemode": False, "pending_webhooks": 1,
             "request": {"id": None, "idempotency_key": None},
             "data": {"object": {**refund, "status": "failed",
                                 "failure_reason": "expired_or_canceled_card"}}}
    payload = json.dumps(event)
    # Signed by Stripe's own SDK: proof that we speak the real protocol.
    signature = stripe.WebhookSignature.generate_signature_header(payload, STRIPE_WEBHOOK_SECRET)
    answer = client.post(f"/webhooks/{SHOP}/stripe", content=payload,
                         headers={"Stripe-Signature": signature,
                                  "Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"case_id": case_id, "applied": True}
    case = client.get(f"/v1/cases/{case_id}", headers=AUTH).json()
    assert case["state"] == "failed"
    assert case["refunded"]["amount"] == "0.00"
    assert "expired_or_canceled_card" in case["failure"]["message"]
    # The same notification again changes nothing.
    again = client.post(f"/webhooks/{SHOP}/stripe", content=payload,
                        headers={"Stripe-Signature": signature})
    assert again.status_code == 200
    assert len(client.get(f"/v1/cases/{case_id}", headers=AUTH).json()["timeline"]) == len(
        case["timeline"])
    # A bad Stripe signature is refused.
    forged = client.post(f"/webhooks/{SHOP}/stripe", content=payload,
                         headers={"Stripe-Signature": f"t={int(time.time())},v1=00"})
    assert forged.status_code == 401


def test_same_webhook_twenty_times_at_once_makes_one_case_and_one_refund(
        client: TestClient, container: Container, providers, mailbox: Mailbox):
    _, stripe_fake, erp = providers
    body = request_body()
    erp.add_invoice(body["order"]["id"], [("GLU-METER-01", 2, "199.00")])
    raw, headers = signed(body)

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(
            lambda _: client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers),
            range(20)))

    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 19 + [202], [a.text for a in answers if a.status_code >= 300]
    assert len({a.json()["case_id"] for a in answers}) == 1
    drain(container)
    listing = client.get("/v1/cases", headers=AUTH).json()["items"]
    assert len(listing) == 1 and listing[0]["state"] == "closed"
    assert len(stripe_fake.posts) == 1
