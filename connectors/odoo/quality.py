"""Units shipped, for quality signals' return rates (the `erp.shipped_quantity` capability).

Odoo's shipped units are the done `stock.move.line`s of outgoing pickings into a customer
location (the lines the recall walk reads, recalls.py: returns and vendor returns are left
out) dated in the range. `date` is a UTC datetime in Odoo; the range's days are taken as UTC
days, which is as close as a rate's denominator needs to be. The lines are summed here, paged
by id; the domain and the summing are pure, the calls go through the connector's client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

from refundbridge.connectors.odoo.client import OdooClient
from refundbridge.connectors.odoo.recall_transformers import whole_units
from refundbridge.connectors.odoo.transformers import NAME, Product, Wire, parse_rows
from refundbridge.core.errors import PermanentProviderError
from refundbridge.core.ports import ShippedQuantityQuery

PAGE = 500


class ShippedLine(Wire):
    id: int
    quantity: Decimal


def shipped_domain(product_id: int, query: ShippedQuantityQuery, lot_ids: Sequence[int] | None,
                   after: int) -> list[list[Any]]:
    domain: list[list[Any]] = [
        ["product_id", "=", product_id], ["state", "=", "done"],
        ["picking_code", "=", "outgoing"], ["location_dest_id.usage", "=", "customer"],
        ["date", ">=", f"{query.since.isoformat()} 00:00:00"],
        ["date", "<", f"{(query.until + timedelta(days=1)).isoformat()} 00:00:00"],
        ["id", ">", after],
    ]
    if lot_ids is not None:
        domain.append(["lot_id", "in", list(lot_ids)])
    return domain


def shipped_total(lines: Sequence[ShippedLine]) -> int:
    return sum(whole_units(line.quantity, f"move line {line.id} shipped") for line in lines)


def count_shipped(client: OdooClient, quantity_field: str, query: ShippedQuantityQuery) -> int:
    """Every done customer-delivery line of the product (and lot) in the range, summed."""
    products = parse_rows(Product, client.search_read(
        "product.product", [["default_code", "=", query.sku], ["active", "in", [True, False]]],
        ["default_code", "tracking", "barcode", "uom_id"], limit=2), "product.product")
    if not products:
        raise PermanentProviderError(NAME, f"no product.product has default_code {query.sku!r}",
                                     code="product_not_found")
    product = products[0]
    lot_ids: list[int] | None = None
    if query.lot is not None:
        lot_ids = [int(row["id"]) for row in client.search_read(
            "stock.lot", [["product_id", "=", product.id], ["name", "=", query.lot]],
            ["name"], order="id")]
        if not lot_ids:
            return 0  # Odoo knows no such lot of the product: none of it shipped
    total, after = 0, 0
    while True:
        rows = client.search_read(
            "stock.move.line", shipped_domain(product.id, query, lot_ids, after),
            ["id", quantity_field], limit=PAGE, order="id")
        lines = parse_rows(ShippedLine, [
            {"id": r.get("id"), "quantity": r.get(quantity_field)} if isinstance(r, Mapping)
            else r for r in rows], "stock.move.line")
        total += shipped_total(lines)
        if len(lines) < PAGE:
            return total
        after = max(line.id for line in lines)
