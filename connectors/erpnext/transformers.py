"""Frappe's wire format, and the mapping between ERPNext's answers and ours: the documents
that shipped an order, as shipped units; the filters that find a case's documents. No I/O.

The return documents a case is booked as live in `returns.py`; what a recall asks of
ERPNext (who received the units, the stock on hand moved into quarantine), in `recalls.py`.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from refundbridge.connectors.base import parse_answer
from refundbridge.core.errors import PermanentProviderError
from refundbridge.core.ports import ShippedUnit

NAME = "erpnext"

SALES_INVOICE = "Sales Invoice"
DELIVERY_NOTE = "Delivery Note"
SALES_ORDER = "Sales Order"
BATCH = "Batch"
BUNDLE = "Serial and Batch Bundle"


# ------------------------------------------------------------------ wire models


class Wire(BaseModel):
    # Frappe adds keys between versions; we read only what we need.
    model_config = ConfigDict(extra="ignore", frozen=True)


class NamedRow(Wire):
    name: str


class ListResult(Wire):
    """`GET /api/resource/<DocType>` → `{"data": [{"name": ...}, ...]}`."""

    data: list[NamedRow]


class InvoiceRow(Wire):
    name: str
    update_stock: int = 0


class InvoiceList(Wire):
    data: list[InvoiceRow]


class ReturnRow(Wire):
    name: str
    return_against: str | None = None


class ReturnList(Wire):
    data: list[ReturnRow]


class BatchRow(Wire):
    name: str
    expiry_date: date | None = None

    @field_validator("expiry_date", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # A batch without an expiry reads as null, or "" from older sites.
        return value or None


class BatchList(Wire):
    data: list[BatchRow]


def blank_is_none(value: object) -> object:
    return value if isinstance(value, str) and value.strip() else None


class StockItem(Wire):
    """A row of a Delivery Note or Sales Invoice, as far as stock is concerned."""

    item_code: str
    qty: Decimal
    batch_no: str | None = None
    # Before ERPNext 15 (and with `use_serial_batch_fields`): serials, one per line.
    serial_no: str | None = None
    serial_and_batch_bundle: str | None = None

    _blank = field_validator("batch_no", "serial_no", "serial_and_batch_bundle",
                             mode="before")(blank_is_none)


class StockDocument(Wire):
    name: str
    items: list[StockItem] = []


class StockDocResult(Wire):
    """`GET /api/resource/<DocType>/<name>` → `{"data": {...the document, child tables...}}`."""

    data: StockDocument


class ReturnedItem(Wire):
    item_code: str
    qty: Decimal
    warehouse: str | None = None
    batch_no: str | None = None
    serial_no: str | None = None

    _blank = field_validator("warehouse", "batch_no", "serial_no", mode="before")(
        blank_is_none)


class ReturnedDocument(Wire):
    name: str
    items: list[ReturnedItem] = []


class ReturnedDocResult(Wire):
    data: ReturnedDocument


class BundleEntry(Wire):
    batch_no: str | None = None
    serial_no: str | None = None
    qty: Decimal = Decimal(0)  # negative in an outward bundle

    _blank = field_validator("batch_no", "serial_no", mode="before")(blank_is_none)


class Bundle(Wire):
    name: str
    entries: list[BundleEntry] = []


class BundleResult(Wire):
    data: Bundle


class DocResult(Wire):
    """`POST /api/resource/<DocType>` → `{"data": {...the saved document...}}`."""

    data: NamedRow


class MethodResult(Wire):
    """`POST /api/method/<dotted.path>` → `{"message": <what the method returned>}`."""

    message: dict[str, Any]


class FrappeErrorBody(Wire):
    exc_type: str | None = None
    exception: str | None = None
    message: object = None  # usually a string, but a method may put anything here
    # A JSON-encoded list of JSON-encoded `{"message": ...}` objects (Frappe's msgprint log).
    server_messages: str | None = Field(default=None, alias="_server_messages")


M = TypeVar("M", bound=Wire)


def parse(model: type[M], body: object, what: str) -> M:
    return parse_answer(NAME, model, body, what)


_TAG = re.compile(r"<[^>]+>")


def _plain(text: str) -> str:
    # Server messages are written for the Desk UI and carry <b>, <br> and entities.
    return " ".join(html.unescape(_TAG.sub(" ", text)).split())


def _server_messages(raw: str) -> list[str]:
    try:
        entries = json.loads(raw)
    except ValueError:
        return [raw]
    if not isinstance(entries, list):
        return []
    messages = []
    for entry in entries:
        try:
            decoded = json.loads(entry) if isinstance(entry, str) else entry
        except ValueError:
            decoded = entry
        if isinstance(decoded, dict):
            decoded = decoded.get("message")
        if isinstance(decoded, str) and decoded.strip():
            messages.append(decoded)
    return messages


def error_message(status: int, text: str) -> str:
    """The message a person wrote for this refusal, from a Frappe error body.

    Frappe puts it in `_server_messages` (what the Desk shows), sometimes only in `message`, and
    always in the last line of `exception` ("frappe.exceptions.ValidationError: ...").
    """
    try:
        body = FrappeErrorBody.model_validate(json.loads(text))
    except (ValueError, ValidationError):
        return f"HTTP {status}: {_plain(text)[:300]}" if text.strip() else f"HTTP {status}"
    messages = _server_messages(body.server_messages) if body.server_messages else []
    if not messages and isinstance(body.message, str) and body.message.strip():
        messages = [body.message]
    if not messages and body.exception:
        messages = [body.exception.strip().splitlines()[-1].split(": ", 1)[-1]]
    readable = "; ".join(_plain(m) for m in messages)
    if readable:
        return readable
    return f"HTTP {status} {body.exc_type}" if body.exc_type else f"HTTP {status}"


# ------------------------------------------------------------------ filters


def return_filter(case_id: str) -> list[list[Any]]:
    return [["is_return", "=", 1], ["remarks", "like", f"%{case_id}%"]]


def delivery_return_filter(case_id: str) -> list[list[Any]]:
    # A Delivery Note has no `remarks`; its free-text field is `instructions`.
    return [["is_return", "=", 1], ["docstatus", "=", 1],
            ["instructions", "like", f"%{case_id}%"]]


def original_invoice_filter(order_field: str, order_id: str) -> list[list[Any]]:
    return [[order_field, "=", order_id], ["docstatus", "=", 1], ["is_return", "=", 0]]


def shipment_filter(order_field: str, order_id: str) -> list[list[Any]]:
    """Submitted outbound Delivery Notes or Sales Invoices of the order (returns carry no
    `po_no`, but a custom order field may be copied onto them)."""
    return original_invoice_filter(order_field, order_id)


def order_filter(order_field: str, order_id: str) -> list[list[Any]]:
    return [[order_field, "=", order_id], ["docstatus", "=", 1]]


def remarks(case_id: str) -> str:
    # `book_return` finds an earlier booking by this text, so it must contain the case id.
    return f"RefundBridge case {case_id}"


# ------------------------------------------------------------------ shipped units


def whole_units(quantity: Decimal, sku: str, where: str) -> int:
    units = abs(quantity)
    if units != units.to_integral_value():
        raise PermanentProviderError(
            NAME, f"{where} shipped {units} of {sku}: not whole units (a unit of measure "
                  "other than Nos?)", code="fractional_quantity")
    return int(units)


def serial_numbers(text: str | None) -> list[str]:
    """ERPNext's `serial_no` text: one serial per line (commas too, on old sites)."""
    if not text:
        return []
    return [s.strip() for s in re.split(r"[\n,]", text) if s.strip()]


def batches_of(items: Iterable[StockItem], bundles: Mapping[str, Bundle]) -> list[str]:
    """Every batch named by the items or their bundles, once each, in order of appearance."""
    seen: dict[str, None] = {}
    for item in items:
        bundle = bundles.get(item.serial_and_batch_bundle or "")
        if bundle is not None:
            seen.update((e.batch_no, None) for e in bundle.entries if e.batch_no)
        elif item.batch_no:
            seen[item.batch_no] = None
    return list(seen)


def to_shipped_units(docs: Iterable[StockDocument], bundles: Mapping[str, Bundle],
                     expiries: Mapping[str, date | None]) -> list[ShippedUnit]:
    """What left the warehouse: per item its batch, or one unit per serial.

    A row's Serial and Batch Bundle (ERPNext 15), when it has one, is the record of what
    moved; the row's own `batch_no`/`serial_no` then only repeat it (`use_serial_batch_fields`)
    and are not counted again.
    """
    units: list[ShippedUnit] = []
    for doc in docs:
        for item in doc.items:
            where = f"{doc.name} ({item.item_code})"
            bundle = bundles.get(item.serial_and_batch_bundle or "")
            if bundle is not None:
                for entry in bundle.entries:
                    units.append(ShippedUnit(
                        sku=item.item_code,
                        quantity=1 if entry.serial_no else whole_units(entry.qty, item.item_code,
                                                                  where),
                        lot=entry.batch_no, serial=entry.serial_no,
                        expiry_date=expiries.get(entry.batch_no or "")))
                continue
            expiry = expiries.get(item.batch_no or "")
            serials = serial_numbers(item.serial_no)
            if serials:
                units.extend(ShippedUnit(sku=item.item_code, quantity=1, lot=item.batch_no,
                                         serial=serial, expiry_date=expiry)
                             for serial in serials)
                continue
            quantity = whole_units(item.qty, item.item_code, where)
            if quantity:
                units.append(ShippedUnit(sku=item.item_code, quantity=quantity,
                                         lot=item.batch_no, expiry_date=expiry))
    return units

