"""Connectors: one package per provider, found through the `refundbridge.connectors` entry
point group. Each keeps its HTTP calls (`client.py`) apart from its wire-format mapping
(`transformers.py`) and its webhook verification (`webhooks.py`)."""
