"""Frappe's wire format, and the mapping between ERPNext's documents and ours.

Pure: no I/O. A return draft from `make_sales_return` stays a plain dict because we send back
every field ERPNext put in it (accounts, taxes, cost centres, links to the original rows); only
the few fields we change or read are named here.

How a case is booked (see `ERPNextConnector.book_return`):

- Goods left on a stock-updating Sales Invoice (`update_stock = 1`): one Sales Invoice return
  that is both the credit note and the stock receipt, a row per stock move, each into the
  warehouse of its disposition.
- Goods left on Delivery Notes (the invoice has `update_stock = 0`; ERPNext refuses a
  stock-updating return against it): a Delivery Note return per Delivery Note the goods came
  from, with the rows per disposition, and then a credit note without stock.
- A refund without goods: a credit note without stock.

The credit note always totals the refunded amount (`fit_to_amount`).
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from connectors.base import StockDestinations
from core.errors import PermanentProviderError
from core.model import Disposition, StockMove
from core.money import minor_units
from core.ports import ReturnBooking, ShippedUnit

NAME = "erpnext"

SALES_INVOICE = "Sales Invoice"
DELIVERY_NOTE = "Delivery Note"
SALES_ORDER = "Sales Order"
BATCH = "Batch"
BUNDLE = "Serial and Batch Bundle"


# ------------------------------------------------------------------ wire models


class _Wire(BaseModel):
    # Frappe adds keys between versions; we read only what we need.
    model_config = ConfigDict(extra="ignore", frozen=True)


class NamedRow(_Wire):
    name: str


class ListResult(_Wire):
    """`GET /api/resource/<DocType>` → `{"data": [{"name": ...}, ...]}`."""

    data: list[NamedRow]


class InvoiceRow(_Wire):
    name: str
    update_stock: int = 0


class InvoiceList(_Wire):
    data: list[InvoiceRow]


class ReturnRow(_Wire):
    name: str
    return_against: str | None = None


class ReturnList(_Wire):
    data: list[ReturnRow]


class BatchRow(_Wire):
    name: str
    expiry_date: date | None = None

    @field_validator("expiry_date", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        # A batch without an expiry reads as null, or "" from older sites.
        return value or None


class BatchList(_Wire):
    data: list[BatchRow]


def _blank_is_none(value: object) -> object:
    return value if isinstance(value, str) and value.strip() else None


class StockItem(_Wire):
    """A row of a Delivery Note or Sales Invoice, as far as stock is concerned."""

    item_code: str
    qty: Decimal
    batch_no: str | None = None
    # Before ERPNext 15 (and with `use_serial_batch_fields`): serials, one per line.
    serial_no: str | None = None
    serial_and_batch_bundle: str | None = None

    _blank = field_validator("batch_no", "serial_no", "serial_and_batch_bundle",
                             mode="before")(_blank_is_none)


class StockDocument(_Wire):
    name: str
    items: list[StockItem] = []


class StockDocResult(_Wire):
    """`GET /api/resource/<DocType>/<name>` → `{"data": {...the document, child tables...}}`."""

    data: StockDocument


class ReturnedItem(_Wire):
    item_code: str
    qty: Decimal
    warehouse: str | None = None
    batch_no: str | None = None
    serial_no: str | None = None

    _blank = field_validator("warehouse", "batch_no", "serial_no", mode="before")(
        _blank_is_none)


class ReturnedDocument(_Wire):
    name: str
    items: list[ReturnedItem] = []


class ReturnedDocResult(_Wire):
    data: ReturnedDocument


class BundleEntry(_Wire):
    batch_no: str | None = None
    serial_no: str | None = None
    qty: Decimal = Decimal(0)  # negative in an outward bundle

    _blank = field_validator("batch_no", "serial_no", mode="before")(_blank_is_none)


class Bundle(_Wire):
    name: str
    entries: list[BundleEntry] = []


class BundleResult(_Wire):
    data: Bundle


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


def _whole(quantity: Decimal, sku: str, where: str) -> int:
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
                        quantity=1 if entry.serial_no else _whole(entry.qty, item.item_code,
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
            quantity = _whole(item.qty, item.item_code, where)
            if quantity:
                units.append(ShippedUnit(sku=item.item_code, quantity=quantity,
                                         lot=item.batch_no, expiry_date=expiry))
    return units


# ------------------------------------------------------------------ warehouses


# ERPNext warehouse names for each destination of returned goods.
Warehouses = StockDestinations[str]


def returned_moves(moves: Iterable[StockMove]) -> list[StockMove]:
    """The moves that bring goods back."""
    return [m for m in moves
            if m.quantity > 0 and m.disposition is not Disposition.NOT_RETURNED]


# ------------------------------------------------------------------ the return documents


@dataclass(frozen=True, slots=True)
class _Take:
    """One row of a return: so much of a SKU, and, when goods come back, where they go."""

    sku: str
    quantity: int
    move: StockMove | None


# Keys that identify the unsaved draft or one of its rows. Frappe assigns them on insert, and a
# row split over two dispositions must not carry the same row name twice.
_ROW_IDENTITY = ("name", "idx", "__islocal", "__unsaved")


def _check_currency(draft: Mapping[str, Any], booking: ReturnBooking, what: str) -> None:
    currency = draft.get("currency")
    if currency and currency != booking.amount.currency:
        raise PermanentProviderError(
            NAME, f"{what} is in {currency}, the refund in {booking.amount.currency}")


def _header(draft: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in draft.items() if key not in _ROW_IDENTITY}


def credit_note(draft: Mapping[str, Any], booking: ReturnBooking, warehouses: Warehouses, *,
                with_stock: bool, stock_returns: Sequence[str] = ()) -> dict[str, Any]:
    """The Sales Invoice return to insert, from `make_sales_return`'s draft.

    The draft offers every returnable row of the original with its remaining quantity
    (negative). We keep only what this case returns: with stock, a row per stock move into its
    disposition's warehouse; without, the returned goods per SKU (they went back on Delivery
    Note returns, `stock_returns`), or the request's lines when nothing came back. The rows
    then total the refunded amount (`fit_to_amount`).
    """
    invoice = str(draft.get("return_against") or "the original invoice")
    _check_currency(draft, booking, invoice)
    moves = returned_moves(booking.moves)
    if with_stock:
        takes = [_Take(m.sku, m.quantity, m) for m in moves]
    elif moves:
        per_sku = Counter[str]()
        for move in moves:
            per_sku[move.sku] += move.quantity
        takes = [_Take(sku, quantity, None) for sku, quantity in per_sku.items()]
    else:
        takes = [_Take(line.sku, line.quantity, None) for line in booking.request.lines]

    rows, short = _allocate(draft.get("items") or [], takes, warehouses)
    if short:
        take, missing = short[0]
        # ERPNext would refuse it too ("cannot be greater than"); say which SKU and why.
        raise PermanentProviderError(
            NAME, f"{invoice} has {take.quantity - missing} of SKU {take.sku} left to "
                  f"return, the case returns {take.quantity}", code="over_return")
    rows = fit_to_amount(rows, draft.get("taxes") or [], booking, invoice)
    note = (f"{remarks(booking.case_id)}: refund {booking.amount.amount} "
            f"{booking.amount.currency} on order {booking.order_id}")
    if stock_returns:
        note += f"; goods returned on {', '.join(stock_returns)}"
    doc = _header(draft)
    doc.update(
        items=rows,
        update_stock=1 if with_stock else 0,
        remarks=note,
        # Frappe inserts and submits in one transaction when docstatus is 1, so a failure
        # leaves no draft behind for the next attempt to trip over.
        docstatus=1,
    )
    return doc


def delivery_return(draft: Mapping[str, Any], moves: Sequence[StockMove],
                    booking: ReturnBooking, warehouses: Warehouses
                    ) -> tuple[dict[str, Any] | None, list[StockMove]]:
    """The Delivery Note return for the moves this Delivery Note can take, and the moves (or
    parts of them) left for the next one; no document when it takes none."""
    note = str(draft.get("return_against") or "the Delivery Note")
    _check_currency(draft, booking, note)
    takes = [_Take(m.sku, m.quantity, m) for m in moves]
    rows, short = _allocate(draft.get("items") or [], takes, warehouses)
    left = [replace(take.move, quantity=missing) for take, missing in short
            if take.move is not None]
    if not rows:
        return None, left
    doc = _header(draft)
    doc.update(
        items=rows,
        # `book_return` finds an earlier Delivery Note return of the case by this text.
        instructions=f"{remarks(booking.case_id)}: goods returned on order {booking.order_id}",
        # The credit note is ours to make, for the refunded amount; ERPNext's would credit
        # the goods' full value.
        issue_credit_note=0,
        docstatus=1,
    )
    return doc, left


def still_to_return(moves: Sequence[StockMove], booked: Iterable[ReturnedItem],
                    warehouses: Warehouses) -> list[StockMove]:
    """The moves less what earlier Delivery Note returns of the case already took back (a
    crash between two of them leaves the rest for the next attempt)."""
    taken = Counter[tuple[str, str | None, str | None, str | None]]()
    for item in booked:
        taken[(item.item_code, item.warehouse, item.batch_no, item.serial_no)] += int(
            abs(item.qty))
    left: list[StockMove] = []
    for move in moves:
        key = (move.sku, warehouses.for_disposition(move.disposition), move.lot, move.serial)
        done = min(taken[key], move.quantity)
        taken[key] -= done
        if move.quantity > done:
            left.append(replace(move, quantity=move.quantity - done))
    return left


def _allocate(
    draft_rows: Sequence[Mapping[str, Any]],
    takes: Sequence[_Take],
    warehouses: Warehouses,
) -> tuple[list[dict[str, Any]], list[tuple[_Take, int]]]:
    """Rows for `takes` out of the draft's, and each take that did not fit with how many of
    it are missing."""
    # What is still returnable on each draft row; a SKU may appear on several rows.
    left = [-Decimal(str(row.get("qty") or 0)) for row in draft_rows]
    rows: list[dict[str, Any]] = []
    short: list[tuple[_Take, int]] = []
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
            short.append((take, int(wanted)))
    return rows, short


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


# ------------------------------------------------------------------ the refunded amount


ON_NET_TOTAL = "On Net Total"


def _decimal(value: object) -> Decimal:
    return Decimal(str(value if value is not None else 0))


def fit_to_amount(rows: Sequence[dict[str, Any]], taxes: Sequence[Mapping[str, Any]],
                  booking: ReturnBooking, invoice: str) -> list[dict[str, Any]]:
    """The credit note's rows, re-priced so that the credit note totals the refunded amount.

    Why rates and not an adjustment row: ERPNext refuses a return row whose item is not on
    the original invoice, or whose quantity is positive, so a "refund adjustment" item cannot
    be added; it does accept a return rate lower than the original (never higher). So every
    row's rate is scaled down by the same factor, rounded down to the currency's minor unit,
    and the cents lost to rounding go back one per unit (splitting a row into two rates where
    needed), so the rows add up exactly.

    Taxes: the refund is what the customer got back, tax included. With no taxes, or only
    "On Net Total" taxes included in the rate, the rows' total is the credit note's total,
    exactly. With only "On Net Total" taxes added on top, the rows total the refund less those
    taxes, and ERPNext's own tax rounding may differ by a cent. Other tax set-ups (fixed
    amounts, taxes on taxes, inclusive mixed with exclusive) cannot be scaled faithfully: a
    partial refund on such an invoice is refused for a person to book.

    A refund of the full value leaves the rows as they are; a refund above it is refused
    (ERPNext would refuse a rate above the original's anyway).
    """
    currency = booking.amount.currency
    unit = Decimal(1).scaleb(-minor_units(currency))
    amount = booking.amount.amount
    units = [-_decimal(row.get("qty")) for row in rows]
    rates = [_decimal(row.get("rate")) for row in rows]
    net = sum((q * r).quantize(unit, ROUND_HALF_EVEN) for q, r in zip(units, rates, strict=True))
    net = Decimal(net)

    live = [t for t in taxes if _decimal(t.get("rate")) or _decimal(t.get("tax_amount"))]
    on_net = [t for t in live if t.get("charge_type") == ON_NET_TOTAL]
    inclusive = [t for t in on_net if t.get("included_in_print_rate")]
    scalable = len(on_net) == len(live) and len(inclusive) in (0, len(on_net))
    factor = Decimal(1) if inclusive else 1 + sum(
        (_decimal(t.get("rate")) for t in on_net), Decimal(0)) / 100
    gross = (net * factor).quantize(unit, ROUND_HALF_EVEN)

    if amount == gross:
        return [dict(row) for row in rows]
    if not scalable:
        raise PermanentProviderError(
            NAME, f"{invoice}: a partial refund ({amount} {currency} of {gross}) cannot be "
                  "spread over its taxes (only 'On Net Total' taxes, all included in the rate "
                  "or all added to it, can be); book this credit note by hand",
            code="partial_refund_taxes")
    if amount > gross:
        raise PermanentProviderError(
            NAME, f"the refund of {amount} {currency} is more than the {gross} {currency} "
                  f"the returned rows are worth on {invoice}; book this credit note by hand",
            code="refund_exceeds_lines")
    if any(q != q.to_integral_value() for q in units):
        raise PermanentProviderError(
            NAME, f"{invoice}: cannot spread a partial refund over fractional quantities",
            code="fractional_quantity")
    target = (amount / factor).quantize(unit, ROUND_HALF_EVEN)
    return _spread(rows, [int(q) for q in units], rates, target, unit)


def _spread(rows: Sequence[dict[str, Any]], units: Sequence[int], rates: Sequence[Decimal],
            target: Decimal, unit: Decimal) -> list[dict[str, Any]]:
    """Rates no higher than `rates` whose rows total `target` exactly, in minor units."""
    minor = [int((rate / unit).to_integral_value(ROUND_FLOOR)) for rate in rates]
    total = sum(n * r for n, r in zip(units, minor, strict=True))
    wanted = int(target / unit)
    base = [r * wanted // total if total else 0 for r in minor]
    rest = wanted - sum(n * b for n, b in zip(units, base, strict=True))
    fitted: list[dict[str, Any]] = []
    for row, n, rate, low in zip(rows, units, minor, base, strict=True):
        # Each unit of this row can take back up to what flooring took from it.
        extra = min(rest, n * (rate - low))
        rest -= extra
        every, some = divmod(extra, n) if n else (0, 0)
        for count, cents in ((n - some, low + every), (some, low + every + 1)):
            if count:
                fitted.append(_priced(row, count, Decimal(cents) * unit))
    if rest:
        # Only when the original rates are finer than the currency's minor unit.
        raise PermanentProviderError(
            NAME, f"cannot price the credit note's rows to total {target}: rates finer than "
                  "the currency's minor unit", code="partial_refund_rates")
    return fitted


def _priced(row: Mapping[str, Any], count: int, rate: Decimal) -> dict[str, Any]:
    priced = dict(row)
    priced["qty"] = -count
    factor = row.get("conversion_factor")
    if factor is not None:
        priced["stock_qty"] = -count * factor
    priced["rate"] = rate
    # ERPNext derives these from the rate; stale ones would contradict it.
    for key in ("amount", "net_rate", "net_amount", "base_rate", "base_amount",
                "base_net_rate", "base_net_amount", "price_list_rate", "discount_percentage",
                "discount_amount", "margin_rate_or_amount", "rate_with_margin",
                "pricing_rules"):
        priced.pop(key, None)
    return priced
