"""The sandbox connectors against the class-level contract: well-formed classes,
`NotSupported` for every optional flow they leave out, strict settings (they take none)."""

from __future__ import annotations

from refundbridge.connectors.sandbox import (
    SandboxErpConnector,
    SandboxNotifier,
    SandboxPaymentConnector,
)
from refundbridge.connectors.testing import ConnectorContract
from tests.connectors.helpers import ContractFixtures


class TestSandboxPaymentContract(ContractFixtures, ConnectorContract):
    CONNECTOR_CLASS = SandboxPaymentConnector


class TestSandboxErpContract(ContractFixtures, ConnectorContract):
    CONNECTOR_CLASS = SandboxErpConnector


class TestSandboxNotifierContract(ContractFixtures, ConnectorContract):
    CONNECTOR_CLASS = SandboxNotifier
