"""Units shipped, for quality signals' return rates (the `erp.shipped_quantity` capability).

ERPNext's shipped rows are the rows of submitted, non-return Delivery Notes and of Sales
Invoices that updated stock themselves (an invoice that did not shipped on a Delivery Note,
counted there), posted in the range: the same rows the recall walk reads (recalls.py), with
the posting date bounded. A lot shipped through a Serial and Batch Bundle is not on the row,
so rows are chosen by item and date and their lots read from the bundle here.

The mapping (filters, summing) is pure; `count_shipped` makes the calls through the
connector's client (client.py), one page of `PAGE` rows at a time, keyset-paged by the child
row's name as the walk is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from refundbridge.connectors.erpnext.recalls import (
    SHIPPED_ROWS,
    ShipmentList,
    ShipmentRow,
    shipment_fields,
    shipment_order,
    shipment_rows_filter,
)
from refundbridge.connectors.erpnext.transformers import (
    DELIVERY_NOTE,
    SALES_INVOICE,
    Bundle,
    StockDocument,
    to_shipped_units,
)
from refundbridge.core.ports import ShippedQuantityQuery

if TYPE_CHECKING:
    from refundbridge.connectors.erpnext.client import ERPNextClient

PAGE = 500
SHIPPING_DOCTYPES = (DELIVERY_NOTE, SALES_INVOICE)


def shipped_filter(doctype: str, item: str, query: ShippedQuantityQuery,
                   after: str | None) -> list[list[Any]]:
    """The walk's filter (submitted, not a return, the item's rows) within the dates."""
    return [*shipment_rows_filter(doctype, item, after),
            [doctype, "posting_date", ">=", query.since.isoformat()],
            [doctype, "posting_date", "<=", query.until.isoformat()]]


def shipped_units_of(rows: Iterable[ShipmentRow], bundles: Mapping[str, Bundle],
                     lot: str | None) -> int:
    """The units of `rows` of the lot (any lot when None), lots compared without case as
    ERPNext's database compares names."""
    wanted = (lot or "").strip().casefold()
    docs = [StockDocument(name=r.name, items=[r.as_stock_item()]) for r in rows]
    return sum(u.quantity for u in to_shipped_units(docs, bundles, {})
               if lot is None or (u.lot or "").strip().casefold() == wanted)


def count_shipped(client: ERPNextClient, item: str, order_field: str,
                  bundles: Callable[[Iterable[str | None]], Mapping[str, Bundle]],
                  query: ShippedQuantityQuery) -> int:
    """The calls behind `ERPNextConnector.shipped_quantity`: every shipped row of the Item
    in the range, Delivery Notes then stock-updating Sales Invoices, summed for the lot."""
    total = 0
    for doctype in SHIPPING_DOCTYPES:
        after: str | None = None
        while True:
            rows: Sequence[ShipmentRow] = client.list_page(
                ShipmentList, doctype, shipped_filter(doctype, item, query, after),
                shipment_fields(doctype, order_field), shipment_order(doctype), PAGE).data
            total += shipped_units_of(
                rows, bundles(r.serial_and_batch_bundle for r in rows), query.lot)
            if len(rows) < PAGE:
                break
            after = rows[-1].row
    return total


__all__ = ["PAGE", "SHIPPED_ROWS", "count_shipped", "shipped_filter", "shipped_units_of"]
