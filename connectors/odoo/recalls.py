"""Recall campaigns in Odoo: who received the recalled units (`erp.consignees`), and one
internal transfer of the stock on hand into quarantine (`erp.quarantine`).

Consignees are the partners of done customer deliveries (`stock.move.line`s of an outgoing
picking into a customer location, so returns and vendor returns are left out), walked by
move line id. Quarantine moves every covered `stock.quant` in an internal location that is
not one of the connector's holds; the transfer's `origin` is the order's idempotency key,
looked for before anything is made.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from refundbridge.connectors.odoo.client import OdooClient
from refundbridge.connectors.odoo.recall_transformers import (
    ConsignedLine,
    Delivery,
    OrderRef,
    Partner,
    PickingType,
    Quant,
    TransferLine,
    TransferMove,
    after_line,
    barcode_forms,
    consignee_cursor,
    quarantined_units,
    recalled_names,
    to_consignees,
    transfer_line_commands,
    whole_units,
)
from refundbridge.connectors.odoo.transformers import (
    NAME,
    Locations,
    Lot,
    Picking,
    Product,
    parse_rows,
)
from refundbridge.core.errors import InvalidRequest, PermanentProviderError
from refundbridge.core.ports import (
    ConsigneePage,
    QuarantineOrder,
    QuarantineResult,
    RecallScope,
)

log = logging.getLogger(__name__)


class OdooRecalls:
    """The recall flows of one `OdooConnector`, which hands over what they share with its
    returns: the client, the version's quantity field, the locations, and validation."""

    def __init__(self, client: Callable[[], OdooClient], *, quantity_field: Callable[[], str],
                 locations: Callable[[], Locations], picking: Callable[[int], Picking],
                 validate: Callable[[Picking, str], None], order_field: str,
                 picking_type_id: int | None) -> None:
        self._get_client = client
        self._quantity_field = quantity_field
        self.locations = locations
        self._picking = picking
        self._button_validate = validate
        self._order_field = order_field
        self._picking_type_id = picking_type_id
        self._partner_fields: set[str] | None = None

    @property
    def client(self) -> OdooClient:
        return self._get_client()

    def consignees(self, scope: RecallScope, cursor: str | None,
                   limit: int) -> ConsigneePage:
        """Partners of done customer deliveries of covered units, `limit` move lines a page,
        walked by move line id (a keyset: a line booked meanwhile neither shifts nor repeats
        a page, as an offset would)."""
        if limit < 1:
            raise InvalidRequest("limit", "must be at least 1")
        start = after_line(cursor)
        product = self._recalled_product(scope)
        names = recalled_names(scope)
        lots = self._lots_named(product.id, names) if names else {}
        if names and not lots:
            return ConsigneePage(consignees=(), cursor=None)
        quantity = self._quantity_field()
        domain: list[list[Any]] = [
            ["product_id", "=", product.id], ["state", "=", "done"],
            ["picking_code", "=", "outgoing"],
            # An outgoing type also sends goods back to a vendor: only a customer received.
            ["location_dest_id.usage", "=", "customer"],
            ["id", ">", start],
        ]
        if names:
            domain.append(["lot_id", "in", sorted(lots)])
        rows = self.client.search_read(
            "stock.move.line", domain, ["picking_id", "product_id", "lot_id", quantity, "date"],
            limit=limit + 1, order="id")
        lines = parse_rows(ConsignedLine, _with_quantity(rows, quantity), "stock.move.line")
        if any(line.id <= start for line in lines) or [ln.id for ln in lines] != sorted(
                {ln.id for ln in lines}):
            # A keyset walk on an answer out of order would lose or repeat lines.
            raise PermanentProviderError(NAME, "stock.move.line answered lines out of id "
                                               "order", code="invalid_response")
        page, more = lines[:limit], len(lines) > limit
        for line in page:  # before any further call: a unit count is wrong, not missing
            whole_units(line.quantity, f"move line {line.id} shipped")
        if not page:
            return ConsigneePage(consignees=(), cursor=None)
        if not names:
            lots = self._lot_names(sorted({ln.lot_id[0] for ln in page if ln.lot_id}))
        deliveries = {d.id: d for d in parse_rows(Delivery, self.client.read(
            "stock.picking", sorted({ln.picking_id[0] for ln in page}),
            ["name", "origin", "partner_id", "sale_id"]), "stock.picking")}
        missing = {ln.picking_id[0] for ln in page} - set(deliveries)
        if missing:
            raise PermanentProviderError(NAME, f"stock.picking.read left out {sorted(missing)}",
                                         code="invalid_response")
        consignees = to_consignees(page, product, deliveries, self._partners(deliveries),
                                   self._storefront_orders(deliveries), lots)
        return ConsigneePage(consignees=consignees,
                             cursor=consignee_cursor(page[-1].id) if more else None)

    # ---------------------------------------------------------------- StockQuarantine
    def quarantine_stock(self, order: QuarantineOrder) -> QuarantineResult:
        """One internal transfer, `origin` = the order's key, of every covered unit in an
        internal location that is not a hold (quarantine, evidence, return to manufacturer)
        into quarantine, validated. A transfer found by its key is returned (or finished)."""
        key = order.idempotency_key.strip()
        if not key:
            raise InvalidRequest("idempotency_key", "is empty")
        product = self._recalled_product(order.scope)
        found = self._quarantine_transfer(key)
        if found is not None and found.state == "done":
            return self._quarantined(found, product)
        locations = self.locations()
        names = recalled_names(order.scope)
        lots = self._lots_named(product.id, names) if names else {}
        quants = [] if names and not lots else self._quants_on_hand(
            product, sorted(lots) if names else None, sorted(set(locations.holds().values())))
        if found is None:
            if not quants:
                log.info("odoo: recall %s: nothing of %s on hand to quarantine",
                         order.reference, product.default_code)
                return QuarantineResult(document="")
            found = self._picking(self._create_transfer(order, product, quants,
                                                        locations.quarantine))
        if found.state == "draft":
            picking = found
            self.client.button("stock.picking", [picking.id], "action_confirm", None,
                               find_existing=lambda: True if self._picking(
                                   picking.id).state != "draft" else None,
                               result=lambda _: True)
        self._fill_transfer(found, quants, locations.quarantine)
        self._button_validate(found, "retry the recall's quarantine")
        done = self._picking(found.id)
        log.info("odoo: recall %s: stock of %s quarantined by %s", order.reference,
                 product.default_code, done.name)
        return self._quarantined(done, product)

    # ---------------------------------------------------------------- recall reads
    def _recalled_product(self, scope: RecallScope) -> Product:
        if scope.sku:
            domain: list[list[Any]] = [["default_code", "=", scope.sku]]
            what = f"default_code {scope.sku!r}"
        elif scope.gtin:
            domain = [["barcode", "in", barcode_forms(scope.gtin)]]
            what = f"barcode {scope.gtin!r}"
        else:
            raise InvalidRequest("scope", "names neither a sku nor a gtin")
        # A recalled product is often one the shop no longer sells: archived ones count.
        rows = parse_rows(Product, self.client.search_read(
            "product.product", [*domain, ["active", "in", [True, False]]],
            ["default_code", "tracking", "barcode", "uom_id"], limit=2), "product.product")
        if not rows:
            raise PermanentProviderError(NAME, f"no product.product has {what}",
                                         code="product_not_found")
        if len(rows) > 1:
            raise PermanentProviderError(
                NAME, f"several products have {what} (ids {', '.join(str(r.id) for r in rows)})"
                      "; recall them by sku", code="product_ambiguous")
        return rows[0]

    def _lots_named(self, product_id: int, names: Sequence[str]) -> dict[int, str]:
        rows = parse_rows(Lot, self.client.search_read(
            "stock.lot", [["product_id", "=", product_id], ["name", "in", list(names)]],
            ["name"], order="id"), "stock.lot")
        return {lot.id: lot.name for lot in rows if lot.name in names}

    def _lot_names(self, ids: Sequence[int]) -> dict[int, str]:
        rows = parse_rows(Lot, self.client.read("stock.lot", ids, ["name"]), "stock.lot")
        return {lot.id: lot.name for lot in rows}

    def _partners(self, deliveries: Mapping[int, Delivery]) -> dict[int, Partner]:
        if self._partner_fields is None:
            self._partner_fields = self.client.field_names("res.partner")
        fields = ["name", "email", "phone", "lang", "commercial_partner_id"] + (
            ["mobile"] if "mobile" in self._partner_fields else [])
        ids = sorted({d.partner_id[0] for d in deliveries.values() if d.partner_id})
        partners = {p.id: p for p in parse_rows(
            Partner, self.client.read("res.partner", ids, fields), "res.partner")}
        if set(ids) - set(partners):
            raise PermanentProviderError(
                NAME, f"res.partner.read left out {sorted(set(ids) - set(partners))}",
                code="invalid_response")
        companies = sorted({p.commercial_partner_id[0] for p in partners.values()
                            if p.commercial_partner_id} - set(partners))
        partners.update({p.id: p for p in parse_rows(
            Partner, self.client.read("res.partner", companies, fields), "res.partner")})
        return partners

    def _storefront_orders(self, deliveries: Mapping[int, Delivery]) -> dict[int, str]:
        """The storefront's order id of each delivery, as `shipped_units` finds the order:
        the sale order's `order_field`; a delivery made without a sale order has its origin
        when that field is the order's name."""
        field = self._order_field
        sale_ids = sorted({d.sale_id[0] for d in deliveries.values() if d.sale_id})
        orders = {o.id: o for o in parse_rows(OrderRef, self.client.read(
            "sale.order", sale_ids, ["name", "client_order_ref"]), "sale.order")}
        result: dict[int, str] = {}
        for delivery in deliveries.values():
            order = orders.get(delivery.sale_id[0]) if delivery.sale_id else None
            value = (order.name if field == "name" else order.client_order_ref) if order \
                else (delivery.origin if field == "name" else None)
            if value:
                result[delivery.id] = value
        return result

    def _quants_on_hand(self, product: Product, lot_ids: Sequence[int] | None,
                        held: Sequence[int]) -> list[Quant]:
        domain: list[list[Any]] = [
            ["product_id", "=", product.id], ["location_id.usage", "=", "internal"],
            ["location_id", "not in", list(held)], ["quantity", ">", 0]]
        if lot_ids is not None:
            domain.append(["lot_id", "in", list(lot_ids)])
        quants = parse_rows(Quant, self.client.search_read(
            "stock.quant", domain, ["product_id", "location_id", "lot_id", "package_id",
                                    "quantity"], order="id"), "stock.quant")
        for quant in quants:
            if quant.product_id[0] != product.id or quant.location_id[0] in held \
                    or quant.quantity <= 0:
                raise PermanentProviderError(
                    NAME, f"stock.quant {quant.id} is not what was asked for",
                    code="invalid_response")
            whole_units(quant.quantity, f"stock.quant {quant.id} ({quant.location_id[1]})")
        return quants

    def _quarantine_transfer(self, key: str) -> Picking | None:
        found = parse_rows(Picking, self.client.search_read(
            "stock.picking", [["origin", "=", key], ["picking_type_code", "=", "internal"],
                              ["state", "!=", "cancel"]],
            ["name", "state", "origin", "location_dest_id"], order="id"), "stock.picking")
        if len(found) > 1:
            log.warning("odoo: %d transfers have origin %s (%s); answering the first",
                        len(found), key, ", ".join(p.name for p in found))
        return found[0] if found else None

    def _picking_type(self) -> int:
        if self._picking_type_id is not None:
            return self._picking_type_id
        rows = parse_rows(PickingType, self.client.search_read(
            "stock.picking.type", [["code", "=", "internal"]], ["name"], limit=1, order="id"),
            "stock.picking.type")
        if not rows:
            raise PermanentProviderError(
                NAME, "no internal operation type to move stock to quarantine with; set "
                      "quarantine_picking_type_id", code="picking_type_not_found")
        return rows[0].id

    def _create_transfer(self, order: QuarantineOrder, product: Product,
                         quants: Sequence[Quant], destination: int) -> int:
        per_location: dict[int, int] = {}
        for quant in quants:
            location = quant.location_id[0]
            per_location[location] = per_location.get(location, 0) + int(quant.quantity)
        sku = product.default_code or f"product.product {product.id}"
        moves = []
        for location, quantity in per_location.items():
            move: dict[str, Any] = {
                "name": f"{order.reference}: {sku}", "product_id": product.id,
                "product_uom_qty": quantity, "location_id": location,
                "location_dest_id": destination}
            if product.uom_id is not None:
                move["product_uom"] = product.uom_id[0]
            moves.append([0, 0, move])
        values = {
            "picking_type_id": self._picking_type(), "origin": order.idempotency_key.strip(),
            "location_id": quants[0].location_id[0], "location_dest_id": destination,
            "note": f"Recall {order.reference}: the recalled stock on hand, quarantined",
            "move_ids": moves,
        }

        def earlier() -> int | None:
            found = self._quarantine_transfer(order.idempotency_key.strip())
            return found.id if found else None

        return self.client.create_once("stock.picking", values, find_existing=earlier)

    def _fill_transfer(self, picking: Picking, quants: Sequence[Quant],
                       destination: int) -> None:
        moves = parse_rows(TransferMove, self.client.search_read(
            "stock.move", [["picking_id", "=", picking.id]], ["location_id", "move_line_ids"],
            order="id"), "stock.move")
        for move in moves:
            taken = [q for q in quants if q.location_id[0] == move.location_id[0]]
            if not taken:
                raise PermanentProviderError(
                    NAME, f"{picking.name} moves {move.location_id[1]}, which holds none of "
                          "the recalled stock any more; cancel it in Odoo, then retry",
                    code="quarantine_stale")
            self.client.write("stock.move", [move.id],
                              self._transfer_values(move, taken, destination, picking.id))

    def _transfer_values(self, move: TransferMove, taken: Sequence[Quant], destination: int,
                         picking_id: int) -> Callable[[], dict[str, Any]]:
        quantity = self._quantity_field()
        attempts = 0

        def values() -> dict[str, Any]:
            nonlocal attempts
            attempts += 1
            current = move
            if attempts > 1:  # an attempt that failed may have deleted the lines already
                current = parse_rows(TransferMove, self.client.read(
                    "stock.move", [move.id], ["location_id", "move_line_ids"]), "stock.move")[0]
            result: dict[str, Any] = {
                "product_uom_qty": sum(int(q.quantity) for q in taken),
                "move_line_ids": transfer_line_commands(current.move_line_ids, taken,
                                                        destination, picking_id, quantity)}
            if quantity == "quantity":
                result["picked"] = True  # Odoo 17+ validates only picked moves
            return result

        return values

    def _quarantined(self, picking: Picking, product: Product) -> QuarantineResult:
        quantity = self._quantity_field()
        rows = self.client.search_read(
            "stock.move.line", [["picking_id", "=", picking.id]],
            ["location_id", "lot_id", quantity], order="id")
        lines = parse_rows(TransferLine, _with_quantity(rows, quantity), "stock.move.line")
        lots = self._lot_names(sorted({ln.lot_id[0] for ln in lines if ln.lot_id}))
        return QuarantineResult(document=picking.name,
                                units=quarantined_units(lines, product, lots))


def _with_quantity(rows: Sequence[Any], field: str) -> list[Any]:
    """Rows with the version's quantity field (`quantity` or `qty_done`) as `quantity`; a
    row that is not a record is left for the wire model to refuse."""
    return [{**row, "quantity": row.get(field)} if isinstance(row, Mapping) else row
            for row in rows]
