"""An ERPNext (Frappe REST) fake for respx: Sales Orders, Delivery Notes, Sales Invoices,
Batches, Serial and Batch Bundles, `make_sales_return` for invoices and Delivery Notes, and
inserting returns.

It answers in Frappe's shapes: `{"data": [...]}` for lists (with `filters`, `fields` and
`limit_page_length` read from the query string as Frappe reads them), `{"data": {...}}` for a
document, `{"message": {...}}` for methods, and HTTP 417 with `_server_messages` when it
refuses. It refuses what ERPNext's `validate_return` refuses: a stock-updating return against
an invoice that did not update stock, a return row for an item the original lacks, a positive
quantity, more than is left to return, a rate above the original's, a missing warehouse where
stock moves, and a batch the original row did not ship.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import respx

BASE = "https://erp.acme-medical.example.com"
MAKE_RETURN = "/api/method/erpnext.accounts.doctype.sales_invoice.sales_invoice.make_sales_return"
MAKE_DN_RETURN = "/api/method/erpnext.stock.doctype.delivery_note.delivery_note.make_sales_return"

SI = "Sales Invoice"
DN = "Delivery Note"
# The child-row field of a return that names the original row it returns.
LINK_FIELD = {SI: "sales_invoice_item", DN: "dn_detail"}

# (sku, qty, rate) or (sku, qty, rate, {extra row fields: batch_no, serial_no, ...})
Item = tuple[str, int, str] | tuple[str, int, str, dict[str, Any]]


def _refusal(message: str, status: int = 417) -> httpx.Response:
    return httpx.Response(status, json={
        "exc_type": "ValidationError",
        "exception": f"frappe.exceptions.ValidationError: {message}",
        "_server_messages": json.dumps([json.dumps({"message": message, "indicator": "red"})]),
    })


def _like(pattern: str, value: object) -> bool:
    regex = ".*".join(re.escape(part) for part in pattern.split("%"))
    return re.fullmatch(regex, str(value or ""), re.DOTALL) is not None


def _matches(doc: dict[str, Any], filters: list[list[Any]]) -> bool:
    for condition in filters:
        field, op, value = condition[-3:]
        actual = doc.get(field)
        if op == "=" and not (actual == value or str(actual) == str(value)):
            return False
        if op == "like" and not _like(value, actual):
            return False
        if op == "in" and actual not in value:
            return False
        if op not in ("=", "like", "in"):
            raise AssertionError(f"the fake does not know filter operator {op!r}")
    return True


class ERPNextFake:
    def __init__(self) -> None:
        self.invoices: dict[str, dict[str, Any]] = {}  # invoice name -> document
        self.returns: list[dict[str, Any]] = []  # Sales Invoice returns (credit notes)
        self.delivery_notes: dict[str, dict[str, Any]] = {}
        self.delivery_returns: list[dict[str, Any]] = []
        self.sales_orders: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.bundles: dict[str, dict[str, Any]] = {}
        self.requests: list[httpx.Request] = []
        # Called with (doctype, document) as an insert arrives, before it is checked: a test
        # can hold one caller there to race another against it.
        self.before_insert: list[Callable[[str, dict[str, Any]], None]] = []

    # ---------------------------------------------------------------- set-up

    def add_invoice(self, order_id: str, items: list[Item], currency: str = "CNY", *,
                    update_stock: bool = True, taxes: list[dict[str, Any]] | None = None,
                    order_field: str = "po_no") -> str:
        """A submitted Sales Invoice; by default it shipped the goods itself (`update_stock`),
        as a shop without Delivery Notes does."""
        name = f"ACC-SINV-2026-{len(self.invoices) + 1:05d}"
        self.invoices[name] = self._document(name, order_id, items, currency, order_field)
        self.invoices[name].update(update_stock=1 if update_stock else 0, taxes=taxes or [])
        return name

    def add_delivery_note(self, order_id: str, items: list[Item], currency: str = "CNY", *,
                          order_field: str = "po_no") -> str:
        name = f"MAT-DN-2026-{len(self.delivery_notes) + 1:05d}"
        self.delivery_notes[name] = self._document(name, order_id, items, currency,
                                                   order_field)
        return name

    def add_sales_order(self, order_id: str, order_field: str = "po_no") -> str:
        name = f"SAL-ORD-2026-{len(self.sales_orders) + 1:05d}"
        self.sales_orders[name] = {"name": name, order_field: order_id, "docstatus": 1}
        return name

    def add_batch(self, batch_id: str, expiry_date: str | None) -> None:
        self.batches[batch_id] = {"name": batch_id, "batch_id": batch_id,
                                  "expiry_date": expiry_date}

    def add_bundle(self, item_code: str, entries: list[dict[str, Any]]) -> str:
        """An outward Serial and Batch Bundle (ERPNext 15): `entries` of `batch_no`,
        `serial_no` and `qty`, stored negative as ERPNext does for outward moves."""
        name = f"SABB-{len(self.bundles) + 1:08d}"
        self.bundles[name] = {
            "name": name, "item_code": item_code, "type_of_transaction": "Outward",
            "docstatus": 1,
            "entries": [{"batch_no": e.get("batch_no"), "serial_no": e.get("serial_no"),
                         "qty": -abs(e.get("qty", 1)), "warehouse": "Stores - RB",
                         "idx": i + 1} for i, e in enumerate(entries)],
        }
        return name

    @staticmethod
    def _document(name: str, order_id: str, items: list[Item], currency: str,
                  order_field: str) -> dict[str, Any]:
        rows = []
        for i, item in enumerate(items):
            sku, qty, rate = item[0], item[1], item[2]
            extra = item[3] if len(item) > 3 else {}  # type: ignore[misc]
            rows.append({"name": f"{name}-row-{i}", "item_code": sku, "qty": qty,
                         "stock_qty": qty, "conversion_factor": 1.0, "rate": float(rate),
                         "warehouse": "Stores - RB", "idx": i + 1, "batch_no": None,
                         "serial_no": None, "serial_and_batch_bundle": None, **extra})
        return {"name": name, order_field: order_id, "currency": currency, "docstatus": 1,
                "is_return": 0, "customer": "Li Wei", "company": "Acme Medical",
                "items": rows}

    def install(self, router: respx.MockRouter) -> None:
        router.post(f"{BASE}{MAKE_RETURN}").mock(side_effect=self._make_return)
        router.post(f"{BASE}{MAKE_DN_RETURN}").mock(side_effect=self._make_dn_return)
        router.get(url__regex=rf"^{re.escape(BASE)}/api/resource/[^/?]+/[^?]+$").mock(
            side_effect=self._get)
        router.get(url__regex=rf"^{re.escape(BASE)}/api/resource/[^/?]+(\?.*)?$").mock(
            side_effect=self._list)
        router.post(f"{BASE}/api/resource/Sales%20Invoice").mock(side_effect=self._insert)
        router.post(f"{BASE}/api/resource/Delivery%20Note").mock(side_effect=self._insert)

    # ---------------------------------------------------------------- reads

    def _collection(self, doctype: str) -> list[dict[str, Any]]:
        match doctype:
            case "Sales Invoice":
                return [*self.invoices.values(), *self.returns]
            case "Delivery Note":
                return [*self.delivery_notes.values(), *self.delivery_returns]
            case "Sales Order":
                return list(self.sales_orders.values())
            case "Batch":
                return list(self.batches.values())
            case "Serial and Batch Bundle":
                return list(self.bundles.values())
        raise AssertionError(f"the fake has no {doctype}")

    def _list(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        doctype = request.url.path.removeprefix("/api/resource/")
        params = request.url.params
        filters = json.loads(params.get("filters", "[]"))
        fields = json.loads(params.get("fields", '["name"]'))
        limit = int(params.get("limit_page_length", "20"))
        rows = [{f: doc.get(f) for f in fields} for doc in self._collection(doctype)
                if _matches(doc, filters)]
        return httpx.Response(200, json={"data": rows[:limit] if limit else rows})

    def _get(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        doctype, name = request.url.path.removeprefix("/api/resource/").split("/", 1)
        doc = next((d for d in self._collection(doctype) if d["name"] == name), None)
        if doc is None:
            return httpx.Response(404, json={
                "exc_type": "DoesNotExistError",
                "exception": f"frappe.exceptions.DoesNotExistError: {doctype} {name} not found"})
        return httpx.Response(200, json={"data": doc})

    # ---------------------------------------------------------------- returns

    def _returned(self, doctype: str, source: str) -> dict[str, float]:
        """How much of each original row submitted returns already took back."""
        done: dict[str, float] = {}
        returns = self.returns if doctype == SI else self.delivery_returns
        for ret in returns:
            if ret["return_against"] != source or ret.get("docstatus") != 1:
                continue
            for row in ret["items"]:
                link = row.get(LINK_FIELD[doctype])
                done[link] = done.get(link, 0) + abs(row["qty"])
        return done

    def _draft(self, doctype: str, original: dict[str, Any]) -> dict[str, Any]:
        done = self._returned(doctype, original["name"])
        items = []
        for row in original["items"]:
            left = row["qty"] - done.get(row["name"], 0)
            if left <= 0:
                continue
            items.append({**{k: v for k, v in row.items() if k != "name"}, "name": None,
                          "qty": -left, "stock_qty": -left,
                          LINK_FIELD[doctype]: row["name"]})
        header = {k: v for k, v in original.items()
                  if k not in ("name", "items", "po_no")}  # po_no is no_copy
        return {**header, "doctype": doctype, "name": None, "__islocal": 1, "docstatus": 0,
                "is_return": 1, "return_against": original["name"], "items": items}

    def _make_return(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        source = json.loads(request.content)["source_name"]
        return httpx.Response(200, json={"message": self._draft(SI, self.invoices[source])})

    def _make_dn_return(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        source = json.loads(request.content)["source_name"]
        return httpx.Response(200, json={"message": self._draft(DN,
                                                                self.delivery_notes[source])})

    def _insert(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        doctype = request.url.path.removeprefix("/api/resource/")
        doc = json.loads(request.content)
        for hook in list(self.before_insert):
            hook(doctype, doc)
        refusal = self._validate_return(doctype, doc)
        if refusal is not None:
            return _refusal(refusal)
        if doctype == SI:
            doc["name"] = f"ACC-SINV-RET-{len(self.returns) + 1:05d}"
            doc.update(self._totals(doc))
            self.returns.append(doc)
        else:
            doc["name"] = f"MAT-DN-RET-{len(self.delivery_returns) + 1:05d}"
            self.delivery_returns.append(doc)
        return httpx.Response(200, json={"data": doc})

    def _validate_return(self, doctype: str, doc: dict[str, Any]) -> str | None:
        if not doc.get("is_return"):
            raise AssertionError("the fake only takes returns")
        originals = self.invoices if doctype == SI else self.delivery_notes
        original = originals.get(doc.get("return_against") or "")
        if original is None:
            return f"Invalid Return Against: {doc.get('return_against')}"
        if doctype == SI and doc.get("update_stock") and not original.get("update_stock"):
            return ("'Update Stock' can not be checked because items are not delivered via "
                    f"{original['name']}")
        stock_moves = doctype == DN or bool(doc.get("update_stock"))
        by_name = {row["name"]: row for row in original["items"]}
        done = self._returned(doctype, original["name"])
        for idx, row in enumerate(doc["items"], start=1):
            source = by_name.get(row.get(LINK_FIELD[doctype]) or "")
            if source is None or source["item_code"] != row["item_code"]:
                return (f"Row # {idx}: Returned Item {row['item_code']} does not exist in "
                        f"{doctype} {original['name']}")
            if row["qty"] >= 0:
                return "Quantity must be negative in return document"
            done[source["name"]] = done.get(source["name"], 0) + abs(row["qty"])
            if done[source["name"]] > source["qty"]:
                return (f"Row # {idx}: Cannot return more than {source['qty']} for Item "
                        f"{row['item_code']}")
            if Decimal(str(row["rate"])) > Decimal(str(source["rate"])):
                return (f"Row # {idx}: Rate cannot be greater than the rate used in "
                        f"{doctype} {original['name']}")
            if source.get("batch_no") and row.get("batch_no") not in (None, source["batch_no"]):
                return f"Row # {idx}: Batch No must be same as {doctype} {original['name']}"
            if stock_moves and not row.get("warehouse"):
                return "Warehouse is mandatory"
        return None

    @staticmethod
    def _totals(doc: dict[str, Any]) -> dict[str, float]:
        """Net and grand total as ERPNext computes them for "On Net Total" taxes."""
        net = sum(Decimal(str(r["qty"])) * Decimal(str(r["rate"])) for r in doc["items"])
        net = Decimal(net).quantize(Decimal("0.01"))
        tax = Decimal(0)
        for t in doc.get("taxes") or []:
            assert t["charge_type"] == "On Net Total", "the fake computes only On Net Total"
            if not t.get("included_in_print_rate"):
                tax += (net * Decimal(str(t["rate"])) / 100).quantize(Decimal("0.01"))
        return {"net_total": float(net), "grand_total": float(net + tax)}
