"""Odoo against the connector contract suite, with the stateful Odoo fake, on each API the
connector speaks: JSON-RPC on Odoo 16 and 17 (which name the return button and the
reversal differently) and /json/2 on Odoo 19; each for a return with goods and for a refund
only (a credit note, no stock).

Odoo takes no webhooks and moves no money, so the webhook and payment contracts do not
apply; `shipped_units` is declared, so the contract does not ask it for `NotSupported`.
"""

from __future__ import annotations

from typing import Any

import pytest
import respx

from refundbridge.connectors.odoo import OdooConnector
from refundbridge.connectors.testing import ErpContract
from refundbridge.core.model import Disposition, StockMove
from refundbridge.core.money import Money
from refundbridge.core.ports import ReturnBooking
from tests.connectors.helpers import ContractFixtures, add_devices, device_request
from tests.fakes.odoo import API_KEY, BASE, DATABASE, LOGIN, OdooFake

ORDER = "SO-contract-1"
PRICES = {"BPM-200": "100.00", "GLU-STRIP-50": "59.00"}
SHIP = [("BPM-200", "SN-0041", 1), ("BPM-200", "SN-0042", 1), ("GLU-STRIP-50", "B77", 2)]


class TestOdooContract(ContractFixtures, ErpContract):
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
        odoo.add_order(ORDER, SHIP, PRICES)
        return odoo

    @pytest.fixture(params=["return_and_refund", "refund_only"])
    def return_booking(self, request: pytest.FixtureRequest) -> ReturnBooking:
        # With goods: one unit back to stock, one kept as evidence, the strips scrapped (a
        # return picking per destination and a credit note). Refund only: the credit note.
        kind = str(request.param)
        refund = device_request(ORDER, kind=kind, strips=2, amount="318.00",
                                paid_total="318.00", external_id="ret-contract-1",
                                payment_reference="pi_contract")
        moves = (
            StockMove(line=0, sku="BPM-200", quantity=1, disposition=Disposition.RESTOCK,
                      serial="SN-0041"),
            StockMove(line=0, sku="BPM-200", quantity=1,
                      disposition=Disposition.KEEP_AS_EVIDENCE, serial="SN-0042"),
            StockMove(line=1, sku="GLU-STRIP-50", quantity=2, disposition=Disposition.SCRAP,
                      lot="B77"),
        )
        return ReturnBooking(case_id="rc_contract0001", order_id=ORDER,
                             amount=Money.parse("318.00", "CNY"),
                             moves=moves if kind == "return_and_refund" else (),
                             request=refund)

    def test_booking_twice_leaves_one_set_of_documents(
            self, connector: OdooConnector, fake: OdooFake, router: respx.MockRouter,
            return_booking: ReturnBooking) -> None:
        # The contract sees the same reference twice; here the fake shows nothing was
        # booked twice behind it, on every API and version.
        connector.book_return(return_booking)
        pickings, notes = len(fake.return_pickings()), len(fake.credit_notes())

        connector.book_return(return_booking)

        assert notes == 1
        assert pickings == (3 if return_booking.moves else 0)
        assert (len(fake.return_pickings()), len(fake.credit_notes())) == (pickings, notes)
