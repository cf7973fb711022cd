"""The Tencent Cloud SMS notifier against the class-level contract (it has its own SMS
port, so the payment and webhook contracts do not apply; tests/connectors/test_tencent_sms.py
covers the wire)."""

from __future__ import annotations

from typing import Any, ClassVar

from refundbridge.connectors.tencent_sms import TencentSmsConnector
from refundbridge.connectors.testing import ConnectorContract
from tests.connectors.helpers import ContractFixtures


class TestTencentSmsContract(ContractFixtures, ConnectorContract):
    CONNECTOR_CLASS = TencentSmsConnector
    SETTINGS: ClassVar[dict[str, Any]] = {
        "secret_id": "AKIDz8krbsJ5yKBZQpn74WFkmLPx3gnPhESA",
        "secret_key": "Gu5t9xGARNpq86cd98joQYCN3Cozk1qA",
        "sdk_app_id": "1400006666", "sign_name": "康复医疗器械",
        "templates": {"received": "1110", "refunded": "1113"},
    }
