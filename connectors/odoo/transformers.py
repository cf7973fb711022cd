"""Odoo's wire format, and the mapping between Odoo's records and ours. Pure: no I/O.

Odoo answers an empty field with `false` (not `null`) and a many2one with `[id, "display
name"]`; the models below read both into Python's `None` and `(id, name)`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Annotated, Any, Protocol, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict

from refundbridge.connectors.base import StockDestinations, parse_answer
from refundbridge.core.errors import PermanentProviderError
from refundbridge.core.model import Disposition, StockMove
from refundbridge.core.money import Money, minor_units
from refundbridge.core.ports import ShippedUnit

NAME = "odoo"

# ------------------------------------------------------------------ errors


class ErrorKind(StrEnum):
    ACCESS_DENIED = "access_denied"  # bad credentials: re-authenticate once, then give up
    PERMANENT = "permanent"  # Odoo refused; its message says why, retrying will not help
    TRANSIENT = "transient"  # a concurrent transaction won; the same call may succeed


# Odoo's exception classes as they appear in an error's `data.name` (JSON-RPC) or `name`
# (/json/2). Anything not listed is a server-side bug for a person to read: permanent.
_EXCEPTIONS_BY_KIND: Mapping[ErrorKind, tuple[str, ...]] = {
    ErrorKind.ACCESS_DENIED: ("odoo.exceptions.AccessDenied", "werkzeug.exceptions.Unauthorized"),
    ErrorKind.PERMANENT: ("odoo.exceptions.AccessError", "odoo.exceptions.UserError",
                          "odoo.exceptions.ValidationError", "odoo.exceptions.MissingError",
                          "odoo.exceptions.RedirectWarning"),
    # Odoo retries these itself a few times (`service.model.retrying`); past that it gives up
    # and so may we, later, with the very same call.
    ErrorKind.TRANSIENT: ("psycopg2.errors.SerializationFailure",
                          "psycopg2.errors.DeadlockDetected", "psycopg2.errors.LockNotAvailable",
                          "psycopg2.extensions.TransactionRollbackError",
                          "psycopg2.OperationalError"),
}
ERROR_KINDS: Mapping[str, ErrorKind] = {
    name: kind for kind, names in _EXCEPTIONS_BY_KIND.items() for name in names}

_TRANSIENT_MESSAGES = ("could not serialize access", "deadlock detected",
                       "could not obtain lock")


def classify(name: str, message: str) -> ErrorKind:
    kind = ERROR_KINDS.get(name)
    if kind is not None:
        return kind
    if any(text in message.lower() for text in _TRANSIENT_MESSAGES):
        return ErrorKind.TRANSIENT
    return ErrorKind.PERMANENT


def error_code(name: str) -> str:
    """`odoo.exceptions.UserError` → `UserError`: what `Failure.code` shows an operator."""
    return name.rsplit(".", 1)[-1] or "odoo_error"


# ------------------------------------------------------------------ wire models


def _false_is_none(value: object) -> object:
    return None if value is False else value


Many2one = Annotated[tuple[int, str] | None, BeforeValidator(_false_is_none)]
OptStr = Annotated[str | None, BeforeValidator(_false_is_none)]
OptDate = Annotated[date | None, BeforeValidator(_false_is_none)]


def _to_date(value: object) -> object:
    # `expiration_date` is a Datetime field ("2027-03-31 00:00:00"); a lot expires on a day.
    value = _false_is_none(value)
    if isinstance(value, str) and len(value) > 10:
        return datetime.fromisoformat(value).date()
    return value


DateFromDatetime = Annotated[date | None, BeforeValidator(_to_date)]


class Wire(BaseModel):
    # Odoo adds fields between versions; we read only what we name.
    model_config = ConfigDict(extra="ignore", frozen=True)


class OdooException(Wire):
    """An Odoo exception as it travels: its class (`odoo.exceptions.UserError`) and text.
    JSON-RPC puts it in an error's `data`; /json/2 sends it as the whole error body (or,
    Odoo 19.0 for `UserError`s, a bare string)."""

    name: str = ""
    message: str = ""


class RpcError(Wire):
    code: int
    message: str
    data: OdooException = OdooException()


class RpcResponse(Wire):
    """A JSON-RPC 2.0 answer: `result`, or `error` (inside an HTTP 200)."""

    jsonrpc: str
    id: int | str | None = None
    result: Any = None
    error: RpcError | None = None


class SaleOrder(Wire):
    id: int
    name: str
    picking_ids: list[int] = []
    invoice_ids: list[int] = []


class Picking(Wire):
    id: int
    name: str
    state: str
    origin: OptStr = None
    location_dest_id: Many2one = None


class MoveLine(Wire):
    """A `stock.move.line`; `quantity` is `quantity` (Odoo 17+) or `qty_done` (16)."""

    id: int
    picking_id: Many2one
    move_id: Many2one
    product_id: tuple[int, str]
    lot_id: Many2one = None
    quantity: Decimal


class Product(Wire):
    id: int
    default_code: OptStr = None
    tracking: str = "none"
    barcode: OptStr = None
    uom_id: Many2one = None


class Lot(Wire):
    id: int
    name: str
    expiration_date: DateFromDatetime = None


class ReturnMove(Wire):
    """A move of a return picking, linked to the shipped move it returns."""

    id: int
    product_id: tuple[int, str]
    origin_returned_move_id: Many2one = None
    location_id: tuple[int, str]
    move_line_ids: list[int] = []


class Invoice(Wire):
    id: int
    name: str
    state: str
    currency_id: tuple[int, str]
    amount_total: Decimal
    ref: OptStr = None


class InvoiceLine(Wire):
    id: int
    product_id: Many2one = None
    quantity: Decimal
    price_unit: Decimal
    price_total: Decimal


class Action(Wire):
    """What a button answers: a window action; `res_id` names the record it opens."""

    res_model: OptStr = None
    res_id: int | None = None


M = TypeVar("M", bound=Wire)


def parse(model: type[M], body: object, what: str) -> M:
    return parse_answer(NAME, model, body, what)


class _Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=_Named)


def only_record(rows: Sequence[N], missing: str, several: str, settle: str, code: str) -> N:
    """The one record a search must find. None is `<code>_not_found`; several, named, are
    `<code>_ambiguous`: which one is meant is for a person to decide, not a guess to book."""
    if not rows:
        raise PermanentProviderError(NAME, missing, code=f"{code}_not_found")
    if len(rows) > 1:
        raise PermanentProviderError(
            NAME, f"{several} ({', '.join(r.name for r in rows)}); {settle} by hand",
            code=f"{code}_ambiguous")
    return rows[0]


def parse_rows(model: type[M], rows: object, what: str) -> list[M]:
    if not isinstance(rows, list):
        raise PermanentProviderError(NAME, f"{what}: expected a list of records",
                                     code="invalid_response")
    return [parse(model, row, what) for row in rows]


def money(value: Decimal, currency: str) -> Money:
    # Odoo sends monetary fields as JSON floats; they are exact to the currency once rounded.
    step = Decimal(1).scaleb(-minor_units(currency))
    return Money.parse(value.quantize(step, rounding=ROUND_HALF_EVEN), currency)


# ------------------------------------------------------------------ markers


def case_marker(case_id: str) -> str:
    # `book_return` finds an earlier booking by this text, so it must contain the case id.
    return f"RefundBridge case {case_id}"


def return_origin(source_picking: str, case_id: str) -> str:
    return f"Return of {source_picking} ({case_marker(case_id)})"


def reversal_reason(case_id: str, reason: str) -> str:
    # Odoo copies the reason into the credit note's `ref` ("Reversal of: INV/…, <reason>") in
    # the same transaction that creates it, which is what makes the credit note findable.
    return f"{case_marker(case_id)}: {reason}"[:250]


# ------------------------------------------------------------------ locations


# Odoo `stock.location` ids for each destination of returned goods.
Locations = StockDestinations[int]


# ------------------------------------------------------------------ shipped units


GTIN_LENGTHS = (8, 12, 13, 14)


def _gtin(barcode: str | None) -> str | None:
    if barcode and barcode.isdigit() and len(barcode) in GTIN_LENGTHS:
        return barcode.zfill(14)
    return None


def to_shipped_units(lines: Iterable[MoveLine], products: Mapping[int, Product],
                     lots: Mapping[int, Lot]) -> list[ShippedUnit]:
    """One unit entry per move line: its product's code, quantity, and lot or serial."""
    units: list[ShippedUnit] = []
    for line in lines:
        product = products[line.product_id[0]]
        sku = product.default_code or line.product_id[1]
        lot = lots.get(line.lot_id[0]) if line.lot_id else None
        quantity = int(line.quantity)
        if quantity != line.quantity:
            raise PermanentProviderError(
                NAME, f"move line {line.id} ({sku}) shipped {line.quantity}: not whole units "
                      "(a unit of measure other than Units?)", code="fractional_quantity")
        serial = lot.name if lot and product.tracking == "serial" else None
        units.append(ShippedUnit(
            sku=sku, quantity=quantity,
            lot=lot.name if lot and serial is None else None,
            serial=serial,
            expiry_date=lot.expiration_date if lot else None,
            gtin=_gtin(product.barcode),
        ))
    return units


# ------------------------------------------------------------------ returns


@dataclass(frozen=True, slots=True)
class ReturnLine:
    """So much of one shipped move (and lot) going back to one location."""

    source_picking: tuple[int, str]
    source_move: int
    product_id: int
    quantity: int
    location: int
    lot_id: int | None


def allocate_returns(moves: Sequence[StockMove], shipped: Sequence[MoveLine],
                     products: Mapping[int, Product], lots: Mapping[int, Lot],
                     locations: Locations) -> list[ReturnLine]:
    """Which shipped move (and lot) each returned unit came from, and where it goes.

    A move naming a lot or serial takes it from the line that shipped that lot; one that
    names none takes whatever is left of its SKU, lot included, so the return books the lot
    that really left.
    """
    left = {line.id: int(line.quantity) for line in shipped}
    result: list[ReturnLine] = []
    for move in moves:
        if move.quantity <= 0 or move.disposition is Disposition.NOT_RETURNED:
            continue
        wanted_lot = move.serial or move.lot
        candidates = [
            line for line in shipped
            if (products[line.product_id[0]].default_code or line.product_id[1]) == move.sku
            and line.move_id is not None and line.picking_id is not None
        ]
        if wanted_lot is not None:
            candidates.sort(key=lambda line: not (
                line.lot_id is not None and lots[line.lot_id[0]].name == wanted_lot))
            if not any(line.lot_id and lots[line.lot_id[0]].name == wanted_lot
                       for line in candidates):
                raise PermanentProviderError(
                    NAME, f"no shipment of {move.sku} carried lot/serial {wanted_lot}",
                    code="lot_not_shipped")
        need = move.quantity
        for line in candidates:
            if need == 0:
                break
            if left[line.id] <= 0:
                continue
            if wanted_lot is not None and (line.lot_id is None
                                           or lots[line.lot_id[0]].name != wanted_lot):
                continue
            take = min(need, left[line.id])
            left[line.id] -= take
            need -= take
            assert line.picking_id is not None and line.move_id is not None
            result.append(ReturnLine(
                source_picking=line.picking_id, source_move=line.move_id[0],
                product_id=line.product_id[0], quantity=take,
                location=locations.for_disposition(move.disposition),
                lot_id=line.lot_id[0] if line.lot_id else None,
            ))
        if need:
            raise PermanentProviderError(
                NAME, f"the order shipped {move.quantity - need} of {move.sku}"
                      f"{f' lot {wanted_lot}' if wanted_lot else ''} not yet allocated, the "
                      f"case returns {move.quantity}", code="quantity_exceeds_shipped")
    return result


def group_returns(lines: Sequence[ReturnLine]
                  ) -> dict[tuple[tuple[int, str], int], list[ReturnLine]]:
    """One return picking per shipped picking and destination location."""
    groups: dict[tuple[tuple[int, str], int], list[ReturnLine]] = defaultdict(list)
    for line in lines:
        groups[(line.source_picking, line.location)].append(line)
    return dict(groups)


def wizard_lines(lines: Sequence[ReturnLine]) -> list[list[Any]]:
    """`product_return_moves` create commands: one per shipped move, quantities summed."""
    by_move: dict[int, tuple[int, int]] = {}
    for line in lines:
        product, quantity = by_move.get(line.source_move, (line.product_id, 0))
        by_move[line.source_move] = (product, quantity + line.quantity)
    return [[0, 0, {"product_id": product, "quantity": quantity, "move_id": move}]
            for move, (product, quantity) in by_move.items()]


def move_line_commands(move: ReturnMove, lines: Sequence[ReturnLine], location: int,
                       picking_id: int, quantity_field: str) -> list[list[Any]]:
    """Replace what Odoo reserved on a return move with one line per lot we send back."""
    commands: list[list[Any]] = [[2, line_id, 0] for line_id in move.move_line_ids]
    per_lot: dict[int | None, int] = defaultdict(int)
    for line in lines:
        if line.source_move == (move.origin_returned_move_id or (0, ""))[0]:
            per_lot[line.lot_id] += line.quantity
    for lot_id, quantity in per_lot.items():
        values: dict[str, Any] = {
            "product_id": move.product_id[0], quantity_field: quantity,
            "location_id": move.location_id[0], "location_dest_id": location,
            "picking_id": picking_id,
        }
        if lot_id is not None:
            values["lot_id"] = lot_id
        commands.append([0, 0, values])
    return commands


# ------------------------------------------------------------------ credit note


def credited_quantities(moves: Sequence[StockMove], request_lines: Iterable[tuple[str, int]]
                        ) -> dict[str, int]:
    """What the credit note covers per SKU: the goods that came back, else the request's lines."""
    wanted: dict[str, int] = defaultdict(int)
    if moves:
        for move in moves:
            wanted[move.sku] += move.quantity
    else:
        for sku, quantity in request_lines:
            wanted[sku] += quantity
    return dict(wanted)


def credit_note_commands(lines: Sequence[InvoiceLine], skus: Mapping[int, str],
                         wanted: Mapping[str, int], target: Money, total: Money,
                         where: str) -> list[list[Any]] | None:
    """`invoice_line_ids` commands that make the reversed invoice credit `target`, or None
    when the reversal already credits exactly that (a full refund).

    A partial refund keeps the lines of the SKUs the case covers, with the case's quantities,
    and drops the rest. If those lines are worth more than the refund (a partial refund of
    the goods), each line's price is lowered by the same ratio, the refund shared out in
    minor units so the lines add up to it exactly. Odoo recomputes taxes and rounding;
    the caller reads the total back and posts only if it matches.
    """
    if target == total:
        return None
    left = dict(wanted)
    kept: list[tuple[InvoiceLine, int]] = []
    commands: list[list[Any]] = []
    for line in lines:
        sku = skus.get(line.product_id[0]) if line.product_id else None
        quantity = min(left.get(sku, 0), int(line.quantity)) if sku is not None else 0
        if sku is None or quantity <= 0:
            commands.append([2, line.id, 0])
            continue
        left[sku] -= quantity
        kept.append((line, quantity))
    missing = {sku: qty for sku, qty in left.items() if qty > 0}
    if missing:
        raise PermanentProviderError(
            NAME, f"{where} does not invoice "
                  f"{', '.join(f'{q} × {s}' for s, q in sorted(missing.items()))}",
            code="not_invoiced")
    # What each kept line is worth, tax included, at the kept quantity (in minor units).
    scale = Decimal(1).scaleb(minor_units(target.currency))
    worth = [int((line.price_total / line.quantity * quantity * scale)
                 .quantize(Decimal(1), rounding=ROUND_HALF_EVEN)) for line, quantity in kept]
    whole = sum(worth)
    if whole < target.minor:
        raise PermanentProviderError(
            NAME, f"the refund {target} is more than the credited goods are worth on {where} "
                  f"({Money.from_minor(whole, target.currency)})", code="refund_exceeds_lines")
    shares = _share(target.minor, worth)
    for (line, quantity), line_worth, share in zip(kept, worth, shares, strict=True):
        values: dict[str, Any] = {"quantity": quantity}
        if share != line_worth:
            ratio = Decimal(share) / Decimal(line_worth)
            # Odoo keeps prices to the "Product Price" precision (the currency's, by default);
            # a float is what its JSON carries.
            price = (line.price_unit * ratio).quantize(Decimal(1) / scale,
                                                      rounding=ROUND_HALF_EVEN)
            values["price_unit"] = float(price)
        commands.append([1, line.id, values])
    return commands


def _share(total: int, weights: Sequence[int]) -> list[int]:
    """`total` split in proportion to `weights`, in whole units, adding up exactly."""
    whole = sum(weights)
    if whole == 0:
        return [0 for _ in weights]
    raw = [Decimal(total) * w / whole for w in weights]
    parts = [int(r) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - parts[i], reverse=True)
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts
