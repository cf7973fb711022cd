"""An exchange end to end through the storefront and ERP fakes, with two workers racing the
replacement: Shopify (a return with exchange lines) + Odoo (a confirmed sale order and its
delivery), and WooCommerce (an order in the exchange status) + ERPNext (a submitted Sales
Order and its Delivery Note). Real PostgreSQL and Redis; the two workers are two threads
running the job production runs (`run_step(case, "replace")`), the first held inside its
ERP call while the second runs to its end: exactly one replacement exists after.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import respx
from fastapi.testclient import TestClient

from refundbridge.api.app import create_app
from refundbridge.bootstrap import Container
from refundbridge.workers import runtime
from refundbridge.workers.jobs import run_step
from tests.conftest import drain
from tests.factories import AUTH, SHOP
from tests.fakes import odoo as odoo_fake
from tests.fakes import shopify as shopify_fake
from tests.fakes import woocommerce as wc_fake
from tests.fakes.erpnext import ERPNextFake
from tests.fakes.odoo import OdooFake
from tests.fakes.shopify import ShopifyFake
from tests.fakes.woocommerce import WooCommerceFake

HOLD_SECONDS = 20
MakeContainer = Callable[..., Container]


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as mock:
        yield mock


@contextmanager
def api(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container)) as client:
        yield client


def case_of(client: TestClient, case_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/cases/{case_id}", headers=AUTH)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def path_of(case: dict[str, Any]) -> list[str]:
    return [e["to_state"] for e in case["timeline"] if e["from_state"] != e["to_state"]]


def receive(client: TestClient, case_id: str, quantity: int) -> None:
    answer = client.post(f"/v1/cases/{case_id}/receipt", headers=AUTH, json={"lines": [
        {"line": 0, "seal_intact": True, "condition": "as_new", "inspector": "j.smith",
         "quantity": quantity}]})
    assert answer.status_code == 200, answer.text


class Held:
    """Holds the first call that reaches `hold()` until `release()`."""

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.released = threading.Event()
        self.held = 0

    def hold(self) -> None:
        if self.held:
            return
        self.held += 1
        self.inside.set()
        assert self.released.wait(HOLD_SECONDS), "the test never released the held call"


def race_two_workers(container: Container, case_id: str, held: Held,
                     made: Callable[[], int]) -> int:
    """Worker one runs the replace job until the ERP holds it inside its call; worker two
    runs the same job to its end meanwhile. Returns how many replacements the ERP had made
    while the first was held; both workers end without an error."""
    runtime.install(container)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            run_step(case_id, "replace")
        except BaseException as exc:  # handed to the test thread, which fails on it
            errors.append(exc)

    first = threading.Thread(target=worker)
    first.start()
    assert held.inside.wait(HOLD_SECONDS), "the first worker never reached the ERP"
    second = threading.Thread(target=worker)
    second.start()
    second.join(HOLD_SECONDS)
    assert not second.is_alive()
    made_meanwhile = made()
    held.released.set()
    first.join(HOLD_SECONDS)
    assert not first.is_alive() and errors == []
    return made_meanwhile


def assert_chain_verifies(client: TestClient, case: dict[str, Any]) -> None:
    evidence = client.get(f"/v1/cases/{case['id']}/evidence", headers=AUTH).json()
    assert evidence["verifies"] is True, evidence
    assert evidence["events"] == len(case["timeline"])


# ================================================================== Shopify + Odoo

SHOPIFY = {"shop_domain": shopify_fake.SHOP_DOMAIN, "access_token": shopify_fake.ACCESS_TOKEN,
           "client_secret": shopify_fake.CLIENT_SECRET, "api_version": shopify_fake.API_VERSION}
ODOO = {"base_url": odoo_fake.BASE, "database": odoo_fake.DATABASE,
        "username": odoo_fake.LOGIN, "api_key": odoo_fake.API_KEY}


def test_a_shopify_exchange_is_made_once_in_odoo_with_two_workers_racing(
        make_container: MakeContainer, router: respx.MockRouter, mailbox: Any) -> None:
    shop, erp = ShopifyFake(), OdooFake(version=17)
    shop.install(router)
    erp.install(router)
    container = make_container(
        storefront="shopify", payment="shopify", erp="odoo", notifier="smtp",
        shopify=SHOPIFY, odoo=ODOO,
        policy={"refund_timing": "on_receipt", "auto_approve_limits": {"USD": "80.00"}})
    now = datetime.now(UTC)
    order_id = shop.add_order(
        [shopify_fake.Line("GLU-METER-01", "Glucose meter", 1, "49.95")],
        placed_at=now - timedelta(days=4), delivered_at=now - timedelta(days=2))
    customer = erp.add_partner("Jane Doe", email="jane.doe@example.com")
    erp.add_order(order_id, [("GLU-METER-01", "L2401", 1)], {"GLU-METER-01": "49.95"},
                  currency="USD", partner=customer)
    erp.add_product("GLU-METER-02")
    erp.add_quant("GLU-METER-02", odoo_fake.STOCK, 5)
    return_id = shop.add_return(order_id, items=((0, 1, "UNWANTED"),))
    # The customer takes the Bluetooth model instead, 10.00 cheaper: 10.00 comes back.
    shop.add_exchange(return_id, "GLU-METER-02", "Glucose meter II", 1, "39.95")

    with api(container) as client:
        answer = client.post(f"/webhooks/{SHOP}/shopify", content=(
            body := shop.return_webhook(return_id)), headers=shopify_fake.webhook_headers(
            "returns/request", body))
        assert answer.status_code == 202, answer.text
        case_id = answer.json()["case_id"]
        drain(container)
        case = case_of(client, case_id)
        assert case["kind"] == "return_and_exchange"
        assert case["state"] == "awaiting_return", case["decisions"]
        assert [(r["sku"], r["quantity"]) for r in case["replacements"]] == [
            ("GLU-METER-02", 1)]
        assert case["requested"] == {"amount": "10.00", "currency": "USD"}

        receive(client, case_id, 1)
        assert case_of(client, case_id)["state"] == "replacing"
        key = f"{case_id}-replacement"
        held = Held()

        def hold_order_create(phase: str, model: str, method: str) -> None:
            if (phase, model, method) == ("before", "sale.order", "create"):
                held.hold()

        erp.hooks.append(hold_order_create)  # type: ignore[arg-type]
        assert race_two_workers(container, case_id, held,
                                lambda: len(erp.replacement_orders(key))) == 0
        drain(container)

        case = case_of(client, case_id)
        assert case["state"] == "closed", (case["failure"], case["notifications"])
        (order,) = erp.replacement_orders(key)
        assert order["state"] == "sale" and order["partner_id"] == customer
        (picking,) = order["picking_ids"]
        assert erp.of("stock.picking", id=picking)[0]["state"] == "done"
        assert case["replacement"]["progress"] == "shipped"
        assert case["replacement"]["document"] == order["name"]
        assert [n for n in (e["name"] for e in case["timeline"])].count(
            "confirm_replacement") == 1
        # The 10.00 difference, once, through Shopify with the case's refund key.
        assert shop.keys_posted() == [f"{case_id}-refund-1"]
        assert case["refunded"] == {"amount": "10.00", "currency": "USD"}
        assert path_of(case) == ["received", "evaluating", "approved", "awaiting_return",
                                 "received_goods", "replacing", "replaced", "refunding",
                                 "refunded", "closed"]
        assert_chain_verifies(client, case)


# ================================================================== WooCommerce + ERPNext


def test_a_woocommerce_exchange_is_made_once_in_erpnext_with_two_workers_racing(
        make_container: MakeContainer, router: respx.MockRouter, mailbox: Any) -> None:
    shop, erp = WooCommerceFake(), ERPNextFake()
    shop.install(router)
    erp.install(router)
    container = make_container(
        storefront="woocommerce", payment="woocommerce", erp="erpnext", notifier="smtp",
        woocommerce={"base_url": wc_fake.BASE, "consumer_key": wc_fake.CONSUMER_KEY,
                     "consumer_secret": wc_fake.CONSUMER_SECRET,
                     "webhook_secret": wc_fake.WEBHOOK_SECRET,
                     "refund_requested_status": "refund-requested",
                     "exchange_requested_status": "exchange-requested"},
        policy={"refund_timing": "on_receipt", "auto_approve_limits": {"CNY": "500.00"}})
    now = datetime.now(UTC)
    # Two meters back, two of the next model out at 179.00: 2 × 20.00 comes back.
    order = shop.add_order(
        [wc_fake.Line("GLU-METER-01", "血糖仪 Glucose meter", 2, "398.00",
                      meta={"_rb_lot": "L2401", "_rb_device_class": "II",
                            "_rb_exchange_sku": "GLU-METER-02",
                            "_rb_exchange_price": "179.00",
                            "_rb_exchange_name": "蓝牙血糖仪 Bluetooth glucose meter"})],
        status="exchange-requested", currency="CNY", email="li.wei@example.com",
        created=now - timedelta(days=5), completed=now - timedelta(days=3),
        modified=now - timedelta(minutes=1),
        meta={"_refund_reason_code": "wrong_item", "_refund_reason": "想要蓝牙款",
              "wpml_language": "zh-hans"})
    erp.add_invoice(str(order["id"]), [("GLU-METER-01", 2, "199.00")])
    erp.add_item("GLU-METER-02")
    erp.add_stock("GLU-METER-02", "Stores - RB", 5)
    headers, body = shop.delivery(order["id"])

    with api(container) as client:
        answer = client.post(f"/webhooks/{SHOP}/woocommerce", content=body, headers=headers)
        assert answer.status_code == 202, answer.text
        case_id = answer.json()["case_id"]
        drain(container)
        case = case_of(client, case_id)
        assert case["kind"] == "exchange"
        assert case["state"] == "awaiting_return", case["decisions"]
        assert case["requested"] == {"amount": "40.00", "currency": "CNY"}

        receive(client, case_id, 2)
        assert case_of(client, case_id)["state"] == "replacing"
        key = f"{case_id}-replacement"
        held = Held()

        def hold_order_insert(doctype: str, _: dict[str, Any]) -> None:
            if doctype == "Sales Order":
                held.hold()

        erp.before_insert.append(hold_order_insert)
        assert race_two_workers(container, case_id, held,
                                lambda: len(erp.replacement_orders(key))) == 0
        drain(container)

        case = case_of(client, case_id)
        assert case["state"] == "closed", (case["failure"], case["notifications"])
        (sales_order,) = erp.replacement_orders(key)
        assert sales_order["docstatus"] == 1
        notes = [dn for dn in erp.delivery_notes.values()
                 if any(row.get("against_sales_order") == sales_order["name"]
                        for row in dn.get("items", []))]
        assert len(notes) == 1 and notes[0]["docstatus"] == 1
        assert case["replacement"]["document"] == sales_order["name"]
        assert case["replacement"]["delivery"] == notes[0]["name"]
        assert erp.stock[("GLU-METER-02", "Stores - RB", None)] == 3
        # The 40.00 difference, refunded once through WooCommerce.
        refunds = list(shop.refunds.values())
        assert [Decimal(str(r["amount"])) for r in refunds] == [Decimal("40.00")]
        assert case["refunded"] == {"amount": "40.00", "currency": "CNY"}
        assert path_of(case) == ["received", "evaluating", "approved", "awaiting_return",
                                 "received_goods", "replacing", "replaced", "refunding",
                                 "refunded", "closed"]
        assert_chain_verifies(client, case)
