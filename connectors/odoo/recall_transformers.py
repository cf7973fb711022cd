"""Odoo's records as a recall campaign reads them, and their mapping to the recall ports
(`ConsigneePage`, `QuarantineResult`). Pure: no I/O.

A serial in Odoo is the `stock.lot` of a product tracked by serial (`tracking = serial`), so a
recall's lots and serials are both looked for in `lot_id.name`, and a unit of such a product
reports its serial, not a lot.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from refundbridge.connectors.odoo.transformers import (
    GTIN_LENGTHS,
    NAME,
    DateFromDatetime,
    Many2one,
    OptStr,
    Product,
    Wire,
)
from refundbridge.core.errors import InvalidRequest, PermanentProviderError
from refundbridge.core.ports import Consignee, ConsigneeUnits, QuarantinedUnits, RecallScope

# ------------------------------------------------------------------ wire models


class ConsignedLine(Wire):
    """A done `stock.move.line` of a customer delivery, as a recall reads it."""

    id: int
    picking_id: tuple[int, str]
    product_id: tuple[int, str]
    lot_id: Many2one = None
    quantity: Decimal
    date: DateFromDatetime = None


class Delivery(Wire):
    """A delivery `stock.picking`: who it went to and which sale order it served."""

    id: int
    name: str
    origin: OptStr = None
    partner_id: Many2one = None
    sale_id: Many2one = None


class Partner(Wire):
    id: int
    name: OptStr = None
    email: OptStr = None
    phone: OptStr = None
    mobile: OptStr = None  # gone from res.partner in Odoo 18
    lang: OptStr = None
    commercial_partner_id: Many2one = None


class OrderRef(Wire):
    id: int
    name: str
    client_order_ref: OptStr = None


class Quant(Wire):
    """A `stock.quant`: so much of a product (and lot) in one location (and package)."""

    id: int
    product_id: tuple[int, str]
    location_id: tuple[int, str]
    lot_id: Many2one = None
    package_id: Many2one = None
    quantity: Decimal


class PickingType(Wire):
    id: int
    name: str


class TransferMove(Wire):
    """A move of our internal transfer to quarantine."""

    id: int
    location_id: tuple[int, str]
    move_line_ids: tuple[int, ...] = ()


class TransferLine(Wire):
    id: int
    location_id: tuple[int, str]
    lot_id: Many2one = None
    quantity: Decimal


# ------------------------------------------------------------------ mapping


def whole_units(quantity: Decimal, what: str) -> int:
    units = int(quantity)
    if units != quantity:
        raise PermanentProviderError(
            NAME, f"{what} is {quantity}: not whole units (a unit of measure other than "
                  "Units?)", code="fractional_quantity")
    return units


def barcode_forms(gtin: str) -> list[str]:
    """The forms a shop may have typed a GTIN into `barcode` in: GTIN-14 and the shorter
    GTIN-13, -12 and -8 its leading zeros allow (most shops scan the EAN-13 on the box)."""
    digits = gtin.strip()
    if not digits.isdigit() or len(digits) not in GTIN_LENGTHS:
        raise InvalidRequest("scope.gtin", f"{gtin!r} is not a GTIN (8, 12, 13 or 14 digits)")
    full = digits.zfill(14)
    forms = [full]
    for length in (13, 12, 8):
        if full[: 14 - length] == "0" * (14 - length):
            forms.append(full[14 - length:])
    return forms


def recalled_names(scope: RecallScope) -> list[str]:
    """The `stock.lot` names a recall covers. Odoo keeps a serial as the lot of a serial-
    tracked product, so serials and lots are both looked for in `lot_id.name`."""
    return sorted(set(scope.lots) | set(scope.serials))


_CURSOR_PREFIX = "sml:"


def consignee_cursor(last_line_id: int) -> str:
    return f"{_CURSOR_PREFIX}{last_line_id}"


def after_line(cursor: str | None) -> int:
    """The move line id a page starts after (0: the first page)."""
    if cursor is None:
        return 0
    number = cursor.removeprefix(_CURSOR_PREFIX)
    if not cursor.startswith(_CURSOR_PREFIX) or not number.isdigit():
        raise InvalidRequest("cursor", f"{cursor!r} is not a cursor this connector gave")
    return int(number)


def odoo_locale(lang: str | None) -> str | None:
    """Odoo's `zh_CN` (or `sr@latin`) as a BCP 47 tag: `zh-CN`, `sr-Latn`."""
    if not lang:
        return None
    base, _, script = lang.partition("@")
    tag = base.replace("_", "-")
    return f"{tag}-{script.capitalize()[:4]}" if script == "latin" else tag


def _contact(partner: Partner, company: Partner | None) -> tuple[str | None, str | None]:
    # A delivery address often has no email or phone of its own; its company does.
    email = partner.email or (company.email if company else None)
    phone = (partner.phone or partner.mobile
             or (company.phone or company.mobile if company else None))
    return email, phone


def to_consignees(lines: Sequence[ConsignedLine], product: Product,
                  deliveries: Mapping[int, Delivery], partners: Mapping[int, Partner],
                  order_ids: Mapping[int, str], lot_names: Mapping[int, str]
                  ) -> tuple[Consignee, ...]:
    """One consignee per delivery partner of a page, in the order the page first names them,
    with one units entry per move line. `order_ids` maps a picking to the storefront's id."""
    units: dict[str, list[ConsigneeUnits]] = defaultdict(list)
    who: dict[str, Consignee] = {}
    sku = product.default_code or f"product.product {product.id}"
    for line in lines:
        delivery = deliveries[line.picking_id[0]]
        lot = lot_names.get(line.lot_id[0]) if line.lot_id else None
        serial = lot if product.tracking == "serial" else None
        units_of = ConsigneeUnits(
            line_id=str(line.id), document=delivery.name, sku=sku,
            quantity=whole_units(line.quantity, f"move line {line.id} ({sku}) shipped"),
            lot=lot if serial is None else None, serial=serial, shipped_on=line.date,
            order_id=order_ids.get(delivery.id))
        if delivery.partner_id is None:
            # Nobody to write to, yet the units left: keep them visible for a person.
            key = f"picking:{delivery.id}"
            who.setdefault(key, Consignee(key=key, name=f"no partner on {delivery.name}",
                                          units=()))
        else:
            partner = partners[delivery.partner_id[0]]
            company_id = partner.commercial_partner_id
            company = (partners.get(company_id[0])
                       if company_id and company_id[0] != partner.id else None)
            key = str(partner.id)
            if key not in who:
                email, phone = _contact(partner, company)
                who[key] = Consignee(key=key, name=partner.name or delivery.partner_id[1],
                                     units=(), email=email, phone=phone,
                                     locale=odoo_locale(partner.lang
                                                        or (company.lang if company else None)))
        units[key].append(units_of)
    return tuple(Consignee(key=c.key, name=c.name, units=tuple(units[c.key]), email=c.email,
                           phone=c.phone, locale=c.locale) for c in who.values())


def transfer_line_commands(existing: Sequence[int], quants: Sequence[Quant], destination: int,
                           picking_id: int, quantity_field: str) -> list[list[Any]]:
    """Replace what Odoo reserved on a move of the transfer with one line per quant taken:
    its lot and package, so exactly the recalled units move."""
    commands: list[list[Any]] = [[2, line_id, 0] for line_id in existing]
    for quant in quants:
        values: dict[str, Any] = {
            "product_id": quant.product_id[0], quantity_field: int(quant.quantity),
            "location_id": quant.location_id[0], "location_dest_id": destination,
            "picking_id": picking_id,
        }
        if quant.lot_id is not None:
            values["lot_id"] = quant.lot_id[0]
        if quant.package_id is not None:
            values["package_id"] = quant.package_id[0]
        commands.append([0, 0, values])
    return commands


def quarantined_units(lines: Iterable[TransferLine], product: Product,
                      lot_names: Mapping[int, str]) -> tuple[QuarantinedUnits, ...]:
    sku = product.default_code or f"product.product {product.id}"
    result: list[QuarantinedUnits] = []
    for line in lines:
        lot = lot_names.get(line.lot_id[0]) if line.lot_id else None
        serial = lot if product.tracking == "serial" else None
        result.append(QuarantinedUnits(
            sku=sku, quantity=whole_units(line.quantity, f"move line {line.id} ({sku})"),
            source=line.location_id[1], lot=lot if serial is None else None, serial=serial))
    return tuple(result)
