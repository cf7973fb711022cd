"""The only module of the Shopify connector that makes HTTP calls: the Admin GraphQL API.

GraphQL answers most failures with HTTP 200 and an `errors` list, so failures are sorted in
two places: `send()` sorts the HTTP status (429 and 5xx transient, other 4xx permanent), and
`_check` sorts the body (`THROTTLED` and Shopify's internal errors transient, the rest
permanent). Both run inside the retry, so a throttled call is retried like a 503.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final, TypeVar

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from refundbridge.connectors.base import ConnectorContext, send, unexpected_answer
from refundbridge.connectors.shopify.queries import (
    EXCHANGE_LINES_FIRST,
    FULFILLMENT_LINES_QUERY,
    FULFILLMENTS_FIRST,
    MAX_PAGES,
    ORDER_LINES_QUERY,
    ORDER_QUERY,
    ORDER_REFUNDS_QUERY,
    REFUND_CREATE,
    REFUND_QUERY,
    RETURN_APPROVE,
    RETURN_DECLINE,
    RETURN_EXCHANGES_QUERY,
    RETURN_QUERY,
    TRANSACTIONS_FIRST,
    operation_name,
)
from refundbridge.connectors.shopify.transformers import NAME, too_large
from refundbridge.connectors.shopify.wire import (
    GqlFulfillment,
    GqlFulfillmentLineItem,
    GqlFulfillmentLineItems,
    GqlFulfillmentLines,
    GqlLineItem,
    GqlLineItems,
    GqlOrder,
    GqlOrderLines,
    GqlOrderRefunds,
    GqlRefund,
    GqlReturn,
    GqlReturnExchanges,
    GqlTransaction,
    GqlTransactions,
    GraphQLResponse,
    PageInfo,
    RefundCreatePayload,
    ReturnMutationPayload,
    UserError,
)
from refundbridge.core.errors import PermanentProviderError, TransientProviderError

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
N = TypeVar("N")

# Top-level error codes worth another try with the same request (and the same key).
TRANSIENT_CODES: Final = frozenset({
    "THROTTLED", "INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE", "TIMEOUT",
    "IDEMPOTENCY_CONCURRENT_REQUEST",
})


def _shopify_error(response: httpx.Response) -> tuple[str, str | None]:
    """Shopify's words for a refused call: `{"errors": "..."}` or a list of `{message}`."""
    try:
        errors = response.json().get("errors")
    except (ValueError, AttributeError):
        errors = None
    if isinstance(errors, str):
        return f"HTTP {response.status_code}: {errors}", str(response.status_code)
    if isinstance(errors, list) and errors:
        messages = [e.get("message", str(e)) if isinstance(e, dict) else str(e) for e in errors]
        return f"HTTP {response.status_code}: {'; '.join(messages)}", str(response.status_code)
    return f"HTTP {response.status_code}: {response.text[:500]}", str(response.status_code)


def _throttle_wait(extensions: dict[str, Any]) -> float | None:
    """Seconds until the leaky bucket holds what the query costs, from `extensions.cost`."""
    cost = extensions.get("cost")
    if not isinstance(cost, dict):
        return None
    status = cost.get("throttleStatus") or {}
    try:
        needed = float(cost["requestedQueryCost"]) - float(status["currentlyAvailable"])
        rate = float(status["restoreRate"])
    except (KeyError, TypeError, ValueError):
        return None
    return max(0.0, needed / rate) if rate > 0 else None


def next_cursor(page: PageInfo, what: str) -> str | None:
    """Where the next page of `what` starts, or None after the last one."""
    if not page.has_next_page:
        return None
    if not page.end_cursor:
        raise PermanentProviderError(NAME, f"{what}: Shopify says there is more but gives no "
                                           "cursor to read it from", code="invalid_response")
    return page.end_cursor


def check_order_size(order: GqlOrder) -> None:
    """Shopify does not page an order's fulfillments or transactions, so an answer as long as
    the `first` we asked for may have left some out. Read short, the paid total, the refund
    split or the delivery date could be wrong: such an order is refused instead."""
    if len(order.fulfillments) >= FULFILLMENTS_FIRST:
        raise too_large(f"order {order.id}", "fulfillments", FULFILLMENTS_FIRST)
    if len(order.transactions) >= TRANSACTIONS_FIRST:
        raise too_large(f"order {order.id}", "transactions", TRANSACTIONS_FIRST)


def raise_user_errors(errors: list[UserError], mutation: str) -> None:
    """A mutation's `userErrors` are Shopify saying no, in its own words: permanent, except a
    concurrent request under the same idempotency key, which is still running."""
    if not errors:
        return
    codes = {e.code for e in errors if e.code}
    message = f"{mutation}: " + "; ".join(
        (f"{'.'.join(e.field)}: " if e.field else "") + e.message for e in errors)
    if codes & TRANSIENT_CODES:
        raise TransientProviderError(NAME, message)
    raise PermanentProviderError(NAME, message, code=next(iter(sorted(codes)), None))


class ShopifyClient:
    def __init__(self, ctx: ConnectorContext, *, base_url: str, access_token: SecretStr,
                 api_version: str) -> None:
        self._retry = ctx.retry
        # The version lives in the path: pinned so that Shopify's quarterly releases cannot
        # change the wire format under us.
        self._path = f"/admin/api/{api_version}/graphql.json"
        self._http = ctx.http_client(
            base_url,
            headers={"X-Shopify-Access-Token": access_token.get_secret_value(),
                     "Accept": "application/json"},
        )

    def close(self) -> None:
        self._http.close()

    # ---------------------------------------------------------------- reads
    # Each page is its own request (and its own retries), so every request stays under
    # Shopify's cost limit however long the order is; see queries.py.
    def get_order(self, order_id: str) -> GqlOrder:
        """The order with all its lines, fulfillments, fulfillment lines and transactions,
        or PermanentProviderError if it has more than RefundBridge can read whole."""
        data = self._call(ORDER_QUERY, {"id": order_id}, lambda d: d)
        order = self._model(data, "order", GqlOrder, f"order {order_id}")
        check_order_size(order)
        lines = order.line_items.nodes + self._follow(
            order.line_items.page_info, f"order {order_id} lines",
            lambda cursor: self._order_lines(order.id, cursor))
        return order.model_copy(update={
            "line_items": GqlLineItems(nodes=lines),
            "fulfillments": [self._whole_fulfillment(f) for f in order.fulfillments],
        })

    def get_order_refunds(self, order_id: str) -> GqlOrderRefunds:
        data = self._call(ORDER_REFUNDS_QUERY, {"id": order_id}, lambda d: d)
        return self._model(data, "order", GqlOrderRefunds, f"order {order_id}")

    def get_refund(self, refund_id: str) -> GqlRefund:
        """The refund with all its transactions."""
        refund = self._refund_page(refund_id, None)
        return self._whole_refund(refund, refund.transactions.page_info)

    def _order_lines(self, order_id: str, cursor: str) -> tuple[list[GqlLineItem], PageInfo]:
        data = self._call(ORDER_LINES_QUERY, {"id": order_id, "after": cursor}, lambda d: d)
        page = self._model(data, "order", GqlOrderLines, f"order {order_id}").line_items
        return page.nodes, page.page_info

    def _whole_fulfillment(self, fulfillment: GqlFulfillment) -> GqlFulfillment:
        first = fulfillment.fulfillment_line_items
        if not first.page_info.has_next_page:
            return fulfillment

        def page(cursor: str) -> tuple[list[GqlFulfillmentLineItem], PageInfo]:
            data = self._call(FULFILLMENT_LINES_QUERY, {"id": fulfillment.id, "after": cursor},
                              lambda d: d)
            lines = self._model(data, "fulfillment", GqlFulfillmentLines,
                                f"fulfillment {fulfillment.id}").fulfillment_line_items
            return lines.nodes, lines.page_info

        rest = self._follow(first.page_info, f"fulfillment {fulfillment.id} lines", page)
        return fulfillment.model_copy(update={
            "fulfillment_line_items": GqlFulfillmentLineItems(nodes=first.nodes + rest)})

    def _refund_page(self, refund_id: str, cursor: str | None) -> GqlRefund:
        # The first page goes without `after`: null is what an omitted variable means.
        variables = {"id": refund_id} if cursor is None else {"id": refund_id, "after": cursor}
        data = self._call(REFUND_QUERY, variables, lambda d: d)
        return self._model(data, "refund", GqlRefund, f"refund {refund_id}")

    def _whole_refund(self, refund: GqlRefund, page_info: PageInfo) -> GqlRefund:
        def page(cursor: str) -> tuple[list[GqlTransaction], PageInfo]:
            transactions = self._refund_page(refund.id, cursor).transactions
            return transactions.nodes, transactions.page_info

        rest = self._follow(page_info, f"refund {refund.id} transactions", page)
        if not rest:
            return refund
        return refund.model_copy(update={
            "transactions": GqlTransactions(nodes=refund.transactions.nodes + rest)})

    @staticmethod
    def _follow(page_info: PageInfo, what: str,
                fetch: Callable[[str], tuple[list[N], PageInfo]]) -> list[N]:
        """The items after a first page, `fetch(cursor)` reading each next one."""
        items: list[N] = []
        pages = 0
        while (cursor := next_cursor(page_info, what)) is not None:
            if pages == MAX_PAGES:
                raise PermanentProviderError(NAME, f"{what}: still more after {MAX_PAGES} "
                                                   "pages", code="order_too_large")
            more, page_info = fetch(cursor)
            items.extend(more)
            pages += 1
        return items

    def get_return(self, return_id: str) -> GqlReturn:
        data = self._call(RETURN_QUERY, {"id": return_id}, lambda d: d)
        return self._model(data, "return", GqlReturn, f"return {return_id}")

    def get_return_exchanges(self, return_id: str) -> GqlReturnExchanges:
        """The return's exchange lines, all of them, or PermanentProviderError if there are
        more than one page holds (read short, a replacement would be missing)."""
        data = self._call(RETURN_EXCHANGES_QUERY, {"id": return_id}, lambda d: d)
        found = self._model(data, "return", GqlReturnExchanges, f"return {return_id}")
        if found.exchange_line_items.page_info.has_next_page:
            raise too_large(f"return {return_id}", "exchange lines", EXCHANGE_LINES_FIRST)
        return found

    # ---------------------------------------------------------------- writes
    def create_refund(self, refund_input: dict[str, Any], idempotency_key: str) -> GqlRefund:
        variables = {"input": refund_input, "idempotencyKey": idempotency_key}

        def payload(data: dict[str, Any]) -> GqlRefund:
            result = self._model(data, "refundCreate", RefundCreatePayload, "refundCreate")
            raise_user_errors(result.user_errors, "refundCreate")
            if result.refund is None:
                raise PermanentProviderError(NAME, "refundCreate returned no refund",
                                             code="invalid_response")
            return result.refund

        refund = self._call(REFUND_CREATE, variables, payload)
        # Paid: what is left is reading, so a failure from here on cannot pay twice.
        return self._whole_refund(refund, refund.transactions.page_info)

    def approve_return(self, return_id: str, notify: bool) -> ReturnMutationPayload:
        return self._call(
            RETURN_APPROVE, {"input": {"id": return_id, "notifyCustomer": notify}},
            lambda d: self._model(d, "returnApproveRequest", ReturnMutationPayload,
                                  "returnApproveRequest"))

    def decline_return(self, return_id: str, reason: str, note: str, notify: bool
                       ) -> ReturnMutationPayload:
        decline = {"id": return_id, "declineReason": reason, "declineNote": note,
                   "notifyCustomer": notify}
        return self._call(
            RETURN_DECLINE, {"input": decline},
            lambda d: self._model(d, "returnDeclineRequest", ReturnMutationPayload,
                                  "returnDeclineRequest"))

    # ---------------------------------------------------------------- plumbing
    def _call(self, document: str, variables: dict[str, Any],
              read: Callable[[dict[str, Any]], T]) -> T:
        # One request object for every attempt: the same body, so the same idempotency key
        # and the same variables reach Shopify each time.
        body = {"query": document, "operationName": operation_name(document),
                "variables": variables}
        request = self._http.build_request(
            "POST", self._path, content=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"})
        return self._retry.call(lambda: read(self._check(send(NAME, self._http, request,
                                                              _shopify_error))))

    @staticmethod
    def _check(response: httpx.Response) -> dict[str, Any]:
        try:
            answer = GraphQLResponse.model_validate_json(response.content)
        except ValidationError as exc:
            raise PermanentProviderError(NAME, f"not a GraphQL answer: {response.text[:300]}",
                                         code="invalid_response") from exc
        if answer.errors:
            message = "; ".join(e.message for e in answer.errors)
            codes = {e.code for e in answer.errors if e.code}
            if codes & TRANSIENT_CODES:
                raise TransientProviderError(NAME, f"{message} ({', '.join(sorted(codes))})",
                                             retry_after=_throttle_wait(answer.extensions))
            raise PermanentProviderError(NAME, message, code=next(iter(sorted(codes)), None))
        if answer.data is None:
            raise PermanentProviderError(NAME, "GraphQL answer without data",
                                         code="invalid_response")
        return answer.data

    @staticmethod
    def _model(data: dict[str, Any], key: str, model: type[M], what: str) -> M:
        value = data.get(key)
        if value is None:
            raise PermanentProviderError(NAME, f"Shopify knows no {what}", code="not_found")
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            raise unexpected_answer(NAME, what, exc, prefix=key) from exc
