"""ERPNext's `erp.replacement`: an exchange's replacement units as a submitted Sales Order
for the original order's customer, then a submitted Delivery Note made from it by ERPNext's
own mapper (`make_delivery_note`), which ships them.

Idempotency. ERPNext keeps no idempotency key, so the key travels in a field of the Sales
Order (`replacement_key_field`, "Customer's Purchase Order" `po_no` by default: it is a
free Data field nothing else of ours writes on a replacement) and every step looks before
it acts: the Sales Order is searched by the key before it is inserted and before every
retry of the insert; its Delivery Note is searched through the rows' `against_sales_order`
before it is made. A crash between the two calls therefore never makes a second order; the
next attempt finds the order and only ships it.

What this does not do: make two concurrent callers safe. ERPNext has no unique constraint on
`po_no` (or on a custom field, unless the site adds one), and a search followed by an insert
is not atomic, so two workers that both search before either inserts make two orders. The
guard against that is ours, not ERPNext's: the worker claims the case's replacement step in
our database before it calls (claim-before-call), so only one worker ever gets here for a
key. Should two orders exist anyway (a person copied one, or a claim was broken by hand),
the oldest is answered and the rest are logged for a person to cancel.

Mapping only in the functions; the calls are in `ERPNextReplacements`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, field_validator

from refundbridge.connectors.erpnext.client import ERPNextClient
from refundbridge.connectors.erpnext.transformers import (
    DELIVERY_NOTE,
    NAME,
    SALES_INVOICE,
    SALES_ORDER,
    Wire,
)
from refundbridge.core.errors import PermanentProviderError
from refundbridge.core.ports import (
    ReplacementItem,
    ReplacementOrder,
    ReplacementResult,
    ReplacementState,
)

log = logging.getLogger(__name__)

GET_BATCH_QTY: Final = "/api/method/erpnext.stock.doctype.batch.batch.get_batch_qty"
MAKE_DELIVERY_NOTE: Final = (
    "/api/method/erpnext.selling.doctype.sales_order.sales_order.make_delivery_note")
DELIVERY_NOTE_ITEM: Final = "Delivery Note Item"
SUBMITTED: Final = 1
CANCELLED: Final = 2

_FIELDNAME = re.compile(r"^[a-z][a-z0-9_]{0,139}$")


class ReplacementSettings(BaseModel):
    """The ERPNext settings of `erp.replacement`; `ERPNextSettings` extends it, so each is
    declared once, with its default."""

    model_config = ConfigDict(frozen=True)

    # The Sales Order field that carries the replacement's idempotency key: a Data field of
    # at least 80 characters that nothing else writes (`po_no`, or a custom field).
    replacement_key_field: str = "po_no"
    # Where replacements ship from; default: `restock_warehouse`.
    replacement_warehouse: str | None = None

    @field_validator("replacement_key_field")
    @classmethod
    def _fieldname(cls, value: str) -> str:
        if not _FIELDNAME.match(value):
            raise ValueError("must be a DocField name such as 'po_no' or 'custom_rb_key'")
        return value


# ------------------------------------------------------------------ wire models


class CustomerRow(Wire):
    name: str
    customer: str | None = None
    company: str | None = None


class CustomerRows(Wire):
    data: list[CustomerRow]


class StatusRow(Wire):
    name: str
    docstatus: int = 0
    creation: str | None = None


class StatusRows(Wire):
    data: list[StatusRow]


class BatchedItem(Wire):
    name: str
    has_batch_no: int = 0


class BatchedItems(Wire):
    data: list[BatchedItem]


class BatchRow(Wire):
    name: str
    expiry_date: str | None = None


class BatchRows(Wire):
    data: list[BatchRow]


class BatchQtyInWarehouse(Wire):
    """`get_batch_qty(batch_no, warehouse)` → `{"message": <qty there>}`."""

    message: float = 0


class MappedDocument(Wire):
    """`make_delivery_note` → `{"message": {...an unsaved Delivery Note...}}`."""

    message: dict[str, Any]


# ------------------------------------------------------------------ mapping


def key_filter(key_field: str, key: str) -> list[list[Any]]:
    """Sales Orders made under `key` that are not cancelled (a cancelled one is a person
    undoing it: then a new one may be made)."""
    return [[key_field, "=", key], ["docstatus", "<", CANCELLED]]


def delivery_filter(sales_order: str) -> list[list[Any]]:
    return [[DELIVERY_NOTE_ITEM, "against_sales_order", "=", sales_order],
            [DELIVERY_NOTE, "docstatus", "<", CANCELLED], [DELIVERY_NOTE, "is_return", "=", 0]]


def original_filter(doctype: str, order_field: str, order_id: str) -> list[list[Any]]:
    wanted: list[list[Any]] = [[order_field, "=", order_id], ["docstatus", "=", SUBMITTED]]
    if doctype != SALES_ORDER:
        wanted.append(["is_return", "=", 0])
    return wanted


def oldest(rows: Sequence[StatusRow], what: str) -> StatusRow | None:
    """One document per name (a child-table join repeats it per row), the oldest first."""
    unique = list({row.name: row for row in rows}.values())
    unique.sort(key=lambda row: (row.creation or "", row.name))
    if len(unique) > 1:
        log.warning("erpnext: %s: %d documents (%s); answering %s, the others are for a "
                    "person to cancel", what, len(unique), ", ".join(r.name for r in unique),
                    unique[0].name)
    return unique[0] if unique else None


def currency_of(items: Sequence[ReplacementItem]) -> str:
    currencies = {item.unit_price.currency for item in items}
    if len(currencies) != 1:
        raise PermanentProviderError(NAME, f"a replacement is priced in one currency, not "
                                           f"{', '.join(sorted(currencies)) or 'none'}",
                                     code="replacement_currency")
    return currencies.pop()


def sales_order_doc(order: ReplacementOrder, customer: str, company: str | None,
                    settings: Mapping[str, str], today: date) -> dict[str, Any]:
    """The submitted Sales Order (docstatus 1: Frappe inserts and submits in one
    transaction, so a failure leaves no draft behind) of the replacement units."""
    if not order.items:
        raise PermanentProviderError(NAME, f"case {order.case_id}: a replacement without "
                                           "items", code="replacement_empty")
    warehouse = settings["warehouse"]
    doc: dict[str, Any] = {
        "customer": customer,
        "order_type": "Sales",
        "transaction_date": today.isoformat(),
        "delivery_date": today.isoformat(),
        "currency": currency_of(order.items),
        "set_warehouse": warehouse,
        settings["key_field"]: order.idempotency_key,
        "items": [{"item_code": item.sku, "item_name": item.name[:140], "qty": item.quantity,
                   "rate": item.unit_price.amount, "delivery_date": today.isoformat(),
                   "warehouse": warehouse} for item in order.items],
        "docstatus": SUBMITTED,
    }
    if company:
        doc["company"] = company
    if settings["order_field"] != settings["key_field"]:
        # Where the shop keeps the storefront's order id: the replacement ships under the
        # original order, so its shipped units count there.
        doc[settings["order_field"]] = order.order_id
    return doc


def delivery_note_doc(draft: Mapping[str, Any], warehouse: str) -> dict[str, Any]:
    """ERPNext's mapped Delivery Note, submitted; rows without a warehouse ship from ours."""
    doc = {k: v for k, v in draft.items() if not k.startswith("__") and k != "name"}
    rows = [{**{k: v for k, v in row.items() if not k.startswith("__") and k != "name"},
             "warehouse": row.get("warehouse") or warehouse}
            for row in draft.get("items") or []]
    if not rows:
        raise PermanentProviderError(NAME, f"{draft.get('customer', 'the customer')}: ERPNext "
                                           "mapped no rows left to deliver", code="nothing_left")
    doc.update(items=rows, docstatus=SUBMITTED, is_return=0)
    return doc


def to_result(sales_order: str, delivery: StatusRow | None) -> ReplacementResult:
    if delivery is None:
        return ReplacementResult(document=sales_order, state=ReplacementState.CREATED)
    state = (ReplacementState.SHIPPED if delivery.docstatus == SUBMITTED
             else ReplacementState.CREATED)  # a draft: a person is shipping it
    return ReplacementResult(document=sales_order, state=state, delivery=delivery.name)


# ------------------------------------------------------------------ calls


class ERPNextReplacements:
    """The `erp.replacement` flow over the connector's client."""

    def __init__(self, client: Callable[[], ERPNextClient], *, order_field: str,
                 key_field: str, warehouse: str, today: Callable[[], date]) -> None:
        self._client = client
        self._settings = {"order_field": order_field, "key_field": key_field,
                          "warehouse": warehouse}
        self._today = today

    def find(self, order: ReplacementOrder) -> ReplacementResult | None:
        sales_order = self._sales_order(order.idempotency_key)
        if sales_order is None:
            return None
        return to_result(sales_order.name, self._delivery(sales_order.name))

    def create(self, order: ReplacementOrder) -> ReplacementResult:
        key = order.idempotency_key
        client = self._client()
        found = self._sales_order(key)
        if found is not None:
            name = found.name
        else:
            customer, company = self._customer(order.order_id)
            doc = sales_order_doc(order, customer, company, self._settings, self._today())

            def existing_order() -> str | None:
                row = self._sales_order(key)
                return row.name if row is not None else None

            name = client.insert(SALES_ORDER, doc, find_existing=existing_order)
            log.info("erpnext: case %s: replacement Sales Order %s", order.case_id, name)
        delivery = self._delivery(name)
        if delivery is not None:
            return to_result(name, delivery)
        draft = client.read_method(MappedDocument, MAKE_DELIVERY_NOTE,
                                   {"source_name": name}).message

        def existing_delivery() -> str | None:
            row = self._delivery(name)
            return row.name if row is not None else None

        doc = delivery_note_doc(draft, self._settings["warehouse"])
        if order.avoid_lots:
            self._pick_clear_batches(doc["items"], set(order.avoid_lots))
        try:
            note = client.insert(DELIVERY_NOTE, doc, find_existing=existing_delivery)
        except PermanentProviderError:
            # ERPNext refuses to deliver an order twice ("over limit"): whoever delivered it
            # in between, that delivery is the answer.
            found_note = self._delivery(name)
            if found_note is None:
                raise
            return to_result(name, found_note)
        log.info("erpnext: case %s: replacement shipped on %s", order.case_id, note)
        return ReplacementResult(document=name, state=ReplacementState.SHIPPED, delivery=note)

    def _pick_clear_batches(self, rows: list[dict[str, Any]], avoid: set[str]) -> None:
        """Name the batch of every batched row, first expiring first, never one of `avoid`
        (a recalled lot): left to itself ERPNext might pick exactly that one."""
        client = self._client()
        codes = sorted({row["item_code"] for row in rows})
        batched = {i.name for i in client.list_rows(
            BatchedItems, "Item", [["name", "in", codes]], ("name", "has_batch_no")).data
            if i.has_batch_no}
        for row in rows:
            if row["item_code"] not in batched:
                continue
            if row.get("batch_no") in avoid:
                row["batch_no"] = None
            if row.get("batch_no"):
                continue
            candidates = sorted(
                (b for b in client.list_rows(BatchRows, "Batch",
                                             [["item", "=", row["item_code"]]],
                                             ("name", "expiry_date")).data
                 if b.name not in avoid),
                key=lambda b: (b.expiry_date or "9999-12-31", b.name))
            for batch in candidates:
                there = client.read_method(
                    BatchQtyInWarehouse, GET_BATCH_QTY,
                    {"batch_no": batch.name, "warehouse": row["warehouse"],
                     "item_code": row["item_code"]}).message
                if there >= row["qty"]:
                    row["batch_no"] = batch.name
                    break
            else:
                raise PermanentProviderError(
                    NAME, f"{row['warehouse']} holds no batch of {row['item_code']} outside "
                          f"the recalled {', '.join(sorted(avoid))} with {row['qty']} units; "
                          "ship the replacement by hand", code="no_clear_lot")

    def _sales_order(self, key: str) -> StatusRow | None:
        rows = self._client().list_rows(StatusRows, SALES_ORDER,
                                        key_filter(self._settings["key_field"], key),
                                        ("name", "docstatus", "creation")).data
        return oldest(rows, f"replacement {key}")

    def _delivery(self, sales_order: str) -> StatusRow | None:
        rows = self._client().list_rows(StatusRows, DELIVERY_NOTE, delivery_filter(sales_order),
                                        ("name", "docstatus", "creation")).data
        return oldest(rows, f"deliveries of {sales_order}")

    def _customer(self, order_id: str) -> tuple[str, str | None]:
        """The ERPNext Customer (and company) of the original order: whoever its submitted
        Sales Invoice, Delivery Note or Sales Order was made out to."""
        field = self._settings["order_field"]
        for doctype in (SALES_INVOICE, DELIVERY_NOTE, SALES_ORDER):
            rows = self._client().list_rows(CustomerRows, doctype,
                                            original_filter(doctype, field, order_id),
                                            ("name", "customer", "company")).data
            for row in rows:
                if row.customer:
                    return row.customer, row.company
        raise PermanentProviderError(
            NAME, f"ERPNext knows no customer of order {order_id}: no submitted Sales Invoice, "
                  f"Delivery Note or Sales Order has {field} = {order_id!r}",
            code="order_not_found")
