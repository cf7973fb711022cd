"""Stripe payment connector: refunds over the REST API, refund events over webhooks."""

from connectors.stripe.connector import StripeConnector, StripeSettings

__all__ = ["StripeConnector", "StripeSettings"]
