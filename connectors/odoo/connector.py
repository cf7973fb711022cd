"""`OdooConnector`: shipped lots and serials, return pickings per disposition, and the
credit note, in Odoo 16–19 over JSON-RPC or /json/2; recall campaigns (consignees and
quarantine) are in `recalls.py`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import PositiveInt, SecretStr, field_validator, model_validator

from refundbridge.connectors.base import (
    ConnectorContext,
    ConnectorSettings,
    ErpConnector,
    http_address,
)
from refundbridge.connectors.odoo.client import OdooClient, build_transport
from refundbridge.connectors.odoo.exchanges import ReplacementFlows
from refundbridge.connectors.odoo.quality import count_shipped
from refundbridge.connectors.odoo.recalls import OdooRecalls
from refundbridge.connectors.odoo.transformers import (
    NAME,
    Action,
    Invoice,
    InvoiceLine,
    Locations,
    Lot,
    MoveLine,
    Picking,
    Product,
    ReturnLine,
    ReturnMove,
    SaleOrder,
    allocate_returns,
    case_marker,
    credit_note_commands,
    credited_quantities,
    group_returns,
    money,
    move_line_commands,
    only_record,
    parse,
    parse_rows,
    return_origin,
    reversal_reason,
    to_shipped_units,
    wizard_lines,
)
from refundbridge.core.errors import PermanentProviderError
from refundbridge.core.model import Disposition
from refundbridge.core.ports import (
    Capability,
    ConsigneePage,
    QuarantineOrder,
    QuarantineResult,
    RecallScope,
    ReturnBooking,
    ShippedQuantityQuery,
    ShippedUnit,
)

log = logging.getLogger(__name__)

OLDEST_SUPPORTED = 16  # `stock.lot`, product move lines with `display_type = product`

# Validating a return must not stop at a question meant for a person at a screen: there is
# no backorder to make (we set exact quantities), and an expired lot coming back is expected.
VALIDATE_CONTEXT = {"skip_backorder": True, "cancel_backorder": True, "skip_expired": True,
                    "skip_immediate": True, "skip_sms": True}

LocationRef = PositiveInt | str


class OdooSettings(ConnectorSettings):
    base_url: str
    database: str
    username: str | None = None  # the login; or give `uid` and skip `common.authenticate`
    uid: PositiveInt | None = None
    # The user's API key: the password in JSON-RPC, the bearer token in /json/2.
    api_key: SecretStr
    api: Literal["jsonrpc", "json2"] = "jsonrpc"
    # The major version (16–19); asked from the server when unset (/json/2 means 19+).
    version: int | None = None
    # The sale.order field holding the storefront's order id.
    order_field: Literal["client_order_ref", "name"] = "client_order_ref"
    # Destinations of returned goods: `stock.location` ids or complete names.
    stock_location: LocationRef = "WH/Stock"
    quarantine_location: LocationRef = "WH/Quarantine"
    scrap_location: LocationRef = "Virtual Locations/Scrap"
    return_to_manufacturer_location: LocationRef | None = None  # default: quarantine
    evidence_location: LocationRef | None = None  # default: quarantine
    credit_note_journal_id: PositiveInt | None = None  # default: the invoice's journal
    # The operation type of a recall's move to quarantine; default: the first internal one.
    quarantine_picking_type_id: PositiveInt | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_address(value, "server's http(s) address, e.g. https://odoo.example.com")

    @model_validator(mode="after")
    def _who(self) -> OdooSettings:
        if self.api == "jsonrpc" and self.username is None and self.uid is None:
            raise ValueError("JSON-RPC needs `username` (or the user's numeric `uid`)")
        return self


class OdooConnector(ReplacementFlows, ErpConnector[OdooClient]):  # exchanges.py
    name: ClassVar[str] = NAME
    Settings: ClassVar[type[ConnectorSettings]] = OdooSettings
    capabilities: ClassVar[frozenset[Capability]] = ErpConnector.capabilities | {
        Capability.CONSIGNEES, Capability.QUARANTINE, Capability.SHIPPED_QUANTITY,
        Capability.REPLACEMENT}

    settings: OdooSettings

    def __init__(self, settings: OdooSettings, ctx: ConnectorContext) -> None:
        super().__init__(settings, ctx)
        self._locations: Locations | None = None
        self._lot_fields: set[str] | None = None
        self._recall_flows: OdooRecalls | None = None

    def build_client(self) -> OdooClient:
        s = self.settings
        transport = build_transport(self.ctx, api=s.api, base_url=s.base_url,
                                    database=s.database, username=s.username, uid=s.uid,
                                    api_key=s.api_key)
        return OdooClient(transport, self.ctx)

    def _version(self) -> int:
        version = self.settings.version or self.client.major_version()
        if version < OLDEST_SUPPORTED:
            raise PermanentProviderError(NAME, f"Odoo {version} is not supported (16 or later)",
                                         code="unsupported_version")
        return version

    def _quantity_field(self) -> str:
        return "quantity" if self._version() >= 17 else "qty_done"

    # ---------------------------------------------------------------- ShipmentLookup
    def shipped_units(self, order_id: str) -> list[ShippedUnit]:
        order = self._order(order_id)
        lines = self._shipped_lines(order)
        return to_shipped_units(lines, self._products(lines), self._lots(lines))

    # ---------------------------------------------------------------- recalls
    def _recalls(self) -> OdooRecalls:
        if self._recall_flows is None:
            self._recall_flows = OdooRecalls(
                lambda: self.client, quantity_field=self._quantity_field,
                locations=self.locations, picking=self._picking,
                validate=self._button_validate, order_field=self.settings.order_field,
                picking_type_id=self.settings.quarantine_picking_type_id)
        return self._recall_flows

    def consignees(self, scope: RecallScope, cursor: str | None,
                   limit: int) -> ConsigneePage:
        return self._recalls().consignees(scope, cursor, limit)

    def quarantine_stock(self, order: QuarantineOrder) -> QuarantineResult:
        return self._recalls().quarantine_stock(order)

    def shipped_quantity(self, query: ShippedQuantityQuery) -> int:
        """Units of the product (and lot) delivered to customers in the range (quality.py)."""
        return count_shipped(self.client, self._quantity_field(), query)

    # ---------------------------------------------------------------- ErpGateway
    def book_return(self, booking: ReturnBooking) -> str:
        """Return pickings for goods that came back (one per shipped picking and destination),
        then the credit note; answers the credit note's name and the pickings'.

        Idempotent on the case: return pickings carry the case id in `origin` and the credit
        note in `ref`; what is found done is not booked again, what is found half done is
        finished.
        """
        order = self._order(booking.order_id)
        returned = [m for m in booking.moves if m.disposition is not Disposition.NOT_RETURNED]
        pickings = self._book_goods(booking, order) if returned else []
        credit_note = self._book_credit_note(booking, order)
        log.info("odoo: case %s booked as %s%s", booking.case_id, credit_note,
                 f" with returns {', '.join(pickings)}" if pickings else "")
        return f"{credit_note} ({', '.join(pickings)})" if pickings else credit_note

    # ---------------------------------------------------------------- reads
    def _order(self, order_id: str) -> SaleOrder:
        field = self.settings.order_field
        rows = parse_rows(SaleOrder, self.client.search_read(
            "sale.order", [[field, "=", order_id], ["state", "not in", ["draft", "sent",
                                                                          "cancel"]]],
            ["name", "picking_ids", "invoice_ids"], limit=2), "sale.order")
        return only_record(rows, f"no confirmed sale.order has {field} = {order_id!r}",
                           f"several sale orders have {field} = {order_id!r}",
                           "book this return", "order")

    def _shipped_lines(self, order: SaleOrder) -> list[MoveLine]:
        if not order.picking_ids:
            return []
        pickings = self.client.search_read(
            "stock.picking", [["id", "in", order.picking_ids],
                              ["picking_type_code", "=", "outgoing"], ["state", "=", "done"]],
            ["name"])
        ids = [row["id"] for row in pickings]
        if not ids:
            return []
        quantity = self._quantity_field()
        rows = self.client.search_read(
            "stock.move.line", [["picking_id", "in", ids], ["state", "=", "done"]],
            ["picking_id", "move_id", "product_id", "lot_id", quantity], order="id")
        return parse_rows(MoveLine, [{**row, "quantity": row.get(quantity)} for row in rows],
                          "stock.move.line")

    def _products(self, lines: Sequence[MoveLine]) -> dict[int, Product]:
        ids = sorted({line.product_id[0] for line in lines})
        rows = parse_rows(Product, self.client.read(
            "product.product", ids, ["default_code", "tracking", "barcode"]), "product.product")
        return {p.id: p for p in rows}

    def _lots(self, lines: Sequence[MoveLine]) -> dict[int, Lot]:
        ids = sorted({line.lot_id[0] for line in lines if line.lot_id})
        if not ids:
            return {}
        if self._lot_fields is None:
            self._lot_fields = self.client.field_names("stock.lot")
        # `expiration_date` comes with the product_expiry module, which not every shop has.
        fields = ["name"] + (["expiration_date"] if "expiration_date" in self._lot_fields
                             else [])
        rows = parse_rows(Lot, self.client.read("stock.lot", ids, fields), "stock.lot")
        return {lot.id: lot for lot in rows}

    def _location(self, ref: LocationRef) -> int:
        if isinstance(ref, int):
            return ref
        rows = self.client.search_read("stock.location", [["complete_name", "=", ref]],
                                       ["complete_name"], limit=2)
        if len(rows) != 1:
            raise PermanentProviderError(
                NAME, f"{len(rows) or 'no'} stock.location named {ref!r}; set its id in the "
                      "shop's odoo settings", code="location_not_found")
        return int(rows[0]["id"])

    def locations(self) -> Locations:
        if self._locations is None:
            s = self.settings
            locations = Locations(
                restock=self._location(s.stock_location),
                quarantine=self._location(s.quarantine_location),
                scrap=self._location(s.scrap_location),
                return_to_manufacturer=(self._location(s.return_to_manufacturer_location)
                                        if s.return_to_manufacturer_location else None),
                evidence=self._location(s.evidence_location) if s.evidence_location else None,
                connector=NAME,
            )
            for key, location in locations.holds().items():
                if location == locations.restock:
                    # Would put goods that nobody has cleared back on sale.
                    raise PermanentProviderError(
                        NAME, f"{key}_location is stock.location {location}, the same as "
                              "stock_location; set one nobody sells from",
                        code="location_sellable")
            self._locations = locations
        return self._locations

    # ---------------------------------------------------------------- goods
    def _book_goods(self, booking: ReturnBooking, order: SaleOrder) -> list[str]:
        shipped = self._shipped_lines(order)
        if not shipped:
            raise PermanentProviderError(
                NAME, f"{order.name} has no done delivery to return goods against",
                code="nothing_shipped")
        plan = allocate_returns(booking.moves, shipped, self._products(shipped),
                                self._lots(shipped), self.locations())
        earlier = self._returns_of_case(booking.case_id)
        names: list[str] = []
        for (source, location), lines in group_returns(plan).items():
            picking = next((p for p in earlier if p.state != "cancel"
                            and p.location_dest_id and p.location_dest_id[0] == location
                            and source[1] in (p.origin or "")), None)
            if picking is None:
                picking = self._create_return(source, location, lines, booking.case_id)
            if picking.state != "done":
                self._validate(picking, location, lines)
            names.append(picking.name)
        return names

    def _returns_of_case(self, case_id: str) -> list[Picking]:
        return parse_rows(Picking, self.client.search_read(
            "stock.picking", [["origin", "ilike", case_marker(case_id)],
                              ["picking_type_code", "=", "incoming"]],
            ["name", "state", "origin", "location_dest_id"], order="id"), "stock.picking")

    def _picking(self, picking_id: int) -> Picking:
        rows = self.client.read("stock.picking", [picking_id],
                                ["name", "state", "origin", "location_dest_id"])
        return parse_rows(Picking, rows, "stock.picking")[0]

    def _create_return(self, source: tuple[int, str], location: int,
                       lines: Sequence[ReturnLine], case_id: str) -> Picking:
        context = {"active_model": "stock.picking", "active_id": source[0],
                   "active_ids": [source[0]]}
        wizard = self.client.create("stock.return.picking", {
            "picking_id": source[0], "product_return_moves": wizard_lines(lines)}, context)
        method = "action_create_returns" if self._version() >= 18 else "create_returns"

        def untagged_return() -> int | None:
            # The return is created in one transaction and tagged with the case in the next:
            # an untagged, open return of this delivery after a failed call is that one.
            rows = self.client.search_read(
                "stock.picking", [["origin", "=", f"Return of {source[1]}"],
                                  ["picking_type_code", "=", "incoming"],
                                  ["state", "not in", ["done", "cancel"]]],
                ["name"], limit=1, order="id desc")
            return int(rows[0]["id"]) if rows else None

        picking_id = self.client.button(
            "stock.return.picking", [wizard], method, context, find_existing=untagged_return,
            result=lambda answer: self._opened_record(answer, f"stock.return.picking.{method}"))
        self.client.write("stock.picking", [picking_id], {
            "origin": return_origin(source[1], case_id), "location_dest_id": location})
        return self._picking(picking_id)

    def _validate(self, picking: Picking, location: int, lines: Sequence[ReturnLine]) -> None:
        quantity = self._quantity_field()
        moves = parse_rows(ReturnMove, self.client.search_read(
            "stock.move", [["picking_id", "=", picking.id]],
            ["product_id", "origin_returned_move_id", "location_id", "move_line_ids"]),
            "stock.move")
        for move in moves:
            self.client.write("stock.move", [move.id],
                              self._move_values(move, lines, location, picking.id, quantity))

        self._button_validate(picking, "retry the case")

    def _button_validate(self, picking: Picking, then: str) -> None:
        def already_done() -> bool | None:
            return True if self._picking(picking.id).state == "done" else None

        def validated(answer: Any) -> bool:
            if isinstance(answer, Mapping):
                wizard = answer.get("res_model") or "a wizard"
                raise PermanentProviderError(
                    NAME, f"validating {picking.name} asks a person ({wizard}); finish it in "
                          f"Odoo, then {then}", code="validation_needs_person")
            return True

        self.client.button("stock.picking", [picking.id], "button_validate",
                           VALIDATE_CONTEXT, find_existing=already_done, result=validated)

    def _move_values(self, move: ReturnMove, lines: Sequence[ReturnLine], location: int,
                     picking_id: int, quantity: str) -> Callable[[], dict[str, Any]]:
        attempts = 0

        def values() -> dict[str, Any]:
            nonlocal attempts
            attempts += 1
            current = move
            if attempts > 1:  # the lines an earlier attempt deleted may be gone
                current = parse_rows(ReturnMove, self.client.read(
                    "stock.move", [move.id], ["product_id", "origin_returned_move_id",
                                              "location_id", "move_line_ids"]), "stock.move")[0]
            result: dict[str, Any] = {
                "location_dest_id": location,
                "move_line_ids": move_line_commands(current, lines, location, picking_id,
                                                   quantity),
            }
            if quantity == "quantity":
                result["picked"] = True  # Odoo 17+ validates only picked moves
            return result

        return values

    @staticmethod
    def _opened_record(answer: Any, what: str) -> int:
        action = parse(Action, answer, what)
        if action.res_id is None:
            raise PermanentProviderError(NAME, f"{what} opened no single record",
                                         code="invalid_response")
        return action.res_id

    # ---------------------------------------------------------------- credit note
    def _credit_notes_of_case(self, case_id: str) -> list[Invoice]:
        return parse_rows(Invoice, self.client.search_read(
            "account.move", [["move_type", "=", "out_refund"],
                             ["ref", "ilike", case_marker(case_id)], ["state", "!=", "cancel"]],
            ["name", "state", "currency_id", "amount_total", "ref"], order="id"),
            "account.move")

    def _invoice(self, order: SaleOrder) -> Invoice:
        rows = parse_rows(Invoice, self.client.search_read(
            "account.move", [["id", "in", order.invoice_ids], ["move_type", "=", "out_invoice"],
                             ["state", "=", "posted"]],
            ["name", "state", "currency_id", "amount_total", "ref"]), "account.move")
        return only_record(rows, f"{order.name} has no posted customer invoice",
                           f"{order.name} has {len(rows)} posted invoices",
                           "book this refund", "invoice")

    def _book_credit_note(self, booking: ReturnBooking, order: SaleOrder) -> str:
        found = self._credit_notes_of_case(booking.case_id)
        if len(found) > 1:
            log.warning("odoo: case %s has %d credit notes (%s); answering the first",
                        booking.case_id, len(found), ", ".join(n.name for n in found))
        if found and found[0].state == "posted":
            return found[0].name
        if found:
            credit_note = found[0]  # a draft an earlier run left: finish it
            where = credit_note.ref or credit_note.name
        else:
            invoice = self._invoice(order)
            if invoice.currency_id[1] != booking.amount.currency:
                raise PermanentProviderError(
                    NAME, f"{invoice.name} is in {invoice.currency_id[1]}, the refund in "
                          f"{booking.amount.currency}", code="currency_mismatch")
            credit_note = self._reverse(invoice, booking)
            where = invoice.name
        self._fit_amount(credit_note, booking, where)
        self.client.button(
            "account.move", [credit_note.id], "action_post", None,
            find_existing=lambda: True if self._move(credit_note.id).state == "posted" else None,
            result=lambda _: True)
        return self._move(credit_note.id).name

    def _move(self, move_id: int) -> Invoice:
        rows = self.client.read("account.move", [move_id],
                                ["name", "state", "currency_id", "amount_total", "ref"])
        return parse_rows(Invoice, rows, "account.move")[0]

    def _reverse(self, invoice: Invoice, booking: ReturnBooking) -> Invoice:
        version = self._version()
        context = {"active_model": "account.move", "active_ids": [invoice.id]}
        values: dict[str, Any] = {
            "move_ids": [[6, 0, [invoice.id]]],
            "reason": reversal_reason(booking.case_id, booking.request.reason.code.value),
        }
        if self.settings.credit_note_journal_id is not None:
            values["journal_id"] = self.settings.credit_note_journal_id
        if version < 17:
            values["refund_method"] = "refund"  # a draft credit note, not a cancellation
        wizard = self.client.create("account.move.reversal", values, context)
        method = "refund_moves" if version >= 17 else "reverse_moves"

        def earlier() -> int | None:
            found = self._credit_notes_of_case(booking.case_id)
            return found[0].id if found else None

        credit_note_id = self.client.button(
            "account.move.reversal", [wizard], method, context, find_existing=earlier,
            result=lambda answer: self._opened_record(answer, f"account.move.reversal.{method}"))
        return self._move(credit_note_id)

    def _fit_amount(self, credit_note: Invoice, booking: ReturnBooking, where: str) -> None:
        """Make the draft credit note credit exactly the refunded amount (see
        `credit_note_commands`); a note that cannot be made to fit stays a draft."""
        commands = self._fit_commands(credit_note.id, booking, where)
        if commands is None:
            return
        first = True

        def values() -> dict[str, Any] | None:
            nonlocal first
            if first:
                first = False
                return commands
            # An attempt that failed after Odoo committed may have fitted the lines already:
            # work the commands out again from what is there now.
            return self._fit_commands(credit_note.id, booking, where)

        self.client.write("account.move", [credit_note.id], values)
        fitted = money(self._move(credit_note.id).amount_total, credit_note.currency_id[1])
        if fitted != booking.amount:
            raise PermanentProviderError(
                NAME, f"the draft credit note for {where} credits {fitted} after adjusting its "
                      f"lines, the refund is {booking.amount}; correct and post it in Odoo, "
                      "then retry the case", code="credit_note_amount")

    def _fit_commands(self, credit_note_id: int, booking: ReturnBooking, where: str
                      ) -> dict[str, Any] | None:
        note = self._move(credit_note_id)
        total = money(note.amount_total, note.currency_id[1])
        lines = parse_rows(InvoiceLine, self.client.search_read(
            "account.move.line", [["move_id", "=", credit_note_id],
                                  ["display_type", "=", "product"]],
            ["product_id", "quantity", "price_unit", "price_total"], order="id"),
            "account.move.line")
        product_ids = sorted({line.product_id[0] for line in lines if line.product_id})
        skus = {p.id: p.default_code for p in parse_rows(Product, self.client.read(
            "product.product", product_ids, ["default_code"]), "product.product")
            if p.default_code}
        wanted = credited_quantities(
            booking.moves, ((line.sku, line.quantity) for line in booking.request.lines))
        commands = credit_note_commands(lines, skus, wanted, booking.amount, total, where)
        return None if commands is None else {"invoice_line_ids": commands}

