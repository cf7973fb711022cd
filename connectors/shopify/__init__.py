"""Shopify connector: returns from the storefront, refunds through the Admin GraphQL API."""

from refundbridge.connectors.shopify.connector import ShopifyConnector, ShopifySettings

__all__ = ["ShopifyConnector", "ShopifySettings"]
