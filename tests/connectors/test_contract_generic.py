"""The generic storefront connector against the connector contract suite."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from refundbridge.connectors.generic import GenericStorefrontConnector
from refundbridge.connectors.testing import Delivery, WebhookContract
from tests.factories import GENERIC_SECRET, request_body, signed


class TestGenericContract(WebhookContract):
    @pytest.fixture
    def connector_class(self) -> type[Any]:
        return GenericStorefrontConnector

    @pytest.fixture
    def connector_settings(self) -> dict[str, Any]:
        return {"secret": GENERIC_SECRET}

    @pytest.fixture
    def freshness_tolerance(self) -> float:
        return 300

    @pytest.fixture
    def signature_headers(self) -> tuple[str, ...]:
        return ("X-RefundBridge-Signature",)

    @pytest.fixture
    def signed_delivery(self) -> Callable[..., Delivery]:
        def deliver(body: bytes | None = None, *, forged: bool = False) -> Delivery:
            secret = "gsec_someone_elses_secret_0123" if forged else GENERIC_SECRET
            raw, headers = signed(request_body() if body is None else body, secret=secret)
            return headers, raw
        return deliver
