"""Sandbox connectors for the demo and benchmarks: they move no real money or stock.

They answer like a provider would (idempotent by key, with configurable latency and a rate
of transient failures) so the whole pipeline, retries included, can run on one machine.
"""

from refundbridge.connectors.sandbox.connectors import (
    SandboxErpConnector,
    SandboxNotifier,
    SandboxPaymentConnector,
)
from refundbridge.connectors.sandbox.sms import SandboxSmsConnector

__all__ = ["SandboxErpConnector", "SandboxNotifier", "SandboxPaymentConnector",
           "SandboxSmsConnector"]
