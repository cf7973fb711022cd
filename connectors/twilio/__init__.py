"""Twilio SMS notifier: customer SMS over the Messaging API, delivery reports and STOP replies
over signed callbacks."""

from refundbridge.connectors.twilio.connector import TwilioConnector, TwilioSettings

__all__ = ["TwilioConnector", "TwilioSettings"]
