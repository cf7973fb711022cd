"""`generic`: any shop's own site posts the normalized request JSON, HMAC-signed."""

from refundbridge.connectors.generic.webhooks import GenericStorefrontConnector

__all__ = ["GenericStorefrontConnector"]
