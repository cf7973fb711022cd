"""The Odoo fake's selling side for exchanges: `sale.order.create` (a quotation with its
`order_line`), `sale.order.action_confirm` (which makes the delivery picking from WH/Stock to
the customer and reserves what is on hand), mixed into `tests.fakes.odoo.OdooFake`; the
picking is then validated by the fake's own `button_validate`.

As Odoo does:
- nothing is unique about `client_order_ref`: two orders with one key are two orders;
- `action_confirm` refuses an order that is no longer a quotation;
- a move is reserved from the quants on hand (lots first come, first served); the picking is
  `assigned` when every move is, `confirmed` (waiting) when stock is short.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any, ClassVar

SALE_ORDER_FIELDS = {"name", "state", "client_order_ref", "partner_id", "picking_ids",
                     "invoice_ids", "currency_id", "origin", "order_line"}


class SellingDesk:
    """Needs the fake's tables and helpers (`_table`, `_new`, `_name`, `of`; see OdooFake)."""

    # Calls are served one at a time (hooks run outside, so a test can hold a caller
    # there); re-entrant, as the selling methods take it again.
    serial: ClassVar[threading.RLock] = threading.RLock()
    _desk_lock: ClassVar[threading.RLock] = serial

    # Provided by OdooFake.
    def _table(self, model: str) -> dict[int, dict[str, Any]]:
        raise NotImplementedError

    def _new(self, model: str, **values: Any) -> int:
        raise NotImplementedError

    def _name(self, prefix: str) -> str:
        raise NotImplementedError

    def of(self, model: str, **match: Any) -> list[dict[str, Any]]:
        raise NotImplementedError

    def replacement_orders(self, key: str) -> list[dict[str, Any]]:
        return self.of("sale.order", client_order_ref=key)

    # ---------------------------------------------------------------- sale.order

    def create_sale_order(self, values: dict[str, Any]) -> int:
        from tests.fakes.odoo import OdooError, user_error

        partner = values.get("partner_id")
        if partner not in self._table("res.partner"):
            raise OdooError("odoo.exceptions.ValidationError",
                            "Missing required fields on sale.order: Customer")
        lines = values.get("order_line") or []
        with self._desk_lock:
            order = self._new("sale.order", name=self._name("S"), state="draft",
                              client_order_ref=values.get("client_order_ref") or False,
                              origin=values.get("origin") or False, partner_id=partner,
                              picking_ids=[], invoice_ids=[],
                              currency_id=values.get("currency_id", 1), order_line=[])
            for command in lines:
                assert command[0] == 0, command
                line = dict(command[2])
                if line.get("product_id") not in self._table("product.product"):
                    raise user_error("You must choose a product on each order line.")
                if not line.get("product_uom_qty") or line["product_uom_qty"] <= 0:
                    raise user_error("The ordered quantity must be positive.")
                line_id = self._new("sale.order.line", order_id=order,
                                    product_id=line["product_id"],
                                    product_uom_qty=line["product_uom_qty"],
                                    price_unit=Decimal(str(line.get("price_unit", 0))))
                self._table("sale.order")[order]["order_line"].append(line_id)
        return order

    def confirm_sale_orders(self, ids: list[int], context: dict[str, Any]) -> bool:
        from tests.fakes.odoo import CUSTOMERS, DELIVERIES, STOCK, user_error

        with self._desk_lock:
            for order_id in ids:
                order = self._table("sale.order")[order_id]
                if order["state"] not in ("draft", "sent"):
                    raise user_error("Some orders are not in a state requiring confirmation.")
                order["state"] = "sale"
                picking = self._new(
                    "stock.picking", name=self._name("WH/OUT/"), origin=order["name"],
                    state="confirmed", picking_type_code="outgoing",
                    picking_type_id=DELIVERIES, location_id=STOCK, location_dest_id=CUSTOMERS,
                    return_id=False, move_ids=[], partner_id=order["partner_id"],
                    sale_id=order_id, date_done=False)
                order["picking_ids"].append(picking)
                assigned = True
                for line_id in order["order_line"]:
                    line = self._table("sale.order.line")[line_id]
                    move = self._new(
                        "stock.move", picking_id=picking, product_id=line["product_id"],
                        product_uom_qty=line["product_uom_qty"], quantity=0,
                        state="confirmed", location_id=STOCK, location_dest_id=CUSTOMERS,
                        origin_returned_move_id=False, move_line_ids=[], picked=False)
                    self._table("stock.picking")[picking]["move_ids"].append(move)
                    assigned = self._reserve(move) and assigned
                if assigned:
                    self._table("stock.picking")[picking]["state"] = "assigned"
        return True

    def assign_pickings(self, ids: list[int], context: dict[str, Any]) -> bool:
        """`stock.picking.action_assign` ("Check Availability"): reserve what is still
        missing of each waiting move."""
        with self._desk_lock:
            for picking_id in ids:
                picking = self._table("stock.picking")[picking_id]
                if picking["state"] not in ("confirmed", "waiting", "assigned"):
                    continue
                assigned = True
                for move_id in picking["move_ids"]:
                    move = self._table("stock.move")[move_id]
                    if move["state"] != "assigned":
                        assigned = self._reserve(move_id) and assigned
                if assigned:
                    picking["state"] = "assigned"
        return True

    def _reserve(self, move_id: int) -> bool:
        """Reserve the move from the quants at its source; whether all of it was."""
        move = self._table("stock.move")[move_id]
        wanted = Decimal(move["product_uom_qty"]) - Decimal(move["quantity"])
        for quant in self._table("stock.quant").values():
            if wanted <= 0:
                break
            if (quant["product_id"], quant["location_id"]) != (move["product_id"],
                                                               move["location_id"]):
                continue
            free = quant["quantity"] - self._reserved(quant)
            take = min(free, wanted)
            if take <= 0:
                continue
            line = self._new("stock.move.line", picking_id=move["picking_id"], move_id=move_id,
                             product_id=move["product_id"], lot_id=quant["lot_id"],
                             quantity=int(take), state="assigned",
                             location_id=move["location_id"],
                             location_dest_id=move["location_dest_id"], date=False,
                             quant_id=quant["id"])
            move["move_line_ids"].append(line)
            move["quantity"] += int(take)
            wanted -= take
        if wanted <= 0:
            move["state"] = "assigned"
            return True
        return False

    def _reserved(self, quant: dict[str, Any]) -> Decimal:
        return sum((Decimal(line["quantity"]) for line in self._table("stock.move.line").values()
                    if line["state"] == "assigned" and line.get("quant_id") == quant["id"]),
                   Decimal(0))
