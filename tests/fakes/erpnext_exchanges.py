"""The ERPNext fake's selling side for exchanges: inserting (and submitting) Sales Orders,
`make_delivery_note`, and inserting (and submitting) the Delivery Note it mapped, which
ships stock. Mixed into `tests.fakes.erpnext.ERPNextFake`.

As ERPNext does:
- nothing is unique about `po_no` (or any Data field): two Sales Orders with one key are two
  orders, which is why the connector looks before it inserts, and why only our own claim
  makes two racing workers safe;
- a Sales Order needs a known Customer and Items, a delivery date, positive quantities;
- `make_delivery_note` maps what is left to deliver of a submitted order (`so_detail`,
  `against_sales_order` on each row; `po_no` copied), nothing is saved;
- submitting a Delivery Note takes the stock from its warehouse (refused when there is not
  enough: "N units of Item X needed in Warehouse W") and refuses to deliver more than was
  ordered ("over limit"), then counts the quantity delivered on the order's rows.
"""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any, ClassVar

import httpx

MAKE_DELIVERY_NOTE = (
    "/api/method/erpnext.selling.doctype.sales_order.sales_order.make_delivery_note")


def refusal(message: str) -> httpx.Response:
    return httpx.Response(417, json={
        "exc_type": "ValidationError",
        "exception": f"frappe.exceptions.ValidationError: {message}",
        "_server_messages": json.dumps([json.dumps({"message": message, "indicator": "red"})]),
    })


class SellingDesk:
    """Needs the fake's `sales_orders`, `delivery_notes`, `items`, `customers`, `stock`,
    `requests` and `hooks` (see `ERPNextFake`)."""

    sales_orders: dict[str, dict[str, Any]]
    delivery_notes: dict[str, dict[str, Any]]
    items: dict[str, dict[str, Any]]
    customers: dict[str, dict[str, Any]]
    stock: dict[tuple[str, str, str | None], int]
    requests: list[httpx.Request]

    # One database: names are drawn and documents saved one at a time.
    _desk_lock: ClassVar[threading.Lock] = threading.Lock()
    _creation: ClassVar[itertools.count[int]] = itertools.count(1)

    def _hooked(self, request: httpx.Request) -> httpx.Response | None:  # ERPNextFake's
        raise NotImplementedError

    def _stamp(self) -> str:
        return f"2026-03-02 10:00:00.{next(self._creation):06d}"

    def replacement_orders(self, key: str, key_field: str = "po_no") -> list[dict[str, Any]]:
        """The Sales Orders that carry `key` (what a test counts)."""
        return [so for so in self.sales_orders.values() if so.get(key_field) == key]

    def deliveries_of(self, sales_order: str) -> list[dict[str, Any]]:
        return [dn for dn in self.delivery_notes.values()
                if any(r.get("against_sales_order") == sales_order for r in dn["items"])]

    # ---------------------------------------------------------------- Sales Order

    def insert_sales_order(self, request: httpx.Request) -> httpx.Response:
        if (hooked := self._hooked(request)) is not None:
            return hooked
        doc = json.loads(request.content)
        for hook in list(getattr(self, "before_insert", [])):
            hook("Sales Order", doc)
        if (problem := self._check_sales_order(doc)) is not None:
            return refusal(problem)
        with self._desk_lock:
            name = f"SAL-ORD-2026-{len(self.sales_orders) + 1:05d}"
            doc.update(name=name, creation=self._stamp(),
                       docstatus=doc.get("docstatus", 0), status="To Deliver and Bill")
            for idx, row in enumerate(doc["items"], start=1):
                row.update(name=f"{name}-row-{idx}", idx=idx, delivered_qty=0,
                           stock_uom="Nos", conversion_factor=1.0)
            self.sales_orders[name] = doc
        return httpx.Response(200, json={"data": doc})

    def _check_sales_order(self, doc: dict[str, Any]) -> str | None:
        if not doc.get("customer"):
            return "Value missing for Sales Order: Customer"
        if self.customers and doc["customer"] not in self.customers:
            return f"Could not find Customer: {doc['customer']}"
        if not doc.get("items"):
            return "Items are required"
        for idx, row in enumerate(doc["items"], start=1):
            if row.get("item_code") not in self.items:
                return f"Row #{idx}: Could not find Item: {row.get('item_code')}"
            qty = row.get("qty")
            if not isinstance(qty, int | float) or qty <= 0:
                return f"Row #{idx}: Quantity must be greater than zero"
            if not (row.get("delivery_date") or doc.get("delivery_date")):
                return f"Row #{idx}: Please enter Delivery Date"
        return None

    def make_delivery_note(self, request: httpx.Request) -> httpx.Response:
        if (hooked := self._hooked(request)) is not None:
            return hooked
        name = request.url.params.get("source_name") or ""
        so = self.sales_orders.get(name)
        if so is None:
            return httpx.Response(404, json={
                "exc_type": "DoesNotExistError",
                "exception": f"frappe.exceptions.DoesNotExistError: Sales Order {name} not "
                             "found"})
        if so.get("docstatus") != 1:
            return refusal(f"Sales Order {name} must be submitted")
        rows = [{"item_code": r["item_code"], "item_name": r.get("item_name"),
                 "qty": r["qty"] - r["delivered_qty"], "rate": r["rate"],
                 "warehouse": r.get("warehouse") or so.get("set_warehouse"),
                 "against_sales_order": name, "so_detail": r["name"], "name": None,
                 "__islocal": 1}
                for r in so["items"] if r["qty"] > r["delivered_qty"]]
        draft = {"doctype": "Delivery Note", "name": None, "__islocal": 1, "docstatus": 0,
                 "is_return": 0, "customer": so["customer"], "company": so.get("company"),
                 "currency": so.get("currency"), "po_no": so.get("po_no"),
                 "set_warehouse": so.get("set_warehouse"), "items": rows}
        return httpx.Response(200, json={"message": draft})

    # ---------------------------------------------------------------- Delivery Note

    def insert_delivery(self, doc: dict[str, Any]) -> httpx.Response:
        with self._desk_lock:
            problem = self._check_delivery(doc)
            if problem is not None:
                return refusal(problem)
            name = f"MAT-DN-2026-{len(self.delivery_notes) + 1:05d}"
            doc.update(name=name, creation=self._stamp(), docstatus=doc.get("docstatus", 0))
            for idx, row in enumerate(doc["items"], start=1):
                row.update(name=f"{name}-row-{idx}", idx=idx, stock_qty=row["qty"],
                           conversion_factor=1.0, batch_no=row.get("batch_no"),
                           serial_no=row.get("serial_no"),
                           serial_and_batch_bundle=row.get("serial_and_batch_bundle"))
            if doc["docstatus"] == 1:
                for row in doc["items"]:
                    key = (row["item_code"], row["warehouse"], row.get("batch_no") or None)
                    self.stock[key] = self.stock.get(key, 0) - int(row["qty"])
                    so_row = self._so_row(row)
                    if so_row is not None:
                        so_row["delivered_qty"] += row["qty"]
            self.delivery_notes[name] = doc
        return httpx.Response(200, json={"data": doc})

    def _so_row(self, row: dict[str, Any]) -> dict[str, Any] | None:
        so = self.sales_orders.get(row.get("against_sales_order") or "")
        if so is None:
            return None
        return next((r for r in so["items"] if r["name"] == row.get("so_detail")), None)

    def _check_delivery(self, doc: dict[str, Any]) -> str | None:
        if not doc.get("customer"):
            return "Value missing for Delivery Note: Customer"
        if not doc.get("items"):
            return "Items are required"
        taken: dict[tuple[str, str, str | None], int] = {}
        delivered: dict[str, float] = {}
        for idx, row in enumerate(doc["items"], start=1):
            if not row.get("warehouse"):
                return "Warehouse is mandatory"
            so_row = self._so_row(row)
            if row.get("against_sales_order") and so_row is None:
                return f"Row #{idx}: Sales Order {row['against_sales_order']} has no such row"
            if so_row is not None:
                done = delivered.get(so_row["name"], so_row["delivered_qty"]) + row["qty"]
                delivered[so_row["name"]] = done
                if doc.get("docstatus") == 1 and done > so_row["qty"]:
                    return (f"This document is over limit by Qty {done - so_row['qty']} for "
                            f"item {row['item_code']}. Are you making another Delivery Note "
                            f"against the same Sales Order Item?")
            if doc.get("docstatus") == 1:
                key = (row["item_code"], row["warehouse"], row.get("batch_no") or None)
                taken[key] = taken.get(key, 0) + int(row["qty"])
                if taken[key] > self.stock.get(key, 0):
                    return (f"{taken[key] - self.stock.get(key, 0)} units of Item "
                            f"{row['item_code']} needed in Warehouse {row['warehouse']} to "
                            "complete this transaction.")
        return None
