"""ERPNext against the connector contract suite, with the ERPNext fake."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from refundbridge.connectors.erpnext import ERPNextConnector
from refundbridge.connectors.testing import ErpContract
from refundbridge.core.model import Disposition, StockMove
from refundbridge.core.money import Money
from refundbridge.core.ports import ReturnBooking
from tests.connectors.helpers import ContractFixtures
from tests.fakes.erpnext import BASE, ERPNextFake
from tests.unit.builders import make_request


class TestERPNextContract(ContractFixtures, ErpContract):
    CONNECTOR_CLASS = ERPNextConnector
    SETTINGS: ClassVar[dict[str, Any]] = {
        "base_url": BASE, "api_key": "k3y-contract-0123456789",
        "api_secret": "s3cret-contract-0123456789"}

    @pytest.fixture
    def fake(self) -> ERPNextFake:
        fake = ERPNextFake()
        fake.add_invoice("SO-1001", [("GLU-METER-01", 2, "199.00")])
        return fake

    @pytest.fixture
    def return_booking(self) -> ReturnBooking:
        request = make_request(kind="return_and_refund")
        move = StockMove(line=0, sku="GLU-METER-01", quantity=2,
                         disposition=Disposition.RESTOCK, lot="L2401")
        return ReturnBooking(case_id="rc_contract0001", order_id="SO-1001",
                             amount=Money.parse("398.00", "CNY"), moves=(move,),
                             request=request)
