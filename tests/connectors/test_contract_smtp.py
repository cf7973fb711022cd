"""The SMTP notifier against the class-level contract (it speaks SMTP, not HTTP, so the
HTTP-level contracts do not apply; tests/connectors/test_smtp.py covers the wire)."""

from __future__ import annotations

from typing import Any

import pytest

from refundbridge.connectors.smtp import SmtpNotifier
from refundbridge.connectors.testing import ConnectorContract


class TestSmtpContract(ConnectorContract):
    @pytest.fixture
    def connector_class(self) -> type[Any]:
        return SmtpNotifier

    @pytest.fixture
    def connector_settings(self) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": 2525, "sender_email": "returns@shop.test"}
