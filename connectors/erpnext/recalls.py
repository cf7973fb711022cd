"""Frappe's wire format for recalls, and its mapping to ours: the shipped rows of a
product, as the consignees who received covered units; the stock on hand of a product, as the
Material Transfer that moves it into quarantine. No I/O (the calls are in `connector.py`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from pydantic import Field, field_validator

from refundbridge.connectors.erpnext.transformers import (
    DELIVERY_NOTE,
    SALES_INVOICE,
    Bundle,
    StockDocument,
    StockItem,
    Wire,
    blank_is_none,
    serial_numbers,
    to_shipped_units,
    whole_units,
)
from refundbridge.core.errors import InvalidRequest
from refundbridge.core.ports import (
    Consignee,
    ConsigneeUnits,
    QuarantinedUnits,
    RecallScope,
)

# ------------------------------------------------------------------ recalls: consignees

ITEM = "Item"
CUSTOMER = "Customer"
SERIAL_NO = "Serial No"
BIN = "Bin"
WAREHOUSE = "Warehouse"
STOCK_ENTRY = "Stock Entry"
# The child table of each shipping document whose rows the consignee walk pages over.
SHIPPED_ROWS = {DELIVERY_NOTE: "Delivery Note Item", SALES_INVOICE: "Sales Invoice Item"}
ITEM_BARCODE = "Item Barcode"
GET_BATCH_QTY = "/api/method/erpnext.stock.doctype.batch.batch.get_batch_qty"


class ItemRow(Wire):
    name: str
    has_batch_no: int = 0
    has_serial_no: int = 0


class ItemList(Wire):
    data: list[ItemRow]


class ShipmentRow(Wire):
    """One shipped row of a Delivery Note or Sales Invoice, joined to its document: what
    `shipment_fields` asks Frappe for."""

    name: str  # the document
    row: str  # the child row (Delivery Note Item / Sales Invoice Item)
    customer: str
    customer_name: str | None = None
    contact_email: str | None = None
    contact_mobile: str | None = None
    posting_date: date | None = None
    order_id: str | None = None
    item_code: str
    qty: Decimal
    batch_no: str | None = None
    serial_no: str | None = None
    serial_and_batch_bundle: str | None = None

    _blank = field_validator("customer_name", "contact_email", "contact_mobile", "order_id",
                             "batch_no", "serial_no", "serial_and_batch_bundle",
                             mode="before")(blank_is_none)

    @field_validator("posting_date", mode="before")
    @classmethod
    def _empty_date(cls, value: object) -> object:
        return value or None

    def as_stock_item(self) -> StockItem:
        return StockItem(item_code=self.item_code, qty=self.qty, batch_no=self.batch_no,
                         serial_no=self.serial_no,
                         serial_and_batch_bundle=self.serial_and_batch_bundle)


class ShipmentList(Wire):
    data: list[ShipmentRow]


class CustomerRow(Wire):
    name: str
    customer_name: str | None = None
    email_id: str | None = None
    mobile_no: str | None = None
    language: str | None = None

    _blank = field_validator("customer_name", "email_id", "mobile_no", "language",
                             mode="before")(blank_is_none)


class CustomerList(Wire):
    data: list[CustomerRow]


def gtin_forms(gtin: str) -> list[str]:
    """The forms a GTIN-14 may be stored under as an Item Barcode: itself, and the GTIN-13,
    -12 and -8 its leading zeros pad (shops type the barcode printed on the pack, which is
    rarely the 14-digit form)."""
    digits = gtin.strip()
    forms = [digits]
    for length in (13, 12, 8):
        if len(digits) > length and set(digits[:len(digits) - length]) <= {"0"}:
            forms.append(digits[len(digits) - length:])
    return forms


def item_by_gtin_filter(gtin: str) -> list[list[Any]]:
    return [[ITEM_BARCODE, "barcode", "in", gtin_forms(gtin)]]


def shipment_fields(doctype: str, order_field: str) -> list[str]:
    """The document's fields and its child row's, one result row per child row. Frappe joins
    a child table into a list when a field names it as `tab<Child DocType>`; the child's
    `name` needs an alias, the document's own `name` being in the same result."""
    child = f"`tab{SHIPPED_ROWS[doctype]}`"
    return ["name", "customer", "customer_name", "contact_email", "contact_mobile",
            "posting_date", f"{order_field} as order_id",
            f"{child}.name as row", f"{child}.item_code as item_code",
            f"{child}.qty as qty", f"{child}.batch_no as batch_no",
            f"{child}.serial_no as serial_no",
            f"{child}.serial_and_batch_bundle as serial_and_batch_bundle"]


def shipment_rows_filter(doctype: str, item_code: str, after: str | None) -> list[list[Any]]:
    """Submitted outbound documents' rows of the item, after the row `after` (keyset
    paging: a document cancelled during the walk cannot shift rows past the cursor, as it
    would with an offset)."""
    child = SHIPPED_ROWS[doctype]
    filters: list[list[Any]] = [[doctype, "docstatus", "=", 1], [doctype, "is_return", "=", 0],
                                [child, "item_code", "=", item_code]]
    if doctype == SALES_INVOICE:
        # An invoice that did not update stock shipped nothing itself: its goods left on a
        # Delivery Note, walked first.
        filters.append([doctype, "update_stock", "=", 1])
    if after is not None:
        filters.append([child, "name", ">", after])
    return filters


def shipment_order(doctype: str) -> str:
    return f"`tab{SHIPPED_ROWS[doctype]}`.name asc"


def _same(text: str | None, wanted: Iterable[str]) -> bool:
    # Lot and serial numbers read off a recall notice are matched as MariaDB compares
    # ERPNext's names: without regard to case.
    folded = (text or "").strip().casefold()
    return any(folded == w.strip().casefold() for w in wanted)


def covered(scope: RecallScope, lot: str | None, serial: str | None) -> bool:
    return ((not scope.lots or _same(lot, scope.lots))
            and (not scope.serials or _same(serial, scope.serials)))


def locale_of(language: str | None) -> str | None:
    """The customer's language as a locale we write in; None: the shop's default."""
    if language and language.strip().lower() in ("zh", "zh-cn", "zh-hans"):
        return "zh-CN"
    return None


def _row_units(row: ShipmentRow, doctype: str, bundles: Mapping[str, Bundle]
               ) -> list[ConsigneeUnits]:
    """The units of one shipped row, per (lot, serial). One unit group keeps the row's id;
    several (serials, or a bundle of several batches) get the row's id and their serial or
    lot, so each has an id of its own for callers to merge by."""
    doc = StockDocument(name=row.name, items=[row.as_stock_item()])
    groups: dict[tuple[str | None, str | None], int] = {}
    for unit in to_shipped_units([doc], bundles, {}):
        key = (unit.lot, unit.serial)
        groups[key] = groups.get(key, 0) + unit.quantity
    single = len(groups) == 1
    return [ConsigneeUnits(
        line_id=row.row if single else f"{row.row}/{serial or lot or ''}",
        document=f"{doctype} {row.name}", sku=row.item_code, quantity=quantity, lot=lot,
        serial=serial, shipped_on=row.posting_date, order_id=row.order_id)
        for (lot, serial), quantity in groups.items()]


def _latest(rows: Iterable[ShipmentRow], field: str) -> str | None:
    """The field as the most recently posted document that has it gives it."""
    dated = [(row.posting_date or date.min, i, value) for i, row in enumerate(rows)
             if (value := getattr(row, field))]
    return max(dated)[2] if dated else None


def to_consignees(doctype: str, rows: Iterable[ShipmentRow], bundles: Mapping[str, Bundle],
                  customers: Mapping[str, CustomerRow], scope: RecallScope
                  ) -> tuple[Consignee, ...]:
    """The page's rows as consignees, one per customer in order of first appearance, with the
    covered units only. Email and phone are the ones the customer's most recent document
    names (the contact they last gave), else the Customer's own."""
    units: dict[str, list[ConsigneeUnits]] = {}
    theirs: dict[str, list[ShipmentRow]] = {}
    for row in rows:
        found = [u for u in _row_units(row, doctype, bundles) if covered(scope, u.lot, u.serial)]
        if found:
            units.setdefault(row.customer, []).extend(found)
            theirs.setdefault(row.customer, []).append(row)
    consignees = []
    for key, found in units.items():
        customer = customers.get(key)
        docs = theirs[key]
        consignees.append(Consignee(
            key=key,
            name=(_latest(docs, "customer_name")
                  or (customer.customer_name if customer else None) or key),
            units=tuple(found),
            email=_latest(docs, "contact_email") or (customer.email_id if customer else None),
            phone=(_latest(docs, "contact_mobile")
                   or (customer.mobile_no if customer else None)),
            locale=locale_of(customer.language if customer else None)))
    return tuple(consignees)


# ------------------------------------------------------------------ recalls: quarantine


class BatchQty(Wire):
    """`get_batch_qty(batch_no, item_code)` → `{"message": [{"warehouse", "qty"}, ...]}`."""

    warehouse: str
    qty: Decimal


class BatchQtyResult(Wire):
    message: list[BatchQty]


class SerialRow(Wire):
    name: str
    warehouse: str | None = None
    batch_no: str | None = None

    _blank = field_validator("warehouse", "batch_no", mode="before")(blank_is_none)


class SerialList(Wire):
    data: list[SerialRow]


class BinRow(Wire):
    warehouse: str
    actual_qty: Decimal


class BinList(Wire):
    data: list[BinRow]


class WarehouseDoc(Wire):
    name: str
    company: str


class WarehouseResult(Wire):
    data: WarehouseDoc


class EntryItem(Wire):
    item_code: str
    qty: Decimal
    s_warehouse: str
    batch_no: str | None = None
    serial_no: str | None = None

    _blank = field_validator("batch_no", "serial_no", mode="before")(blank_is_none)


class StockEntryDoc(Wire):
    name: str
    docstatus: int
    remarks: str | None = None
    items: list[EntryItem] = Field(default_factory=list)


class StockEntryResult(Wire):
    data: StockEntryDoc


def quarantine_remarks(reference: str, key: str) -> str:
    # `quarantine_stock` finds an earlier move by this text, so it must contain the key.
    return f"RefundBridge recall {reference}: quarantine {key}"


def quarantine_filter(key: str) -> list[list[Any]]:
    """Submitted Stock Entries whose remarks carry the key. A Stock Entry has no field for an
    outside reference, and a custom field would need every shop's site changed; `remarks` is
    free text a person may add to, so the key is looked for inside it. LIKE reads `_` in the
    key as any one character, so a match is checked again by `carries_key`. Drafts are never
    made (the entry is inserted submitted) and a cancelled entry moved nothing, so neither
    counts."""
    return [["docstatus", "=", 1], ["remarks", "like", f"%{key}%"]]


def carries_key(entry: StockEntryDoc, key: str) -> bool:
    return key in (entry.remarks or "")


def to_quarantined_units(entry: StockEntryDoc) -> tuple[QuarantinedUnits, ...]:
    units: list[QuarantinedUnits] = []
    for item in entry.items:
        serials = serial_numbers(item.serial_no)
        if serials:
            units.extend(QuarantinedUnits(sku=item.item_code, quantity=1,
                                          source=item.s_warehouse, lot=item.batch_no,
                                          serial=s) for s in serials)
        else:
            units.append(QuarantinedUnits(
                sku=item.item_code, source=item.s_warehouse, lot=item.batch_no,
                quantity=whole_units(item.qty, item.item_code, f"{entry.name} ({item.item_code})")))
    return tuple(units)


def transfer_entry(company: str, units: Iterable[QuarantinedUnits], target: str,
                   remarks_text: str) -> dict[str, Any]:
    """One Material Transfer into `target`, submitted on insert (Frappe inserts and submits
    in one transaction when docstatus is 1, so no draft is left behind by a failure).
    `use_serial_batch_fields` has ERPNext 15 make the Serial and Batch Bundle from the
    rows' `batch_no`/`serial_no`; older versions read those fields themselves."""
    return {
        "doctype": STOCK_ENTRY, "stock_entry_type": "Material Transfer",
        "purpose": "Material Transfer", "company": company, "remarks": remarks_text,
        "docstatus": 1,
        "items": [{"item_code": u.sku, "qty": u.quantity, "s_warehouse": u.source,
                   "t_warehouse": target, "batch_no": u.lot, "serial_no": u.serial,
                   "use_serial_batch_fields": 1} for u in units],
    }


def on_hand_units(sku: str, lot: str | None, answers: Iterable[BatchQty | BinRow],
                  holds: Iterable[str]) -> list[QuarantinedUnits]:
    """What is on hand of one batch (or of an item without batches), per warehouse, outside
    the hold warehouses; nothing of a warehouse in negative stock."""
    held = set(holds)
    units = []
    for answer in answers:
        quantity = answer.qty if isinstance(answer, BatchQty) else answer.actual_qty
        if quantity <= 0 or answer.warehouse in held:
            continue
        units.append(QuarantinedUnits(sku=sku, lot=lot, source=answer.warehouse,
                                      quantity=whole_units(quantity, sku,
                                                      f"{answer.warehouse} ({sku})")))
    return units


# ------------------------------------------------------------------ recalls: the walk's cursor

_WALK = (DELIVERY_NOTE, SALES_INVOICE)  # Delivery Notes first, then stock-updating invoices


@dataclass(frozen=True, slots=True)
class WalkCursor:
    """Where a consignee walk is: the doctype it pages over, the product it was asked for
    (`product_of`) and the Item that resolved to on its first page (a GTIN is looked up
    once), and the last child row it answered."""

    doctype: str
    product: str
    item: str
    after: str | None = None

    def encode(self) -> str:
        raw = json.dumps({"v": 1, "d": _WALK.index(self.doctype), "p": self.product,
                          "i": self.item, "a": self.after}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, scope: RecallScope) -> WalkCursor:
        """The cursor `text`, which must be one a walk over `scope`'s product returned."""
        try:
            raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            after, step = raw["a"], raw["d"]
            if raw["v"] != 1 or not isinstance(step, int) or step < 0 or not all(
                    isinstance(raw[k], str) for k in "pi") or not (
                    after is None or isinstance(after, str)):
                raise ValueError("not a cursor of this version")
            cursor = cls(doctype=_WALK[step], product=raw["p"], item=raw["i"], after=after)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise InvalidRequest("cursor", "is not a cursor an ERPNext consignee page "
                                           "returned") from exc
        if cursor.product != product_of(scope):
            raise InvalidRequest("cursor", f"belongs to a walk of {cursor.product}, not of "
                                           f"{product_of(scope)}")
        return cursor

    def next(self, rows: list[ShipmentRow], limit: int) -> WalkCursor | None:
        """After a page of `rows`: the same doctype after its last row while pages come back
        full, then the next doctype, then the end."""
        if len(rows) >= limit:
            return WalkCursor(self.doctype, self.product, self.item, rows[-1].row)
        following = _WALK.index(self.doctype) + 1
        if following == len(_WALK):
            return None
        return WalkCursor(_WALK[following], self.product, self.item)


def product_of(scope: RecallScope) -> str:
    return scope.sku if scope.sku is not None else f"GTIN {scope.gtin}"
