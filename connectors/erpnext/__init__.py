"""ERPNext (Frappe) as the ERP: books a refund as a submitted Sales Invoice return."""

from connectors.erpnext.connector import ERPNextConnector, ERPNextSettings

__all__ = ["ERPNextConnector", "ERPNextSettings"]
