"""The return documents a case is booked as in ERPNext, and the refunded amount they total.

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

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Any

from refundbridge.connectors.base import StockDestinations
from refundbridge.connectors.erpnext.transformers import NAME, ReturnedItem, remarks
from refundbridge.core.errors import PermanentProviderError
from refundbridge.core.model import Disposition, StockMove
from refundbridge.core.money import minor_units
from refundbridge.core.ports import ReturnBooking

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
