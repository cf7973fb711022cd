"""ERPNext against the `erp.replacement` contract, with the ERPNext fake: a Sales Order
under the key, then its Delivery Note."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from refundbridge.connectors.erpnext import ERPNextConnector
from refundbridge.connectors.testing import ReplacementContract
from refundbridge.core.money import Money
from refundbridge.core.ports import ReplacementItem, ReplacementOrder
from tests.connectors.helpers import ContractFixtures
from tests.fakes.erpnext import BASE, ERPNextFake

KEY = "rc_contract0001.replacement"


class TestERPNextReplacementContract(ContractFixtures, ReplacementContract):
    CONNECTOR_CLASS = ERPNextConnector
    SETTINGS: ClassVar[dict[str, Any]] = {
        "base_url": BASE, "api_key": "k3y-contract-0123456789",
        "api_secret": "s3cret-contract-0123456789"}

    @pytest.fixture
    def fake(self) -> ERPNextFake:
        fake = ERPNextFake()
        fake.add_item("GLU-METER-01")
        fake.add_invoice("SO-1001", [("GLU-METER-01", 2, "199.00")])
        fake.add_stock("GLU-METER-01", "Stores - RB", 5)
        return fake

    @pytest.fixture
    def replacement_order(self) -> ReplacementOrder:
        return ReplacementOrder(
            idempotency_key=KEY, case_id="rc_contract0001", order_id="SO-1001",
            customer_id="cust-1", customer_email="li.wei@example.com",
            items=(ReplacementItem("GLU-METER-01", "Glucose meter", 1,
                                   Money.parse("199.00", "CNY")),))

    @pytest.fixture
    def replacement_count(self, fake: ERPNextFake) -> Callable[[], int]:
        return lambda: len(fake.replacement_orders(KEY))
