"""A provider's 2xx answer in a shape it does not document: every connector says so the same
way (`connectors.base.unexpected_answer`), as a permanent error naming the first field."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import respx
from pydantic import BaseModel, SecretStr, ValidationError

from refundbridge.connectors.base import ConnectorContext, RetryPolicy, first_problem
from refundbridge.connectors.erpnext.transformers import StockDocument
from refundbridge.connectors.erpnext.transformers import parse as erpnext_parse
from refundbridge.connectors.odoo.transformers import SaleOrder
from refundbridge.connectors.odoo.transformers import parse as odoo_parse
from refundbridge.connectors.shopify.client import ShopifyClient
from refundbridge.connectors.shopify.wire import GqlRefund
from refundbridge.connectors.stripe.client import StripeClient
from refundbridge.connectors.woocommerce.transformers import parse_wire, parse_wire_list
from refundbridge.connectors.woocommerce.wire import WCRefund
from refundbridge.core.errors import PermanentProviderError

STRIPE = "https://api.stripe.test"

CASES: dict[str, tuple[Callable[[], object], str, str]] = {
    "erpnext": (lambda: erpnext_parse(StockDocument, {"items": []}, "Delivery Note DN-1"),
                "erpnext", "unexpected answer to Delivery Note DN-1: name: Field required"),
    "odoo": (lambda: odoo_parse(SaleOrder, {"id": 7}, "sale.order"),
             "odoo", "unexpected answer to sale.order: name: Field required"),
    "woocommerce": (lambda: parse_wire(WCRefund, b'{"id": 5}', "GET refund 5"),
                    "woocommerce", "unexpected answer to GET refund 5: amount: Field required"),
    "woocommerce list": (lambda: parse_wire_list(WCRefund, b'[{"id": 5, "amount": "1.00"}, 3]',
                                                 "GET refunds of order 9"),
                         "woocommerce", "unexpected answer to GET refunds of order 9: 1: "
                                        "Input should be an object"),
    "shopify": (lambda: ShopifyClient._model({"refund": {"id": "gid://shopify/Refund/1"}},
                                             "refund", GqlRefund, "refund 1"),
                "shopify", "unexpected answer to refund 1: refund.transactions: Field required"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_malformed_answer_is_permanent_and_names_its_first_field(case: str) -> None:
    read, connector, message = CASES[case]

    with pytest.raises(PermanentProviderError) as info:
        read()

    assert info.value.connector == connector
    assert info.value.code == "invalid_response"
    assert info.value.message == message


def test_stripe_names_the_request_and_the_field() -> None:
    client = StripeClient(ConnectorContext(shop_id="s", retry=RetryPolicy(attempts=1)),
                          base_url=STRIPE, api_key=SecretStr("sk_test_0123456789abcdef"),
                          api_version="2024-06-20")
    with respx.mock(base_url=STRIPE) as router:
        router.get("/v1/refunds/re_1").respond(200, json={"object": "refund", "id": "re_1"})
        with pytest.raises(PermanentProviderError) as info:
            client.get_refund("re_1")
    client.close()

    assert info.value.code == "invalid_response"
    assert info.value.message == "unexpected answer to GET /v1/refunds/re_1: amount: Field required"


class _Line(BaseModel):
    sku: str


class _Body(BaseModel):
    lines: list[_Line]


def test_first_problem_is_the_dotted_path_below_the_prefix() -> None:
    with pytest.raises(ValidationError) as info:
        _Body.model_validate({"lines": [{"sku": "A"}, {}]})

    assert first_problem(info.value) == "lines.1.sku: Field required"
    assert first_problem(info.value, "data.object") == "data.object.lines.1.sku: Field required"


def test_first_problem_of_the_whole_body_says_body() -> None:
    with pytest.raises(ValidationError) as info:
        _Body.model_validate_json(b"[]")

    assert first_problem(info.value).startswith("body: ")
