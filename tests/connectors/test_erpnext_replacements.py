"""ERPNext `erp.replacement` at the HTTP transport (respx fake, tests/fakes/erpnext.py): a
submitted Sales Order under the key, then the Delivery Note ERPNext maps from it; a crash
or a lost answer between the calls makes nothing twice; two racing callers show why our own
claim, not ERPNext, is what makes a replacement exactly once."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from refundbridge.connectors.base import ConnectorContext, RetryPolicy
from refundbridge.connectors.erpnext import ERPNextConnector
from refundbridge.core.errors import ConfigError, PermanentProviderError, TransientProviderError
from refundbridge.core.money import Money
from refundbridge.core.ports import (
    ReplacementItem,
    ReplacementOrder,
    ReplacementResult,
    ReplacementState,
)
from tests.fakes.common import installed
from tests.fakes.erpnext import BASE, ERPNextFake
from tests.fakes.erpnext_exchanges import MAKE_DELIVERY_NOTE

FAST = RetryPolicy(attempts=3, initial_wait=0, max_wait=0)
CASE = "rc_5e1d0c9b8a7f6e5d4c3b2a1908f7e6d5"
KEY = f"{CASE}.replacement"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def make_connector(**settings: Any) -> ERPNextConnector:
    ctx = ConnectorContext(shop_id="acme", retry=FAST, clock=lambda: NOW)
    return ERPNextConnector.from_config(
        {"base_url": BASE, "api_key": "k3y-0123456789ab", "api_secret": "s3cret-0123456789ab",
         **settings}, ctx)


def make_order(key: str = KEY, quantity: int = 1) -> ReplacementOrder:
    return ReplacementOrder(
        idempotency_key=key, case_id=CASE, order_id="SO-1001", customer_id="c-7",
        customer_email="li@example.cn",
        items=(ReplacementItem("BPM-200", "Blood pressure monitor", quantity,
                               Money.parse("100.00", "CNY")),))


@pytest.fixture
def erp() -> Iterator[ERPNextFake]:
    fake = ERPNextFake()
    fake.add_item("BPM-200")
    fake.add_invoice("SO-1001", [("BPM-200", 2, "100.00")])
    fake.add_stock("BPM-200", "Stores - RB", 3)
    with installed(fake):
        yield fake


@pytest.fixture
def connector() -> Iterator[ERPNextConnector]:
    conn = make_connector()
    yield conn
    conn.close()


def test_a_replacement_is_a_submitted_sales_order_and_its_delivery_note(
        erp: ERPNextFake, connector: ERPNextConnector) -> None:
    result = connector.create_replacement(make_order())

    (so,) = erp.replacement_orders(KEY)
    assert result == ReplacementResult(document=so["name"], state=ReplacementState.SHIPPED,
                                       delivery=result.delivery)
    assert (so["docstatus"], so["customer"], so["company"], so["currency"]) == (
        1, "Li Wei", "Acme Medical", "CNY")
    assert so["delivery_date"] == "2026-03-02"
    assert [(r["item_code"], r["qty"], r["rate"], r["warehouse"]) for r in so["items"]] == [
        ("BPM-200", 1, 100.0, "Stores - RB")]
    (dn,) = erp.deliveries_of(so["name"])
    assert dn["name"] == result.delivery and dn["docstatus"] == 1
    assert [(r["item_code"], r["qty"], r["so_detail"]) for r in dn["items"]] == [
        ("BPM-200", 1, so["items"][0]["name"])]
    assert erp.on_hand("BPM-200", "Stores - RB") == 2
    # The mapper was asked, as ERPNext documents it, with the order's name.
    (mapped,) = [r for r in erp.requests if r.url.path == MAKE_DELIVERY_NOTE]
    assert mapped.url.params["source_name"] == so["name"]


def test_find_answers_nothing_before_and_the_same_after(
        erp: ERPNextFake, connector: ERPNextConnector) -> None:
    assert connector.find_replacement(make_order()) is None

    made = connector.create_replacement(make_order())

    assert connector.find_replacement(make_order()) == made
    assert connector.create_replacement(make_order()) == made
    assert len(erp.replacement_orders(KEY)) == 1 and len(erp.delivery_notes) == 1


def test_a_crash_between_the_order_and_its_delivery_makes_no_second_order(
        erp: ERPNextFake, connector: ERPNextConnector) -> None:
    down = [True]
    erp.hooks.append(lambda r: httpx.Response(503) if down[0] and
                     r.url.path == MAKE_DELIVERY_NOTE else None)
    with pytest.raises(TransientProviderError):
        connector.create_replacement(make_order())
    (so,) = erp.replacement_orders(KEY)
    assert connector.find_replacement(make_order()) == ReplacementResult(
        so["name"], ReplacementState.CREATED)

    down[0] = False
    result = connector.create_replacement(make_order())

    assert result.document == so["name"] and result.state is ReplacementState.SHIPPED
    assert len(erp.replacement_orders(KEY)) == 1 and len(erp.delivery_notes) == 1


def test_an_insert_whose_answer_was_lost_is_found_not_made_again(
        erp: ERPNextFake, connector: ERPNextConnector) -> None:
    lost = {"Sales Order": 1, "Delivery Note": 1}

    def commit_then_fail(request: httpx.Request) -> httpx.Response | None:
        doctype = request.url.path.removeprefix("/api/resource/").replace("%20", " ")
        if request.method != "POST" or not lost.get(doctype):
            return None
        lost[doctype] -= 1
        doc = json.loads(request.content)
        if doctype == "Sales Order":
            erp.hooks.remove(commit_then_fail)  # the fake saves it, then the proxy times out
            erp.insert_sales_order(request)
            erp.hooks.append(commit_then_fail)
        else:
            erp.insert_delivery(doc)
        return httpx.Response(504)

    erp.hooks.append(commit_then_fail)

    result = connector.create_replacement(make_order())

    assert result.state is ReplacementState.SHIPPED
    assert len(erp.replacement_orders(KEY)) == 1 and len(erp.delivery_notes) == 1
    assert erp.on_hand("BPM-200", "Stores - RB") == 2


def test_out_of_stock_leaves_the_order_made_and_ships_it_once_stock_is_back(
        erp: ERPNextFake, connector: ERPNextConnector) -> None:
    with pytest.raises(PermanentProviderError) as info:
        connector.create_replacement(make_order(quantity=5))
    assert "BPM-200" in str(info.value) and "Stores - RB" in str(info.value)
    (so,) = erp.replacement_orders(KEY)
    assert connector.find_replacement(make_order(quantity=5)) == ReplacementResult(
        so["name"], ReplacementState.CREATED)

    erp.add_stock("BPM-200", "Stores - RB", 2)
    result = connector.create_replacement(make_order(quantity=5))

    assert result.state is ReplacementState.SHIPPED
    assert len(erp.replacement_orders(KEY)) == 1
    assert erp.on_hand("BPM-200", "Stores - RB") == 0


def test_an_order_erpnext_does_not_know_is_refused_and_nothing_is_made(
        erp: ERPNextFake, connector: ERPNextConnector) -> None:
    order = ReplacementOrder(KEY, CASE, "SO-404", "c-7", None, make_order().items)

    with pytest.raises(PermanentProviderError) as info:
        connector.create_replacement(order)

    assert info.value.code == "order_not_found" and "SO-404" in str(info.value)
    assert erp.sales_orders == {}


def test_an_item_erpnext_does_not_know_is_refused_by_erpnext(
        erp: ERPNextFake, connector: ERPNextConnector) -> None:
    order = ReplacementOrder(KEY, CASE, "SO-1001", "c-7", None, (
        ReplacementItem("NO-SUCH-SKU", "Unknown", 1, Money.parse("1.00", "CNY")),))

    with pytest.raises(PermanentProviderError) as info:
        connector.create_replacement(order)

    assert "NO-SUCH-SKU" in str(info.value)
    assert erp.sales_orders == {}


def test_the_key_can_live_in_a_custom_field_and_the_order_id_stays_on_the_order(
        erp: ERPNextFake) -> None:
    connector = make_connector(replacement_key_field="custom_rb_key", order_field="po_no")
    try:
        connector.create_replacement(make_order())
    finally:
        connector.close()

    (so,) = erp.replacement_orders(KEY, key_field="custom_rb_key")
    assert so["po_no"] == "SO-1001"  # its units count as shipped for the original order


def test_a_key_field_that_is_no_fieldname_is_refused_at_load() -> None:
    with pytest.raises(ConfigError) as info:
        make_connector(replacement_key_field="po_no; drop")
    assert "replacement_key_field" in str(info.value)


# ------------------------------------------------------------------ two callers, one key


def test_two_callers_racing_past_the_search_make_two_orders_as_erpnext_would(
        erp: ERPNextFake) -> None:
    """ERPNext has no uniqueness on `po_no`; a search then an insert is not atomic. Two
    callers that both search before either inserts make two orders: at the connector level
    nothing prevents it, which is why the worker claims the replacement step in our database
    before calling (tests/integration, the exchanges worker). What the connector does is
    answer one of them, the oldest, from then on."""
    erp.add_stock("BPM-200", "Stores - RB", 10)
    both_searched = threading.Barrier(2, timeout=10)

    def hold(doctype: str, _: dict[str, Any]) -> None:
        if doctype == "Sales Order":
            both_searched.wait()

    erp.before_insert.append(hold)
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

    assert len(erp.replacement_orders(KEY)) == 2  # the unguarded race the claim prevents
    oldest = min(erp.replacement_orders(KEY), key=lambda so: so["creation"])["name"]
    conn = make_connector()
    try:
        assert conn.find_replacement(make_order()).document == oldest  # type: ignore[union-attr]
    finally:
        conn.close()
    assert len(results) == 2


def test_a_caller_that_finds_the_order_of_another_delivers_it_once(
        erp: ERPNextFake) -> None:
    """The second caller starts once the first has made the order: it finds that order, and
    ERPNext's own refusal to deliver an order twice ("over limit") settles who ships it."""
    first_made_order = threading.Event()
    second_shipped = threading.Event()
    first_thread: list[threading.Thread] = []

    def hold(doctype: str, _: dict[str, Any]) -> None:
        if doctype == "Delivery Note" and threading.current_thread() is first_thread[0]:
            first_made_order.set()
            assert second_shipped.wait(10)

    erp.before_insert.append(hold)
    results: dict[str, ReplacementResult] = {}

    def call(label: str) -> None:
        if label == "second":
            assert first_made_order.wait(10)
        conn = make_connector()
        try:
            results[label] = conn.create_replacement(make_order())
        finally:
            conn.close()
            if label == "second":
                second_shipped.set()

    first = threading.Thread(target=call, args=("first",))
    second = threading.Thread(target=call, args=("second",))
    first_thread.append(first)
    first.start()
    second.start()
    for t in (first, second):
        t.join(10)

    assert results["first"] == results["second"]
    assert results["first"].state is ReplacementState.SHIPPED
    assert len(erp.replacement_orders(KEY)) == 1 and len(erp.delivery_notes) == 1
    assert erp.on_hand("BPM-200", "Stores - RB") == 2


# ------------------------------------------------------------------ recalled lots (X02)


def test_a_batched_replacement_is_never_picked_from_a_recalled_lot(
        erp: ERPNextFake, connector: ERPNextConnector) -> None:
    erp.add_item("GLU-STRIP-50", batched=True)
    erp.add_batch("B77", "2027-01-31", item="GLU-STRIP-50")  # first to expire, but recalled
    erp.add_batch("B78", "2027-06-30", item="GLU-STRIP-50")
    erp.add_stock("GLU-STRIP-50", "Stores - RB", 5, "B77")
    erp.add_stock("GLU-STRIP-50", "Stores - RB", 5, "B78")
    order = dataclasses.replace(make_order(), avoid_lots=("B77",), items=(
        ReplacementItem("GLU-STRIP-50", "Glucose test strips", 2, Money.parse("59.00", "CNY")),))

    result = connector.create_replacement(order)

    (dn,) = erp.deliveries_of(result.document)
    assert [row["batch_no"] for row in dn["items"]] == ["B78"]
    assert (erp.on_hand("GLU-STRIP-50", "Stores - RB", "B77"),
            erp.on_hand("GLU-STRIP-50", "Stores - RB", "B78")) == (5, 3)


def test_without_a_clear_lot_nothing_ships_and_the_order_waits(
        erp: ERPNextFake, connector: ERPNextConnector) -> None:
    erp.add_item("GLU-STRIP-50", batched=True)
    erp.add_batch("B77", "2027-01-31", item="GLU-STRIP-50")
    erp.add_stock("GLU-STRIP-50", "Stores - RB", 5, "B77")
    order = dataclasses.replace(make_order(), avoid_lots=("B77",), items=(
        ReplacementItem("GLU-STRIP-50", "Glucose test strips", 2, Money.parse("59.00", "CNY")),))

    with pytest.raises(PermanentProviderError) as info:
        connector.create_replacement(order)

    assert info.value.code == "no_clear_lot" and "B77" in str(info.value)
    assert erp.delivery_notes == {}
    assert connector.find_replacement(order).state is ReplacementState.CREATED  # type: ignore[union-attr]
