"""The sandbox connectors against the class-level contract: well-formed classes,
`NotSupported` for every optional flow they leave out, strict settings."""

from __future__ import annotations

from typing import Any

import pytest

from refundbridge.connectors.sandbox import (
    SandboxErpConnector,
    SandboxNotifier,
    SandboxPaymentConnector,
)
from refundbridge.connectors.testing import ConnectorContract


class TestSandboxPaymentContract(ConnectorContract):
    @pytest.fixture
    def connector_class(self) -> type[Any]:
        return SandboxPaymentConnector

    @pytest.fixture
    def connector_settings(self) -> dict[str, Any]:
        return {}


class TestSandboxErpContract(ConnectorContract):
    @pytest.fixture
    def connector_class(self) -> type[Any]:
        return SandboxErpConnector

    @pytest.fixture
    def connector_settings(self) -> dict[str, Any]:
        return {}


class TestSandboxNotifierContract(ConnectorContract):
    @pytest.fixture
    def connector_class(self) -> type[Any]:
        return SandboxNotifier

    @pytest.fixture
    def connector_settings(self) -> dict[str, Any]:
        return {}
