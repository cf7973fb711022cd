"""ERPNext (Frappe) as the ERP: what an order shipped (per batch, with its expiry, or serial),
and a refund booked as a credit note, with Delivery Note returns where the goods left on one."""

from refundbridge.connectors.erpnext.connector import ERPNextConnector, ERPNextSettings

__all__ = ["ERPNextConnector", "ERPNextSettings"]
