"""What the connector tests share: the case they refund for, answers a test gives in a fake's
place, contract fixtures from class attributes, and the Odoo tests' catalogue of devices."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import date
from types import MappingProxyType
from typing import Any, ClassVar

import httpx
import pytest
import respx

from refundbridge.connectors.base import RetryPolicy
from refundbridge.connectors.testing import route_for
from refundbridge.core.request import NormalizedRefundRequest
from tests.fakes.common import Installable, installed
from tests.fakes.odoo import OdooFake

# Retries without waiting: tests never sleep.
FAST = RetryPolicy(attempts=3, initial_wait=0, max_wait=0)
CASE_ID = "rc_8f14e45fceea167a5a36dedd4bea2543"
KEY = f"{CASE_ID}-refund-1"  # the first refund attempt's idempotency key of CASE_ID


def in_turn(*answers: httpx.Response | Exception) -> Callable[[], httpx.Response | None]:
    """Each of `answers` in turn, for a fake's hook: a Response to send in the fake's place,
    an exception to raise at the transport; once all are used, None (the fake answers)."""
    pending = list(answers)

    def next_answer() -> httpx.Response | None:
        if not pending:
            return None
        answer = pending.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return next_answer


class ContractFixtures:
    """The contract fixtures that are constants, read from class attributes, and the `router`
    serving the class's `fake` fixture. Put it before the contracts among the bases, so that
    its fixtures win over their defaults.

    - `CONNECTOR_CLASS` (required) and `SETTINGS` (default: none, for connectors that take
      no settings): the connector class and a valid settings table, as
      `[shops.<id>.<name>]` holds it;
    - `SIGNATURE_HEADERS` and `FRESHNESS_TOLERANCE` (webhooks; defaults as the contract's);
    - `REFUND_URL` (payments): where the money-moving POST goes, for `refund_route`.
    """

    CONNECTOR_CLASS: ClassVar[type[Any]]
    SETTINGS: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    SIGNATURE_HEADERS: ClassVar[tuple[str, ...]] = ()
    FRESHNESS_TOLERANCE: ClassVar[float | None] = None
    REFUND_URL: ClassVar[str]

    @pytest.fixture
    def connector_class(self) -> type[Any]:
        return self.CONNECTOR_CLASS

    @pytest.fixture
    def connector_settings(self) -> dict[str, Any]:
        return dict(self.SETTINGS)  # a copy: no test can change another's settings

    @pytest.fixture
    def signature_headers(self) -> tuple[str, ...]:
        return self.SIGNATURE_HEADERS

    @pytest.fixture
    def freshness_tolerance(self) -> float | None:
        return self.FRESHNESS_TOLERANCE

    @pytest.fixture
    def router(self, fake: Installable) -> Iterator[respx.MockRouter]:
        with installed(fake) as router:
            yield router

    @pytest.fixture
    def refund_route(self, router: respx.MockRouter) -> respx.Route:
        return route_for(router, "POST", self.REFUND_URL)


# ------------------------------------------------------------------ Odoo's devices

def add_devices(odoo: OdooFake) -> OdooFake:
    """The products the Odoo tests sell: a blood pressure monitor tracked by serial (units
    SN-0041 and SN-0042) and glucose test strips tracked by lot (B77, with an expiry)."""
    odoo.add_product("BPM-200", tracking="serial", barcode="6901234567892")
    odoo.add_lot("BPM-200", "SN-0041")
    odoo.add_lot("BPM-200", "SN-0042")
    odoo.add_product("GLU-STRIP-50", tracking="lot")
    odoo.add_lot("GLU-STRIP-50", "B77", expiry=date(2027, 3, 31))
    return odoo


def device_request(order_id: str, *, kind: str, strips: int, amount: str, paid_total: str,
                   external_id: str, payment_reference: str) -> NormalizedRefundRequest:
    """A storefront's request about the devices of `add_devices`: two monitors at 100.00
    and `strips` packs of strips at 59.00, from lot B77."""
    return NormalizedRefundRequest.model_validate({
        "external_id": external_id, "kind": kind,
        "order": {"id": order_id, "currency": "CNY", "paid_total": paid_total,
                  "placed_at": "2026-02-01T10:00:00+08:00",
                  "payment": {"provider": "stripe", "reference": payment_reference}},
        "customer": {"id": "c-7", "email": "li@example.cn"},
        "lines": [
            {"sku": "BPM-200", "name": "Blood pressure monitor", "quantity": 2,
             "unit_price": "100.00", "device_class": "IIa"},
            {"sku": "GLU-STRIP-50", "name": "Glucose test strips", "quantity": strips,
             "unit_price": "59.00", "lot": "B77"},
        ],
        "reason": {"code": "defective", "text": "cuff leaks"},
        "requested_amount": amount, "requested_at": "2026-02-10T09:00:00+08:00",
    })
