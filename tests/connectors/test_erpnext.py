"""ERPNext connector, checked at the HTTP transport with respx (no network, no sleeps)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx

from refundbridge.connectors.base import ConnectorContext, RetryPolicy
from refundbridge.connectors.erpnext import ERPNextConnector, ERPNextSettings
from refundbridge.connectors.erpnext.returns import Warehouses, credit_note
from refundbridge.connectors.erpnext.transformers import error_message
from refundbridge.connectors.testing.contract import route_for
from refundbridge.core.errors import ConfigError, PermanentProviderError
from refundbridge.core.model import Disposition, StockMove
from refundbridge.core.money import Money
from refundbridge.core.ports import ReturnBooking, ShippedUnit
from refundbridge.core.request import NormalizedRefundRequest
from tests.fakes.common import installed
from tests.fakes.erpnext import BASE as FAKE_BASE
from tests.fakes.erpnext import ERPNextFake

BASE = "https://erp.test"
TOKEN = "token k3y-0123456789ab:s3cret-0123456789ab"
CASE = "rc_0f3c9a7e5d2b4c1a8e6f0a9b8c7d6e5f"
METHOD = "/api/method/erpnext.accounts.doctype.sales_invoice.sales_invoice.make_sales_return"
SI = "/api/resource/Sales%20Invoice"

FRAPPE_417 = {
    "exc_type": "ValidationError",
    "exception": "frappe.exceptions.ValidationError: Row # 1: Returned Item <b>GLU-STRIP-50</b>"
                 " does not exist in Sales Invoice <b>ACC-SINV-2024-00042</b>",
    "exc": '["Traceback (most recent call last):\\n  File ...\\n"]',
    "_server_messages": json.dumps([json.dumps({
        "message": "Row # 1: Returned Item <b>GLU-STRIP-50</b> does not exist in Sales Invoice "
                   "<b>ACC-SINV-2024-00042</b>",
        "title": "Message", "indicator": "red", "raise_exception": 1,
    })]),
}
SERVER_MESSAGE = ("Row # 1: Returned Item GLU-STRIP-50 does not exist in Sales Invoice "
                  "ACC-SINV-2024-00042")


def make_request(kind: str = "return_and_refund") -> NormalizedRefundRequest:
    return NormalizedRefundRequest.model_validate({
        "external_id": "ret-1001",
        "kind": kind,
        "order": {
            "id": "SO-1001", "currency": "CNY", "paid_total": "259.00",
            "placed_at": "2024-05-01T10:00:00+08:00",
            "payment": {"provider": "stripe", "reference": "pi_123"},
        },
        "customer": {"id": "c-7", "email": "li@example.cn"},
        "lines": [
            {"sku": "BPM-200", "name": "Blood pressure monitor", "quantity": 2,
             "unit_price": "100.00", "device_class": "IIa", "lot": "L2405", "serial": None},
            {"sku": "GLU-STRIP-50", "name": "Glucose test strips", "quantity": 1,
             "unit_price": "59.00", "lot": "B77"},
        ],
        "reason": {"code": "defective", "text": "cuff leaks"},
        "requested_amount": "259.00",
        "requested_at": "2024-05-10T09:00:00+08:00",
    })


def make_booking(moves: tuple[StockMove, ...], kind: str = "return_and_refund") -> ReturnBooking:
    return ReturnBooking(case_id=CASE, order_id="SO-1001", amount=Money.parse("259.00", "CNY"),
                         moves=moves, request=make_request(kind))


MOVES = (
    StockMove(line=0, sku="BPM-200", quantity=1, disposition=Disposition.RESTOCK, lot="L2405"),
    StockMove(line=0, sku="BPM-200", quantity=1, disposition=Disposition.KEEP_AS_EVIDENCE,
              serial="SN-0042"),
    StockMove(line=1, sku="GLU-STRIP-50", quantity=1, disposition=Disposition.SCRAP, lot="B77"),
)


def draft_return() -> dict[str, Any]:
    """What `make_sales_return` answers for the original invoice (trimmed)."""
    row = {"doctype": "Sales Invoice Item", "name": None, "idx": 0, "rate": 100.0,
           "uom": "Nos", "conversion_factor": 1.0, "income_account": "Sales - RB",
           "warehouse": "Stores - RB", "sales_invoice_item": "row-1"}
    return {
        "doctype": "Sales Invoice", "name": None, "__islocal": 1, "customer": "Li Wei",
        "company": "RefundBridge Demo", "currency": "CNY", "is_return": 1,
        "return_against": "ACC-SINV-2024-00042", "update_stock": 1, "docstatus": 0,
        "items": [
            {**row, "item_code": "BPM-200", "qty": -2.0, "stock_qty": -2.0, "idx": 1},
            {**row, "item_code": "GLU-STRIP-50", "qty": -1.0, "stock_qty": -1.0, "rate": 59.0,
             "idx": 2, "sales_invoice_item": "row-2"},
            {**row, "item_code": "THERM-10", "qty": -3.0, "stock_qty": -3.0, "rate": 20.0,
             "idx": 3, "sales_invoice_item": "row-3"},
        ],
        "taxes": [],
    }


@pytest.fixture
def ctx() -> ConnectorContext:
    return ConnectorContext(shop_id="s1", retry=RetryPolicy(attempts=3, initial_wait=0,
                                                             max_wait=0))


@pytest.fixture
def connector(ctx: ConnectorContext) -> Iterator[ERPNextConnector]:
    erp = ERPNextConnector.from_config(
        {"base_url": BASE + "/", "api_key": "k3y-0123456789ab",
         "api_secret": "s3cret-0123456789ab"}, ctx)
    yield erp
    erp.close()


class Erp:
    """One respx router standing in for an ERPNext site."""

    def __init__(self, router: respx.MockRouter) -> None:
        self.router = router
        self.returns = router.get(f"{BASE}{SI}", params__contains={"fields": '["name"]'},
                                  name="returns")
        self.method = router.post(f"{BASE}{METHOD}", name="method")
        self.insert = router.post(f"{BASE}{SI}", name="insert")
        self.returns.side_effect = self._list
        self.method.return_value = httpx.Response(200, json={"message": draft_return()})
        self.insert.return_value = httpx.Response(
            200, json={"data": {"name": "ACC-SINV-RET-0001", "docstatus": 1}})
        self.existing_returns: list[str] = []
        self.invoices = ["ACC-SINV-2024-00042"]

    def _list(self, request: httpx.Request) -> httpx.Response:
        filters = json.loads(request.url.params["filters"])
        looking_for_return = ["is_return", "=", 1] in filters
        names = self.existing_returns if looking_for_return else self.invoices
        return httpx.Response(200, json={"data": [{"name": n} for n in names]})

    def inserted(self, index: int = -1) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.insert.calls[index].request.content)
        return body


@pytest.fixture
def erp() -> Iterator[Erp]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        yield Erp(router)


# ------------------------------------------------------------------ happy paths


def test_books_a_return_with_stock_moves(connector: ERPNextConnector, erp: Erp) -> None:
    name = connector.book_return(make_booking(MOVES))

    assert name == "ACC-SINV-RET-0001"
    calls = [c.request for c in erp.router.calls]
    assert [(r.method, r.url.path) for r in calls] == [
        ("GET", "/api/resource/Sales Invoice"),
        ("GET", "/api/resource/Sales Invoice"),
        ("POST", METHOD),
        ("POST", "/api/resource/Sales Invoice"),
    ]
    assert all(r.headers["Authorization"] == TOKEN for r in calls)
    lookup, original = (json.loads(r.url.params["filters"]) for r in calls[:2])
    assert lookup == [["is_return", "=", 1], ["remarks", "like", f"%{CASE}%"]]
    assert original == [["po_no", "=", "SO-1001"], ["docstatus", "=", 1], ["is_return", "=", 0]]
    assert all(json.loads(r.url.params["fields"]) == ["name"] for r in calls[:2])
    assert json.loads(calls[2].content) == {"source_name": "ACC-SINV-2024-00042"}

    doc = erp.inserted()
    assert doc["is_return"] == 1 and doc["return_against"] == "ACC-SINV-2024-00042"
    assert doc["docstatus"] == 1
    assert doc["update_stock"] == 1
    assert f"RefundBridge case {CASE}" in doc["remarks"]
    assert "name" not in doc and "__islocal" not in doc
    items = [(i["item_code"], i["qty"], i["warehouse"], i.get("batch_no"), i.get("serial_no"))
             for i in doc["items"]]
    assert items == [
        ("BPM-200", -1, "Stores - RB", "L2405", None),
        ("BPM-200", -1, "Quarantine - RB", None, "SN-0042"),
        ("GLU-STRIP-50", -1, "Scrap - RB", "B77", None),
    ]
    assert all(i["qty"] < 0 and i["stock_qty"] == i["qty"] for i in doc["items"])
    assert all(i["use_serial_batch_fields"] == 1 for i in doc["items"])
    # The link to the original row is what lets ERPNext check the returnable quantity.
    assert [i["sales_invoice_item"] for i in doc["items"]] == ["row-1", "row-1", "row-2"]
    assert all("idx" not in i and "name" not in i for i in doc["items"])


def test_refund_only_credit_note_moves_no_stock(connector: ERPNextConnector, erp: Erp) -> None:
    name = connector.book_return(make_booking((), kind="refund_only"))

    assert name == "ACC-SINV-RET-0001"
    doc = erp.inserted()
    assert doc["update_stock"] == 0
    assert doc["docstatus"] == 1
    assert [(i["item_code"], i["qty"]) for i in doc["items"]] == [
        ("BPM-200", -2), ("GLU-STRIP-50", -1)]
    assert all("warehouse" not in i and "batch_no" not in i for i in doc["items"])


def test_uses_the_configured_order_field(ctx: ConnectorContext, erp: Erp) -> None:
    erp_connector = ERPNextConnector.from_config(
        {"base_url": BASE, "api_key": "k3y-0123456789ab", "api_secret": "s3cret-0123456789ab",
         "order_field": "shop_order_id"}, ctx)
    erp_connector.book_return(make_booking(MOVES))

    original = json.loads(erp.returns.calls[1].request.url.params["filters"])
    assert original[0] == ["shop_order_id", "=", "SO-1001"]


# ------------------------------------------------------------------ idempotency and retries


def test_an_earlier_return_for_the_case_is_answered(connector: ERPNextConnector,
                                                     erp: Erp) -> None:
    erp.existing_returns = ["ACC-SINV-RET-0007"]

    assert connector.book_return(make_booking(MOVES)) == "ACC-SINV-RET-0007"
    assert erp.returns.call_count == 1
    assert not erp.method.called
    assert not erp.insert.called


def test_insert_503_is_retried_and_books_one_document(connector: ERPNextConnector,
                                                      erp: Erp) -> None:
    erp.insert.side_effect = [
        httpx.Response(503, text="<html>upstream busy</html>"),
        httpx.Response(200, json={"data": {"name": "ACC-SINV-RET-0001"}}),
    ]

    assert connector.book_return(make_booking(MOVES)) == "ACC-SINV-RET-0001"
    assert erp.insert.call_count == 2
    assert erp.inserted(0) == erp.inserted(1)
    # Before the retry it looks again, in case the 503 came after Frappe committed.
    assert erp.returns.call_count == 3


def test_insert_that_committed_before_failing_is_not_booked_twice(
        connector: ERPNextConnector, erp: Erp) -> None:
    def committed_then_timed_out(request: httpx.Request) -> httpx.Response:
        erp.existing_returns = ["ACC-SINV-RET-0001"]
        raise httpx.ReadTimeout("read timed out", request=request)

    erp.insert.side_effect = committed_then_timed_out

    assert connector.book_return(make_booking(MOVES)) == "ACC-SINV-RET-0001"
    assert erp.insert.call_count == 1


# ------------------------------------------------------------------ refusals


def test_417_becomes_permanent_with_the_server_message(connector: ERPNextConnector,
                                                       erp: Erp) -> None:
    erp.insert.return_value = httpx.Response(417, json=FRAPPE_417)

    with pytest.raises(PermanentProviderError) as caught:
        connector.book_return(make_booking(MOVES))

    assert caught.value.message == SERVER_MESSAGE
    assert caught.value.code == "417"
    assert erp.insert.call_count == 1


def test_404_on_the_method_is_permanent(connector: ERPNextConnector, erp: Erp) -> None:
    erp.method.return_value = httpx.Response(404, json={
        "exc_type": "DoesNotExistError",
        "exception": "frappe.exceptions.DoesNotExistError: Sales Invoice ACC-SINV-2024-00042 "
                     "not found"})

    with pytest.raises(PermanentProviderError, match="ACC-SINV-2024-00042 not found"):
        connector.book_return(make_booking(MOVES))
    assert erp.method.call_count == 1
    assert not erp.insert.called


def test_no_original_invoice_is_permanent(connector: ERPNextConnector, erp: Erp) -> None:
    erp.invoices = []

    with pytest.raises(PermanentProviderError, match="SO-1001"):
        connector.book_return(make_booking(MOVES))
    assert not erp.method.called
    assert not erp.insert.called


def test_several_original_invoices_are_not_guessed(connector: ERPNextConnector,
                                                   erp: Erp) -> None:
    erp.invoices = ["ACC-SINV-2024-00042", "ACC-SINV-2024-00043"]

    with pytest.raises(PermanentProviderError, match="2 submitted Sales Invoices"):
        connector.book_return(make_booking(MOVES))
    assert not erp.insert.called


def test_returning_more_than_is_left_on_the_invoice_is_refused(connector: ERPNextConnector,
                                                               erp: Erp) -> None:
    moves = (StockMove(line=1, sku="GLU-STRIP-50", quantity=2,
                       disposition=Disposition.RESTOCK),)

    with pytest.raises(PermanentProviderError, match="GLU-STRIP-50"):
        connector.book_return(make_booking(moves))
    assert not erp.insert.called


# ------------------------------------------------------------------ mapping details


# disposition -> (warehouse by default, warehouse with every optional one set); None: none.
WAREHOUSE_BY_DISPOSITION: dict[Disposition, tuple[str | None, str | None]] = {
    Disposition.RESTOCK: ("restock", "restock"),
    Disposition.QUARANTINE: ("quarantine", "quarantine"),
    Disposition.RETURN_TO_MANUFACTURER: ("quarantine", "rtm"),
    Disposition.PENDING_INSPECTION: ("quarantine", "quarantine"),
    Disposition.KEEP_AS_EVIDENCE: ("quarantine", "evidence"),
    Disposition.SCRAP: ("scrap", "scrap"),
    Disposition.NOT_RETURNED: (None, None),  # the unit stayed with the customer
}


def test_the_disposition_table_covers_every_disposition() -> None:
    assert set(WAREHOUSE_BY_DISPOSITION) == set(Disposition)


@pytest.mark.parametrize(("disposition", "expected"), WAREHOUSE_BY_DISPOSITION.items())
def test_every_disposition_has_a_warehouse(disposition: Disposition,
                                           expected: tuple[str | None, str | None]) -> None:
    plain = Warehouses("restock", "quarantine", "scrap")
    separate = Warehouses("restock", "quarantine", "scrap", return_to_manufacturer="rtm",
                          evidence="evidence")
    for warehouses, warehouse in zip((plain, separate), expected, strict=True):
        if warehouse is None:
            with pytest.raises(PermanentProviderError):
                warehouses.for_disposition(disposition)
        else:
            assert warehouses.for_disposition(disposition) == warehouse
            if disposition is not Disposition.RESTOCK:
                # Nothing that someone has not cleared for sale goes where it can be sold.
                assert warehouse != "restock"


@pytest.mark.parametrize(("status", "body", "expected"), [
    (417, json.dumps(FRAPPE_417), SERVER_MESSAGE),
    (403, json.dumps({"exc_type": "PermissionError", "message": "Not permitted"}),
     "Not permitted"),
    (404, json.dumps({"exc_type": "DoesNotExistError"}), "HTTP 404 DoesNotExistError"),
    (401, "<html>Login</html>", "HTTP 401: Login"),
    (400, "", "HTTP 400"),
])
def test_error_message(status: int, body: str, expected: str) -> None:
    assert error_message(status, body) == expected


def test_placeholder_secret_is_refused(ctx: ConnectorContext) -> None:
    with pytest.raises(ConfigError) as caught:
        ERPNextConnector.from_config(
            {"base_url": BASE, "api_key": "k3y-0123456789ab", "api_secret": "changeme"}, ctx)
    assert caught.value.key == "shops.s1.erpnext.api_secret"


def test_settings_defaults() -> None:
    settings = ERPNextSettings.model_validate(
        {"base_url": BASE, "api_key": "k3y-0123456789ab", "api_secret": "s3cret-0123456789ab"})
    assert settings.order_field == "po_no"
    assert (settings.restock_warehouse, settings.quarantine_warehouse,
            settings.scrap_warehouse) == ("Stores - RB", "Quarantine - RB", "Scrap - RB")
    assert settings.return_to_manufacturer_warehouse is None
    assert settings.evidence_warehouse is None
    warehouses = settings.warehouses()
    assert warehouses.for_disposition(Disposition.RETURN_TO_MANUFACTURER) == "Quarantine - RB"
    assert warehouses.for_disposition(Disposition.KEEP_AS_EVIDENCE) == "Quarantine - RB"


@pytest.mark.parametrize("key", ["quarantine_warehouse", "scrap_warehouse",
                                 "return_to_manufacturer_warehouse", "evidence_warehouse"])
def test_a_hold_warehouse_may_not_be_the_restock_one(ctx: ConnectorContext, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ERPNextConnector.from_config(
            {"base_url": BASE, "api_key": "k3y-0123456789ab",
             "api_secret": "s3cret-0123456789ab", key: "Stores - RB"}, ctx)
    assert caught.value.key == f"shops.s1.erpnext.{key}"


def test_nothing_is_opened_until_used(connector: ERPNextConnector) -> None:
    assert connector._client is None
    client = connector.client
    assert connector.client is client  # built once

    connector.close()

    assert connector._client is None
    assert connector.client is not client  # a use after close builds a new one


# ================================================================== against the ERPNext fake
# The fake keeps documents and refuses what ERPNext's `validate_return` refuses (a
# stock-updating return against an invoice that did not ship, a rate above the original's,
# more than is left, a missing warehouse), so a booking it accepts is one ERPNext would.

FAKE_SETTINGS = {"base_url": FAKE_BASE, "api_key": "k3y-0123456789ab",
                 "api_secret": "s3cret-0123456789ab"}


@pytest.fixture
def fake() -> Iterator[tuple[ERPNextFake, respx.MockRouter]]:
    site = ERPNextFake()
    with installed(site) as router:
        yield site, router


@pytest.fixture
def site(fake: tuple[ERPNextFake, respx.MockRouter]) -> ERPNextFake:
    return fake[0]


def connect(ctx: ConnectorContext, **settings: str) -> ERPNextConnector:
    return ERPNextConnector.from_config({**FAKE_SETTINGS, **settings}, ctx)


@pytest.fixture
def erpnext(ctx: ConnectorContext) -> Iterator[ERPNextConnector]:
    connector = connect(ctx)
    yield connector
    connector.close()


def fail_first(router: respx.MockRouter, method: str, url: str,
               *failures: httpx.Response | type[httpx.TransportError]) -> respx.Route:
    """Make the fake's route for `url` answer `failures` first, then as the fake does."""
    route = route_for(router, method, url)
    answer = route.side_effect
    pending = list(failures)

    def first_fail(request: httpx.Request) -> httpx.Response:
        if pending:
            failure = pending.pop(0)
            if isinstance(failure, httpx.Response):
                return failure
            raise failure("injected", request=request)
        assert callable(answer)
        result = answer(request)
        assert isinstance(result, httpx.Response)
        return result

    route.side_effect = first_fail
    return route


def paths(site: ERPNextFake) -> list[tuple[str, str]]:
    return [(r.method, r.url.path) for r in site.requests]


def units(*rows: tuple[str, int, str | None, str | None, str | None]) -> list[ShippedUnit]:
    return [ShippedUnit(sku, qty, lot, serial, date.fromisoformat(expiry) if expiry else None)
            for sku, qty, lot, serial, expiry in rows]


# ------------------------------------------------------------------ shipped units


def test_shipped_units_from_delivery_notes_with_batch_expiry(site: ERPNextFake,
                                                            erpnext: ERPNextConnector) -> None:
    site.add_invoice("SO-7", [("GLU-METER-01", 2, "199.00")], update_stock=False)
    site.add_delivery_note("SO-7", [
        ("GLU-METER-01", 1, "199.00", {"batch_no": "L2401"}),
        ("GLU-METER-01", 1, "199.00", {"batch_no": "L2401"}),
        ("STRIP-50", 3, "59.00", {"batch_no": "B77"}),
        ("LANCET-100", 1, "9.00"),
    ])
    site.add_delivery_note("OTHER-ORDER", [("STRIP-50", 9, "59.00", {"batch_no": "B78"})])
    site.add_batch("L2401", "2027-03-31")
    site.add_batch("B77", None)

    shipped = erpnext.shipped_units("SO-7")

    assert shipped == units(("GLU-METER-01", 1, "L2401", None, "2027-03-31"),
                            ("GLU-METER-01", 1, "L2401", None, "2027-03-31"),
                            ("STRIP-50", 3, "B77", None, None),
                            ("LANCET-100", 1, None, None, None))
    assert paths(site) == [
        ("GET", "/api/resource/Delivery Note"),
        ("GET", "/api/resource/Sales Invoice"),
        ("GET", "/api/resource/Delivery Note/MAT-DN-2026-00001"),
        ("GET", "/api/resource/Batch"),
    ]
    dn_list, si_list, _, batches = site.requests
    assert json.loads(dn_list.url.params["filters"]) == [
        ["po_no", "=", "SO-7"], ["docstatus", "=", 1], ["is_return", "=", 0]]
    assert json.loads(si_list.url.params["fields"]) == ["name", "update_stock"]
    assert dn_list.url.params["limit_page_length"] == "0"  # not Frappe's 20 a page
    # Each batch is read once, in one request, however many rows name it.
    assert json.loads(batches.url.params["filters"]) == [["name", "in", ["L2401", "B77"]]]
    assert json.loads(batches.url.params["fields"]) == ["name", "expiry_date"]
    assert all(r.headers["Authorization"] == "token k3y-0123456789ab:s3cret-0123456789ab"
               for r in site.requests)


def test_serial_numbers_are_one_unit_each(site: ERPNextFake, erpnext: ERPNextConnector) -> None:
    site.add_delivery_note("SO-8", [
        ("BPM-200", 3, "100.00", {"serial_no": "SN-001\nSN-002\r\nSN-003\n"}),
        ("PUMP-9", 1, "900.00", {"serial_no": "P-77", "batch_no": "PB-1"}),
    ])
    site.add_batch("PB-1", "2030-01-01")

    assert erpnext.shipped_units("SO-8") == units(
        ("BPM-200", 1, None, "SN-001", None), ("BPM-200", 1, None, "SN-002", None),
        ("BPM-200", 1, None, "SN-003", None), ("PUMP-9", 1, "PB-1", "P-77", "2030-01-01"))


def test_serial_and_batch_bundles_of_erpnext_15(site: ERPNextFake,
                                                erpnext: ERPNextConnector) -> None:
    serials = site.add_bundle("BPM-200", [{"serial_no": "SN-1", "batch_no": "L9"},
                                          {"serial_no": "SN-2", "batch_no": "L9"}])
    lots = site.add_bundle("STRIP-50", [{"batch_no": "B1", "qty": 4},
                                        {"batch_no": "B2", "qty": 2}])
    site.add_delivery_note("SO-9", [
        # With `use_serial_batch_fields` the row repeats what its bundle holds: counted once.
        ("BPM-200", 2, "100.00", {"serial_and_batch_bundle": serials,
                                  "serial_no": "SN-1\nSN-2", "batch_no": "L9"}),
        ("STRIP-50", 6, "59.00", {"serial_and_batch_bundle": lots}),
    ])
    site.add_batch("L9", "2028-06-30")
    site.add_batch("B1", "2026-12-31")
    site.add_batch("B2", "2027-01-31")

    shipped = erpnext.shipped_units("SO-9")

    assert shipped == units(("BPM-200", 1, "L9", "SN-1", "2028-06-30"),
                            ("BPM-200", 1, "L9", "SN-2", "2028-06-30"),
                            ("STRIP-50", 4, "B1", None, "2026-12-31"),
                            ("STRIP-50", 2, "B2", None, "2027-01-31"))
    assert ("GET", f"/api/resource/Serial and Batch Bundle/{serials}") in paths(site)
    assert sum(path == "/api/resource/Batch" for _, path in paths(site)) == 1


def test_invoices_that_updated_stock_count_and_others_do_not(site: ERPNextFake,
                                                             erpnext: ERPNextConnector) -> None:
    shipped_itself = site.add_invoice("SO-10", [("GLU-METER-01", 2, "199.00",
                                                 {"batch_no": "L2401"})])
    billed_only = site.add_invoice("SO-10", [("STRIP-50", 1, "59.00")], update_stock=False)
    site.add_batch("L2401", "2027-03-31")

    assert erpnext.shipped_units("SO-10") == units(
        ("GLU-METER-01", 2, "L2401", None, "2027-03-31"))
    assert ("GET", f"/api/resource/Sales Invoice/{shipped_itself}") in paths(site)
    assert ("GET", f"/api/resource/Sales Invoice/{billed_only}") not in paths(site)


def test_unknown_order_is_a_permanent_error(site: ERPNextFake,
                                            erpnext: ERPNextConnector) -> None:
    site.add_delivery_note("SO-ELSEWHERE", [("STRIP-50", 1, "59.00")])

    with pytest.raises(PermanentProviderError) as caught:
        erpnext.shipped_units("SO-404")

    assert caught.value.code == "order_not_found"
    assert "SO-404" in caught.value.message and "po_no" in caught.value.message


def test_an_order_not_shipped_yet_has_no_units(site: ERPNextFake,
                                               erpnext: ERPNextConnector) -> None:
    site.add_sales_order("SO-11")

    assert erpnext.shipped_units("SO-11") == []


def test_shipped_units_read_the_configured_order_field(site: ERPNextFake,
                                                       ctx: ConnectorContext) -> None:
    site.add_delivery_note("SHOP-12", [("STRIP-50", 2, "59.00")], order_field="shop_order_id")
    connector = connect(ctx, order_field="shop_order_id")

    assert connector.shipped_units("SHOP-12") == units(("STRIP-50", 2, None, None, None))


def test_shipped_units_reads_are_retried_when_transient(
        fake: tuple[ERPNextFake, respx.MockRouter], erpnext: ERPNextConnector) -> None:
    site, router = fake
    site.add_delivery_note("SO-13", [("STRIP-50", 2, "59.00", {"batch_no": "B77"})])
    site.add_batch("B77", "2027-01-01")
    # The first list request (the Delivery Notes) meets a dropped connection, then a 503.
    route = fail_first(router, "GET", f"{FAKE_BASE}/api/resource/Delivery%20Note",
                       httpx.ConnectError, httpx.Response(503))

    assert erpnext.shipped_units("SO-13") == units(("STRIP-50", 2, "B77", None, "2027-01-01"))
    note_lists = [c.request for c in route.calls
                  if c.request.url.path == "/api/resource/Delivery Note"]
    assert len(note_lists) == 3
    assert len({str(r.url) for r in note_lists}) == 1  # the very same request each time


def test_fractional_shipped_quantities_are_refused(site: ERPNextFake,
                                                   erpnext: ERPNextConnector) -> None:
    site.add_delivery_note("SO-14", [("GAUZE-M", 1, "3.00", {"qty": 2.5})])

    with pytest.raises(PermanentProviderError, match="not whole units"):
        erpnext.shipped_units("SO-14")


# ------------------------------------------------------------------ warehouses per disposition


def test_each_disposition_goes_to_its_configured_warehouse(site: ERPNextFake,
                                                           ctx: ConnectorContext) -> None:
    site.add_invoice("SO-1001", [("BPM-200", 5, "100.00")])
    connector = connect(ctx, return_to_manufacturer_warehouse="RMA - RB",
                        evidence_warehouse="Evidence Locker - RB")
    dispositions = [Disposition.RESTOCK, Disposition.QUARANTINE,
                    Disposition.RETURN_TO_MANUFACTURER, Disposition.KEEP_AS_EVIDENCE,
                    Disposition.SCRAP]
    moves = tuple(StockMove(line=0, sku="BPM-200", quantity=1, disposition=d)
                  for d in dispositions)
    booking = ReturnBooking(CASE, "SO-1001", Money.parse("500.00", "CNY"), moves,
                            make_request())

    connector.book_return(booking)

    (doc,) = site.returns
    assert [row["warehouse"] for row in doc["items"]] == [
        "Stores - RB", "Quarantine - RB", "RMA - RB", "Evidence Locker - RB", "Scrap - RB"]


# ------------------------------------------------------------------ partial refunds


def booking_for(amount: str, moves: tuple[StockMove, ...] = (), kind: str = "refund_only",
                order_id: str = "SO-1001") -> ReturnBooking:
    request = make_request(kind)
    return ReturnBooking(CASE, order_id, Money.parse(amount, "CNY"), moves, request)


def credited(doc: dict[str, Any]) -> Decimal:
    return -sum((Decimal(str(r["qty"])) * Decimal(str(r["rate"])) for r in doc["items"]),
                Decimal(0))


def test_a_partial_refund_credits_the_refunded_amount(site: ERPNextFake,
                                                      erpnext: ERPNextConnector) -> None:
    site.add_invoice("SO-1001", [("BPM-200", 2, "100.00"), ("GLU-STRIP-50", 1, "59.00")])

    erpnext.book_return(booking_for("200.00"))

    (doc,) = site.returns
    assert credited(doc) == Decimal("200.00")
    assert doc["grand_total"] == -200.00  # as ERPNext totals it
    assert doc["update_stock"] == 0
    assert {r["item_code"] for r in doc["items"]} == {"BPM-200", "GLU-STRIP-50"}
    assert sum(-r["qty"] for r in doc["items"]) == 3  # the quantities stay what came back
    assert "refund 200.00 CNY" in doc["remarks"]


def test_a_partial_refund_of_returned_goods_keeps_their_warehouses(
        site: ERPNextFake, erpnext: ERPNextConnector) -> None:
    site.add_invoice("SO-1001", [("BPM-200", 2, "100.00", {"batch_no": "L2405"}),
                                 ("GLU-STRIP-50", 1, "59.00", {"batch_no": "B77"})])
    moves = (StockMove(0, "BPM-200", 2, Disposition.RESTOCK, lot="L2405"),
             StockMove(1, "GLU-STRIP-50", 1, Disposition.SCRAP, lot="B77"))

    erpnext.book_return(booking_for("129.50", moves, kind="return_and_refund"))

    (doc,) = site.returns
    assert doc["update_stock"] == 1
    assert credited(doc) == Decimal("129.50")
    assert {(r["item_code"], r["warehouse"], r["batch_no"]) for r in doc["items"]} == {
        ("BPM-200", "Stores - RB", "L2405"), ("GLU-STRIP-50", "Scrap - RB", "B77")}
    assert sum(-r["qty"] for r in doc["items"] if r["item_code"] == "BPM-200") == 2


@pytest.mark.parametrize("amount", ["0.01", "0.02", "1.00", "33.33", "99.99", "100.00",
                                    "158.99", "258.99"])
def test_partial_amounts_are_met_to_the_cent(amount: str) -> None:
    draft = draft_return()
    booking = booking_for(amount)

    doc = credit_note(draft, booking, Warehouses("restock", "quarantine", "scrap"),
                      with_stock=False)

    assert credited(doc) == Decimal(amount)
    originals = {"BPM-200": Decimal("100.00"), "GLU-STRIP-50": Decimal("59.00")}
    for row in doc["items"]:
        assert Decimal(0) <= row["rate"] <= originals[row["item_code"]]
        assert row["qty"] < 0
    # A row may be split in two rates, never more.
    assert len(doc["items"]) <= 4


def test_a_refund_of_the_full_value_leaves_the_rates_alone() -> None:
    doc = credit_note(draft_return(), booking_for("259.00"),
                      Warehouses("restock", "quarantine", "scrap"), with_stock=False)

    assert [(r["item_code"], r["qty"], r["rate"]) for r in doc["items"]] == [
        ("BPM-200", -2, 100.0), ("GLU-STRIP-50", -1, 59.0)]


VAT_13 = {"charge_type": "On Net Total", "account_head": "VAT - RB", "rate": 13.0,
          "description": "VAT 13%"}


def test_taxes_added_on_top_are_part_of_the_refund(site: ERPNextFake,
                                                   erpnext: ERPNextConnector) -> None:
    site.add_invoice("SO-1001", [("BPM-200", 2, "100.00"), ("GLU-STRIP-50", 1, "59.00")],
                     taxes=[VAT_13])

    erpnext.book_return(booking_for("113.00"))

    (doc,) = site.returns
    assert credited(doc) == Decimal("100.00")  # the net
    assert doc["grand_total"] == -113.00  # what the customer got back


def test_taxes_included_in_the_rate(site: ERPNextFake, erpnext: ERPNextConnector) -> None:
    site.add_invoice("SO-1001", [("BPM-200", 2, "113.00"), ("GLU-STRIP-50", 1, "59.00")],
                     taxes=[{**VAT_13, "included_in_print_rate": 1}])

    erpnext.book_return(booking_for("150.00"))

    assert site.returns[0]["grand_total"] == -150.00


def test_a_partial_refund_over_fixed_taxes_is_left_to_a_person(
        site: ERPNextFake, erpnext: ERPNextConnector) -> None:
    site.add_invoice("SO-1001", [("BPM-200", 2, "100.00"), ("GLU-STRIP-50", 1, "59.00")], taxes=[
        {"charge_type": "Actual", "account_head": "Freight - RB", "tax_amount": 15.0,
         "rate": 0}])

    with pytest.raises(PermanentProviderError) as caught:
        erpnext.book_return(booking_for("120.00"))

    assert caught.value.code == "partial_refund_taxes"
    assert site.returns == []


def test_a_refund_above_the_lines_value_is_refused(site: ERPNextFake,
                                                   erpnext: ERPNextConnector) -> None:
    site.add_invoice("SO-1001", [("BPM-200", 2, "100.00"), ("GLU-STRIP-50", 1, "50.00")])

    with pytest.raises(PermanentProviderError) as caught:
        erpnext.book_return(booking_for("259.00"))

    assert caught.value.code == "refund_exceeds_lines"
    assert "250.00" in caught.value.message
    assert site.returns == []


# ------------------------------------------------------------------ goods on Delivery Notes


DN_MOVES = (
    StockMove(0, "BPM-200", 1, Disposition.RESTOCK, lot="L2405"),
    StockMove(0, "BPM-200", 1, Disposition.KEEP_AS_EVIDENCE, lot="L2405"),
    StockMove(1, "GLU-STRIP-50", 1, Disposition.SCRAP, lot="B77"),
)


def delivered_order(site: ERPNextFake, notes: int = 1) -> tuple[str, list[str]]:
    """An invoice that did not ship, and the order's goods on `notes` Delivery Notes."""
    invoice = site.add_invoice("SO-1001", [("BPM-200", 2, "100.00"),
                                           ("GLU-STRIP-50", 1, "59.00")], update_stock=False)
    if notes == 1:
        names = [site.add_delivery_note("SO-1001", [
            ("BPM-200", 2, "100.00", {"batch_no": "L2405"}),
            ("GLU-STRIP-50", 1, "59.00", {"batch_no": "B77"})])]
    else:
        names = [site.add_delivery_note("SO-1001", [
                     ("BPM-200", 1, "100.00", {"batch_no": "L2405"})]),
                 site.add_delivery_note("SO-1001", [
                     ("BPM-200", 1, "100.00", {"batch_no": "L2405"}),
                     ("GLU-STRIP-50", 1, "59.00", {"batch_no": "B77"})])]
    return invoice, names


def test_goods_shipped_on_a_delivery_note_go_back_on_its_return(
        site: ERPNextFake, erpnext: ERPNextConnector) -> None:
    invoice, (note,) = delivered_order(site)

    name = erpnext.book_return(booking_for("259.00", DN_MOVES, kind="return_and_refund"))

    (stock,) = site.delivery_returns
    assert stock["is_return"] == 1 and stock["return_against"] == note
    assert stock["docstatus"] == 1 and stock["issue_credit_note"] == 0
    assert CASE in stock["instructions"]
    assert [(r["item_code"], r["qty"], r["warehouse"], r["batch_no"]) for r in stock["items"]] == [
        ("BPM-200", -1, "Stores - RB", "L2405"),
        ("BPM-200", -1, "Quarantine - RB", "L2405"),
        ("GLU-STRIP-50", -1, "Scrap - RB", "B77")]
    assert [r["dn_detail"] for r in stock["items"]] == [
        f"{note}-row-0", f"{note}-row-0", f"{note}-row-1"]

    (credit,) = site.returns
    assert name == credit["name"]
    assert credit["return_against"] == invoice
    assert credit["update_stock"] == 0  # ERPNext refuses stock on it: the goods left on the DN
    assert all(not r.get("warehouse") for r in credit["items"])
    assert [(r["item_code"], r["qty"]) for r in credit["items"]] == [
        ("BPM-200", -2), ("GLU-STRIP-50", -1)]
    assert credited(credit) == Decimal("259.00")
    assert stock["name"] in credit["remarks"]
    # The stock goes back before the money is credited, so a failure leaves no credit note
    # without its goods.
    inserts = [p for m, p in paths(site) if m == "POST" and p.startswith("/api/resource/")]
    assert inserts == ["/api/resource/Delivery Note", "/api/resource/Sales Invoice"]


def test_a_partial_refund_on_the_delivery_note_path(site: ERPNextFake,
                                                    erpnext: ERPNextConnector) -> None:
    delivered_order(site)

    erpnext.book_return(booking_for("180.00", DN_MOVES, kind="return_and_refund"))

    assert sum(-r["qty"] for r in site.delivery_returns[0]["items"]) == 3
    assert site.returns[0]["grand_total"] == -180.00


def test_goods_from_two_delivery_notes_go_back_on_two_returns(
        site: ERPNextFake, erpnext: ERPNextConnector) -> None:
    _, (first, second) = delivered_order(site, notes=2)
    moves = (StockMove(0, "BPM-200", 2, Disposition.QUARANTINE, lot="L2405"),
             StockMove(1, "GLU-STRIP-50", 1, Disposition.RESTOCK, lot="B77"))

    erpnext.book_return(booking_for("259.00", moves, kind="return_and_refund"))

    assert [(d["return_against"], [(r["item_code"], r["qty"]) for r in d["items"]])
            for d in site.delivery_returns] == [
        (first, [("BPM-200", -1)]),
        (second, [("BPM-200", -1), ("GLU-STRIP-50", -1)])]
    assert len(site.returns) == 1


def test_a_booking_stopped_between_delivery_notes_is_finished_not_repeated(
        fake: tuple[ERPNextFake, respx.MockRouter], erpnext: ERPNextConnector) -> None:
    site, router = fake
    _, (first, second) = delivered_order(site, notes=2)
    moves = (StockMove(0, "BPM-200", 2, Disposition.QUARANTINE, lot="L2405"),)
    booking = booking_for("200.00", moves, kind="return_and_refund")
    # The first return is booked, the second refused (a closed period, say).
    route = route_for(router, "POST", f"{FAKE_BASE}/api/resource/Delivery%20Note")
    answer = route.side_effect
    assert callable(answer)
    route.side_effect = [answer, httpx.Response(417, json={
        "exc_type": "ValidationError", "message": "Posting date is in a closed period"})]

    with pytest.raises(PermanentProviderError, match="closed period"):
        erpnext.book_return(booking)
    assert [d["return_against"] for d in site.delivery_returns] == [first]
    assert site.returns == []

    route.side_effect = answer  # a person reopened the period; the operator retries
    erpnext.book_return(booking)

    assert [d["return_against"] for d in site.delivery_returns] == [first, second]
    assert len(site.returns) == 1


def test_a_delivery_note_return_that_committed_before_failing_is_not_booked_twice(
        fake: tuple[ERPNextFake, respx.MockRouter], erpnext: ERPNextConnector) -> None:
    site, router = fake
    delivered_order(site)
    route = route_for(router, "POST", f"{FAKE_BASE}/api/resource/Delivery%20Note")
    answer = route.side_effect
    assert callable(answer)

    sent: list[httpx.Request] = []

    def committed_then_timed_out(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if len(sent) == 1:
            answer(request)
            raise httpx.ReadTimeout("read timed out", request=request)
        return httpx.Response(500)  # not asked again: the return was found

    route.side_effect = committed_then_timed_out

    erpnext.book_return(booking_for("259.00", DN_MOVES, kind="return_and_refund"))

    assert len(site.delivery_returns) == 1 and len(sent) == 1
    assert len(site.returns) == 1


def test_booking_the_delivery_note_path_twice_books_it_once(
        site: ERPNextFake, erpnext: ERPNextConnector) -> None:
    delivered_order(site)
    booking = booking_for("259.00", DN_MOVES, kind="return_and_refund")

    first = erpnext.book_return(booking)
    again = erpnext.book_return(booking)

    assert first == again
    assert len(site.delivery_returns) == 1 and len(site.returns) == 1


def test_a_refund_without_goods_on_the_delivery_note_path_moves_no_stock(
        site: ERPNextFake, erpnext: ERPNextConnector) -> None:
    delivered_order(site)

    erpnext.book_return(booking_for("59.00"))

    assert site.delivery_returns == []
    assert site.returns[0]["update_stock"] == 0


def test_returned_goods_with_no_delivery_note_to_go_back_against(
        site: ERPNextFake, erpnext: ERPNextConnector) -> None:
    site.add_invoice("SO-1001", [("BPM-200", 2, "100.00"), ("GLU-STRIP-50", 1, "59.00")],
                     update_stock=False)

    with pytest.raises(PermanentProviderError) as caught:
        erpnext.book_return(booking_for("259.00", DN_MOVES, kind="return_and_refund"))

    assert caught.value.code == "delivery_note_not_found"
    assert site.returns == []


def test_more_goods_than_the_delivery_notes_shipped_are_refused(
        site: ERPNextFake, erpnext: ERPNextConnector) -> None:
    delivered_order(site)
    moves = (StockMove(1, "GLU-STRIP-50", 2, Disposition.SCRAP, lot="B77"),)

    with pytest.raises(PermanentProviderError) as caught:
        erpnext.book_return(booking_for("59.00", moves, kind="return_and_refund"))

    assert caught.value.code == "over_return"
    assert "GLU-STRIP-50" in caught.value.message
    assert site.returns == []
