"""The composition root finds a shop in one place: the container, the workers' services and
the API's services answer an unknown shop the same way, and a known one with its runtime."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from refundbridge.bootstrap import Container, find_shop
from refundbridge.core.errors import NotFound
from tests.factories import SHOP


def test_every_lookup_of_a_shop_goes_through_find_shop(container: Container) -> None:
    lookups: list[Callable[[str], Any]] = [
        container.shop, container.services.policy, container.services.gateways,
        container.api_services.policy, container.api_services.gateways,
        lambda shop_id: find_shop(container.shops, shop_id),
    ]
    for lookup in lookups:
        with pytest.raises(NotFound, match="no shop 'nowhere'"):
            lookup("nowhere")
    runtime = find_shop(container.shops, SHOP)
    assert container.shop(SHOP) is runtime
    assert container.services.policy(SHOP) is runtime.policy
    assert container.api_services.gateways(SHOP) is runtime.gateways
