"""`ERPNextConnector`: what an order shipped, and a case's refund booked as returns in ERPNext."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial
from typing import ClassVar

from pydantic import SecretStr, field_validator

from refundbridge.connectors.base import (
    ConnectorContext,
    ConnectorSettings,
    ErpConnector,
    http_address,
)
from refundbridge.connectors.erpnext.client import ERPNextClient
from refundbridge.connectors.erpnext.exchanges import ERPNextReplacements, ReplacementSettings
from refundbridge.connectors.erpnext.quality import count_shipped
from refundbridge.connectors.erpnext.recalls import (
    BIN,
    CUSTOMER,
    GET_BATCH_QTY,
    ITEM,
    SERIAL_NO,
    STOCK_ENTRY,
    WAREHOUSE,
    BatchQtyResult,
    BinList,
    CustomerList,
    ItemList,
    ItemRow,
    SerialList,
    ShipmentList,
    StockEntryDoc,
    StockEntryResult,
    WalkCursor,
    WarehouseResult,
    carries_key,
    covered,
    item_by_gtin_filter,
    on_hand_units,
    product_of,
    quarantine_filter,
    quarantine_remarks,
    shipment_fields,
    shipment_order,
    shipment_rows_filter,
    to_consignees,
    to_quarantined_units,
    transfer_entry,
)
from refundbridge.connectors.erpnext.returns import (
    Warehouses,
    credit_note,
    delivery_return,
    returned_moves,
    still_to_return,
)
from refundbridge.connectors.erpnext.transformers import (
    BATCH,
    BUNDLE,
    DELIVERY_NOTE,
    NAME,
    SALES_INVOICE,
    SALES_ORDER,
    BatchList,
    Bundle,
    BundleResult,
    InvoiceList,
    ListResult,
    ReturnedDocResult,
    ReturnList,
    ReturnRow,
    StockDocResult,
    StockDocument,
    batches_of,
    delivery_return_filter,
    order_filter,
    original_invoice_filter,
    return_filter,
    shipment_filter,
    to_shipped_units,
)
from refundbridge.core.errors import ConfigError, InvalidRequest, PermanentProviderError
from refundbridge.core.model import StockMove
from refundbridge.core.ports import (
    Capability,
    ConsigneePage,
    QuarantinedUnits,
    QuarantineOrder,
    QuarantineResult,
    RecallScope,
    ReplacementOrder,
    ReplacementResult,
    ReturnBooking,
    ShippedQuantityQuery,
    ShippedUnit,
)

log = logging.getLogger(__name__)


class ERPNextSettings(ConnectorSettings, ReplacementSettings):
    base_url: str
    api_key: SecretStr
    api_secret: SecretStr
    # The field that holds the storefront's order id on Sales Invoices, Delivery Notes and
    # Sales Orders ("Customer's Purchase Order" by default; many shops add a custom field
    # instead, which ERPNext's mapping copies from one document to the next).
    order_field: str = "po_no"
    restock_warehouse: str = "Stores - RB"
    quarantine_warehouse: str = "Quarantine - RB"
    scrap_warehouse: str = "Scrap - RB"
    # Both default to the quarantine warehouse: neither may be sold from.
    return_to_manufacturer_warehouse: str | None = None
    evidence_warehouse: str | None = None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_address(value, "site's http(s) address, e.g. https://erp.example.com")

    @field_validator("return_to_manufacturer_warehouse", "evidence_warehouse")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value or None

    def warehouses(self) -> Warehouses:
        return Warehouses(
            restock=self.restock_warehouse,
            quarantine=self.quarantine_warehouse,
            scrap=self.scrap_warehouse,
            return_to_manufacturer=self.return_to_manufacturer_warehouse,
            evidence=self.evidence_warehouse,
            connector=NAME,
        )


class ERPNextConnector(ErpConnector[ERPNextClient]):
    name: ClassVar[str] = NAME
    Settings: ClassVar[type[ConnectorSettings]] = ERPNextSettings
    capabilities: ClassVar[frozenset[Capability]] = ErpConnector.capabilities | {
        Capability.CONSIGNEES, Capability.QUARANTINE, Capability.SHIPPED_QUANTITY,
        Capability.REPLACEMENT}

    settings: ERPNextSettings

    def __init__(self, settings: ERPNextSettings, ctx: ConnectorContext) -> None:
        super().__init__(settings, ctx)
        self._warehouses = settings.warehouses()
        for key, warehouse in self._warehouses.holds().items():
            if warehouse == self._warehouses.restock:
                # Would put goods that nobody has cleared back on sale.
                raise ConfigError(f"shops.{ctx.shop_id}.{NAME}.{key}_warehouse",
                                  "must not be the restock warehouse")

    def build_client(self) -> ERPNextClient:
        s = self.settings
        return ERPNextClient(s.base_url, s.api_key, s.api_secret, self.ctx)

    # ---------------------------------------------------------------- exchanges (exchanges.py)

    def create_replacement(self, order: ReplacementOrder) -> ReplacementResult:
        return self._replacements().create(order)

    def find_replacement(self, order: ReplacementOrder) -> ReplacementResult | None:
        return self._replacements().find(order)

    def _replacements(self) -> ERPNextReplacements:
        s = self.settings
        return ERPNextReplacements(
            lambda: self.client, order_field=s.order_field, key_field=s.replacement_key_field,
            warehouse=s.replacement_warehouse or s.restock_warehouse,
            today=lambda: self.ctx.clock().date())

    # ---------------------------------------------------------------- shipped units

    def shipped_units(self, order_id: str) -> list[ShippedUnit]:
        """Every unit that left for the order: the items of its submitted Delivery Notes and
        of its stock-updating Sales Invoices, per batch (with its expiry) or serial."""
        field = self.settings.order_field
        wanted = shipment_filter(field, order_id)
        notes = self.client.list_rows(ListResult, DELIVERY_NOTE, wanted).data
        invoices = self.client.list_rows(InvoiceList, SALES_INVOICE, wanted,
                                         ("name", "update_stock")).data
        if not notes and not invoices:
            orders = self.client.list_rows(ListResult, SALES_ORDER,
                                           order_filter(field, order_id)).data
            if not orders:
                raise PermanentProviderError(
                    NAME, f"ERPNext knows no order {order_id}: no submitted Sales Order, "
                          f"Delivery Note or Sales Invoice has {field} = {order_id!r}",
                    code="order_not_found")
            return []  # ordered, not shipped yet
        docs = [self._stock_doc(DELIVERY_NOTE, n.name) for n in notes]
        # An invoice that did not update stock shipped nothing itself: its goods left on a
        # Delivery Note, counted above.
        docs += [self._stock_doc(SALES_INVOICE, i.name) for i in invoices if i.update_stock]
        return self._units(docs)

    def _stock_doc(self, doctype: str, name: str) -> StockDocument:
        return self.client.get(StockDocResult, doctype, name).data

    def _units(self, docs: list[StockDocument]) -> list[ShippedUnit]:
        items = [item for doc in docs for item in doc.items]
        bundles = self._bundles(i.serial_and_batch_bundle for i in items)
        batches = batches_of(items, bundles)
        expiries = {}
        if batches:
            # One request for all of them: each batch is read once, however many rows name it.
            rows = self.client.list_rows(BatchList, BATCH, [["name", "in", batches]],
                                         ("name", "expiry_date")).data
            expiries = {row.name: row.expiry_date for row in rows}
        return to_shipped_units(docs, bundles, expiries)

    def _bundles(self, names: Iterable[str | None]) -> dict[str, Bundle]:
        # Each bundle is read once, however many rows name it.
        return {name: self.client.get(BundleResult, BUNDLE, name).data
                for name in dict.fromkeys(names) if name}

    # ---------------------------------------------------------------- quality signals

    def shipped_quantity(self, query: ShippedQuantityQuery) -> int:
        """Units of the Item (and lot) shipped in the range (quality.py)."""
        item = self._item(RecallScope(sku=query.sku)).name
        return count_shipped(self.client, item, self.settings.order_field, self._bundles,
                             query)

    # ---------------------------------------------------------------- recalls

    def consignees(self, scope: RecallScope, cursor: str | None,
                   limit: int) -> ConsigneePage:
        """Customers who received covered units, from the rows of submitted Delivery Notes
        and then of stock-updating Sales Invoices (an invoice that did not update stock
        shipped its goods on a Delivery Note), `limit` rows a page.

        Rows are listed through the document's list with the child table joined in (Frappe
        refuses to list a child DocType by itself) and paged by the child row's name: the
        cursor keeps the last row answered, so nothing cancelled or submitted meanwhile
        makes the walk skip a row. A lot whose rows went out through Serial and Batch
        Bundles is not on the row itself, so rows are chosen by item and their lots checked
        here; a page may then hold fewer consignees than rows.
        """
        if limit < 1:
            raise InvalidRequest("limit", "must be at least 1")
        if cursor is None:
            position = WalkCursor(DELIVERY_NOTE, product_of(scope), self._item(scope).name)
        else:
            position = WalkCursor.decode(cursor, scope)
        doctype = position.doctype
        rows = list(self.client.list_page(
            ShipmentList, doctype, shipment_rows_filter(doctype, position.item, position.after),
            shipment_fields(doctype, self.settings.order_field), shipment_order(doctype),
            limit).data)
        bundles = self._bundles(r.serial_and_batch_bundle for r in rows)
        names = list(dict.fromkeys(r.customer for r in rows))
        customers = {}
        if names:
            customers = {c.name: c for c in self.client.list_rows(
                CustomerList, CUSTOMER, [["name", "in", names]],
                ("name", "customer_name", "email_id", "mobile_no", "language")).data}
        following = position.next(rows, limit)
        return ConsigneePage(
            consignees=to_consignees(doctype, rows, bundles, customers, scope),
            cursor=following.encode() if following is not None else None)

    def _item(self, scope: RecallScope) -> ItemRow:
        """The recalled Item, by its code or, without one, by its barcode."""
        fields = ("name", "has_batch_no", "has_serial_no")
        wanted = product_of(scope)
        if scope.sku is not None:
            # The SKU is the Item Code; documents link the Item by its name, which is the
            # code unless the site names Items by a series.
            filters = [["item_code", "=", scope.sku]]
        elif scope.gtin:
            filters = item_by_gtin_filter(scope.gtin)
        else:
            raise InvalidRequest("scope", "names neither a SKU nor a GTIN")
        # A barcode filter joins the Item Barcode rows: an item with two forms of the same
        # GTIN comes back twice.
        found = {row.name: row for row in self.client.list_rows(ItemList, ITEM, filters,
                                                                fields).data}
        if not found:
            raise PermanentProviderError(NAME, f"ERPNext knows no Item {wanted}",
                                         code="item_not_found")
        if len(found) > 1:
            raise PermanentProviderError(
                NAME, f"{wanted} is the barcode of {len(found)} Items ({', '.join(found)}); "
                      "recall by SKU", code="item_ambiguous")
        return next(iter(found.values()))

    def quarantine_stock(self, order: QuarantineOrder) -> QuarantineResult:
        """Move every covered unit on hand outside the hold warehouses into the quarantine
        warehouse, with one submitted Material Transfer whose remarks carry the order's key.
        A Stock Entry found by the key is answered instead; nothing on hand moves nothing."""
        key = order.idempotency_key
        existing = self._find_quarantine(key)
        if existing is not None:
            return QuarantineResult(existing.name, to_quarantined_units(existing))
        item = self._item(order.scope)
        units = self._on_hand(item, order.scope)
        if not units:
            return QuarantineResult(document="")
        target = self._warehouses.quarantine
        company = self.client.get(WarehouseResult, WAREHOUSE, target).data.company
        doc = transfer_entry(company, units, target, quarantine_remarks(order.reference, key))

        def find_existing() -> str | None:
            found = self._find_quarantine(key)
            return found.name if found is not None else None

        name = self.client.insert(STOCK_ENTRY, doc, find_existing=find_existing)
        return QuarantineResult(name, tuple(units))

    def _find_quarantine(self, key: str) -> StockEntryDoc | None:
        for row in self.client.list_rows(ListResult, STOCK_ENTRY, quarantine_filter(key)).data:
            entry = self.client.get(StockEntryResult, STOCK_ENTRY, row.name).data
            if carries_key(entry, key):
                return entry
        return None

    def _on_hand(self, item: ItemRow, scope: RecallScope) -> list[QuarantinedUnits]:
        """The covered units on hand, per warehouse (and batch or serial), outside every hold
        warehouse: stock already held is not moved again, scrap is not brought back."""
        holds = sorted(set(self._warehouses.holds().values()))
        if item.has_serial_no:
            filters: list[list[object]] = [["item_code", "=", item.name],
                                           ["status", "=", "Active"],
                                           ["warehouse", "not in", holds]]
            if scope.serials:
                filters.append(["name", "in", list(scope.serials)])
            if scope.lots:
                filters.append(["batch_no", "in", list(scope.lots)])
            rows = self.client.list_rows(SerialList, SERIAL_NO, filters,
                                         ("name", "warehouse", "batch_no")).data
            return [QuarantinedUnits(sku=item.name, quantity=1, source=r.warehouse,
                                     lot=r.batch_no, serial=r.name)
                    for r in rows if r.warehouse and r.warehouse not in holds
                    and covered(scope, r.batch_no, r.name)]
        if scope.serials:
            raise PermanentProviderError(
                NAME, f"{item.name} has no serial numbers in ERPNext: the recalled serials "
                      "cannot be told apart from the rest; quarantine by hand",
                code="not_serialized")
        if item.has_batch_no:
            lots = list(scope.lots) or [row.name for row in self.client.list_rows(
                ListResult, BATCH, [["item", "=", item.name]]).data]
            units = []
            for lot in lots:
                answer = self.client.read_method(
                    BatchQtyResult, GET_BATCH_QTY, {"batch_no": lot, "item_code": item.name})
                units += on_hand_units(item.name, lot, answer.message, holds)
            return units
        if scope.lots:
            raise PermanentProviderError(
                NAME, f"{item.name} has no batches in ERPNext: the recalled lots cannot be "
                      "told apart from the rest; quarantine by hand", code="not_batched")
        bins = self.client.list_rows(BinList, BIN, [["item_code", "=", item.name],
                                                    ["actual_qty", ">", 0]],
                                     ("warehouse", "actual_qty")).data
        return on_hand_units(item.name, None, bins, holds)

    # ---------------------------------------------------------------- returns

    def book_return(self, booking: ReturnBooking) -> str:
        """Book the case in ERPNext; returns the credit note's name.

        The credit note is a Sales Invoice return against the order's invoice, for the
        refunded amount. Goods that came back go into the warehouse of their disposition: on
        that same return when the invoice shipped them (`update_stock`), else on Delivery Note
        returns against the Delivery Notes that shipped them, booked first.

        Idempotent on the case: the credit note's remarks and the Delivery Note returns'
        instructions carry the case id. A credit note found by them is answered at once; a
        Delivery Note return found is not booked again, so a run that stopped half way is
        finished.
        """
        existing = self._find_return(booking.case_id)
        if existing is not None:
            return existing
        invoice = self._original_invoice(booking.order_id)
        draft = self.client.make_sales_return(SALES_INVOICE, invoice)
        moves = returned_moves(booking.moves)
        with_stock = bool(moves) and bool(draft.get("update_stock"))
        stock_returns = [] if with_stock or not moves else self._book_delivery_returns(
            booking, moves, invoice)
        doc = credit_note(draft, booking, self._warehouses, with_stock=with_stock,
                          stock_returns=stock_returns)
        return self.client.insert(SALES_INVOICE, doc,
                                  find_existing=lambda: self._find_return(booking.case_id))

    def _find_return(self, case_id: str) -> str | None:
        names = [row.name for row in self.client.list_rows(
            ListResult, SALES_INVOICE, return_filter(case_id)).data]
        if len(names) > 1:
            log.warning("erpnext: case %s has %d returns (%s); answering the first",
                        case_id, len(names), ", ".join(names))
        return names[0] if names else None

    def _original_invoice(self, order_id: str) -> str:
        field = self.settings.order_field
        names = [row.name for row in self.client.list_rows(
            ListResult, SALES_INVOICE, original_invoice_filter(field, order_id)).data]
        if not names:
            raise PermanentProviderError(
                NAME, f"no submitted Sales Invoice has {field} = {order_id!r} (order {order_id})",
                code="invoice_not_found")
        if len(names) > 1:
            # Which invoice holds which line is for a person to decide, not a guess to book.
            raise PermanentProviderError(
                NAME, f"order {order_id} has {len(names)} submitted Sales Invoices "
                      f"({', '.join(names)}); book this return by hand",
                code="invoice_ambiguous")
        return names[0]

    def _book_delivery_returns(self, booking: ReturnBooking, moves: list[StockMove],
                               invoice: str) -> list[str]:
        """Delivery Note returns for the goods, one per Delivery Note they came from, in the
        order ERPNext lists the notes; returns their names."""
        field = self.settings.order_field
        notes = [row.name for row in self.client.list_rows(
            ListResult, DELIVERY_NOTE, shipment_filter(field, booking.order_id)).data]
        if not notes:
            raise PermanentProviderError(
                NAME, f"{invoice} did not update stock and no submitted Delivery Note has "
                      f"{field} = {booking.order_id!r}: the returned goods have nothing to "
                      "go back against", code="delivery_note_not_found")
        done = self._delivery_returns(booking.case_id)
        booked = [item for row in done
                  for item in self.client.get(ReturnedDocResult, DELIVERY_NOTE,
                                              row.name).data.items]
        pending = still_to_return(moves, booked, self._warehouses)
        names = [row.name for row in done]
        finished = {row.return_against for row in done}
        for note in notes:
            if not pending:
                break
            if note in finished:
                continue
            draft = self.client.make_sales_return(DELIVERY_NOTE, note)
            doc, pending = delivery_return(draft, pending, booking, self._warehouses)
            if doc is None:
                continue
            names.append(self.client.insert(
                DELIVERY_NOTE, doc, find_existing=partial(self._delivery_return_of,
                                                          booking.case_id, note)))
        if pending:
            left = ", ".join(f"{m.quantity} × {m.sku}" for m in pending)
            raise PermanentProviderError(
                NAME, f"the Delivery Notes of order {booking.order_id} ({', '.join(notes)}) "
                      f"have nothing left to take back {left}", code="over_return")
        return names

    def _delivery_returns(self, case_id: str) -> list[ReturnRow]:
        return list(self.client.list_rows(ReturnList, DELIVERY_NOTE,
                                          delivery_return_filter(case_id),
                                          ("name", "return_against")).data)

    def _delivery_return_of(self, case_id: str, note: str) -> str | None:
        return next((row.name for row in self._delivery_returns(case_id)
                     if row.return_against == note), None)
