"""Alipay payment connector: refunds over the OpenAPI gateway (RSA2-signed), refund news
over asynchronous notifications."""

from refundbridge.connectors.alipay.connector import AlipayConnector, AlipaySettings

__all__ = ["AlipayConnector", "AlipaySettings"]
