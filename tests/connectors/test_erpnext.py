"""ERPNext connector, checked at the HTTP transport with respx (no network, no sleeps)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from connectors.base import ConnectorContext, RetryPolicy
from connectors.erpnext import ERPNextConnector, ERPNextSettings
from connectors.erpnext.transformers import Warehouses, error_message
from core.errors import ConfigError, PermanentProviderError
from core.model import Disposition, StockMove
from core.money import Money
from core.ports import ReturnBooking
from core.request import NormalizedRefundRequest

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


WAREHOUSE_BY_DISPOSITION = {
    Disposition.RESTOCK: "restock",
    Disposition.QUARANTINE: "quarantine",
    Disposition.RETURN_TO_MANUFACTURER: "quarantine",
    Disposition.PENDING_INSPECTION: "quarantine",
    Disposition.KEEP_AS_EVIDENCE: "quarantine",
    Disposition.SCRAP: "scrap",
}


def test_the_disposition_table_covers_every_disposition() -> None:
    assert set(WAREHOUSE_BY_DISPOSITION) == set(Disposition)


@pytest.mark.parametrize(("disposition", "warehouse"), WAREHOUSE_BY_DISPOSITION.items())
def test_every_disposition_has_a_warehouse(disposition: Disposition, warehouse: str) -> None:
    assert Warehouses("restock", "quarantine", "scrap").for_disposition(disposition) == warehouse


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
