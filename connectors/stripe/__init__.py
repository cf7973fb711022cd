"""Stripe payment connector: refunds over the REST API, refund events over webhooks."""

from refundbridge.connectors.stripe.connector import StripeConnector, StripeSettings

__all__ = ["StripeConnector", "StripeSettings"]
