"""Odoo `erp.replacement` against the stateful Odoo fake (tests/fakes/odoo.py), at the HTTP
transport: a `sale.order` under the key (`client_order_ref`), confirmed, its delivery
validated; a crash or a lost answer between calls makes nothing twice; stock that is short
leaves the order made and ships it once stock is there; two racing callers show why our own
claim, not Odoo, is what makes a replacement exactly once."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from refundbridge.connectors.base import ConnectorContext
from refundbridge.connectors.odoo import OdooConnector
from refundbridge.core.errors import PermanentProviderError, TransientProviderError
from refundbridge.core.money import Money
from refundbridge.core.ports import (
    ReplacementItem,
    ReplacementOrder,
    ReplacementResult,
    ReplacementState,
)
from tests.connectors.helpers import FAST, add_devices
from tests.fakes.common import installed
from tests.fakes.odoo import API_KEY, BASE, CUSTOMERS, DATABASE, LOGIN, STOCK, OdooFake

CASE = "rc_7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d"
KEY = f"{CASE}.replacement"
ORDER = "SO-2001"


def make_connector(**changes: Any) -> OdooConnector:
    raw: dict[str, Any] = {"base_url": BASE, "database": DATABASE, "username": LOGIN,
                           "api_key": API_KEY, **changes}
    return OdooConnector.from_config(raw, ConnectorContext(shop_id="acme", retry=FAST))


def make_order(quantity: int = 2, sku: str = "GLU-STRIP-50", currency: str = "CNY",
               order_id: str = ORDER) -> ReplacementOrder:
    return ReplacementOrder(
        idempotency_key=KEY, case_id=CASE, order_id=order_id, customer_id="c-7",
        customer_email="li@example.cn",
        items=(ReplacementItem(sku, "Glucose test strips", quantity,
                               Money.parse("59.00", currency)),))


def seeded(version: int = 17) -> OdooFake:
    odoo = add_devices(OdooFake(version=version))
    odoo.customer = odoo.add_partner("Li Wei", email="li@example.cn")  # type: ignore[attr-defined]
    odoo.add_order(ORDER, [("GLU-STRIP-50", "B77", 2)], {"GLU-STRIP-50": "59.00"},
                   partner=odoo.customer)  # type: ignore[attr-defined]
    odoo.add_quant("GLU-STRIP-50", STOCK, 5, lot="B77")
    return odoo


@pytest.fixture
def odoo() -> Iterator[OdooFake]:
    fake = seeded()
    with installed(fake):
        yield fake


@pytest.fixture
def connector() -> Iterator[OdooConnector]:
    conn = make_connector()
    yield conn
    conn.close()


def failing(odoo: OdooFake, phase: str, model: str, method: str, times: int = 1) -> list[int]:
    """Answer `times` calls of `model.method` with a 503, before Odoo ran them or after it
    committed them (`phase`); returns the count of failures left."""
    left = [times]

    def hook(at: str, called_model: str, called_method: str) -> httpx.Response | None:
        if (at, called_model, called_method) == (phase, model, method) and left[0] > 0:
            left[0] -= 1
            return httpx.Response(503, text="upstream timed out")
        return None

    odoo.hooks.append(hook)
    return left


@pytest.mark.parametrize("version", [16, 17, 19])
def test_a_replacement_is_a_confirmed_sale_order_whose_delivery_is_validated(
        version: int) -> None:
    odoo = seeded(version)
    api = {"api": "json2"} if version >= 19 else {}
    with installed(odoo):
        conn = make_connector(**api)
        try:
            result = conn.create_replacement(make_order())
        finally:
            conn.close()

    (sale,) = odoo.replacement_orders(KEY)
    (picking,) = [odoo.records["stock.picking"][i] for i in sale["picking_ids"]]
    assert result == ReplacementResult(sale["name"], ReplacementState.SHIPPED, picking["name"])
    assert sale["state"] == "sale" and sale["partner_id"] == odoo.customer  # type: ignore[attr-defined]
    assert sale["origin"].startswith("S") and CASE in sale["origin"]
    (line,) = [odoo.records["sale.order.line"][i] for i in sale["order_line"]]
    assert (line["product_uom_qty"], line["price_unit"]) == (2, Decimal("59.0"))
    assert (picking["state"], picking["location_dest_id"]) == ("done", CUSTOMERS)
    assert odoo.on_hand("GLU-STRIP-50", STOCK, "B77") == 3
    moves = [odoo.records["stock.move"][i] for i in picking["move_ids"]]
    if version >= 17:
        assert all(m["picked"] for m in moves)
    else:
        assert [m["quantity_done"] for m in moves] == [2]


def test_find_answers_nothing_before_and_the_same_after(
        odoo: OdooFake, connector: OdooConnector) -> None:
    assert connector.find_replacement(make_order()) is None

    made = connector.create_replacement(make_order())

    assert connector.find_replacement(make_order()) == made
    assert connector.create_replacement(make_order()) == made
    assert len(odoo.replacement_orders(KEY)) == 1
    assert odoo.executed().count(("sale.order", "create")) == 1
    assert odoo.executed().count(("stock.picking", "button_validate")) == 1


@pytest.mark.parametrize(("phase", "model", "method"), [
    ("after", "sale.order", "create"),  # committed, answer lost
    ("after", "sale.order", "action_confirm"),
    ("after", "stock.picking", "button_validate"),
    ("before", "stock.picking", "button_validate"),
])
def test_a_lost_answer_or_a_blip_makes_nothing_twice(
        odoo: OdooFake, connector: OdooConnector, phase: str, model: str, method: str) -> None:
    failing(odoo, phase, model, method)

    result = connector.create_replacement(make_order())

    assert result.state is ReplacementState.SHIPPED
    assert len(odoo.replacement_orders(KEY)) == 1
    assert odoo.on_hand("GLU-STRIP-50", STOCK, "B77") == 3


def test_a_crash_before_the_delivery_is_validated_is_finished_by_the_next_attempt(
        odoo: OdooFake, connector: OdooConnector) -> None:
    failing(odoo, "before", "stock.picking", "button_validate", times=3)
    with pytest.raises(TransientProviderError):
        connector.create_replacement(make_order())
    found = connector.find_replacement(make_order())
    assert found is not None and found.state is ReplacementState.CREATED and found.delivery

    result = connector.create_replacement(make_order())

    assert result == ReplacementResult(found.document, ReplacementState.SHIPPED,
                                       found.delivery)
    assert odoo.executed().count(("sale.order", "create")) == 1


def test_short_stock_leaves_the_order_waiting_and_ships_it_once_stock_is_in(
        odoo: OdooFake, connector: OdooConnector) -> None:
    with pytest.raises(PermanentProviderError) as info:
        connector.create_replacement(make_order(quantity=8))
    assert info.value.code == "waiting_for_stock" and "WH/OUT/" in str(info.value)
    waiting = connector.find_replacement(make_order(quantity=8))
    assert waiting is not None and waiting.state is ReplacementState.CREATED

    odoo.add_quant("GLU-STRIP-50", STOCK, 3, lot="B77")
    result = connector.create_replacement(make_order(quantity=8))

    assert result.state is ReplacementState.SHIPPED and result.document == waiting.document
    assert len(odoo.replacement_orders(KEY)) == 1
    assert odoo.on_hand("GLU-STRIP-50", STOCK, "B77") == 0


@pytest.mark.parametrize(("order", "code", "named"), [
    (make_order(sku="NO-SUCH-SKU"), "product_not_found", "NO-SUCH-SKU"),
    (make_order(order_id="SO-404"), "order_not_found", "SO-404"),
    (make_order(currency="USD"), "replacement_currency", "USD"),
])
def test_what_odoo_cannot_fill_is_refused_and_nothing_is_made(
        odoo: OdooFake, connector: OdooConnector, order: ReplacementOrder, code: str,
        named: str) -> None:
    with pytest.raises(PermanentProviderError) as info:
        connector.create_replacement(order)

    assert info.value.code == code and named in str(info.value)
    assert odoo.replacement_orders(KEY) == []


def test_two_callers_racing_past_the_search_make_two_orders_as_odoo_would(
        odoo: OdooFake) -> None:
    """`client_order_ref` is not unique in Odoo and a search then a create is not atomic:
    two callers that both search before either creates make two orders. The connector cannot
    prevent it; the worker's claim in our database before the call does. From then on the
    connector answers the oldest."""
    odoo.add_quant("GLU-STRIP-50", STOCK, 10, lot="B77")
    both_searched = threading.Barrier(2, timeout=10)

    def hold(phase: str, model: str, method: str) -> httpx.Response | None:
        if (phase, model, method) == ("before", "sale.order", "create"):
            both_searched.wait()
        return None

    odoo.hooks.append(hold)
    results: list[ReplacementResult] = []

    def call() -> None:
        conn = make_connector()
        try:
            results.append(conn.create_replacement(make_order()))
        finally:
            conn.close()

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    orders = odoo.replacement_orders(KEY)
    assert len(orders) == 2 and len(results) == 2
    conn = make_connector()
    try:
        found = conn.find_replacement(make_order())
    finally:
        conn.close()
    assert found is not None and found.document == min(orders, key=lambda o: o["id"])["name"]


def test_a_delivery_reserved_from_a_recalled_lot_is_not_validated(
        odoo: OdooFake, connector: OdooConnector) -> None:
    order = dataclasses.replace(make_order(), avoid_lots=("B77",))

    with pytest.raises(PermanentProviderError) as info:
        connector.create_replacement(order)

    assert info.value.code == "recalled_lot_reserved" and "B77" in str(info.value)
    assert odoo.on_hand("GLU-STRIP-50", STOCK, "B77") == 5  # nothing left the warehouse
    found = connector.find_replacement(order)
    assert found is not None and found.state is ReplacementState.CREATED


def test_a_delivery_reserved_from_a_clear_lot_ships(
        odoo: OdooFake, connector: OdooConnector) -> None:
    order = dataclasses.replace(make_order(), avoid_lots=("B76",))

    assert connector.create_replacement(order).state is ReplacementState.SHIPPED
