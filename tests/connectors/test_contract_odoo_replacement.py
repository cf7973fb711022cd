"""Odoo against the `erp.replacement` contract, with the Odoo fake, on each API and version
the connector speaks: a sale order under the key, confirmed, its delivery validated."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from refundbridge.connectors.odoo import OdooConnector
from refundbridge.connectors.testing import ReplacementContract
from refundbridge.core.money import Money
from refundbridge.core.ports import ReplacementItem, ReplacementOrder
from tests.connectors.helpers import ContractFixtures, add_devices
from tests.fakes.odoo import API_KEY, BASE, DATABASE, LOGIN, STOCK, OdooFake

ORDER = "SO-contract-1"
KEY = "rc_contract0001.replacement"


class TestOdooReplacementContract(ContractFixtures, ReplacementContract):
    CONNECTOR_CLASS = OdooConnector

    @pytest.fixture(params=[("jsonrpc", 16), ("jsonrpc", 17), ("json2", 19)],
                    ids=["jsonrpc-16", "jsonrpc-17", "json2-19"])
    def odoo_api(self, request: pytest.FixtureRequest) -> tuple[str, int]:
        api, version = request.param
        return str(api), int(version)

    @pytest.fixture
    def connector_settings(self, odoo_api: tuple[str, int]) -> dict[str, Any]:
        api, _ = odoo_api
        settings: dict[str, Any] = {"base_url": BASE, "database": DATABASE,
                                    "api_key": API_KEY, "api": api}
        if api == "jsonrpc":
            settings["username"] = LOGIN
        return settings

    @pytest.fixture
    def fake(self, odoo_api: tuple[str, int]) -> OdooFake:
        _, version = odoo_api
        odoo = add_devices(OdooFake(version=version))
        customer = odoo.add_partner("Li Wei", email="li@example.cn")
        odoo.add_order(ORDER, [("GLU-STRIP-50", "B77", 2)], {"GLU-STRIP-50": "59.00"},
                       partner=customer)
        odoo.add_quant("GLU-STRIP-50", STOCK, 10, lot="B77")
        return odoo

    @pytest.fixture
    def replacement_order(self) -> ReplacementOrder:
        return ReplacementOrder(
            idempotency_key=KEY, case_id="rc_contract0001", order_id=ORDER,
            customer_id="c-7", customer_email="li@example.cn",
            items=(ReplacementItem("GLU-STRIP-50", "Glucose test strips", 1,
                                   Money.parse("59.00", "CNY")),))

    @pytest.fixture
    def replacement_count(self, fake: OdooFake) -> Callable[[], int]:
        return lambda: len(fake.replacement_orders(KEY))
