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
from urllib.parse import parse_qsl

import httpx
import pytest
import respx
from alipay import AliPay
from fastapi.testclient import TestClient

from refundbridge.api.app import create_app
from refundbridge.bootstrap import Container
from refundbridge.demo import Mailbox
from refundbridge.workers.reconcile import reconcile
from tests.conftest import drain
from tests.factories import (
    AUTH,
    GENERIC_SECRET,
    REVIEWER_ACTOR,
    REVIEWER_AUTH,
    SHOP,
    request_body,
    signed,
)
from tests.fakes import odoo as odoo_fake
from tests.fakes import shopify as shopify_fake
from tests.fakes import woocommerce as wc_fake
from tests.fakes.alipay import APP_ID, REFUND, AlipayFake, AlipayKeys
from tests.fakes.erpnext import ERPNextFake
from tests.fakes.odoo import OdooFake
from tests.fakes.shopify import ShopifyFake
from tests.fakes.wechatpay import REFUNDS, WeChatPayFake, WeChatPayKeys
from tests.fakes.woocommerce import WooCommerceFake

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
    answer: httpx.Response = client.post(f"/webhooks/{SHOP}/shopify", content=body,
                                         headers=sent)
    return answer


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
        assert len(shop.bodies("RefundBridgeOrder")) == 1

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
        # (Which lot came back is checked in the next test.)
        assert [(m["sku"], m["quantity"], m["disposition"]) for m in case["stock_moves"]] == [
            ("GLU-METER-01", 1, "restock")]
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
            f"<{case_id}.{kind}@refundbridge>"
            for kind in ("received", "approved", "goods_received", "refunded"))
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


def test_a_defective_shopify_return_waits_for_a_person_and_then_is_approved_in_shopify(
        shopify_shop: tuple[Container, ShopifyFake, OdooFake]) -> None:
    container, shop, erp = shopify_shop
    order_id = shopify_order(shop, erp)
    return_id = shop.add_return(order_id, items=((0, 1, "DEFECTIVE"),), note="screen blank")

    with api(container) as client:
        opened = post_shopify(client, "returns/request", shop.return_webhook(return_id))
        assert opened.status_code == 202, opened.text
        case_id = opened.json()["case_id"]
        drain(container)
        case = case_of(client, case_id)
        assert case["state"] == "awaiting_review", case
        assert shop.bodies("RefundBridgeReturnApprove") == []
        assert shop.returns[return_id]["status"] == "REQUESTED"

        decided = client.post(f"/v1/cases/{case_id}/review", headers=REVIEWER_AUTH, json={
            "decision": "approve", "internal_note": "known display fault"})
        assert decided.status_code == 200, decided.text
        drain(container)

        case = case_of(client, case_id)
        assert case["state"] == "awaiting_return", case
        assert case["decisions"][-1]["decided_by"] == REVIEWER_ACTOR
        assert shop.returns[return_id]["status"] == "OPEN"
        assert len(shop.bodies("RefundBridgeReturnApprove")) == 1
        assert shop.keys_posted() == []
        assert_chain_verifies(client, case)


def test_the_case_records_the_lot_the_erp_shipped_for_a_returned_unit(
        shopify_shop: tuple[Container, ShopifyFake, OdooFake]) -> None:
    container, shop, erp = shopify_shop
    order_id = shopify_order(shop, erp)
    return_id = shop.add_return(order_id, items=((0, 1, "UNWANTED"),))

    with api(container) as client:
        opened = post_shopify(client, "returns/request", shop.return_webhook(return_id))
        assert opened.status_code == 202, opened.text
        case_id = opened.json()["case_id"]
        drain(container)
        client.post(f"/v1/cases/{case_id}/receipt", headers=AUTH, json={"lines": [
            {"line": 0, "seal_intact": True, "condition": "as_new", "inspector": "j.smith"}]})
        drain(container)
        case = case_of(client, case_id)

    assert case["state"] == "closed"
    assert [m["lot"] for m in case["stock_moves"]] == ["L2401"]


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


# ================================================================== WooCommerce + Alipay + ERPNext


@cache
def alipay_keys() -> AlipayKeys:
    # RSA keys are slow to make: once per run, never at import.
    return AlipayKeys.generate()


@pytest.fixture
def woocommerce_shop(make_container: MakeContainer, router: respx.MockRouter
                     ) -> tuple[Container, WooCommerceFake, AlipayFake, ERPNextFake]:
    shop, alipay, erp = WooCommerceFake(), AlipayFake(alipay_keys()), ERPNextFake()
    for fake in (shop, alipay, erp):
        fake.install(router)
    # The `erpnext` table (the fake's base_url and a key pair) comes from conftest's shop.
    container = make_container(
        storefront="woocommerce", payment="alipay", erp="erpnext", notifier="smtp",
        woocommerce={"base_url": wc_fake.BASE, "consumer_key": wc_fake.CONSUMER_KEY,
                     "consumer_secret": wc_fake.CONSUMER_SECRET,
                     "webhook_secret": wc_fake.WEBHOOK_SECRET,
                     "refund_requested_status": "refund-requested"},
        alipay={"app_id": APP_ID, "app_private_key": alipay_keys().app_private,
                "alipay_public_key": alipay_keys().platform_public},
        policy={"refund_timing": "on_receipt", "auto_approve_limits": {"CNY": "500.00"}})
    return container, shop, alipay, erp


def sdk_verifies(body: bytes) -> bool:
    """Whether Alipay's official SDK accepts a notification as signed by Alipay."""
    form = dict(parse_qsl(body.decode("ascii")))
    sign = form.pop("sign")
    sdk = AliPay(appid=APP_ID, app_private_key_string=alipay_keys().app_private,
                 alipay_public_key_string=alipay_keys().platform_public)
    return bool(sdk.verify(form, sign))


def test_woocommerce_request_is_refunded_through_alipay_booked_in_erpnext_and_written_back(
        woocommerce_shop: tuple[Container, WooCommerceFake, AlipayFake, ERPNextFake],
        mailbox: Mailbox) -> None:
    container, shop, alipay, erp = woocommerce_shop
    now = datetime.now(UTC)
    trade_no = alipay.add_trade("KJ-20260301-0042", "398.00")
    order = shop.add_order(
        [wc_fake.Line("GLU-METER-01", "血糖仪 Glucose meter", 2, "398.00",
                      meta={"_rb_lot": "L2401", "_rb_device_class": "II"})],
        status="refund-requested", currency="CNY", email="li.wei@example.com",
        payment_method="alipay", transaction_id=trade_no,
        created=now - timedelta(days=5), completed=now - timedelta(days=3),
        modified=now - timedelta(minutes=1),
        meta={"_refund_request_kind": "refund_only", "_refund_reason_code": "changed_mind",
              "_refund_reason": "不需要了", "wpml_language": "zh-hans"})
    erp.add_invoice(str(order["id"]), [("GLU-METER-01", 2, "199.00")])
    headers, body = shop.delivery(order["id"])

    with api(container) as client:
        answer = client.post(f"/webhooks/{SHOP}/woocommerce", content=body, headers=headers)
        assert answer.status_code == 202, answer.text
        case_id = answer.json()["case_id"]
        drain(container)

        case = case_of(client, case_id)
        assert case["state"] == "closed", case
        assert case["decisions"][0]["outcome"] == "approve"
        assert case["refunded"] == {"amount": "398.00", "currency": "CNY"}
        key = f"{case_id}-refund-1"
        # Alipay: one signed alipay.trade.refund on Alipay's trade number, keyed by the case.
        refunds = [c for c in alipay.calls if c["method"] == REFUND]
        assert len(refunds) == 1
        assert refunds[0]["biz_content"]["out_request_no"] == key
        assert refunds[0]["biz_content"]["trade_no"] == trade_no
        assert refunds[0]["biz_content"]["refund_amount"] == "398.00"
        assert [p["out_request_no"] for p in alipay.paid()] == [key]
        # ERPNext: a submitted credit note against the order's invoice, for this case.
        assert len(erp.returns) == 1 and erp.returns[0]["docstatus"] == 1
        assert case_id in erp.returns[0]["remarks"]
        assert case["erp_reference"] == erp.returns[0]["name"]
        # WooCommerce: the order moved on from "refund requested", with a private note.
        assert shop.orders[order["id"]]["status"] == "refund-approved"
        notes = shop.notes[order["id"]]
        assert notes and all(case_id in n["note"] for n in notes)
        assert not any(n["customer_note"] for n in notes)
        assert path_of(case) == ["received", "evaluating", "approved", "refunding", "refunded",
                                 "closed"]
        assert message_ids(mailbox) == sorted(
            f"<{case_id}.{kind}@refundbridge>" for kind in ("received", "approved", "refunded"))
        assert_chain_verifies(client, case)

        # Alipay's asynchronous notification for that refund, signed with the platform key.
        notification = alipay.notification(key)
        assert sdk_verifies(notification)
        form = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        told = client.post(f"/webhooks/{SHOP}/alipay", content=notification, headers=form)
        assert told.status_code == 200
        assert told.content == b"success"
        assert told.headers["content-type"].startswith("text/plain")
        drain(container)
        after = case_of(client, case_id)
        assert after["state"] == "closed"
        assert len(after["timeline"]) == len(case["timeline"])  # settled already

        # A notification altered on the way is refused, and changes nothing either.
        tampered = notification.replace(b"refund_fee=398.00", b"refund_fee=39.80")
        assert tampered != notification
        refused = client.post(f"/webhooks/{SHOP}/alipay", content=tampered, headers=form)
        assert refused.status_code == 401, refused.text
        assert refused.content != b"success"
        assert len(case_of(client, case_id)["timeline"]) == len(case["timeline"])
        assert len([c for c in alipay.calls if c["method"] == REFUND]) == 1


# ================================================================== generic + WeChat Pay + Odoo


@cache
def wechat_keys() -> WeChatPayKeys:
    return WeChatPayKeys.generate("shop-setups")


@pytest.fixture
def wechat_shop(make_container: MakeContainer, router: respx.MockRouter
                ) -> tuple[Container, WeChatPayFake, OdooFake]:
    wechat, erp = WeChatPayFake(wechat_keys()), OdooFake(version=19)
    wechat.install(router)
    erp.install(router)
    container = make_container(
        storefront="generic", payment="wechatpay", erp="odoo", notifier="smtp",
        generic={"secret": GENERIC_SECRET},
        wechatpay=wechat_keys().connector_config(payment_reference="out_trade_no"),
        odoo={"base_url": odoo_fake.BASE, "database": odoo_fake.DATABASE,
              "api_key": odoo_fake.API_KEY, "api": "json2"},
        policy={"refund_timing": "on_approval", "auto_approve_limits": {"CNY": "500.00"}})
    return container, wechat, erp


def open_wechat_case(client: TestClient, erp: OdooFake) -> tuple[str, dict[str, Any]]:
    body = request_body(**{"order.payment": {"provider": "wechatpay",
                                              "reference": "ANX-20260301-0007"}})
    erp.add_order(body["order"]["id"], [("GLU-METER-01", "L2401", 2)],
                  {"GLU-METER-01": "199.00"})
    raw, headers = signed(body)
    answer = client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["case_id"]), body


def post_wechat(client: TestClient, headers: dict[str, str], body: bytes) -> httpx.Response:
    answer: httpx.Response = client.post(
        f"/webhooks/{SHOP}/wechatpay", content=body,
        headers={**headers, "Content-Type": "application/json"})
    return answer


def test_wechat_refund_through_a_503_is_paid_once_and_settled_by_the_notification(
        wechat_shop: tuple[Container, WeChatPayFake, OdooFake], mailbox: Mailbox) -> None:
    container, wechat, erp = wechat_shop
    unavailable = [wechat.error(503, "SYSTEM_ERROR", "系统繁忙，请稍后重试")]
    wechat.before_post.append(lambda _: unavailable.pop() if unavailable else None)

    with api(container) as client:
        case_id, _ = open_wechat_case(client, erp)
        drain(container)
        key = f"{case_id}-refund-1"

        # Two POSTs (the 503, then the retry), one out_refund_no, one refund at WeChat Pay.
        posts = [json.loads(r.content) for r in wechat.posts()]
        assert len(posts) == 2
        assert {p["out_refund_no"] for p in posts} == {key}
        assert posts[0] == posts[1]
        assert posts[0]["out_trade_no"] == "ANX-20260301-0007"
        assert posts[0]["amount"] == {"refund": 39800, "total": 39800, "currency": "CNY"}
        assert list(wechat.refunds) == [key]
        # WeChat Pay answered PROCESSING: the money is not back yet, so the case waits.
        case = case_of(client, case_id)
        assert case["state"] == "refunding", case
        assert case["refund_attempts"][0]["status"] == "pending"
        assert case["refunded"]["amount"] == "0.00"

        headers, notification = wechat.notification_for(key)
        told = post_wechat(client, headers, notification)
        assert told.status_code == 200, told.text
        assert told.json() == {"case_id": case_id, "applied": True}
        drain(container)
        case = case_of(client, case_id)
        assert case["refunded"] == {"amount": "398.00", "currency": "CNY"}
        assert case["state"] == "closed", case
        # Odoo (/json/2): the customer kept the goods, so only a posted credit note.
        assert erp.return_pickings() == []
        notes = erp.credit_notes()
        assert len(notes) == 1 and notes[0]["state"] == "posted"
        assert notes[0]["amount_total"] == Decimal("398.00")
        assert {c.api for c in erp.calls} == {"json2"}
        assert message_ids(mailbox) == sorted(
            f"<{case_id}.{kind}@refundbridge>" for kind in ("received", "approved", "refunded"))
        assert_chain_verifies(client, case)

        # WeChat Pay re-sends until it is answered; a duplicate changes nothing.
        again = post_wechat(client, headers, notification)
        assert again.status_code == 200, again.text
        drain(container)
        # Nor does a late poll.
        reconcile(container, stale_after=0, pending_after=0)
        drain(container)
        after = case_of(client, case_id)
        assert after["state"] == "closed"
        assert len(after["timeline"]) == len(case["timeline"])
        assert len(wechat.posts()) == 2 and len(wechat.refunds) == 1


def test_wechat_pending_refund_settled_by_the_reconciler_first_then_the_late_notification(
        wechat_shop: tuple[Container, WeChatPayFake, OdooFake]) -> None:
    container, wechat, erp = wechat_shop

    with api(container) as client:
        case_id, _ = open_wechat_case(client, erp)
        drain(container)
        key = f"{case_id}-refund-1"
        assert case_of(client, case_id)["state"] == "refunding"

        # WeChat Pay pays, but its notification is late: the reconciler's poll settles it.
        wechat.settle(key)
        report = reconcile(container, stale_after=0, pending_after=0)
        assert case_id in report.revived
        drain(container)
        case = case_of(client, case_id)
        assert case["state"] == "closed", case
        assert case["refunded"] == {"amount": "398.00", "currency": "CNY"}
        polls = [r for r in wechat.requests if r.method == "GET"]
        assert [r.url.path for r in polls] == [f"{REFUNDS}/{key}"]

        # The notification arrives after all: it converges on the same case, changing nothing.
        headers, notification = wechat.notification_for(key)
        told = post_wechat(client, headers, notification)
        assert told.status_code == 200, told.text
        assert told.json()["case_id"] == case_id
        drain(container)
        after = case_of(client, case_id)
        assert after["state"] == "closed"
        assert after["refunded"] == case["refunded"]
        assert len(after["timeline"]) == len(case["timeline"])
        assert len(wechat.posts()) == 1 and len(erp.credit_notes()) == 1
        # A notification that WeChat Pay did not sign is refused.
        forged = {**headers, "Wechatpay-Signature": headers["Wechatpay-Signature"][::-1]}
        assert post_wechat(client, forged, notification).status_code == 401
