"""WooCommerce connector: storefront (webhooks, orders, write-back) and payment (refunds
through the shop's own gateway) over the REST API v3."""

from refundbridge.connectors.woocommerce.connector import WooCommerceConnector, WooCommerceSettings

__all__ = ["WooCommerceConnector", "WooCommerceSettings"]
