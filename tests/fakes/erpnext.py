"""An ERPNext (Frappe REST) fake for respx: invoices by order, make_sales_return, insert.

It answers in Frappe's shapes: `{"data": [...]}` for lists, `{"message": {...}}` for methods,
`{"data": {...}}` for an inserted document.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import respx

BASE = "https://erp.acme-medical.example.com"
MAKE_RETURN = "/api/method/erpnext.accounts.doctype.sales_invoice.sales_invoice.make_sales_return"


class ERPNextFake:
    def __init__(self) -> None:
        self.invoices: dict[str, dict[str, Any]] = {}  # invoice name -> document
        self.returns: list[dict[str, Any]] = []
        self.requests: list[httpx.Request] = []

    def add_invoice(self, order_id: str, items: list[tuple[str, int, str]],
                    currency: str = "CNY") -> str:
        name = f"ACC-SINV-2026-{len(self.invoices) + 1:05d}"
        self.invoices[name] = {
            "name": name, "po_no": order_id, "currency": currency, "docstatus": 1,
            "is_return": 0, "customer": "Li Wei", "company": "Acme Medical",
            "items": [
                {"name": f"{name}-row-{i}", "item_code": sku, "qty": qty, "stock_qty": qty,
                 "rate": float(rate), "warehouse": "Stores - RB", "idx": i + 1}
                for i, (sku, qty, rate) in enumerate(items)
            ],
        }
        return name

    def install(self, router: respx.MockRouter) -> None:
        router.get(f"{BASE}/api/resource/Sales%20Invoice").mock(side_effect=self._list)
        router.post(f"{BASE}{MAKE_RETURN}").mock(side_effect=self._make_return)
        router.post(f"{BASE}/api/resource/Sales%20Invoice").mock(side_effect=self._insert)

    def _list(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        filters = json.loads(request.url.params["filters"])
        if ["is_return", "=", 1] in filters:
            needle = next(f[2] for f in filters if f[0] == "remarks").strip("%")
            rows = [{"name": r["name"]} for r in self.returns if needle in r["remarks"]]
        else:
            order_id = next(f[2] for f in filters if f[1] == "=" and f[0] not in (
                "docstatus", "is_return"))
            rows = [{"name": n} for n, inv in self.invoices.items() if inv["po_no"] == order_id]
        return httpx.Response(200, json={"data": rows})

    def _make_return(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        source = json.loads(request.content)["source_name"]
        invoice = self.invoices[source]
        draft = {
            **{k: v for k, v in invoice.items() if k not in ("name", "items")},
            "docstatus": 0, "is_return": 1, "return_against": source,
            "items": [{**row, "qty": -row["qty"], "stock_qty": -row["stock_qty"],
                       "sales_invoice_item": row["name"]} for row in invoice["items"]],
        }
        return httpx.Response(200, json={"message": draft})

    def _insert(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        doc = json.loads(request.content)
        doc["name"] = f"ACC-SINV-RET-{len(self.returns) + 1:05d}"
        self.returns.append(doc)
        return httpx.Response(200, json={"data": doc})
