"""Odoo for recall campaigns: who received the recalled units (`erp.consignees`) and moving
the stock on hand into quarantine (`erp.quarantine`), against the stateful Odoo fake at the
HTTP transport with respx, on JSON-RPC (Odoo 16 and 17) and /json/2 (Odoo 19)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest

from refundbridge.connectors.base import ConnectorContext
from refundbridge.connectors.odoo import OdooConnector
from refundbridge.core.errors import (
    InvalidRequest,
    PermanentProviderError,
    TransientProviderError,
)
from refundbridge.core.ports import (
    Capability,
    Consignee,
    QuarantineOrder,
    QuarantineResult,
    RecallScope,
)
from tests.connectors.helpers import FAST, add_devices, in_turn
from tests.fakes.common import installed
from tests.fakes.odoo import (
    API_KEY,
    BASE,
    CUSTOMERS,
    DATABASE,
    EVIDENCE,
    LOGIN,
    QUARANTINE,
    SHELF,
    SHOP,
    STOCK,
    VENDORS,
    OdooFake,
)

PRICES = {"GLU-STRIP-50": "59.00", "BPM-200": "100.00"}
STRIPS_B77 = RecallScope(sku="GLU-STRIP-50", lots=("B77",))
KEY = "rcp_9c1f.quarantine"


@dataclass(frozen=True)
class Shop:
    """Who the seeded shop delivered lot B77 to, by partner id: (order ref, quantity) each."""

    b77: dict[int, list[tuple[str, int]]]
    li: int
    hospital: int
    ward: int
    bystanders: tuple[int, ...]  # partners who received none of B77


def seed(odoo: OdooFake) -> Shop:
    odoo.add_lot("GLU-STRIP-50", "B78")
    b77: dict[int, list[tuple[str, int]]] = {}

    def order(ref: str, partner: int, ship: list[tuple[str, str | None, int]]) -> None:
        odoo.add_order(ref, ship, PRICES, partner=partner)
        b77.setdefault(partner, []).extend(
            (ref, qty) for sku, lot, qty in ship if (sku, lot) == ("GLU-STRIP-50", "B77"))

    customers = [odoo.add_partner(f"Customer {i}", email=f"c{i}@example.com") for i in range(7)]
    for i, partner in enumerate(customers):
        order(f"SHOP-{100 + i}", partner, [("GLU-STRIP-50", "B77", i + 1)])
    li = odoo.add_partner("李伟", email="li.wei@example.cn", phone="+86 138 0013 8000",
                          lang="zh_CN")
    order("SHOP-200", li, [("GLU-STRIP-50", "B77", 1)])
    order("SHOP-201", li, [("GLU-STRIP-50", "B77", 2)])
    hospital = odoo.add_partner("Ruijin Hospital", email="purchasing@ruijin.example.cn",
                                phone="+86 21 6437 0045", lang="zh_CN")
    ward = odoo.add_partner("Ruijin Hospital, Ward 3", company=hospital, lang=None)
    # One delivery of two lots: only the B77 line is recalled.
    order("SHOP-300", ward, [("GLU-STRIP-50", "B77", 3), ("GLU-STRIP-50", "B78", 4)])

    other_lot = odoo.add_partner("Other Lot Pharmacy", email="o@example.com")
    odoo.add_order("SHOP-400", [("GLU-STRIP-50", "B78", 5)], PRICES, partner=other_lot)
    waiting = odoo.add_partner("Waiting Clinic", email="w@example.com")
    odoo.add_delivery([("GLU-STRIP-50", "B77", 2)], partner=waiting, state="assigned")
    vendor = odoo.add_partner("Strip Maker Ltd", email="qa@stripmaker.example")
    odoo.add_delivery([("GLU-STRIP-50", "B77", 6)], partner=vendor, destination=VENDORS)
    # Li sends one pack back: a return is not a delivery.
    odoo.add_delivery([("GLU-STRIP-50", "B77", 1)], partner=li, code="incoming",
                      source=CUSTOMERS, destination=STOCK)
    return Shop(b77=b77, li=li, hospital=hospital, ward=ward,
                bystanders=(other_lot, waiting, vendor))


@pytest.fixture(params=[("jsonrpc", 16), ("jsonrpc", 17), ("json2", 19)],
                ids=["jsonrpc-16", "jsonrpc-17", "json2-19"])
def api(request: pytest.FixtureRequest) -> tuple[str, int]:
    name, version = request.param
    return str(name), int(version)


@pytest.fixture
def fake(api: tuple[str, int]) -> Iterator[OdooFake]:
    odoo = add_devices(OdooFake(version=api[1]))
    with installed(odoo):
        yield odoo


@pytest.fixture
def shop(fake: OdooFake) -> Shop:
    return seed(fake)


@pytest.fixture
def make(api: tuple[str, int]) -> Iterator[Callable[..., OdooConnector]]:
    built: list[OdooConnector] = []

    def build(**changes: Any) -> OdooConnector:
        raw: dict[str, Any] = {"base_url": BASE, "database": DATABASE, "api_key": API_KEY,
                               "api": api[0]}
        if api[0] == "jsonrpc":
            raw["username"] = LOGIN
        raw.update(changes)
        connector = OdooConnector.from_config(raw, ConnectorContext(shop_id="s1", retry=FAST))
        built.append(connector)
        return connector

    yield build
    for connector in built:
        connector.close()


@pytest.fixture
def odoo(make: Callable[..., OdooConnector]) -> OdooConnector:
    return make()


def walk(odoo: OdooConnector, scope: RecallScope, limit: int
         ) -> tuple[list[tuple[Consignee, ...]], dict[str, Consignee]]:
    """Every page, and the consignees merged by key as a caller does."""
    pages: list[tuple[Consignee, ...]] = []
    merged: dict[str, Consignee] = {}
    cursor: str | None = None
    while True:
        page = odoo.consignees(scope, cursor, limit)
        pages.append(page.consignees)
        for consignee in page.consignees:
            earlier = merged.get(consignee.key)
            units = (earlier.units if earlier else ()) + consignee.units
            merged[consignee.key] = Consignee(consignee.key, consignee.name, units,
                                              consignee.email, consignee.phone,
                                              consignee.locale)
        if page.cursor is None:
            return pages, merged
        cursor = page.cursor
        assert len(pages) < 50, "the walk does not end"


def rpc_result(result: Any) -> httpx.Response:
    return httpx.Response(200, json={"jsonrpc": "2.0", "id": 1, "result": result})


def answer_instead(fake: OdooFake, phase: str, model: str, method: str,
                   *answers: httpx.Response) -> None:
    next_answer = in_turn(*answers)

    def hook(at: str, called_model: str, called_method: str) -> httpx.Response | None:
        if (at, called_model, called_method) == (phase, model, method):
            return next_answer()
        return None

    fake.hooks.append(hook)


def called(fake: OdooFake, model: str, method: str) -> int:
    return sum(1 for c in fake.calls if (c.model, c.method) == (model, method))


# ------------------------------------------------------------------ consignees


def test_odoo_declares_both_recall_capabilities() -> None:
    assert {Capability.CONSIGNEES, Capability.QUARANTINE} <= OdooConnector.capabilities


@pytest.mark.parametrize("limit", [1, 3, 100])
def test_pages_lose_and_repeat_no_delivery_line(odoo: OdooConnector, shop: Shop,
                                                limit: int) -> None:
    pages, merged = walk(odoo, STRIPS_B77, limit)

    lines = [u.line_id for page in pages for c in page for u in c.units]
    assert len(lines) == len(set(lines)) == sum(len(v) for v in shop.b77.values()) == 10
    assert all(sum(len(c.units) for c in page) <= limit for page in pages)
    assert len(pages) == -(-10 // limit)  # no empty last page
    assert {int(key): sorted((u.order_id or "", u.quantity) for u in c.units)
            for key, c in merged.items()} == {p: sorted(v) for p, v in shop.b77.items()}


def test_each_page_is_one_keyset_query(fake: OdooFake, odoo: OdooConnector,
                                       shop: Shop) -> None:
    walk(odoo, STRIPS_B77, 4)

    searches = [c for c in fake.calls if (c.model, c.method) == ("stock.move.line",
                                                                  "search_read")]
    assert len(searches) == 3
    domains = [c.args[0] if c.args else c.kwargs["domain"] for c in searches]
    starts = [next(term[2] for term in d if term[:2] == ["id", ">"]) for d in domains]
    assert starts[0] == 0 and starts == sorted(starts) and len(set(starts)) == 3
    assert all((c.kwargs.get("limit"), c.kwargs.get("order")) == (5, "id") for c in searches)


def test_a_lot_recall_leaves_out_other_lots_returns_vendor_returns_and_open_deliveries(
        odoo: OdooConnector, shop: Shop) -> None:
    _, merged = walk(odoo, STRIPS_B77, 50)

    assert not {str(p) for p in shop.bystanders} & set(merged)
    units = [u for c in merged.values() for u in c.units]
    assert {(u.sku, u.lot, u.serial) for u in units} == {("GLU-STRIP-50", "B77", None)}
    assert sum(u.quantity for u in merged[str(shop.li)].units) == 3  # the return is not one
    (ward,) = merged[str(shop.ward)].units
    assert ward.quantity == 3 and ward.document.startswith("WH/OUT/")
    assert ward.shipped_on is not None and ward.shipped_on.isoformat() == "2026-02-01"


def test_every_lot_of_the_product_when_no_lot_is_named(odoo: OdooConnector,
                                                       shop: Shop) -> None:
    _, merged = walk(odoo, RecallScope(sku="GLU-STRIP-50"), 4)

    lots = {u.lot for c in merged.values() for u in c.units}
    assert lots == {"B77", "B78"}
    assert str(shop.bystanders[0]) in merged  # the other lot's pharmacy
    assert not {str(p) for p in shop.bystanders[1:]} & set(merged)


def test_contact_details_locale_and_the_company_behind_a_delivery_address(
        odoo: OdooConnector, shop: Shop) -> None:
    _, merged = walk(odoo, STRIPS_B77, 50)

    li = merged[str(shop.li)]
    assert (li.name, li.email, li.phone, li.locale) == (
        "李伟", "li.wei@example.cn", "+86 138 0013 8000", "zh-CN")
    # The ward's address has no email or phone of its own: its hospital's reach it.
    ward = merged[str(shop.ward)]
    assert (ward.name, ward.email, ward.phone, ward.locale) == (
        "Ruijin Hospital, Ward 3", "purchasing@ruijin.example.cn", "+86 21 6437 0045", "zh-CN")
    first_customer = merged[str(next(iter(shop.b77)))]
    assert (first_customer.name, first_customer.locale) == ("Customer 0", "en-US")


@pytest.mark.parametrize("version", [17, 18])
def test_a_mobile_number_where_odoo_still_has_the_field(version: int) -> None:
    odoo_fake = add_devices(OdooFake(version=version))
    partner = odoo_fake.add_partner("Anna Schmidt", email="anna@example.de",
                                    mobile="+49 151 2345 6789", lang="de_DE")
    odoo_fake.add_order("SHOP-500", [("GLU-STRIP-50", "B77", 1)], PRICES, partner=partner)
    with installed(odoo_fake):
        connector = OdooConnector.from_config(
            {"base_url": BASE, "database": DATABASE, "api_key": API_KEY, "username": LOGIN},
            ConnectorContext(shop_id="s1", retry=FAST))
        (anna,) = connector.consignees(STRIPS_B77, None, 10).consignees
        connector.close()
    assert anna.locale == "de-DE"
    assert anna.phone == ("+49 151 2345 6789" if version < 18 else None)


def test_order_ids_follow_the_order_field(fake: OdooFake, make: Callable[..., OdooConnector],
                                          shop: Shop) -> None:
    by_ref = make()
    by_name = make(order_field="name")

    refs = {u.order_id for c in by_ref.consignees(STRIPS_B77, None, 50).consignees
            for u in c.units}
    names = {u.order_id for c in by_name.consignees(STRIPS_B77, None, 50).consignees
             for u in c.units}

    assert refs == {ref for v in shop.b77.values() for ref, _ in v}
    assert names == {o["name"] for o in fake.of("sale.order")
                     if o["client_order_ref"] in refs}


def test_a_serial_recall_names_serials_not_lots(fake: OdooFake, odoo: OdooConnector) -> None:
    a, b, c = (fake.add_partner(n, email=f"{n}@example.com") for n in ("a", "b", "c"))
    fake.add_lot("BPM-200", "SN-0043")
    fake.add_order("SHOP-600", [("BPM-200", "SN-0041", 1)], PRICES, partner=a)
    fake.add_order("SHOP-601", [("BPM-200", "SN-0042", 1)], PRICES, partner=b)
    fake.add_order("SHOP-602", [("BPM-200", "SN-0043", 1)], PRICES, partner=c)

    _, merged = walk(odoo, RecallScope(sku="BPM-200", serials=("SN-0041", "SN-0043")), 1)

    assert {key: [(u.serial, u.lot, u.quantity) for u in v.units]
            for key, v in merged.items()} == {str(a): [("SN-0041", None, 1)],
                                              str(c): [("SN-0043", None, 1)]}


def test_the_product_is_found_by_its_barcode_as_gtin_14_or_13(
        fake: OdooFake, odoo: OdooConnector) -> None:
    partner = fake.add_partner("Barcode Clinic", email="b@example.com")
    fake.add_order("SHOP-700", [("BPM-200", "SN-0041", 1)], PRICES, partner=partner)
    fake.add_product("OXI-10", tracking="lot", barcode="00012345678905")  # stored as GTIN-14
    fake.add_lot("OXI-10", "X1")
    fake.add_order("SHOP-701", [("OXI-10", "X1", 2)], {"OXI-10": "30.00"}, partner=partner)

    # BPM-200 holds the EAN-13 6901234567892; OXI-10 the GTIN-14 of UPC 012345678905.
    (bpm,) = odoo.consignees(RecallScope(sku=None, gtin="06901234567892"), None, 10).consignees
    (oxi,) = odoo.consignees(RecallScope(sku=None, gtin="012345678905"), None, 10).consignees

    assert [(u.sku, u.serial) for u in bpm.units] == [("BPM-200", "SN-0041")]
    assert [(u.sku, u.lot, u.quantity) for u in oxi.units] == [("OXI-10", "X1", 2)]


def test_an_archived_product_is_still_recalled(fake: OdooFake, odoo: OdooConnector,
                                               shop: Shop) -> None:
    fake.records["product.product"][fake.product_id("GLU-STRIP-50")]["active"] = False

    assert odoo.consignees(STRIPS_B77, None, 50).consignees


def test_a_lot_odoo_does_not_know_has_no_consignees(fake: OdooFake, odoo: OdooConnector,
                                                    shop: Shop) -> None:
    page = odoo.consignees(RecallScope(sku="GLU-STRIP-50", lots=("NOPE",)), None, 10)

    assert (page.consignees, page.cursor) == ((), None)
    assert called(fake, "stock.move.line", "search_read") == 0


@pytest.mark.parametrize(("scope", "code"), [
    (RecallScope(sku="NO-SUCH-SKU"), "product_not_found"),
    (RecallScope(sku=None, gtin="04006381333931"), "product_not_found"),
])
def test_an_unknown_product_is_permanent(odoo: OdooConnector, shop: Shop, scope: RecallScope,
                                         code: str) -> None:
    with pytest.raises(PermanentProviderError) as caught:
        odoo.consignees(scope, None, 10)
    assert caught.value.code == code


def test_two_products_with_the_barcode_are_not_guessed_between(
        fake: OdooFake, odoo: OdooConnector) -> None:
    fake.add_product("BPM-200-B", barcode="06901234567892")

    with pytest.raises(PermanentProviderError) as caught:
        odoo.consignees(RecallScope(sku=None, gtin="6901234567892"), None, 10)
    assert caught.value.code == "product_ambiguous"


@pytest.mark.parametrize(("scope", "cursor", "limit", "field"), [
    (RecallScope(sku=None), None, 10, "scope"),
    (RecallScope(sku=None, gtin="69012345678X2"), None, 10, "scope.gtin"),
    (STRIPS_B77, "page-2", 10, "cursor"),
    (STRIPS_B77, None, 0, "limit"),
])
def test_a_malformed_question_is_refused_before_any_call(
        fake: OdooFake, odoo: OdooConnector, scope: RecallScope, cursor: str | None,
        limit: int, field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        odoo.consignees(scope, cursor, limit)
    assert caught.value.field == field
    assert fake.executed() == []


def _line(line_id: int, quantity: Any = 1, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"id": line_id, "picking_id": [900, "WH/OUT/00900"],
                           "product_id": [1, "[GLU-STRIP-50] strips"], "lot_id": False,
                           "quantity": quantity, "qty_done": quantity, "date": False}
    row.update(changes)
    return row


@pytest.mark.parametrize(("answer", "code"), [
    ("a string, not records", "invalid_response"),
    ([{"id": 5}], "invalid_response"),  # no picking, no quantity
    ([_line(9), _line(7)], "invalid_response"),  # out of id order: a keyset walk would skip
    ([_line(7, quantity=1.5)], "fractional_quantity"),
    ([_line(7, picking_id=False)], "invalid_response"),
])
def test_hostile_move_line_answers_are_typed_errors(
        fake: OdooFake, api: tuple[str, int], odoo: OdooConnector, shop: Shop, answer: Any,
        code: str) -> None:
    response = rpc_result(answer) if api[0] == "jsonrpc" else httpx.Response(200, json=answer)
    answer_instead(fake, "before", "stock.move.line", "search_read", response)

    with pytest.raises(PermanentProviderError) as caught:
        odoo.consignees(RecallScope(sku="GLU-STRIP-50"), None, 10)
    assert caught.value.code == code


def test_a_picking_read_that_leaves_the_delivery_out_is_a_typed_error(
        fake: OdooFake, api: tuple[str, int], odoo: OdooConnector, shop: Shop) -> None:
    answer_instead(fake, "before", "stock.picking", "read",
                   rpc_result([]) if api[0] == "jsonrpc" else httpx.Response(200, json=[]))

    with pytest.raises(PermanentProviderError) as caught:
        odoo.consignees(STRIPS_B77, None, 10)
    assert caught.value.code == "invalid_response"


# ------------------------------------------------------------------ quarantine


def stock_b77(fake: OdooFake) -> None:
    fake.add_quant("GLU-STRIP-50", STOCK, 10, lot="B77")
    fake.add_quant("GLU-STRIP-50", SHELF, 3, lot="B77")
    fake.add_quant("GLU-STRIP-50", SHOP, 4, lot="B77")  # another warehouse
    fake.add_quant("GLU-STRIP-50", QUARANTINE, 2, lot="B77")  # already stopped
    fake.add_quant("GLU-STRIP-50", STOCK, 5, lot="B78")  # another lot
    fake.add_quant("GLU-STRIP-50", CUSTOMERS, 9, lot="B77")  # not on hand
    fake.add_quant("GLU-STRIP-50", SHELF, 0, lot="B77")  # an emptied quant


def order(key: str = KEY, scope: RecallScope = STRIPS_B77) -> QuarantineOrder:
    return QuarantineOrder(idempotency_key=key, reference="RC-2026-004", scope=scope)


def test_quarantine_moves_every_covered_unit_on_hand_by_one_transfer(
        fake: OdooFake, make: Callable[..., OdooConnector]) -> None:
    stock_b77(fake)
    fake.add_quant("GLU-STRIP-50", EVIDENCE, 1, lot="B77")  # held for an investigation
    odoo = make(evidence_location=EVIDENCE)

    result = odoo.quarantine_stock(order())

    (transfer,) = fake.transfers()
    assert (transfer["origin"], transfer["state"], transfer["location_dest_id"]) == (
        KEY, "done", QUARANTINE)
    assert "RC-2026-004" in transfer["note"]
    assert result.document == transfer["name"]
    assert sorted((u.source, u.quantity, u.lot, u.serial) for u in result.units) == [
        ("SHOP/Stock", 4, "B77", None), ("WH/Stock", 10, "B77", None),
        ("WH/Stock/Shelf 2", 3, "B77", None)]
    on_hand = {where: fake.on_hand("GLU-STRIP-50", where, "B77")
               for where in (STOCK, SHELF, SHOP, QUARANTINE, EVIDENCE)}
    assert on_hand == {STOCK: 0, SHELF: 0, SHOP: 0, QUARANTINE: 19, EVIDENCE: 1}
    assert fake.on_hand("GLU-STRIP-50", STOCK, "B78") == Decimal(5)


def test_the_same_key_twice_moves_stock_once(fake: OdooFake, odoo: OdooConnector) -> None:
    stock_b77(fake)
    first = odoo.quarantine_stock(order())
    fake.add_quant("GLU-STRIP-50", STOCK, 6, lot="B77")  # received after the first move
    creates = called(fake, "stock.picking", "create")

    again = odoo.quarantine_stock(order())

    assert again == first
    assert len(fake.transfers()) == 1 and called(fake, "stock.picking", "create") == creates
    assert fake.on_hand("GLU-STRIP-50", STOCK, "B77") == Decimal(6)


def test_another_key_moves_what_came_in_since(fake: OdooFake, odoo: OdooConnector) -> None:
    stock_b77(fake)
    odoo.quarantine_stock(order())
    fake.add_quant("GLU-STRIP-50", STOCK, 6, lot="B77")

    later = odoo.quarantine_stock(order(key="rcp_9c1f.quarantine.2"))

    assert [(u.source, u.quantity) for u in later.units] == [("WH/Stock", 6)]
    assert len(fake.transfers()) == 2


def test_nothing_on_hand_makes_no_transfer(fake: OdooFake, odoo: OdooConnector) -> None:
    fake.add_quant("GLU-STRIP-50", QUARANTINE, 2, lot="B77")
    fake.add_quant("GLU-STRIP-50", STOCK, 5, lot="B78")

    assert odoo.quarantine_stock(order()) == QuarantineResult(document="")
    assert odoo.quarantine_stock(order(scope=RecallScope(sku="GLU-STRIP-50",
                                                         lots=("UNKNOWN",)))).document == ""
    assert fake.transfers() == [] and called(fake, "stock.picking", "create") == 0


def test_serials_are_quarantined_by_serial(fake: OdooFake, odoo: OdooConnector) -> None:
    fake.add_quant("BPM-200", STOCK, 1, lot="SN-0041")
    fake.add_quant("BPM-200", STOCK, 1, lot="SN-0042")

    result = odoo.quarantine_stock(order(scope=RecallScope(sku="BPM-200",
                                                           serials=("SN-0041",))))

    assert [(u.sku, u.serial, u.lot, u.quantity) for u in result.units] == [
        ("BPM-200", "SN-0041", None, 1)]
    assert fake.on_hand("BPM-200", QUARANTINE, "SN-0041") == 1
    assert fake.on_hand("BPM-200", STOCK, "SN-0042") == 1


def test_a_503_after_the_transfer_was_created_makes_one_transfer(
        fake: OdooFake, odoo: OdooConnector) -> None:
    stock_b77(fake)
    answer_instead(fake, "after", "stock.picking", "create", httpx.Response(503, text="busy"))
    answer_instead(fake, "after", "stock.picking", "button_validate",
                   httpx.Response(503, text="busy"))

    result = odoo.quarantine_stock(order())

    (transfer,) = fake.transfers()
    assert transfer["state"] == "done" and result.document == transfer["name"]
    assert fake.on_hand("GLU-STRIP-50", QUARANTINE, "B77") == 19


def test_a_transfer_left_unvalidated_is_finished(fake: OdooFake, odoo: OdooConnector) -> None:
    stock_b77(fake)
    answer_instead(fake, "before", "stock.picking", "button_validate",
                   *[httpx.Response(503, text="busy")] * 3)
    with pytest.raises(TransientProviderError):
        odoo.quarantine_stock(order())
    assert [t["state"] for t in fake.transfers()] == ["confirmed"]

    result = odoo.quarantine_stock(order())

    assert [t["state"] for t in fake.transfers()] == ["done"]
    assert sum(u.quantity for u in result.units) == 17


def test_a_hostile_quant_answer_moves_nothing(fake: OdooFake, api: tuple[str, int],
                                              odoo: OdooConnector) -> None:
    stock_b77(fake)
    quant = {"id": 1, "product_id": [999, "something else"], "location_id": [STOCK, "WH/Stock"],
             "lot_id": False, "package_id": False, "quantity": 3}
    answer_instead(fake, "before", "stock.quant", "search_read",
                   rpc_result([quant]) if api[0] == "jsonrpc"
                   else httpx.Response(200, json=[quant]))

    with pytest.raises(PermanentProviderError) as caught:
        odoo.quarantine_stock(order())
    assert caught.value.code == "invalid_response"
    assert fake.transfers() == []


def test_a_create_that_answers_no_id_is_a_typed_error(fake: OdooFake, api: tuple[str, int],
                                                      odoo: OdooConnector) -> None:
    stock_b77(fake)
    answer_instead(fake, "before", "stock.picking", "create",
                   rpc_result(True) if api[0] == "jsonrpc" else httpx.Response(200, json=True))

    with pytest.raises(PermanentProviderError) as caught:
        odoo.quarantine_stock(order())
    assert caught.value.code == "invalid_response"


def test_fractional_stock_is_refused_before_anything_moves(fake: OdooFake,
                                                           odoo: OdooConnector) -> None:
    fake.add_quant("GLU-STRIP-50", STOCK, "2.5", lot="B77")

    with pytest.raises(PermanentProviderError) as caught:
        odoo.quarantine_stock(order())
    assert caught.value.code == "fractional_quantity"
    assert fake.transfers() == []


def test_an_empty_key_is_refused(fake: OdooFake, odoo: OdooConnector) -> None:
    with pytest.raises(InvalidRequest) as caught:
        odoo.quarantine_stock(order(key="  "))
    assert caught.value.field == "idempotency_key"
    assert fake.executed() == []


def test_quarantine_never_takes_from_a_hold_it_is_configured_with(
        fake: OdooFake, make: Callable[..., OdooConnector]) -> None:
    fake.add_quant("GLU-STRIP-50", EVIDENCE, 1, lot="B77")
    fake.add_quant("GLU-STRIP-50", STOCK, 2, lot="B77")

    result = make(evidence_location="WH/Evidence").quarantine_stock(order())

    assert [(u.source, u.quantity) for u in result.units] == [("WH/Stock", 2)]
    assert fake.on_hand("GLU-STRIP-50", EVIDENCE, "B77") == 1

