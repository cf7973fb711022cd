"""The generic storefront connector against the connector contract suite."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from refundbridge.connectors.generic import GenericStorefrontConnector
from refundbridge.connectors.testing import Delivery, WebhookContract
from tests.connectors.helpers import ContractFixtures
from tests.factories import GENERIC_SECRET, request_body, signed


class TestGenericContract(ContractFixtures, WebhookContract):
    CONNECTOR_CLASS = GenericStorefrontConnector
    SETTINGS: ClassVar[dict[str, Any]] = {"secret": GENERIC_SECRET}
    SIGNATURE_HEADERS = ("X-RefundBridge-Signature",)
    FRESHNESS_TOLERANCE = 300

    @pytest.fixture
    def signed_delivery(self) -> Callable[..., Delivery]:
        def deliver(body: bytes | None = None, *, forged: bool = False) -> Delivery:
            secret = "gsec_someone_elses_secret_0123" if forged else GENERIC_SECRET
            raw, headers = signed(request_body() if body is None else body, secret=secret)
            return headers, raw
        return deliver
