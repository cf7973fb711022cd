"""The Admin GraphQL documents the Shopify connector sends, and what each costs. No I/O
here: `client.py` sends them, `wire.py` models their answers.

Operation names double as the `operationName` of each request, so a log (or a fake) can
tell the calls apart without parsing the document.

Query cost. Shopify prices a query before running it and refuses it outright, with
`MAX_COST_EXCEEDED`, when the *requested* cost is over 1,000 points, however few items the
order really has. The documented prices: scalars and enums 0, objects 1, mutations 10, and a
connection (or a list taking `first`) 2 plus `first` times the cost of one item; nested
connections multiply. So no document here nests one page size inside another beyond a few
items, lists that can outgrow a page are paged with `pageInfo`, and lists Shopify does not
page (an order's fulfillments, transactions and refunds) are read up to a limit, past which
the order is refused as too large rather than read short. The cost each document comes to
is in the comment above it; tests/connectors/test_shopify.py prices them all again.
"""

from __future__ import annotations

import re
from typing import Final

ORDER_LINES_FIRST: Final = 50  # lines read with the order; the rest in pages of LINES_PAGE
LINES_PAGE: Final = 100
FULFILLMENTS_FIRST: Final = 20  # a full answer may hide more: such an order is refused
FULFILLMENT_LINES_FIRST: Final = 5  # per fulfillment with the order; then FULFILLMENT_LINES_PAGE
FULFILLMENT_LINES_PAGE: Final = 100
TRANSACTIONS_FIRST: Final = 100  # as FULFILLMENTS_FIRST
REFUNDS_FIRST: Final = 100  # as FULFILLMENTS_FIRST
REFUND_TRANSACTIONS_PAGE: Final = 50
MAX_PAGES: Final = 50  # of any one list: ends a loop on a server that never says "last page"

_MONEY = "presentmentMoney { amount currencyCode }"
_PAGE_INFO = "pageInfo { hasNextPage endCursor }"
_TRANSACTION = (
    f"id kind status gateway parentTransaction {{ id }} amountSet {{ {_MONEY} }}"
)  # 1 + 1 + 2 = 4 points an item
_LINE = f"id sku name quantity discountedUnitPriceAfterAllDiscountsSet {{ {_MONEY} }}"  # 3
_FULFILLMENT_LINE = "id lineItem { id }"  # 2
_REFUND_FIELDS = f"id note createdAt totalRefundedSet {{ {_MONEY} }}"  # 2


def _refund(after: str = "") -> str:
    # What is selected on a Refund: 2 + transactions (2 + 1 + 50 × 4) = 205
    return (f"{_REFUND_FIELDS} transactions(first: {REFUND_TRANSACTIONS_PAGE}{after}) "
            f"{{ {_PAGE_INFO} nodes {{ {_TRANSACTION} }} }}")


# order 1 + customer 1 + lineItems (2 + 1 + 50 × 3 = 153)
# + fulfillments (2 + 20 × (1 + 2 + 1 + 5 × 2) = 282) + transactions (2 + 100 × 4 = 402) = 839
ORDER_QUERY: Final = f"""
query RefundBridgeOrder($id: ID!) {{
  order(id: $id) {{
    id name createdAt processedAt email phone customerLocale presentmentCurrencyCode
    customer {{ id locale }}
    lineItems(first: {ORDER_LINES_FIRST}) {{ {_PAGE_INFO} nodes {{ {_LINE} }} }}
    fulfillments(first: {FULFILLMENTS_FIRST}) {{
      id deliveredAt
      fulfillmentLineItems(first: {FULFILLMENT_LINES_FIRST}) {{
        {_PAGE_INFO} nodes {{ {_FULFILLMENT_LINE} }} }}
    }}
    transactions(first: {TRANSACTIONS_FIRST}) {{ {_TRANSACTION} }}
  }}
}}
""".strip()

# order 1 + lineItems (2 + 1 + 100 × 3) = 304
ORDER_LINES_QUERY: Final = f"""
query RefundBridgeOrderLines($id: ID!, $after: String!) {{
  order(id: $id) {{
    id
    lineItems(first: {LINES_PAGE}, after: $after) {{ {_PAGE_INFO} nodes {{ {_LINE} }} }}
  }}
}}
""".strip()

# fulfillment 1 + fulfillmentLineItems (2 + 1 + 100 × 2) = 204
FULFILLMENT_LINES_QUERY: Final = f"""
query RefundBridgeFulfillmentLines($id: ID!, $after: String!) {{
  fulfillment(id: $id) {{
    id
    fulfillmentLineItems(first: {FULFILLMENT_LINES_PAGE}, after: $after) {{
      {_PAGE_INFO} nodes {{ {_FULFILLMENT_LINE} }} }}
  }}
}}
""".strip()

# order 1 + refunds (2 + 100 × 1) = 103. Only what tells our refunds apart (the note); the
# one that matches is then read whole with REFUND_QUERY.
ORDER_REFUNDS_QUERY: Final = f"""
query RefundBridgeOrderRefunds($id: ID!) {{
  order(id: $id) {{ id refunds(first: {REFUNDS_FIRST}) {{ id note }} }}
}}
""".strip()

# refund 1 + 205 = 206; `$after` is left out for the first page.
REFUND_QUERY: Final = f"""
query RefundBridgeRefund($id: ID!, $after: String) {{
  refund(id: $id) {{ {_refund(", after: $after")} }}
}}
""".strip()

# `@idempotent` on refundCreate exists from 2026-01 and is required from 2026-04: a retry
# with the same key returns the first refund instead of paying again.
# refundCreate 10 + refund (1 + 205) + userErrors 1 = 217; a refund with more transactions
# than one page is read on with REFUND_QUERY.
REFUND_CREATE: Final = f"""
mutation RefundBridgeRefundCreate($input: RefundInput!, $idempotencyKey: String!) {{
  refundCreate(input: $input) @idempotent(key: $idempotencyKey) {{
    refund {{ {_refund()} }}
    userErrors {{ field message }}
  }}
}}
""".strip()

RETURN_QUERY: Final = """
query RefundBridgeReturn($id: ID!) {
  return(id: $id) { id status }
}
""".strip()

# Exchanges: the units a return sends out instead (Return.exchangeLineItems, 2026-01), each
# with the order line Shopify made for it, which holds its SKU and price. Read only when a
# `returns/request` body names exchange lines.
# return 1 + order 1 + exchangeLineItems (2 + 50 × (1 + lineItems 1 + price 2)) = 204. A
# return with more exchange lines than one page is refused (too large), not read short.
EXCHANGE_LINES_FIRST: Final = 50
RETURN_EXCHANGES_QUERY: Final = f"""
query RefundBridgeReturnExchanges($id: ID!) {{
  return(id: $id) {{
    id order {{ id }}
    exchangeLineItems(first: {EXCHANGE_LINES_FIRST}) {{
      {_PAGE_INFO}
      nodes {{ id quantity variantId lineItems {{ {_LINE} }} }}
    }}
  }}
}}
""".strip()

RETURN_APPROVE: Final = """
mutation RefundBridgeReturnApprove($input: ReturnApproveRequestInput!) {
  returnApproveRequest(input: $input) {
    return { id status }
    userErrors { field message code }
  }
}
""".strip()

RETURN_DECLINE: Final = """
mutation RefundBridgeReturnDecline($input: ReturnDeclineRequestInput!) {
  returnDeclineRequest(input: $input) {
    return { id status }
    userErrors { field message code }
  }
}
""".strip()


# Every document the connector sends, for the tests that price them.
DOCUMENTS: Final = (
    ORDER_QUERY, ORDER_LINES_QUERY, FULFILLMENT_LINES_QUERY, ORDER_REFUNDS_QUERY, REFUND_QUERY,
    REFUND_CREATE, RETURN_QUERY, RETURN_APPROVE, RETURN_DECLINE, RETURN_EXCHANGES_QUERY,
)


def operation_name(document: str) -> str:
    match = re.match(r"(?:query|mutation)\s+(\w+)", document)
    if match is None:
        raise ValueError("every document we send is a named operation")
    return match.group(1)
