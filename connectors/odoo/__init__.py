"""Odoo as the ERP: shipped lots and serials, return pickings per disposition, credit notes."""

from refundbridge.connectors.odoo.connector import OdooConnector, OdooSettings

__all__ = ["OdooConnector", "OdooSettings"]
