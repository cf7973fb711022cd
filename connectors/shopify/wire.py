"""Shopify's two wire dialects as pydantic models. No I/O, no mapping here.

- The Admin GraphQL API's answers to the documents in `queries.py`: camelCase, GIDs such as
  `gid://shopify/Order/1`, money as decimal strings in a `MoneyBag`.
- Webhook bodies, which are REST resources: snake_case, numeric ids plus
  `admin_graphql_api_id`; `webhooks.py` parses them with the `Webhook*` models.

Both ignore fields they do not name: Shopify adds fields in every version.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Generic, TypeVar

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from refundbridge.core.request import WireModel

ORDER_GID: Final = "gid://shopify/Order/"
REFUND_GID: Final = "gid://shopify/Refund/"
RETURN_GID: Final = "gid://shopify/Return/"

N = TypeVar("N")

# ------------------------------------------------------------------ GraphQL wire models


class _Gql(WireModel):
    # Shopify adds fields in every version; unknown ones must not break parsing.
    model_config = ConfigDict(extra="ignore", frozen=True, alias_generator=to_camel,
                              populate_by_name=True)


class MoneyV2(_Gql):
    amount: str
    currency_code: str


class MoneyBag(_Gql):
    presentment_money: MoneyV2


class Ref(_Gql):
    id: str


class PageInfo(_Gql):
    has_next_page: bool = False
    end_cursor: str | None = None


class Page(_Gql, Generic[N]):
    """One page of a connection: `{ pageInfo { … } nodes { … } }`."""

    page_info: PageInfo = Field(default_factory=PageInfo)
    nodes: list[N]


class GqlLineItem(_Gql):
    id: str
    sku: str | None = None
    name: str
    quantity: int
    discounted_unit_price_after_all_discounts_set: MoneyBag


GqlLineItems = Page[GqlLineItem]


class GqlFulfillmentLineItem(_Gql):
    id: str
    line_item: Ref


GqlFulfillmentLineItems = Page[GqlFulfillmentLineItem]


class GqlFulfillment(_Gql):
    id: str
    delivered_at: datetime | None = None
    fulfillment_line_items: GqlFulfillmentLineItems


class GqlTransaction(_Gql):
    id: str
    kind: str
    status: str
    gateway: str | None = None
    parent_transaction: Ref | None = None
    amount_set: MoneyBag


GqlTransactions = Page[GqlTransaction]


class GqlRefund(_Gql):
    id: str
    note: str | None = None
    created_at: datetime | None = None
    total_refunded_set: MoneyBag | None = None
    transactions: GqlTransactions


class GqlCustomer(_Gql):
    id: str
    locale: str | None = None


class GqlOrder(_Gql):
    id: str
    name: str | None = None
    created_at: datetime
    processed_at: datetime | None = None
    email: str | None = None
    phone: str | None = None
    customer_locale: str | None = None
    presentment_currency_code: str
    customer: GqlCustomer | None = None
    line_items: GqlLineItems
    fulfillments: list[GqlFulfillment] = Field(default_factory=list)
    transactions: list[GqlTransaction] = Field(default_factory=list)


class GqlRefundNote(_Gql):
    id: str
    note: str | None = None


class GqlOrderRefunds(_Gql):
    id: str
    refunds: list[GqlRefundNote]


class GqlOrderLines(_Gql):
    id: str
    line_items: GqlLineItems


class GqlFulfillmentLines(_Gql):
    id: str
    fulfillment_line_items: GqlFulfillmentLineItems


class GqlReturn(_Gql):
    id: str
    status: str


class GqlExchangeLineItem(_Gql):
    """A unit a return sends out instead (`ExchangeLineItem`): its variant and the order
    line Shopify added for it (the first of `lineItems`)."""

    id: str
    quantity: int
    variant_id: str | None = None
    line_items: list[GqlLineItem] | None = None


GqlExchangeLineItems = Page[GqlExchangeLineItem]


class GqlReturnExchanges(_Gql):
    id: str
    order: Ref | None = None
    exchange_line_items: GqlExchangeLineItems


class UserError(_Gql):
    field: list[str] | None = None
    message: str
    code: str | None = None


class RefundCreatePayload(_Gql):
    refund: GqlRefund | None = None
    user_errors: list[UserError]


class ReturnMutationPayload(_Gql):
    return_: GqlReturn | None = Field(default=None, alias="return")
    user_errors: list[UserError]


class GraphQLError(_Gql):
    message: str
    extensions: dict[str, Any] = Field(default_factory=dict)

    @property
    def code(self) -> str | None:
        code = self.extensions.get("code")
        return code if isinstance(code, str) else None


class GraphQLResponse(_Gql):
    data: dict[str, Any] | None = None
    errors: list[GraphQLError] = Field(default_factory=list)
    extensions: dict[str, Any] = Field(default_factory=dict)


# ------------------------------------------------------------------ webhook wire models


class _Hook(WireModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class WebhookRef(_Hook):
    id: int
    admin_graphql_api_id: str


class WebhookFulfillmentLineItem(_Hook):
    id: int
    admin_graphql_api_id: str
    line_item: WebhookRef | None = None


class WebhookReturnLineItem(_Hook):
    id: int
    admin_graphql_api_id: str
    fulfillment_line_item: WebhookFulfillmentLineItem
    quantity: int = Field(gt=0)
    return_reason: str | None = None
    return_reason_note: str | None = None
    customer_note: str | None = None


class WebhookExchangeLineItem(_Hook):
    """An entry of a `returns/request` body's `exchange_line_items`: which exchange line it
    is. Its variant, SKU and price are read from the Admin API (`GqlExchangeLineItem`)."""

    id: int
    admin_graphql_api_id: str


class WebhookReturn(_Hook):
    """The `returns/request` body: a REST Return, thin on purpose (no prices, no customer
    contact we can rely on), so the order is looked up through GraphQL."""

    id: int
    admin_graphql_api_id: str
    status: str | None = None
    name: str | None = None
    order: WebhookRef
    return_line_items: list[WebhookReturnLineItem] = Field(min_length=1)
    # Units sent out instead of money (a return with an exchange); none for a plain return.
    exchange_line_items: list[WebhookExchangeLineItem] = Field(default_factory=list)


class WebhookTransaction(_Hook):
    id: int
    kind: str
    status: str
    amount: str
    currency: str
    gateway: str | None = None
    parent_id: int | None = None


class WebhookRefund(_Hook):
    """The `refunds/create` body: the REST Refund resource."""

    id: int
    order_id: int
    admin_graphql_api_id: str | None = None
    note: str | None = None
    created_at: datetime | None = None
    transactions: list[WebhookTransaction] = Field(default_factory=list)

    @property
    def gid(self) -> str:
        return self.admin_graphql_api_id or f"{REFUND_GID}{self.id}"

    @property
    def order_gid(self) -> str:
        return f"{ORDER_GID}{self.order_id}"

