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

from connectors.base import ConnectorContext, send
from connectors.shopify.transformers import (
    NAME,
    ORDER_QUERY,
    ORDER_REFUNDS_QUERY,
    REFUND_CREATE,
    REFUND_QUERY,
    RETURN_APPROVE,
    RETURN_DECLINE,
    RETURN_QUERY,
    GqlOrder,
    GqlOrderRefunds,
    GqlRefund,
    GqlReturn,
    GraphQLResponse,
    RefundCreatePayload,
    ReturnMutationPayload,
    UserError,
    operation_name,
    user_error_message,
)
from core.errors import PermanentProviderError, TransientProviderError

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

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


def raise_user_errors(errors: list[UserError], mutation: str) -> None:
    """A mutation's `userErrors` are Shopify saying no, in its own words: permanent, except a
    concurrent request under the same idempotency key, which is still running."""
    if not errors:
        return
    codes = {e.code for e in errors if e.code}
    message = f"{mutation}: {user_error_message(errors)}"
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
    def get_order(self, order_id: str) -> GqlOrder:
        data = self._call(ORDER_QUERY, {"id": order_id}, lambda d: d)
        return self._model(data, "order", GqlOrder, f"order {order_id}")

    def get_order_refunds(self, order_id: str) -> GqlOrderRefunds:
        data = self._call(ORDER_REFUNDS_QUERY, {"id": order_id}, lambda d: d)
        return self._model(data, "order", GqlOrderRefunds, f"order {order_id}")

    def get_refund(self, refund_id: str) -> GqlRefund:
        data = self._call(REFUND_QUERY, {"id": refund_id}, lambda d: d)
        return self._model(data, "refund", GqlRefund, f"refund {refund_id}")

    def get_return(self, return_id: str) -> GqlReturn:
        data = self._call(RETURN_QUERY, {"id": return_id}, lambda d: d)
        return self._model(data, "return", GqlReturn, f"return {return_id}")

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

        return self._call(REFUND_CREATE, variables, payload)

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
            first = exc.errors()[0]
            where = ".".join(str(p) for p in (key, *first["loc"]))
            raise PermanentProviderError(NAME, f"unexpected answer for {what}: {where}: "
                                               f"{first['msg']}",
                                         code="invalid_response") from exc
