"""The SMTP notifier against the class-level contract (it speaks SMTP, not HTTP, so the
HTTP-level contracts do not apply; tests/connectors/test_smtp.py covers the wire)."""

from __future__ import annotations

from typing import Any, ClassVar

from refundbridge.connectors.smtp import SmtpNotifier
from refundbridge.connectors.testing import ConnectorContract
from tests.connectors.helpers import ContractFixtures


class TestSmtpContract(ContractFixtures, ConnectorContract):
    CONNECTOR_CLASS = SmtpNotifier
    SETTINGS: ClassVar[dict[str, Any]] = {"host": "127.0.0.1", "port": 2525,
                                          "sender_email": "returns@shop.test"}
