"""ERPNext for recall campaigns: who received the recalled units (`consignees`), and the
stock on hand moved into quarantine (`quarantine_stock`), against the ERPNext fake."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import httpx
import pytest
import respx

from refundbridge.connectors.base import ConnectorContext, RetryPolicy
from refundbridge.connectors.erpnext import ERPNextConnector
from refundbridge.connectors.erpnext.recalls import gtin_forms
from refundbridge.connectors.testing.contract import route_for
from refundbridge.core.errors import (
    InvalidRequest,
    PermanentProviderError,
    TransientProviderError,
)
from refundbridge.core.ports import (
    Capability,
    Consignee,
    ConsigneeUnits,
    QuarantinedUnits,
    QuarantineOrder,
    RecallScope,
)
from tests.fakes.common import installed
from tests.fakes.erpnext import BASE, ERPNextFake

SETTINGS = {"base_url": BASE, "api_key": "k3y-0123456789ab",
            "api_secret": "s3cret-0123456789ab"}
METER = "GLU-METER-01"  # batched; its GTIN-13 is on the pack
PUMP = "INS-PUMP-7"  # serial numbers only
GAUZE = "GAUZE-10"  # neither batches nor serials
GTIN13 = "6901234567892"
RECALLED, OTHER = "L2401", "L2402"
STORES, FLOOR, QUARANTINE, SCRAP = ("Stores - RB", "Shop Floor - RB", "Quarantine - RB",
                                    "Scrap - RB")
KEY = "rcp_01.quarantine"
Hook = Callable[[httpx.Request], httpx.Response | None]


@pytest.fixture
def ctx() -> ConnectorContext:
    return ConnectorContext(shop_id="s1", retry=RetryPolicy(attempts=3, initial_wait=0,
                                                             max_wait=0))


@pytest.fixture
def site() -> ERPNextFake:
    """One lot of a meter shipped to several customers on Delivery Notes and stock-updating
    invoices, beside what must not count: another lot, a return, a draft, an invoice whose
    goods left on a Delivery Note; and a serial-only pump."""
    site = ERPNextFake()
    site.add_item(METER, batched=True, barcodes=(GTIN13,))
    site.add_item(PUMP, serialized=True)
    site.add_item(GAUZE)
    for name, lang in (("C-001", None), ("C-002", "zh"), ("C-003", "en"), ("C-004", None),
                       ("C-005", None), ("C-006", None), ("C-007", None), ("C-008", None),
                       ("C-009", None), ("C-010", None)):
        site.add_customer(name, customer_name=f"Customer {name[-1]}",
                          email_id=f"{name.lower()}@office.example", language=lang,
                          mobile_no=f"+86 138 0000 {name[-3:]}")
    site.add_batch(RECALLED, "2027-01-31", item=METER)
    site.add_batch(OTHER, "2027-06-30", item=METER)

    def lot(qty: int, batch: str) -> tuple[str, int, str, dict[str, Any]]:
        return (METER, qty, "199.00", {"batch_no": batch})

    site.add_delivery_note("SO-1001", [lot(2, RECALLED)], customer="C-001",
                           customer_name="Li Wei", contact_email="li.wei@clinic.example",
                           contact_mobile="+86 139 1111 2222", posting_date="2026-02-01")
    site.add_delivery_note("SO-1002", [lot(1, RECALLED), lot(1, OTHER)], customer="C-002",
                           customer_name="Wang Fang")
    bundle = site.add_bundle(METER, [{"batch_no": RECALLED, "qty": 3}])
    site.add_delivery_note("SO-1003", [(METER, 3, "199.00",
                                        {"serial_and_batch_bundle": bundle})],
                           customer="C-003", customer_name="Zhang Min")
    site.add_delivery_note("SO-1004", [lot(1, RECALLED)], customer="C-001",
                           customer_name="Li Wei", contact_email="li.wei@new.example",
                           posting_date="2026-04-01")
    site.add_delivery_note("SO-1005", [lot(4, OTHER)], customer="C-004")
    site.add_delivery_note("SO-1001", [lot(-1, RECALLED)], customer="C-009", is_return=1)
    site.add_delivery_note("SO-1010", [lot(1, RECALLED)], customer="C-010", docstatus=0)
    site.add_invoice("SO-2001", [lot(1, RECALLED)], customer="C-005")
    site.add_invoice("SO-2002", [lot(1, RECALLED)], customer="C-006", update_stock=False)
    site.add_invoice("SO-2003", [lot(1, RECALLED), lot(2, OTHER)], customer="C-007")

    site.add_delivery_note("SO-3001", [(PUMP, 2, "999.00", {"serial_no": "SN-100\nSN-101"})],
                           customer="C-002", customer_name="Wang Fang")
    site.add_delivery_note("SO-3002", [(PUMP, 1, "999.00", {"serial_no": "SN-102"})],
                           customer="C-008")
    pump_bundle = site.add_bundle(PUMP, [{"serial_no": "SN-103"}])
    site.add_invoice("SO-3003", [(PUMP, 1, "999.00",
                                  {"serial_and_batch_bundle": pump_bundle})],
                     customer="C-003", customer_name="Zhang Min")
    return site


@pytest.fixture
def router(site: ERPNextFake) -> Iterator[respx.MockRouter]:
    with installed(site) as router:
        yield router


@pytest.fixture
def erpnext(ctx: ConnectorContext, router: respx.MockRouter) -> Iterator[ERPNextConnector]:
    connector = ERPNextConnector.from_config(SETTINGS, ctx)
    yield connector
    connector.close()


def walk(erpnext: ERPNextConnector, scope: RecallScope, limit: int
         ) -> tuple[dict[str, Consignee], list[tuple[str, str]], int]:
    """Every page: the last word on each consignee, every (customer, line) answered, pages."""
    cursor: str | None = None
    people: dict[str, Consignee] = {}
    lines: list[tuple[str, str]] = []
    pages = 0
    while True:
        page = erpnext.consignees(scope, cursor, limit)
        pages += 1
        for consignee in page.consignees:
            assert consignee.units, consignee
            people[consignee.key] = consignee
            lines += [(consignee.key, u.line_id) for u in consignee.units]
        if page.cursor is None:
            return people, lines, pages
        assert pages < 50, "the walk does not end"
        cursor = page.cursor


def units_of(erpnext: ERPNextConnector, scope: RecallScope, limit: int = 2
             ) -> dict[str, list[ConsigneeUnits]]:
    cursor: str | None = None
    found: dict[str, list[ConsigneeUnits]] = {}
    while True:
        page = erpnext.consignees(scope, cursor, limit)
        for consignee in page.consignees:
            found.setdefault(consignee.key, []).extend(consignee.units)
        if page.cursor is None:
            return found
        cursor = page.cursor


# ================================================================== consignees


def test_both_recall_capabilities_are_declared() -> None:
    assert {Capability.CONSIGNEES, Capability.QUARANTINE} <= ERPNextConnector.capabilities
    assert Capability.BOOK_RETURN in ERPNextConnector.capabilities


@pytest.mark.parametrize("limit", [1, 2, 3, 50])
def test_a_lot_recall_pages_through_every_consignee_once(erpnext: ERPNextConnector,
                                                         limit: int) -> None:
    people, lines, pages = walk(erpnext, RecallScope(sku=METER, lots=(RECALLED,)), limit)

    assert len(lines) == len(set(lines)), "a shipped row was answered twice"
    assert sorted(people) == ["C-001", "C-002", "C-003", "C-005", "C-007"]
    assert len(lines) == 6  # DN1, DN2's first row, DN3's bundle, DN4, SI1, SI3's first row
    if limit <= 2:
        assert pages >= 4  # several pages of Delivery Notes, then the invoices


def test_lot_recall_ignores_other_lots_returns_drafts_and_invoices_without_stock(
        erpnext: ERPNextConnector) -> None:
    found = units_of(erpnext, RecallScope(sku=METER, lots=(RECALLED,)))

    # C-004 had only the other lot, C-009 a return, C-010 a draft, C-006 an invoice that did
    # not update stock (its goods left on a Delivery Note).
    assert not {"C-004", "C-006", "C-009", "C-010"} & set(found)
    every = [u for units in found.values() for u in units]
    assert {u.lot for u in every} == {RECALLED}
    assert all(u.sku == METER and u.quantity > 0 for u in every)
    assert sorted((u.document, u.quantity) for u in found["C-001"]) == [
        ("Delivery Note MAT-DN-2026-00001", 2), ("Delivery Note MAT-DN-2026-00004", 1)]
    # The bundle's batch is what went out: the row itself names no batch.
    assert [(u.quantity, u.lot) for u in found["C-003"]] == [(3, RECALLED)]
    assert [u.document for u in found["C-005"]] == ["Sales Invoice ACC-SINV-2026-00001"]
    first = next(u for u in found["C-001"] if u.document.endswith("00001"))
    assert first.order_id == "SO-1001" and first.shipped_on == date(2026, 2, 1)
    assert first.line_id == "MAT-DN-2026-00001-row-0"


def test_every_lot_of_the_product_without_lots_in_the_scope(erpnext: ERPNextConnector
                                                            ) -> None:
    found = units_of(erpnext, RecallScope(sku=METER), limit=3)

    assert "C-004" in found
    assert {u.lot for units in found.values() for u in units} == {RECALLED, OTHER}
    assert not {"C-006", "C-009", "C-010"} & set(found)


def test_contact_comes_from_the_latest_document_else_the_customer(
        erpnext: ERPNextConnector) -> None:
    people, _, _ = walk(erpnext, RecallScope(sku=METER, lots=(RECALLED,)), limit=50)

    li = people["C-001"]
    assert (li.name, li.email) == ("Li Wei", "li.wei@new.example")  # DN4 is the newer
    assert li.phone == "+86 139 1111 2222"
    wang = people["C-002"]
    assert (wang.name, wang.email, wang.phone) == (
        "Wang Fang", "c-002@office.example", "+86 138 0000 002")
    assert wang.locale == "zh-CN"
    assert people["C-003"].locale is None  # English: the shop's default
    assert people["C-005"].name == "Li Wei"  # the document's customer_name


def test_serial_recall_finds_the_serials_on_rows_and_in_bundles(
        erpnext: ERPNextConnector) -> None:
    found = units_of(erpnext, RecallScope(sku=PUMP, serials=("SN-101", "sn-103")), limit=1)

    assert sorted(found) == ["C-002", "C-003"]
    (wang,) = found["C-002"]
    assert (wang.serial, wang.quantity) == ("SN-101", 1)
    # A row of two serials: each unit has a line id of its own, for callers to merge by.
    assert wang.line_id == "MAT-DN-2026-00008-row-0/SN-101"
    (zhang,) = found["C-003"]
    assert (zhang.serial, zhang.document) == ("SN-103", "Sales Invoice ACC-SINV-2026-00004")


def test_whole_serial_product_recall(erpnext: ERPNextConnector) -> None:
    _, lines, _ = walk(erpnext, RecallScope(sku=PUMP), limit=2)

    assert sorted(lines) == [
        ("C-002", "MAT-DN-2026-00008-row-0/SN-100"),
        ("C-002", "MAT-DN-2026-00008-row-0/SN-101"),
        ("C-003", "ACC-SINV-2026-00004-row-0"),
        ("C-008", "MAT-DN-2026-00009-row-0"),
    ]


def test_rows_are_asked_for_paged_and_joined_as_frappe_documents(
        erpnext: ERPNextConnector, site: ERPNextFake) -> None:
    page = erpnext.consignees(RecallScope(sku=METER, lots=(RECALLED,)), None, 2)
    erpnext.consignees(RecallScope(sku=METER, lots=(RECALLED,)), page.cursor, 2)

    lists = [r for r in site.requests if r.url.path == "/api/resource/Delivery Note"]
    first, second = (r.url.params for r in lists)
    assert first["limit_page_length"] == "2" and first["limit_start"] == "0"
    assert first["order_by"] == "`tabDelivery Note Item`.name asc"
    assert "`tabDelivery Note Item`.name as row" in json.loads(first["fields"])
    assert "po_no as order_id" in json.loads(first["fields"])
    filters = json.loads(first["filters"])
    assert ["Delivery Note", "docstatus", "=", 1] in filters
    assert ["Delivery Note", "is_return", "=", 0] in filters
    assert ["Delivery Note Item", "item_code", "=", METER] in filters
    # The next page starts after the last row answered, whatever was cancelled meanwhile.
    assert ["Delivery Note Item", "name", ">", "MAT-DN-2026-00002-row-0"] in json.loads(
        second["filters"])


def test_invoices_are_asked_for_with_update_stock(erpnext: ERPNextConnector,
                                                  site: ERPNextFake) -> None:
    walk(erpnext, RecallScope(sku=METER), limit=50)

    (invoices,) = [r for r in site.requests if r.url.path == "/api/resource/Sales Invoice"]
    assert ["Sales Invoice", "update_stock", "=", 1] in json.loads(invoices.url.params["filters"])


def test_a_gtin_finds_the_item_by_its_barcode(erpnext: ERPNextConnector,
                                             site: ERPNextFake) -> None:
    by_gtin = units_of(erpnext, RecallScope(sku=None, gtin="0" + GTIN13, lots=(RECALLED,)))
    by_sku = units_of(erpnext, RecallScope(sku=METER, lots=(RECALLED,)))

    assert by_gtin == by_sku and by_gtin
    items = [r for r in site.requests if r.url.path == "/api/resource/Item"]
    # Looked up once per walk, by every form the barcode may be stored under.
    assert len(items) == 2
    assert json.loads(items[0].url.params["filters"]) == [
        ["Item Barcode", "barcode", "in", ["0" + GTIN13, GTIN13]]]


def test_gtin_forms() -> None:
    assert gtin_forms("06901234567892") == ["06901234567892", "6901234567892"]
    assert gtin_forms("00012345678905") == ["00012345678905", "0012345678905",
                                            "012345678905"]
    assert gtin_forms("00000096385074")[-1] == "96385074"


def test_a_gtin_on_two_items_is_refused(erpnext: ERPNextConnector, site: ERPNextFake) -> None:
    site.add_item("GLU-METER-02", barcodes=("0" + GTIN13,))

    with pytest.raises(PermanentProviderError) as info:
        erpnext.consignees(RecallScope(sku=None, gtin="0" + GTIN13), None, 10)

    assert info.value.code == "item_ambiguous"


@pytest.mark.parametrize("scope", [RecallScope(sku="NO-SUCH-SKU"),
                                   RecallScope(sku=None, gtin="04006381333931")])
def test_an_unknown_product_is_permanent(erpnext: ERPNextConnector, scope: RecallScope
                                         ) -> None:
    with pytest.raises(PermanentProviderError) as info:
        erpnext.consignees(scope, None, 10)

    assert info.value.code == "item_not_found"


def test_a_scope_without_sku_or_gtin_and_a_bad_cursor_are_refused(
        erpnext: ERPNextConnector) -> None:
    with pytest.raises(InvalidRequest) as info:
        erpnext.consignees(RecallScope(sku=None), None, 10)
    assert info.value.field == "scope"
    with pytest.raises(InvalidRequest) as info:
        erpnext.consignees(RecallScope(sku=METER), "not-a-cursor", 10)
    assert info.value.field == "cursor"
    with pytest.raises(InvalidRequest) as info:
        erpnext.consignees(RecallScope(sku=METER), None, 0)
    assert info.value.field == "limit"


def test_a_cursor_of_another_product_is_refused(erpnext: ERPNextConnector) -> None:
    page = erpnext.consignees(RecallScope(sku=METER), None, 1)
    assert page.cursor is not None

    with pytest.raises(InvalidRequest):
        erpnext.consignees(RecallScope(sku=PUMP), page.cursor, 1)


def hook_on(path: str, answer: httpx.Response) -> Hook:
    def hook(request: httpx.Request) -> httpx.Response | None:
        return answer if request.url.path == path else None
    return hook


@pytest.mark.parametrize(("answer", "words"), [
    (httpx.Response(200, text="<html><body>Login</body></html>"), "not JSON"),
    (httpx.Response(200, json={"data": [{"name": "MAT-DN-2026-00001", "row": "r1",
                                         "item_code": METER, "qty": 1}]}), "customer"),
    (httpx.Response(200, json={"message": "ok"}), "data"),
    (httpx.Response(403, json={"exc_type": "PermissionError",
                               "_server_messages": json.dumps([json.dumps(
                                   {"message": "No permission for Delivery Note"})])}),
     "No permission for Delivery Note"),
])
def test_hostile_answers_to_the_walk_are_permanent(erpnext: ERPNextConnector,
                                                   site: ERPNextFake, answer: httpx.Response,
                                                   words: str) -> None:
    site.hooks.append(hook_on("/api/resource/Delivery Note", answer))

    with pytest.raises(PermanentProviderError) as info:
        erpnext.consignees(RecallScope(sku=METER), None, 10)

    assert words in str(info.value)


def test_an_unavailable_site_is_transient_after_bounded_retries(
        erpnext: ERPNextConnector, site: ERPNextFake) -> None:
    site.hooks.append(hook_on("/api/resource/Delivery Note", httpx.Response(503, text="busy")))

    with pytest.raises(TransientProviderError):
        erpnext.consignees(RecallScope(sku=METER), None, 10)

    assert sum(r.url.path == "/api/resource/Delivery Note" for r in site.requests) == 3


# ================================================================== quarantine


def order(scope: RecallScope, key: str = KEY) -> QuarantineOrder:
    return QuarantineOrder(idempotency_key=key, reference="RC-2026-004", scope=scope)


@pytest.fixture
def stocked(site: ERPNextFake) -> ERPNextFake:
    site.add_stock(METER, STORES, 5, RECALLED)
    site.add_stock(METER, FLOOR, 2, RECALLED)
    site.add_stock(METER, QUARANTINE, 1, RECALLED)  # already held
    site.add_stock(METER, SCRAP, 1, RECALLED)  # never brought back
    site.add_stock(METER, STORES, 4, OTHER)
    site.add_serial("SN-200", PUMP, STORES)
    site.add_serial("SN-201", PUMP, QUARANTINE)
    site.add_serial("SN-202", PUMP, None, status="Delivered")
    site.add_serial("SN-203", PUMP, FLOOR)
    site.add_stock(GAUZE, STORES, 10)
    site.add_stock(GAUZE, SCRAP, 3)
    return site


def test_a_lot_on_hand_is_moved_into_quarantine_once(erpnext: ERPNextConnector,
                                                     stocked: ERPNextFake) -> None:
    first = erpnext.quarantine_stock(order(RecallScope(sku=METER, lots=(RECALLED,))))

    assert first.document == "MAT-STE-2026-00001"
    assert sorted(first.units, key=lambda u: u.source) == [
        QuarantinedUnits(sku=METER, quantity=2, source=FLOOR, lot=RECALLED),
        QuarantinedUnits(sku=METER, quantity=5, source=STORES, lot=RECALLED)]
    (entry,) = stocked.stock_entries
    assert entry["docstatus"] == 1 and entry["purpose"] == "Material Transfer"
    assert entry["stock_entry_type"] == "Material Transfer"
    assert entry["company"] == "Acme Medical"
    assert KEY in entry["remarks"] and "RC-2026-004" in entry["remarks"]
    assert {r["t_warehouse"] for r in entry["items"]} == {QUARANTINE}
    assert all(r["use_serial_batch_fields"] == 1 for r in entry["items"])
    assert stocked.on_hand(METER, QUARANTINE, RECALLED) == 8
    assert stocked.on_hand(METER, STORES, RECALLED) == 0
    assert stocked.on_hand(METER, SCRAP, RECALLED) == 1  # scrap stays scrap
    assert stocked.on_hand(METER, STORES, OTHER) == 4  # another lot is not recalled

    posts = sum(r.method == "POST" for r in stocked.requests)
    again = erpnext.quarantine_stock(order(RecallScope(sku=METER, lots=(RECALLED,))))

    assert again.document == first.document
    assert sorted(again.units, key=lambda u: u.source) == sorted(first.units,
                                                                 key=lambda u: u.source)
    assert len(stocked.stock_entries) == 1
    assert sum(r.method == "POST" for r in stocked.requests) == posts


def test_nothing_left_on_hand_makes_no_document(erpnext: ERPNextConnector,
                                                stocked: ERPNextFake) -> None:
    erpnext.quarantine_stock(order(RecallScope(sku=METER, lots=(RECALLED,))))

    later = erpnext.quarantine_stock(order(RecallScope(sku=METER, lots=(RECALLED,)),
                                           key="rcp_02.quarantine"))

    assert later.document == "" and later.units == ()
    assert len(stocked.stock_entries) == 1


def test_a_lot_never_stocked_makes_no_document(erpnext: ERPNextConnector,
                                               site: ERPNextFake) -> None:
    result = erpnext.quarantine_stock(order(RecallScope(sku=METER, lots=("L9999",))))

    assert result.document == "" and not site.stock_entries
    assert not any(r.method == "POST" for r in site.requests)


def test_every_lot_of_the_product_without_lots(erpnext: ERPNextConnector,
                                               stocked: ERPNextFake) -> None:
    result = erpnext.quarantine_stock(order(RecallScope(sku=METER)))

    assert sorted((u.lot, u.source, u.quantity) for u in result.units) == [
        (RECALLED, FLOOR, 2), (RECALLED, STORES, 5), (OTHER, STORES, 4)]
    assert stocked.on_hand(METER, QUARANTINE, OTHER) == 4


def test_serials_on_hand_are_moved_one_by_one(erpnext: ERPNextConnector,
                                              stocked: ERPNextFake) -> None:
    result = erpnext.quarantine_stock(order(RecallScope(
        sku=PUMP, serials=("SN-200", "SN-201", "SN-202"))))

    # SN-201 is held already and SN-202 was delivered: only SN-200 is on hand to stop.
    assert result.units == (QuarantinedUnits(sku=PUMP, quantity=1, source=STORES,
                                             serial="SN-200"),)
    assert stocked.serials["SN-200"]["warehouse"] == QUARANTINE
    assert stocked.serials["SN-203"]["warehouse"] == FLOOR
    (entry,) = stocked.stock_entries
    assert [(r["serial_no"], r["qty"]) for r in entry["items"]] == [("SN-200", 1)]


def test_an_item_without_batches_moves_its_bins(erpnext: ERPNextConnector,
                                                stocked: ERPNextFake) -> None:
    result = erpnext.quarantine_stock(order(RecallScope(sku=GAUZE)))

    assert result.units == (QuarantinedUnits(sku=GAUZE, quantity=10, source=STORES),)
    assert stocked.on_hand(GAUZE, SCRAP) == 3 and stocked.on_hand(GAUZE, QUARANTINE) == 10


@pytest.mark.parametrize(("scope", "code"), [
    (RecallScope(sku=GAUZE, lots=("L1",)), "not_batched"),
    (RecallScope(sku=METER, serials=("SN-1",)), "not_serialized"),
    (RecallScope(sku="NO-SUCH-SKU"), "item_not_found"),
])
def test_units_erpnext_cannot_tell_apart_are_refused(erpnext: ERPNextConnector,
                                                     stocked: ERPNextFake,
                                                     scope: RecallScope, code: str) -> None:
    with pytest.raises(PermanentProviderError) as info:
        erpnext.quarantine_stock(order(scope))

    assert info.value.code == code
    assert not stocked.stock_entries


def test_a_remark_that_only_looks_like_the_key_is_not_the_move(
        erpnext: ERPNextConnector, stocked: ERPNextFake) -> None:
    # LIKE reads `_` as any character: "rcpX01.quarantine" matches "%rcp_01.quarantine%".
    stocked.stock_entries.append({"name": "MAT-STE-2025-00099", "docstatus": 1,
                                  "remarks": "moved by hand, rcpX01.quarantine",
                                  "items": []})

    result = erpnext.quarantine_stock(order(RecallScope(sku=METER, lots=(RECALLED,))))

    assert result.document == "MAT-STE-2026-00002"
    assert stocked.on_hand(METER, QUARANTINE, RECALLED) == 8


def test_a_lost_answer_to_the_insert_is_not_moved_twice(
        erpnext: ERPNextConnector, stocked: ERPNextFake, router: respx.MockRouter) -> None:
    route = route_for(router, "POST", f"{BASE}/api/resource/Stock%20Entry")
    fake = route.side_effect
    assert callable(fake)
    lost = []

    def lose_first(request: httpx.Request) -> httpx.Response:
        answer: httpx.Response = fake(request)
        if not lost:
            lost.append(answer)
            raise httpx.ReadTimeout("committed, then the answer was lost", request=request)
        return answer

    route.side_effect = lose_first

    result = erpnext.quarantine_stock(order(RecallScope(sku=METER, lots=(RECALLED,))))

    assert len(stocked.stock_entries) == 1
    assert result.document == stocked.stock_entries[0]["name"]
    assert stocked.on_hand(METER, QUARANTINE, RECALLED) == 8


def test_a_refused_transfer_is_permanent_with_erpnext_s_words(
        erpnext: ERPNextConnector, stocked: ERPNextFake) -> None:
    # Someone sold two units from the shop floor between the read and the move.
    stocked.before_insert.append(
        lambda doctype, doc: stocked.add_stock(METER, FLOOR, -2, RECALLED))

    with pytest.raises(PermanentProviderError) as info:
        erpnext.quarantine_stock(order(RecallScope(sku=METER, lots=(RECALLED,))))

    assert "needed in Warehouse Shop Floor - RB" in str(info.value)
    assert not stocked.stock_entries


@pytest.mark.parametrize(("path", "answer"), [
    ("/api/method/erpnext.stock.doctype.batch.batch.get_batch_qty",
     httpx.Response(200, json={"message": 5})),
    ("/api/method/erpnext.stock.doctype.batch.batch.get_batch_qty",
     httpx.Response(200, json={"message": [{"qty": 5}]})),
    ("/api/resource/Serial No", httpx.Response(200, text="<!doctype html><p>502</p>")),
    ("/api/resource/Stock Entry", httpx.Response(200, json={"data": None})),
    ("/api/resource/Warehouse/Quarantine - RB",
     httpx.Response(404, json={"exc_type": "DoesNotExistError"})),
])
def test_hostile_answers_to_the_quarantine_are_permanent(
        erpnext: ERPNextConnector, stocked: ERPNextFake, path: str,
        answer: httpx.Response) -> None:
    stocked.hooks.append(hook_on(path, answer))
    scope = RecallScope(sku=PUMP) if "Serial" in path else RecallScope(sku=METER,
                                                                        lots=(RECALLED,))

    with pytest.raises(PermanentProviderError):
        erpnext.quarantine_stock(order(scope))

    assert not stocked.stock_entries
