"""Frappe's wire format, and the mapping from a `ReturnBooking` to a Sales Invoice return.

Pure: no I/O. The return draft from `make_sales_return` stays a plain dict because we send back
every field ERPNext put in it (accounts, taxes, cost centres, links to the original rows); only
the few fields we change or read are named here.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar, assert_never

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import PermanentProviderError
from core.model import Disposition, StockMove
from core.ports import ReturnBooking

NAME = "erpnext"


# ------------------------------------------------------------------ wire models


class _Wire(BaseModel):
    # Frappe adds keys between versions; we read only what we need.
    model_config = ConfigDict(extra="ignore", frozen=True)


class NamedRow(_Wire):
    name: str


class ListResult(_Wire):
    """`GET /api/resource/<DocType>` → `{"data": [{"name": ...}, ...]}`."""

    data: list[NamedRow]


class DocResult(_Wire):
    """`POST /api/resource/<DocType>` → `{"data": {...the saved document...}}`."""

    data: NamedRow


class MethodResult(_Wire):
    """`POST /api/method/<dotted.path>` → `{"message": <what the method returned>}`."""

    message: dict[str, Any]


class FrappeErrorBody(_Wire):
    exc_type: str | None = None
    exception: str | None = None
    message: object = None  # usually a string, but a method may put anything here
    # A JSON-encoded list of JSON-encoded `{"message": ...}` objects (Frappe's msgprint log).
    server_messages: str | None = Field(default=None, alias="_server_messages")


M = TypeVar("M", bound=_Wire)


def parse(model: type[M], body: object, what: str) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        # A 2xx that is not the shape Frappe documents will not improve on retry.
        raise PermanentProviderError(NAME, f"{what}: unexpected answer ({exc.errors()[0]['msg']})"
                                     ) from exc


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


def original_invoice_filter(order_field: str, order_id: str) -> list[list[Any]]:
    return [[order_field, "=", order_id], ["docstatus", "=", 1], ["is_return", "=", 0]]


def remarks(case_id: str) -> str:
    # `book_return` finds an earlier booking by this text, so it must contain the case id.
    return f"RefundBridge case {case_id}"


# ------------------------------------------------------------------ the return document


@dataclass(frozen=True, slots=True)
class Warehouses:
    restock: str
    quarantine: str
    scrap: str

    def for_disposition(self, disposition: Disposition) -> str:
        match disposition:
            case Disposition.RESTOCK:
                return self.restock
            # Nothing that may go back to a manufacturer, be inspected, or serve as evidence
            # in a vigilance report may be sold again before someone has decided about it.
            case (Disposition.QUARANTINE | Disposition.RETURN_TO_MANUFACTURER
                  | Disposition.PENDING_INSPECTION | Disposition.KEEP_AS_EVIDENCE):
                return self.quarantine
            case Disposition.SCRAP:
                return self.scrap
            case _:
                assert_never(disposition)


@dataclass(frozen=True, slots=True)
class _Take:
    """One row of the return: so much of a SKU, and, when goods came back, where they go."""

    sku: str
    quantity: int
    move: StockMove | None


# Keys that identify the unsaved draft or one of its rows. Frappe assigns them on insert, and a
# row split over two dispositions must not carry the same row name twice.
_ROW_IDENTITY = ("name", "idx", "__islocal", "__unsaved")


def return_document(
    draft: Mapping[str, Any], booking: ReturnBooking, warehouses: Warehouses
) -> dict[str, Any]:
    """The Sales Invoice return to insert, from `make_sales_return`'s draft.

    The draft offers every returnable row of the original with its remaining quantity
    (negative). We keep only what this case returns: one row per stock move when goods came
    back, else one row per request line (a credit note without stock).
    """
    invoice = str(draft.get("return_against") or "the original invoice")
    currency = draft.get("currency")
    if currency and currency != booking.amount.currency:
        raise PermanentProviderError(
            NAME, f"{invoice} is in {currency}, the refund in {booking.amount.currency}")

    with_stock = bool(booking.moves)
    if with_stock:
        takes = [_Take(m.sku, m.quantity, m) for m in booking.moves if m.quantity > 0]
    else:
        takes = [_Take(line.sku, line.quantity, None) for line in booking.request.lines]

    rows = _allocate(draft.get("items") or [], takes, invoice, warehouses)
    doc = {key: value for key, value in draft.items() if key not in _ROW_IDENTITY}
    doc.update(
        items=rows,
        update_stock=1 if with_stock else 0,
        remarks=f"{remarks(booking.case_id)}: refund {booking.amount.amount} "
                f"{booking.amount.currency} on order {booking.order_id}",
        # Frappe inserts and submits in one transaction when docstatus is 1, so a failure
        # leaves no draft behind for the next attempt to trip over.
        docstatus=1,
    )
    return doc


def _allocate(
    draft_rows: Sequence[Mapping[str, Any]],
    takes: Sequence[_Take],
    invoice: str,
    warehouses: Warehouses,
) -> list[dict[str, Any]]:
    # What is still returnable on each draft row; a SKU may appear on several rows.
    left = [-Decimal(str(row.get("qty") or 0)) for row in draft_rows]
    rows: list[dict[str, Any]] = []
    for take in takes:
        wanted = Decimal(take.quantity)
        for index, template in enumerate(draft_rows):
            if wanted == 0:
                break
            if template.get("item_code") != take.sku or left[index] <= 0:
                continue
            qty = min(wanted, left[index])
            left[index] -= qty
            wanted -= qty
            rows.append(_row(template, qty, take.move, warehouses))
        if wanted:
            # ERPNext would refuse it too ("cannot be greater than"); say which SKU and why.
            raise PermanentProviderError(
                NAME, f"{invoice} has {take.quantity - wanted} of SKU {take.sku} left to "
                      f"return, the case returns {take.quantity}")
    return rows


def _row(
    template: Mapping[str, Any],
    qty: Decimal,
    move: StockMove | None,
    warehouses: Warehouses,
) -> dict[str, Any]:
    row = {key: value for key, value in template.items() if key not in _ROW_IDENTITY}
    quantity = -int(qty) if qty == qty.to_integral_value() else -float(qty)
    row["qty"] = quantity
    factor = template.get("conversion_factor")
    if factor is not None:
        row["stock_qty"] = quantity * factor
    if move is None:
        # A credit note without goods moves no stock; a warehouse would make ERPNext expect it.
        row.pop("warehouse", None)
        return row
    row["warehouse"] = warehouses.for_disposition(move.disposition)
    if move.lot or move.serial:
        # ERPNext 15 otherwise expects a Serial and Batch Bundle per row.
        row["use_serial_batch_fields"] = 1
        row["serial_and_batch_bundle"] = None
        if move.lot:
            row["batch_no"] = move.lot
        if move.serial:
            row["serial_no"] = move.serial
    return row
