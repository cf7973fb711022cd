"""The embedded mode (SQLite + in-process Redis) runs the same code; a pending refund waits
for the provider's word, by notification or by poll."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import stripe
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient

from refundbridge.api.app import create_app
from refundbridge.bootstrap import bootstrap
from refundbridge.config.settings import load_settings
from refundbridge.core.errors import ConfigError
from refundbridge.store.db import alembic_config, current_revision, upgrade
from refundbridge.workers.reconcile import reconcile
from tests.conftest import STRIPE_WEBHOOK_SECRET, drain, open_case
from tests.factories import AUTH, GENERIC_SECRET, OPERATOR_TOKEN, SHOP, request_body, signed

ROOT = Path(__file__).resolve().parents[2]


def test_sqlite_and_embedded_redis_close_a_return_case(tmp_path):
    url = f"sqlite:///{tmp_path / 'rb.db'}"
    upgrade(url)
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert head is not None and current_revision(url) == head
    settings = load_settings(None, database_url=url, operator_tokens=[OPERATOR_TOKEN], shops={
        SHOP: {"payment": "sandbox_payment", "erp": "sandbox_erp",
               "notifier": "sandbox_notifier", "generic": {"secret": GENERIC_SECRET},
               "policy": {"refund_timing": "on_approval"}}})
    container = bootstrap(settings)  # no redis_url: fakeredis in this process
    with TestClient(create_app(container)) as client:
        raw, headers = signed(request_body(kind="return_and_refund"))
        case_id = client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers).json()[
            "case_id"]
        drain(container)
        # on_approval: the money goes back first, then the goods are awaited.
        case = client.get(f"/v1/cases/{case_id}", headers=AUTH).json()
        assert case["state"] == "awaiting_return"
        assert case["refunded"] == {"amount": "398.00", "currency": "CNY"}
        client.post(f"/v1/cases/{case_id}/receipt", headers=AUTH, json={"lines": [
            {"line": 0, "seal_intact": False, "condition": "used", "inspector": "wang"}]})
        drain(container)
        case = client.get(f"/v1/cases/{case_id}", headers=AUTH).json()
    assert case["state"] == "closed"
    assert [m["disposition"] for m in case["stock_moves"]] == ["scrap"]  # seal broken (R05)
    payment = container.shops[SHOP].gateways.payment
    assert list(payment.refunds) == [f"{case_id}-refund-1"]
    assert set(container.shops[SHOP].gateways.notifier.sent) == {
        f"{case_id}.received", f"{case_id}.approved", f"{case_id}.refunded",
        f"{case_id}.goods_received"}


def test_pending_stripe_refund_waits_until_the_webhook_settles_it(client, container,
                                                                  providers):
    _, stripe_fake, erp = providers
    stripe_fake.next_status = "pending"
    case_id, _ = open_case(client, erp)
    drain(container)
    case = client.get(f"/v1/cases/{case_id}", headers=AUTH).json()
    assert case["state"] == "refunding"
    assert case["refund_attempts"][0]["status"] == "pending"
    assert case["refunded"]["amount"] == "0.00"

    refund = stripe_fake.paid()[0]
    event = {"id": "evt_2", "object": "event", "type": "refund.updated",
             "created": int(time.time()), "livemode": False, "api_version": "2024-06-20",
             "data": {"object": {**refund, "status": "succeeded"}}}
    payload = json.dumps(event)
    answer = client.post(f"/webhooks/{SHOP}/stripe", content=payload, headers={
        "Stripe-Signature": stripe.WebhookSignature.generate_signature_header(
            payload, STRIPE_WEBHOOK_SECRET)})
    assert answer.status_code == 200, answer.text
    drain(container)
    assert client.get(f"/v1/cases/{case_id}", headers=AUTH).json()["state"] == "closed"
    assert len(stripe_fake.posts) == 1


def test_pending_refund_is_settled_by_the_reconcilers_poll(client, container, providers):
    _, stripe_fake, erp = providers
    stripe_fake.next_status = "pending"
    case_id, _ = open_case(client, erp)
    drain(container)
    stripe_fake.refunds[stripe_fake.paid()[0]["id"]]["status"] = "succeeded"

    # Idle, but not pending for long enough yet: nobody asks Stripe.
    assert case_id not in reconcile(container, stale_after=0, pending_after=3600).revived
    report = reconcile(container, stale_after=3600, pending_after=0)
    assert case_id in report.revived
    drain(container)

    assert client.get(f"/v1/cases/{case_id}", headers=AUTH).json()["state"] == "closed"
    assert len(stripe_fake.posts) == 1  # polled with GET, never paid twice


def test_example_config_loads_in_demo_mode_and_its_placeholders_are_refused_otherwise():
    example = ROOT / "config" / "example.toml"
    with pytest.raises(ConfigError) as refused:
        bootstrap(load_settings(example, check_secrets=False))  # tokens: test_settings.py
    assert refused.value.key.startswith("shops.acme.")
    settings = load_settings(example, demo=True, database_url="sqlite://")
    assert settings.shops["acme"].policy.auto_approve_limits["JPY"] == 10000


def test_webhooks_are_accepted_while_redis_is_down_and_relayed_once_it_is_back(
        make_container, redis_conn, database_url):
    from redis import Redis

    down = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    container = make_container()
    container.redis = down  # readiness looks here; the API never needs Redis to accept
    with TestClient(create_app(container, dashboard=False)) as client:
        raw, headers = signed(request_body())
        answer = client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
        assert answer.status_code == 202, answer.text
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["redis"].startswith("error")
    container.redis = redis_conn
    from refundbridge.workers.relay import relay_once

    assert relay_once(container) == 1  # the evaluate step, handed over now
