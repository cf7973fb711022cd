"""An ERPNext (Frappe REST) fake for respx: Sales Orders, Delivery Notes, Sales Invoices,
Batches, Serial and Batch Bundles, `make_sales_return` for invoices and Delivery Notes, and
inserting returns; for recalls also Items (with barcodes), Customers, Warehouses, Serial Nos,
stock on hand per warehouse and batch (`Bin`, `get_batch_qty`), and submitted Material
Transfer Stock Entries, which move that stock.

Lists join a child table as Frappe's `get_list` does: a field or a four-part filter naming
`tab<Child DocType>` gives one row per matching child row. `order_by`, `limit_start` and
`limit_page_length` page the rows.

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

from tests.fakes.common import hooked_answer
from tests.fakes.erpnext_exchanges import MAKE_DELIVERY_NOTE, SellingDesk

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
    # As SQL reads LIKE: `%` any run of characters, `_` any one character.
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, str(value or ""), re.DOTALL) is not None


def _compare(actual: object, value: object) -> int:
    if isinstance(actual, int | float) and isinstance(value, int | float):
        return (actual > value) - (actual < value)
    left, right = str(actual or ""), str(value)
    return (left > right) - (left < right)


def _holds(actual: object, op: str, value: Any) -> bool:
    match op:
        case "=":
            return actual == value or str(actual) == str(value)
        case "!=":
            return not (actual == value or str(actual) == str(value))
        case "like":
            return _like(value, actual)
        case "in":
            return actual in value
        case "not in":
            return actual not in value
        case ">":
            return actual is not None and _compare(actual, value) > 0
        case "<":
            return actual is not None and _compare(actual, value) < 0
        case ">=":  # a posting date's range (quality signals' shipped units)
            return actual is not None and _compare(actual, value) >= 0
        case "<=":
            return actual is not None and _compare(actual, value) <= 0
    raise AssertionError(f"the fake does not know filter operator {op!r}")


def _matches(doc: dict[str, Any], filters: list[list[Any]]) -> bool:
    return all(_holds(doc.get(c[-3]), c[-2], c[-1]) for c in filters)


# A child DocType and the Table field of its parent that holds its rows.
CHILD_TABLES = {"Delivery Note Item": "items", "Sales Invoice Item": "items",
                "Item Barcode": "barcodes", "Stock Entry Detail": "items"}
_FIELD = re.compile(r"^(?:`tab(?P<table>[^`]+)`\.)?(?P<field>\w+)(?:\s+as\s+(?P<alias>\w+))?$")
_ORDER = re.compile(r"^(?:`tab(?P<table>[^`]+)`\.)?(?P<field>\w+)(?:\s+(?P<dir>asc|desc))?$")
GET_BATCH_QTY = "/api/method/erpnext.stock.doctype.batch.batch.get_batch_qty"


class ERPNextFake(SellingDesk):  # Sales Orders and their deliveries: exchanges
    def __init__(self) -> None:
        self.invoices: dict[str, dict[str, Any]] = {}  # invoice name -> document
        self.returns: list[dict[str, Any]] = []  # Sales Invoice returns (credit notes)
        self.delivery_notes: dict[str, dict[str, Any]] = {}
        self.delivery_returns: list[dict[str, Any]] = []
        self.sales_orders: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.bundles: dict[str, dict[str, Any]] = {}
        self.items: dict[str, dict[str, Any]] = {}
        self.customers: dict[str, dict[str, Any]] = {}
        self.warehouses: dict[str, dict[str, Any]] = {
            w: {"name": w, "company": "Acme Medical", "is_group": 0}
            for w in ("Stores - RB", "Shop Floor - RB", "Quarantine - RB", "Scrap - RB")}
        self.serials: dict[str, dict[str, Any]] = {}
        # (item_code, warehouse, batch_no or None) -> quantity on hand
        self.stock: dict[tuple[str, str, str | None], int] = {}
        self.stock_entries: list[dict[str, Any]] = []
        self.requests: list[httpx.Request] = []
        # Called with (doctype, document) as an insert arrives, before it is checked: a test
        # can hold one caller there to race another against it.
        self.before_insert: list[Callable[[str, dict[str, Any]], None]] = []
        # Called with each request before the fake answers it: the first response a hook
        # gives is answered instead (an error page, a malformed body).
        self.hooks: list[Callable[[httpx.Request], httpx.Response | None]] = []

    # ---------------------------------------------------------------- set-up

    def add_invoice(self, order_id: str, items: list[Item], currency: str = "CNY", *,
                    update_stock: bool = True, taxes: list[dict[str, Any]] | None = None,
                    order_field: str = "po_no", **header: Any) -> str:
        """A submitted Sales Invoice; by default it shipped the goods itself (`update_stock`),
        as a shop without Delivery Notes does. `header` sets document fields (`customer`,
        `contact_email`, `posting_date`, `is_return`, `docstatus`...)."""
        name = f"ACC-SINV-2026-{len(self.invoices) + 1:05d}"
        self.invoices[name] = self._document(name, order_id, items, currency, order_field)
        self.invoices[name].update(update_stock=1 if update_stock else 0, taxes=taxes or [],
                                   **header)
        return name

    def add_delivery_note(self, order_id: str, items: list[Item], currency: str = "CNY", *,
                          order_field: str = "po_no", **header: Any) -> str:
        name = f"MAT-DN-2026-{len(self.delivery_notes) + 1:05d}"
        self.delivery_notes[name] = self._document(name, order_id, items, currency,
                                                   order_field)
        self.delivery_notes[name].update(header)
        return name

    def add_item(self, item_code: str, *, batched: bool = False, serialized: bool = False,
                 barcodes: tuple[str, ...] = ()) -> None:
        self.items[item_code] = {
            "name": item_code, "item_code": item_code, "stock_uom": "Nos",
            "has_batch_no": int(batched), "has_serial_no": int(serialized),
            "barcodes": [{"name": f"{item_code}-bc-{i}", "barcode": b, "barcode_type": "EAN"}
                         for i, b in enumerate(barcodes)]}

    def add_customer(self, name: str, *, email_id: str | None = None,
                     mobile_no: str | None = None, language: str | None = None,
                     customer_name: str | None = None) -> None:
        self.customers[name] = {"name": name, "customer_name": customer_name or name,
                                "email_id": email_id, "mobile_no": mobile_no,
                                "language": language}

    def add_stock(self, item_code: str, warehouse: str, qty: int,
                  batch_no: str | None = None) -> None:
        key = (item_code, warehouse, batch_no)
        self.stock[key] = self.stock.get(key, 0) + qty

    def add_serial(self, serial_no: str, item_code: str, warehouse: str | None, *,
                   batch_no: str | None = None, status: str = "Active") -> None:
        """A Serial No; an active one in a warehouse is a unit on hand there."""
        self.serials[serial_no] = {"name": serial_no, "serial_no": serial_no,
                                   "item_code": item_code, "warehouse": warehouse,
                                   "batch_no": batch_no, "status": status}
        if status == "Active" and warehouse:
            self.add_stock(item_code, warehouse, 1, batch_no)

    def on_hand(self, item_code: str, warehouse: str, batch_no: str | None = None) -> int:
        return self.stock.get((item_code, warehouse, batch_no), 0)

    def add_sales_order(self, order_id: str, order_field: str = "po_no") -> str:
        name = f"SAL-ORD-2026-{len(self.sales_orders) + 1:05d}"
        self.sales_orders[name] = {"name": name, order_field: order_id, "docstatus": 1}
        return name

    def add_batch(self, batch_id: str, expiry_date: str | None,
                  item: str | None = None) -> None:
        self.batches[batch_id] = {"name": batch_id, "batch_id": batch_id,
                                  "expiry_date": expiry_date, "item": item}

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
                "is_return": 0, "customer": "Li Wei", "customer_name": "Li Wei",
                "contact_email": None, "contact_mobile": None, "posting_date": "2026-03-01",
                "company": "Acme Medical", "items": rows}

    def install(self, router: respx.MockRouter) -> None:
        router.post(f"{BASE}{MAKE_RETURN}").mock(side_effect=self._make_return)
        router.post(f"{BASE}{MAKE_DN_RETURN}").mock(side_effect=self._make_dn_return)
        router.get(url__regex=rf"^{re.escape(BASE)}/api/resource/[^/?]+/[^?]+$").mock(
            side_effect=self._get)
        router.get(url__regex=rf"^{re.escape(BASE)}/api/resource/[^/?]+(\?.*)?$").mock(
            side_effect=self._list)
        router.get(f"{BASE}{GET_BATCH_QTY}").mock(side_effect=self._batch_qty)
        router.post(f"{BASE}/api/resource/Sales%20Invoice").mock(side_effect=self._insert)
        router.post(f"{BASE}/api/resource/Delivery%20Note").mock(side_effect=self._insert)
        router.post(f"{BASE}/api/resource/Stock%20Entry").mock(
            side_effect=self._insert_stock_entry)
        router.post(f"{BASE}/api/resource/Sales%20Order").mock(
            side_effect=self.insert_sales_order)
        router.get(f"{BASE}{MAKE_DELIVERY_NOTE}").mock(side_effect=self.make_delivery_note)

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
            case "Item":
                return list(self.items.values())
            case "Customer":
                return list(self.customers.values())
            case "Warehouse":
                return list(self.warehouses.values())
            case "Serial No":
                return list(self.serials.values())
            case "Stock Entry":
                return self.stock_entries
            case "Bin":
                bins: dict[tuple[str, str], int] = {}
                for (item, warehouse, _batch), qty in self.stock.items():
                    bins[item, warehouse] = bins.get((item, warehouse), 0) + qty
                return [{"name": f"{i}@{w}", "item_code": i, "warehouse": w,
                         "actual_qty": float(q)} for (i, w), q in bins.items()]
        raise AssertionError(f"the fake has no {doctype}")

    def _hooked(self, request: httpx.Request) -> httpx.Response | None:
        self.requests.append(request)
        return hooked_answer(self.hooks, request)

    @staticmethod
    def _joined(doctype: str, docs: list[dict[str, Any]], fields: list[str],
                filters: list[list[Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(document, child row) pairs as Frappe's list query joins them: with a child
        table named in a field or a filter, one pair per matching child row (an empty row
        for none when only a field names it, as a left join); else one per document."""
        tables = {m["table"] for f in fields if (m := _FIELD.match(f)) and m["table"]
                  and m["table"] != doctype}
        tables |= {c[0] for c in filters if len(c) == 4 and c[0] != doctype}
        if len(tables) > 1:
            raise AssertionError(f"the fake joins one child table, not {sorted(tables)}")
        child = next(iter(tables), None)
        own = [c for c in filters if len(c) == 3 or c[0] == doctype]
        theirs = [c for c in filters if len(c) == 4 and c[0] == child]
        pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for doc in docs:
            if not _matches(doc, own):
                continue
            if child is None:
                pairs.append((doc, {}))
                continue
            rows = [r for r in doc.get(CHILD_TABLES[child], []) if _matches(r, theirs)]
            if not rows and not theirs:
                rows = [{}]
            pairs.extend((doc, row) for row in rows)
        return pairs

    def _list(self, request: httpx.Request) -> httpx.Response:
        if (hooked := self._hooked(request)) is not None:
            return hooked
        doctype = request.url.path.removeprefix("/api/resource/")
        params = request.url.params
        filters = json.loads(params.get("filters", "[]"))
        fields = json.loads(params.get("fields", '["name"]'))
        start = int(params.get("limit_start", "0"))
        limit = int(params.get("limit_page_length", "20"))
        pairs = self._joined(doctype, self._collection(doctype), fields, filters)
        if "order_by" in params:
            order = _ORDER.match(params["order_by"].strip())
            assert order is not None, f"the fake cannot order by {params['order_by']!r}"
            on_child = order["table"] is not None and order["table"] != doctype
            pairs.sort(key=lambda p: str(p[1 if on_child else 0].get(order["field"]) or ""),
                       reverse=order["dir"] == "desc")
        rows = []
        for doc, child in pairs:
            row = {}
            for f in fields:
                m = _FIELD.match(f)
                assert m is not None, f"the fake cannot read field {f!r}"
                source = child if m["table"] and m["table"] != doctype else doc
                row[m["alias"] or m["field"]] = source.get(m["field"])
            rows.append(row)
        rows = rows[start:]
        return httpx.Response(200, json={"data": rows[:limit] if limit else rows})

    def _batch_qty(self, request: httpx.Request) -> httpx.Response:
        """`get_batch_qty(batch_no, warehouse, item_code)`: with a warehouse, the quantity
        there; without, a list of `{"warehouse", "qty"}` for the batch."""
        if (hooked := self._hooked(request)) is not None:
            return hooked
        params = request.url.params
        batch, item = params.get("batch_no"), params.get("item_code")
        found = [(w, q) for (i, w, b), q in self.stock.items()
                 if b == batch and (item is None or i == item)]
        if "warehouse" in params:
            return httpx.Response(200, json={"message": float(sum(
                q for w, q in found if w == params["warehouse"]))})
        per: dict[str, int] = {}
        for warehouse, qty in found:
            per[warehouse] = per.get(warehouse, 0) + qty
        return httpx.Response(200, json={"message": [
            {"warehouse": w, "qty": float(q)} for w, q in per.items() if q]})

    def _get(self, request: httpx.Request) -> httpx.Response:
        if (hooked := self._hooked(request)) is not None:
            return hooked
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

    def _insert_stock_entry(self, request: httpx.Request) -> httpx.Response:
        """A Stock Entry as ERPNext validates a Material Transfer; submitted (docstatus 1 on
        insert), it moves the stock and the serials."""
        if (hooked := self._hooked(request)) is not None:
            return hooked
        doc = json.loads(request.content)
        for hook in list(self.before_insert):
            hook("Stock Entry", doc)
        refusal = self._validate_transfer(doc)
        if refusal is not None:
            return _refusal(refusal)
        doc["name"] = f"MAT-STE-2026-{len(self.stock_entries) + 1:05d}"
        for idx, row in enumerate(doc["items"], start=1):
            row.update(name=f"{doc['name']}-row-{idx}", idx=idx, uom="Nos",
                       stock_uom="Nos", conversion_factor=1.0)
        if doc.get("docstatus") == 1:
            for row in doc["items"]:
                batch = row.get("batch_no") or None
                self.add_stock(row["item_code"], row["s_warehouse"], -row["qty"], batch)
                self.add_stock(row["item_code"], row["t_warehouse"], row["qty"], batch)
                for serial in (row.get("serial_no") or "").split("\n"):
                    if serial.strip():
                        self.serials[serial.strip()]["warehouse"] = row["t_warehouse"]
        self.stock_entries.append(doc)
        return httpx.Response(200, json={"data": doc})

    def _validate_transfer(self, doc: dict[str, Any]) -> str | None:
        for field in ("company", "purpose", "stock_entry_type"):
            if not doc.get(field):
                return f"Value missing for Stock Entry: {field}"
        if doc["purpose"] != "Material Transfer":
            raise AssertionError("the fake only takes Material Transfers")
        if not doc.get("items"):
            return "Items are required"
        taken: dict[tuple[str, str, str | None], int] = {}
        for idx, row in enumerate(doc["items"], start=1):
            item = self.items.get(row.get("item_code") or "")
            if item is None:
                return f"Row #{idx}: Item {row.get('item_code')} not found"
            source, target = row.get("s_warehouse"), row.get("t_warehouse")
            for warehouse in (source, target):
                if warehouse not in self.warehouses:
                    return f"Row #{idx}: Warehouse {warehouse} not found"
            if source == target:
                return f"Row #{idx}: Source and target warehouse cannot be same"
            qty = row.get("qty")
            if not isinstance(qty, int | float) or qty <= 0:
                return f"Row #{idx}: Quantity must be greater than zero"
            batch = row.get("batch_no") or None
            if item["has_batch_no"] and not batch:
                return f"Row #{idx}: Batch No is mandatory for Item {item['name']}"
            if item["has_serial_no"]:
                serials = [s.strip() for s in (row.get("serial_no") or "").split("\n")
                           if s.strip()]
                if len(serials) != qty:
                    return f"Row #{idx}: {qty} Serial Numbers required for Item {item['name']}"
                for serial in serials:
                    known = self.serials.get(serial)
                    if known is None or known["status"] != "Active" or (
                            known["warehouse"] != source):
                        return f"Row #{idx}: Serial No {serial} does not belong to {source}"
            key = (item["name"], source, batch)
            taken[key] = taken.get(key, 0) + int(qty)
            if taken[key] > self.stock.get(key, 0):
                return (f"{taken[key] - self.stock.get(key, 0)} units of Item {item['name']} "
                        f"needed in Warehouse {source} to complete this transaction.")
        return None

    def _insert(self, request: httpx.Request) -> httpx.Response:
        if (hooked := self._hooked(request)) is not None:
            return hooked
        doctype = request.url.path.removeprefix("/api/resource/")
        doc = json.loads(request.content)
        for hook in list(self.before_insert):
            hook(doctype, doc)
        if doctype == DN and not doc.get("is_return"):
            return self.insert_delivery(doc)  # an exchange's replacement ships
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
