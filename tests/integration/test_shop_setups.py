"""Three real shop setups end to end, through the real HTTP ingest and the worker path:

- Shopify storefront + Shopify payments + Odoo;
- WooCommerce storefront + Alipay + ERPNext;
- the shop's own site (generic) + WeChat Pay + Odoo.

Each test configures the shop as docs/connectors.md does, posts what the provider really
posts (signed as the provider signs), runs the relay and RQ jobs in-process with production
code (`drain`), and asserts on what every provider's fake saw. Only third-party HTTP is
faked, with respx; anything else going out fails the test.
"""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
import respx
from alipay import AliPay
from fastapi.testclient import TestClient

from api.app import create_app
from refundbridge.bootstrap import Container
from refundbridge.demo import Mailbox
from tests.conftest import drain
from tests.factories import AUTH, GENERIC_SECRET, SHOP, request_body, signed
from tests.fakes import odoo as odoo_fake
from tests.fakes import shopify as shopify_fake
from tests.fakes import woocommerce as wc_fake
from tests.fakes.alipay import APP_ID, REFUND, AlipayFake, AlipayKeys
from tests.fakes.erpnext import BASE as ERP_BASE
from tests.fakes.erpnext import ERPNextFake
from tests.fakes.odoo import OdooFake
from tests.fakes.shopify import ShopifyFake
from tests.fakes.wechatpay import REFUNDS, WeChatPayFake, WeChatPayKeys
from tests.fakes.woocommerce import WooCommerceFake
from workers.reconcile import reconcile

MakeContainer = Callable[..., Container]


@contextmanager
def api(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container)) as client:
        yield client


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    """One respx router per test: the fakes a setup needs are installed on it, and any other
    outbound HTTP fails the test."""
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as mock:
        yield mock


def case_of(client: TestClient, case_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/cases/{case_id}", headers=AUTH)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def path_of(case: dict[str, Any]) -> list[str]:
    return [e["to_state"] for e in case["timeline"] if e["from_state"] != e["to_state"]]


def assert_chain_verifies(client: TestClient, case: dict[str, Any]) -> None:
    evidence = client.get(f"/v1/cases/{case['id']}/evidence", headers=AUTH).json()
    assert evidence["verifies"] is True, evidence
    assert evidence["events"] == len(case["timeline"])


def message_ids(mailbox: Mailbox) -> list[str]:
    mails = [email.message_from_bytes(m, policy=email.policy.default) for m in mailbox.messages]
    return sorted(str(m["Message-ID"]) for m in mails)


# ================================================================== Shopify + Shopify + Odoo

SHOPIFY = {"shop_domain": shopify_fake.SHOP_DOMAIN, "access_token": shopify_fake.ACCESS_TOKEN,
           "client_secret": shopify_fake.CLIENT_SECRET, "api_version": shopify_fake.API_VERSION}
ODOO = {"base_url": odoo_fake.BASE, "database": odoo_fake.DATABASE,
        "username": odoo_fake.LOGIN, "api_key": odoo_fake.API_KEY}


@pytest.fixture
def shopify_shop(make_container: MakeContainer, router: respx.MockRouter
                 ) -> tuple[Container, ShopifyFake, OdooFake]:
    shop, erp = ShopifyFake(), OdooFake(version=17)
    shop.install(router)
    erp.install(router)
    container = make_container(
        storefront="shopify", payment="shopify", erp="odoo", notifier="smtp",
        shopify=SHOPIFY, odoo=ODOO,
        policy={"refund_timing": "on_receipt", "auto_approve_limits": {"USD": "80.00"}})
    return container, shop, erp


def shopify_order(shop: ShopifyFake, erp: OdooFake, quantity: int = 1,
                  unit_price: str = "49.95") -> str:
    """An order paid in Shopify, delivered two days ago, whose delivery Odoo made with lot
    L2401 (Odoo's sale order carries the Shopify order id as its customer reference)."""
    now = datetime.now(UTC)
    order_id = shop.add_order(
        [shopify_fake.Line("GLU-METER-01", "Glucose meter", quantity, unit_price)],
        placed_at=now - timedelta(days=4), delivered_at=now - timedelta(days=2))
    erp.add_order(order_id, [("GLU-METER-01", "L2401", quantity)],
                  {"GLU-METER-01": unit_price}, currency="USD")
    return order_id


def post_shopify(client: TestClient, topic: str, body: bytes, **headers: Any
                 ) -> httpx.Response:
    sent = shopify_fake.webhook_headers(topic, body, **headers)
    return client.post(f"/webhooks/{SHOP}/shopify", content=body, headers=sent)


def test_shopify_return_is_approved_in_shopify_refunded_on_receipt_and_booked_in_odoo(
        shopify_shop: tuple[Container, ShopifyFake, OdooFake], mailbox: Mailbox) -> None:
    container, shop, erp = shopify_shop
    order_id = shopify_order(shop, erp)
    return_id = shop.add_return(order_id, items=((0, 1, "UNWANTED"),))
    body = shop.return_webhook(return_id)
    webhook_id = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"

    with api(container) as client:
        answer = post_shopify(client, "returns/request", body, webhook_id=webhook_id)
        assert answer.status_code == 202, answer.text
        case_id = answer.json()["case_id"]
        # The thin webhook was filled in from the order, looked up through GraphQL.
        assert [b["variables"]["id"] for b in shop.bodies("RefundBridgeOrder")] == [order_id]

        # Shopify delivers at least once: the same delivery again is the same case.
        again = post_shopify(client, "returns/request", body, webhook_id=webhook_id)
        assert again.status_code == 200, again.text
        assert again.json()["case_id"] == case_id

        drain(container)
        case = case_of(client, case_id)
        assert case["state"] == "awaiting_return", case
        # Odoo was asked what it shipped; its lot filled the line and R01 checked it.
        assert ("stock.move.line", "search_read") in erp.executed()
        rules = {(r["id"], r["outcome"]) for r in case["decisions"][0]["rules"]}
        assert ("R01", "pass") in rules and ("G01", "pass") in rules
        assert case["decisions"][0]["outcome"] == "approve"
        assert case["decisions"][0]["decided_by"] == "rules"
        # The write-back step approved the return in Shopify.
        approvals = shop.bodies("RefundBridgeReturnApprove")
        assert [b["variables"]["input"]["id"] for b in approvals] == [return_id]
        assert shop.returns[return_id]["status"] == "OPEN"
        # on_receipt: no money before the goods are back.
        assert shop.keys_posted() == []

        receipt = client.post(f"/v1/cases/{case_id}/receipt", headers=AUTH, json={"lines": [
            {"line": 0, "seal_intact": True, "condition": "as_new", "inspector": "j.smith",
             "quantity": 1}]})
        assert receipt.status_code == 200, receipt.text
        drain(container)

        case = case_of(client, case_id)
        assert case["state"] == "closed", case
        assert case["refunded"] == {"amount": "49.95", "currency": "USD"}
        # One refundCreate, with the case's key, against the order's sale.
        assert shop.keys_posted() == [f"{case_id}-refund-1"]
        create = shop.bodies("RefundBridgeRefundCreate")[0]["variables"]["input"]
        assert create["orderId"] == order_id
        assert [t["amount"] for t in create["transactions"]] == ["49.95"]
        # Odoo: the lot came back to stock on a return picking, and a posted credit note.
        pickings = erp.return_pickings()
        assert [(p["location_dest_id"], p["state"]) for p in pickings] == [
            (odoo_fake.STOCK, "done")]
        lots = {lot["id"]: lot["name"] for lot in erp.of("stock.lot")}
        assert [lots[line["lot_id"]] for line in erp.move_lines_of(pickings[0]["id"])] == [
            "L2401"]
        notes = erp.credit_notes()
        assert len(notes) == 1 and notes[0]["state"] == "posted"
        assert notes[0]["amount_total"] == Decimal("49.95")
        assert case["erp_reference"].startswith(notes[0]["name"])
        assert path_of(case) == ["received", "evaluating", "approved", "awaiting_return",
                                 "received_goods", "refunding", "refunded", "closed"]
        assert message_ids(mailbox) == sorted(
            f"<{case_id}.{kind}@refundbridge>" for kind in ("received", "approved", "refunded"))
        assert_chain_verifies(client, case)

        # Shopify then tells us about the refund we made: applied to our case, nothing more.
        ours = next(iter(shop.refunds))
        news = post_shopify(client, "refunds/create", shop.refund_webhook(ours))
        assert news.status_code == 200, news.text
        assert news.json() == {"case_id": case_id, "applied": True}
        drain(container)
        after = case_of(client, case_id)
        assert after["state"] == "closed"
        assert after["refunded"] == case["refunded"]
        assert after["refund_attempts"] == case["refund_attempts"]
        assert len(after["timeline"]) == len(case["timeline"])
        assert len(shop.keys_posted()) == 1


def test_a_refund_made_in_shopifys_admin_is_counted_and_g01_denies_a_full_refund_after_it(
        shopify_shop: tuple[Container, ShopifyFake, OdooFake]) -> None:
    container, shop, erp = shopify_shop
    order_id = shopify_order(shop, erp, unit_price="60.00")
    admin_refund = shop.add_external_refund(order_id, "10.00", note="goodwill")

    with api(container) as client:
        answer = post_shopify(client, "refunds/create", shop.refund_webhook(admin_refund))
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"order_id": order_id, "external_refund": admin_refund,
                                 "recorded": True}
        # Shopify redelivers: counted once.
        again = post_shopify(client, "refunds/create", shop.refund_webhook(admin_refund))
        assert again.json()["recorded"] is False

        # Now a return for the whole line: 60.00, but only 50.00 is left to refund.
        return_id = shop.add_return(order_id, items=((0, 1, "UNWANTED"),))
        opened = post_shopify(client, "returns/request", shop.return_webhook(return_id))
        assert opened.status_code == 202, opened.text
        case_id = opened.json()["case_id"]
        drain(container)

        case = case_of(client, case_id)
        assert case["state"] == "denied", case
        guard = next(r for r in case["decisions"][0]["rules"] if r["id"] == "G01")
        assert guard["outcome"] == "deny"
        assert shop.keys_posted() == []  # no money moved
        # The shop's answer goes back to Shopify: the return is declined.
        declines = shop.bodies("RefundBridgeReturnDecline")
        assert [b["variables"]["input"]["id"] for b in declines] == [return_id]
        assert shop.returns[return_id]["status"] == "DECLINED"
        assert_chain_verifies(client, case)
