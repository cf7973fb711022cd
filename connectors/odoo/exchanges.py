"""Odoo's `erp.replacement`: an exchange's replacement units as a `sale.order` for the
original order's customer, confirmed (`action_confirm`, which makes its delivery picking,
`picking_ids`), and that picking validated (`button_validate`), which ships them. The state
is the picking's: `done` is shipped, anything before it is created.

Idempotency. The order's `client_order_ref` ("Customer Reference") carries the key, and
every step looks before it acts: the order is searched by the key before it is created and
before every retry of the create; confirming and validating are asked of Odoo only while
the order is still a quotation and the picking not yet done. A crash between any two calls
therefore never makes a second order; the next attempt finds the order and carries on.

What this does not do: make two concurrent callers safe. `client_order_ref` is not unique
in Odoo, and a search followed by a create is not atomic, so two workers that both search
before either creates make two orders. The guard against that is ours: the worker claims
the case's replacement step in our database before it calls (claim-before-call), so only one
worker ever gets here for a key. Should two orders exist anyway, the oldest is answered and
the rest are logged for a person to cancel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from pydantic import Field

from refundbridge.connectors.odoo.client import OdooClient
from refundbridge.connectors.odoo.transformers import (
    NAME,
    Many2one,
    OptStr,
    Picking,
    Wire,
    parse_rows,
)
from refundbridge.core.errors import PermanentProviderError
from refundbridge.core.ports import (
    ReplacementItem,
    ReplacementOrder,
    ReplacementResult,
    ReplacementState,
)

log = logging.getLogger(__name__)

QUOTATION_STATES: Final = frozenset({"draft", "sent"})
WAITING_STATES: Final = frozenset({"confirmed", "waiting"})
PICKING_FIELDS: Final = ("name", "state", "origin", "location_dest_id")


class ReplacementSale(Wire):
    id: int
    name: str
    state: str
    picking_ids: list[int] = Field(default_factory=list)


class OriginalSale(Wire):
    id: int
    name: str
    partner_id: Many2one = None
    currency_id: Many2one = None


class ProductCode(Wire):
    id: int
    default_code: OptStr = None


class ReservedLot(Wire):
    id: int
    lot_id: Many2one = None


class PickingMove(Wire):
    id: int
    product_uom_qty: float = 0


# ------------------------------------------------------------------ mapping


def sale_order_values(order: ReplacementOrder, original: OriginalSale,
                      products: Mapping[str, int]) -> dict[str, Any]:
    if original.partner_id is None:
        raise PermanentProviderError(NAME, f"sale order {original.name} has no customer to "
                                           "send a replacement to", code="no_customer")
    currencies = {item.unit_price.currency for item in order.items}
    if original.currency_id is not None and currencies != {original.currency_id[1]}:
        raise PermanentProviderError(
            NAME, f"the replacement is priced in {', '.join(sorted(currencies))}, order "
                  f"{original.name} in {original.currency_id[1]}", code="replacement_currency")
    return {
        "partner_id": original.partner_id[0],
        "client_order_ref": order.idempotency_key,
        "origin": f"{original.name} (exchange, RefundBridge case {order.case_id})",
        "order_line": [[0, 0, {"product_id": products[item.sku],
                               "product_uom_qty": item.quantity,
                               "price_unit": float(item.unit_price.amount)}]
                       for item in order.items],
    }


def missing_products(items: Sequence[ReplacementItem], found: Mapping[str, int]) -> list[str]:
    return [item.sku for item in items if item.sku not in found]


def to_result(sale: ReplacementSale, picking: Picking | None) -> ReplacementResult:
    if picking is None:
        return ReplacementResult(document=sale.name, state=ReplacementState.CREATED)
    state = ReplacementState.SHIPPED if picking.state == "done" else ReplacementState.CREATED
    return ReplacementResult(document=sale.name, state=state, delivery=picking.name)


def oldest(rows: Sequence[ReplacementSale], key: str) -> ReplacementSale | None:
    ordered = sorted(rows, key=lambda row: row.id)
    if len(ordered) > 1:
        log.warning("odoo: replacement %s: %d sale orders (%s); answering %s, the others are "
                    "for a person to cancel", key, len(ordered),
                    ", ".join(r.name for r in ordered), ordered[0].name)
    return ordered[0] if ordered else None


# ------------------------------------------------------------------ calls


class OdooReplacements:
    """The `erp.replacement` flow of one `OdooConnector`, which hands over what it shares
    with returns: the client, the version, the order field and validation."""

    def __init__(self, client: Callable[[], OdooClient], *, version: Callable[[], int],
                 order_field: str, validate: Callable[[Picking, str], None]) -> None:
        self._get_client = client
        self._version = version
        self._order_field = order_field
        self._validate = validate

    @property
    def client(self) -> OdooClient:
        return self._get_client()

    def find(self, order: ReplacementOrder) -> ReplacementResult | None:
        sale = self._sale(order.idempotency_key)
        if sale is None:
            return None
        return to_result(sale, self._delivery(sale))

    def create(self, order: ReplacementOrder) -> ReplacementResult:
        key = order.idempotency_key
        sale = self._sale(key)
        if sale is None:
            sale = self._create_sale(order)
        if sale.state in QUOTATION_STATES:
            sale = self._confirm(sale, key)
        picking = self._delivery(sale)
        if picking is None:
            raise PermanentProviderError(
                NAME, f"{sale.name} is confirmed but made no delivery (are its products "
                      "storable, with a delivery route?); ship it in Odoo",
                code="no_delivery")
        if picking.state == "done":
            return to_result(sale, picking)
        if picking.state in WAITING_STATES:
            # "Check Availability": stock may have come in since the order was confirmed.
            # Reserving again reserves nothing twice, so a retry needs no look first.
            self.client.button("stock.picking", [picking.id], "action_assign", None,
                               find_existing=lambda: None, result=lambda _: True)
            picking = self._picking(picking.id)
        if picking.state != "assigned":
            raise PermanentProviderError(
                NAME, f"{picking.name} of {sale.name} waits for stock ({picking.state}); "
                      "validate it in Odoo once the stock is there, or retry the case",
                code="waiting_for_stock")
        if order.avoid_lots:
            self._refuse_recalled_lots(picking, set(order.avoid_lots))
        self._mark_picked(picking)
        self._validate(picking, "retry the case")
        log.info("odoo: case %s: replacement %s shipped on %s", order.case_id, sale.name,
                 picking.name)
        return to_result(sale, self._picking(picking.id))

    # ---------------------------------------------------------------- steps

    def _create_sale(self, order: ReplacementOrder) -> ReplacementSale:
        original = self._original(order.order_id)
        skus = sorted({item.sku for item in order.items})
        rows = parse_rows(ProductCode, self.client.search_read(
            "product.product", [["default_code", "in", skus]], ["default_code"]),
            "product.product")
        products = {row.default_code: row.id for row in rows if row.default_code}
        if missing := missing_products(order.items, products):
            raise PermanentProviderError(NAME, f"Odoo has no product with the internal "
                                               f"reference {', '.join(missing)}",
                                         code="product_not_found")
        values = sale_order_values(order, original, products)

        def existing() -> int | None:
            found = self._sale(order.idempotency_key)
            return found.id if found is not None else None

        sale_id = self.client.create_once("sale.order", values, find_existing=existing)
        log.info("odoo: case %s: replacement sale order %d for %s", order.case_id, sale_id,
                 original.name)
        return self._read_sale(sale_id)

    def _confirm(self, sale: ReplacementSale, key: str) -> ReplacementSale:
        def confirmed() -> bool | None:
            return True if self._read_sale(sale.id).state not in QUOTATION_STATES else None

        self.client.button("sale.order", [sale.id], "action_confirm", None,
                           find_existing=confirmed, result=lambda _: True)
        return self._read_sale(sale.id)

    def _refuse_recalled_lots(self, picking: Picking, avoid: set[str]) -> None:
        """Odoo reserves lots by its own removal strategy, which knows nothing of a recall:
        a delivery reserved from a recalled lot is not validated but left for a person."""
        rows = self.client.search_read("stock.move.line", [["picking_id", "=", picking.id]],
                                       ["lot_id"])
        lots = parse_rows(ReservedLot, rows, "stock.move.line")
        recalled = sorted({lot.lot_id[1] for lot in lots
                           if lot.lot_id is not None and lot.lot_id[1] in avoid})
        if recalled:
            raise PermanentProviderError(
                NAME, f"{picking.name} is reserved from the recalled lot "
                      f"{', '.join(recalled)}; reserve another lot in Odoo and validate it, "
                      "or retry the case", code="recalled_lot_reserved")

    def _mark_picked(self, picking: Picking) -> None:
        """What a person does before validating: Odoo 17+ validates only moves marked
        picked; in 16 the done quantity is the reserved one."""
        moves = parse_rows(PickingMove, self.client.search_read(
            "stock.move", [["picking_id", "=", picking.id]], ["product_uom_qty"]),
            "stock.move")
        for move in moves:
            values: dict[str, Any] = ({"picked": True} if self._version() >= 17
                                      else {"quantity_done": move.product_uom_qty})
            self.client.write("stock.move", [move.id], values)

    # ---------------------------------------------------------------- reads

    def _sale(self, key: str) -> ReplacementSale | None:
        rows = parse_rows(ReplacementSale, self.client.search_read(
            "sale.order", [["client_order_ref", "=", key], ["state", "!=", "cancel"]],
            ["name", "state", "picking_ids"], order="id"), "sale.order")
        return oldest(rows, key)

    def _read_sale(self, sale_id: int) -> ReplacementSale:
        return parse_rows(ReplacementSale, self.client.read(
            "sale.order", [sale_id], ["name", "state", "picking_ids"]), "sale.order")[0]

    def _delivery(self, sale: ReplacementSale) -> Picking | None:
        if not sale.picking_ids:
            return None
        pickings = parse_rows(Picking, self.client.search_read(
            "stock.picking", [["id", "in", sale.picking_ids],
                              ["picking_type_code", "=", "outgoing"],
                              ["state", "!=", "cancel"]],
            list(PICKING_FIELDS), order="id"), "stock.picking")
        done = [p for p in pickings if p.state == "done"]
        first = done or pickings
        return first[0] if first else None

    def _picking(self, picking_id: int) -> Picking:
        return parse_rows(Picking, self.client.read("stock.picking", [picking_id],
                                                    list(PICKING_FIELDS)), "stock.picking")[0]

    def _original(self, order_id: str) -> OriginalSale:
        field = self._order_field
        rows = parse_rows(OriginalSale, self.client.search_read(
            "sale.order", [[field, "=", order_id], ["state", "not in", ["draft", "sent",
                                                                          "cancel"]]],
            ["name", "partner_id", "currency_id"], order="id"), "sale.order")
        if not rows:
            raise PermanentProviderError(NAME, f"no confirmed sale.order has {field} = "
                                               f"{order_id!r}", code="order_not_found")
        partners = {row.partner_id for row in rows}
        if len(partners) > 1:
            raise PermanentProviderError(
                NAME, f"the sale orders with {field} = {order_id!r} "
                      f"({', '.join(r.name for r in rows)}) name different customers; send "
                      "this replacement by hand", code="order_ambiguous")
        return rows[0]


class ReplacementFlows:
    """`erp.replacement` for `OdooConnector`, which lists this first among its bases (so
    these override `ConnectorBase`'s `NotSupported`) and has what the flow shares with
    returns: the client, the version, the order field, picking validation."""

    if TYPE_CHECKING:
        settings: Any

        @property
        def client(self) -> OdooClient: ...

        def _version(self) -> int: ...

        def _button_validate(self, picking: Picking, then: str) -> None: ...

    def create_replacement(self, order: ReplacementOrder) -> ReplacementResult:
        return self._replacements().create(order)

    def find_replacement(self, order: ReplacementOrder) -> ReplacementResult | None:
        return self._replacements().find(order)

    def _replacements(self) -> OdooReplacements:
        return OdooReplacements(lambda: self.client, version=self._version,
                                order_field=self.settings.order_field,
                                validate=self._button_validate)
