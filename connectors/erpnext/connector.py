"""`ERPNextConnector`: books a case's refund in ERPNext as a submitted Sales Invoice return."""

from __future__ import annotations

import logging
from typing import ClassVar

from pydantic import SecretStr, field_validator

from connectors.base import ConnectorBase, ConnectorContext, ConnectorSettings
from connectors.erpnext.client import ERPNextClient
from connectors.erpnext.transformers import (
    NAME,
    Warehouses,
    original_invoice_filter,
    return_document,
    return_filter,
)
from core.errors import PermanentProviderError
from core.ports import Capability, ReturnBooking, Role

SALES_INVOICE = "Sales Invoice"

log = logging.getLogger(__name__)


class ERPNextSettings(ConnectorSettings):
    base_url: str
    api_key: SecretStr
    api_secret: SecretStr
    # The Sales Invoice field that holds the storefront's order id ("Customer's Purchase
    # Order" by default; many shops add a custom field instead).
    order_field: str = "po_no"
    restock_warehouse: str = "Stores - RB"
    quarantine_warehouse: str = "Quarantine - RB"
    scrap_warehouse: str = "Scrap - RB"

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be the site's http(s) address, e.g. https://erp.example.com")
        return value.rstrip("/")


class ERPNextConnector(ConnectorBase):
    name: ClassVar[str] = NAME
    roles: ClassVar[frozenset[Role]] = frozenset({Role.ERP})
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.BOOK_RETURN, Capability.CREDIT_NOTE})
    Settings: ClassVar[type[ConnectorSettings]] = ERPNextSettings

    settings: ERPNextSettings

    def __init__(self, settings: ERPNextSettings, ctx: ConnectorContext) -> None:
        super().__init__(settings, ctx)
        self._client = ERPNextClient(settings.base_url, settings.api_key, settings.api_secret,
                                     ctx)
        self._warehouses = Warehouses(
            restock=settings.restock_warehouse,
            quarantine=settings.quarantine_warehouse,
            scrap=settings.scrap_warehouse,
        )

    def close(self) -> None:
        self._client.close()

    def book_return(self, booking: ReturnBooking) -> str:
        """Book the case as a Sales Invoice return against the order's invoice; returns its name.

        Idempotent on the case: the return's remarks carry the case id, and an earlier return
        found by them is answered instead of booking another.
        """
        existing = self._find_return(booking.case_id)
        if existing is not None:
            return existing
        invoice = self._original_invoice(booking.order_id)
        draft = self._client.make_sales_return(invoice)
        doc = return_document(draft, booking, self._warehouses)
        return self._client.insert(SALES_INVOICE, doc,
                                   find_existing=lambda: self._find_return(booking.case_id))

    def _find_return(self, case_id: str) -> str | None:
        names = self._client.list_names(SALES_INVOICE, return_filter(case_id))
        if len(names) > 1:
            log.warning("erpnext: case %s has %d returns (%s); answering the first",
                        case_id, len(names), ", ".join(names))
        return names[0] if names else None

    def _original_invoice(self, order_id: str) -> str:
        field = self.settings.order_field
        names = self._client.list_names(SALES_INVOICE, original_invoice_filter(field, order_id))
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
