"""The sandbox connectors against the class-level contract: well-formed classes,
`NotSupported` for every optional flow they leave out, strict settings (they take none)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import respx

from refundbridge.connectors.sandbox import (
    SandboxErpConnector,
    SandboxNotifier,
    SandboxPaymentConnector,
)
from refundbridge.connectors.testing import ConnectorContract, ReplacementContract
from refundbridge.core.money import Money
from refundbridge.core.ports import ReplacementItem, ReplacementOrder
from tests.connectors.helpers import ContractFixtures


class TestSandboxPaymentContract(ContractFixtures, ConnectorContract):
    CONNECTOR_CLASS = SandboxPaymentConnector


class TestSandboxErpContract(ContractFixtures, ConnectorContract):
    CONNECTOR_CLASS = SandboxErpConnector


class TestSandboxNotifierContract(ContractFixtures, ConnectorContract):
    CONNECTOR_CLASS = SandboxNotifier


class TestSandboxErpReplacementContract(ContractFixtures, ReplacementContract):
    """The sandbox ERP against the `erp.replacement` contract (it ships at once, in memory;
    its "fake" is itself, so `router` serves nothing)."""

    CONNECTOR_CLASS = SandboxErpConnector

    @pytest.fixture
    def fake(self) -> _NoProvider:
        return _NoProvider()

    @pytest.fixture
    def replacement_order(self) -> ReplacementOrder:
        return ReplacementOrder(
            idempotency_key="rc_contract0001.replacement", case_id="rc_contract0001",
            order_id="SO-1001", customer_id="c-1", customer_email=None,
            items=(ReplacementItem("GLU-METER-01", "Glucose meter", 1,
                                   Money.parse("199.00", "CNY")),))

    @pytest.fixture
    def replacement_count(self, connector: SandboxErpConnector) -> Callable[[], int]:
        return lambda: len(connector.replacements)


class _NoProvider:
    def install(self, router: respx.MockRouter) -> None:
        pass
