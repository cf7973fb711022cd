"""The only module of the WooCommerce connector that makes HTTP calls: REST API v3 under
`/wp-json/wc/v3`, HTTP Basic auth with the consumer key and secret (WooCommerce accepts that
only over HTTPS).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

import httpx
from pydantic import BaseModel, SecretStr

from refundbridge.connectors.base import ConnectorContext, send
from refundbridge.connectors.woocommerce.transformers import (
    API_PREFIX,
    NAME,
    REFUND_MISSING_CODES,
    parse_wire,
    parse_wire_list,
    read_error,
)
from refundbridge.connectors.woocommerce.wire import WCNote, WCOrder, WCRefund
from refundbridge.core.errors import PermanentProviderError, TransientProviderError

PAGE_SIZE: Final = 100  # the REST API's maximum per_page

# WooCommerce answers every failure of `wc_create_refund()` with HTTP 500 and this code: the
# gateway refused (its message is passed on), the amount is more than is left to refund, or
# saving failed. In each case WooCommerce has already deleted the refund it started, so no
# refund exists. It is still not safe to ask again: a gateway that timed out towards
# WooCommerce may have paid all the same. A person checks, then retries the case.
REFUSAL_CODES: Final = frozenset({"woocommerce_rest_cannot_create_order_refund"})

M = TypeVar("M", bound=BaseModel)


def _wc_error(response: httpx.Response) -> tuple[str, str | None]:
    """WordPress's own message and code for a refusal, so the case shows the shop's words."""
    error = read_error(response.content)
    if error is None:
        return f"HTTP {response.status_code}: {response.text[:500]}", str(response.status_code)
    return error.message or f"HTTP {response.status_code} {error.code}", error.code


def _refusals_are_permanent(response: httpx.Response) -> None:
    # A response hook, because `send()` files every 5xx as transient before anyone can read
    # the body; this one 500 is a refusal, not an outage.
    if response.status_code >= 500:
        response.read()
        error = read_error(response.content)
        if error is not None and error.code in REFUSAL_CODES:
            raise PermanentProviderError(NAME, error.message or error.code, code=error.code)


def _path(*parts: str | int) -> str:
    return API_PREFIX + "".join(f"/{part}" for part in parts)


class WooCommerceClient:
    def __init__(self, ctx: ConnectorContext, *, base_url: str, consumer_key: SecretStr,
                 consumer_secret: SecretStr) -> None:
        self._retry = ctx.retry
        self._http = ctx.http_client(
            base_url,
            auth=httpx.BasicAuth(consumer_key.get_secret_value(),
                                 consumer_secret.get_secret_value()),
            headers={"Accept": "application/json"},
            event_hooks={"response": [_refusals_are_permanent]},
        )

    def close(self) -> None:
        self._http.close()

    # ---------------------------------------------------------------- orders
    def get_order(self, order_id: str) -> WCOrder:
        request = self._http.build_request("GET", _path("orders", _id(order_id)))
        return parse_wire(WCOrder, self._call(request).content, f"GET order {order_id}")

    def set_status(self, order_id: str, status: str) -> WCOrder:
        # PUT of one field: sending it again leaves the order as once.
        request = self._http.build_request("PUT", _path("orders", _id(order_id)),
                                           json={"status": status})
        return parse_wire(WCOrder, self._call(request).content, f"PUT order {order_id}")

    def list_notes(self, order_id: str) -> list[WCNote]:
        request = self._http.build_request("GET", _path("orders", _id(order_id), "notes"),
                                           params={"type": "any"})
        return parse_wire_list(WCNote, self._call(request).content,
                               f"GET notes of order {order_id}")

    def add_note(self, order_id: str, note: str, customer_note: bool,
                 find_existing: Callable[[], WCNote | None]) -> WCNote:
        """Add a note, asking `find_existing` before each retry: a note is a new row each
        time it is posted, and a lost answer does not mean a lost note."""
        request = self._http.build_request(
            "POST", _path("orders", _id(order_id), "notes"),
            json={"note": note, "customer_note": customer_note})
        return self._create(request, WCNote, find_existing, f"POST note on order {order_id}")

    # ---------------------------------------------------------------- refunds
    def create_refund(self, order_id: str, body: dict[str, Any],
                      find_existing: Callable[[], WCRefund | None]) -> WCRefund:
        """Create the refund, asking `find_existing` before every retry.

        WooCommerce has no idempotency key: a timeout or a 5xx may come after it stored the
        refund and the gateway paid, and posting again would pay again.
        """
        request = self._http.build_request(
            "POST", _path("orders", _id(order_id), "refunds"), json=body)
        return self._create(request, WCRefund, find_existing,
                            f"POST refund on order {order_id}")

    def list_refunds(self, order_id: str) -> list[WCRefund]:
        return self._retry.call(lambda: self.list_refunds_once(order_id))

    def list_refunds_once(self, order_id: str) -> list[WCRefund]:
        """Every refund of the order, page by page, without retrying (callers inside a retry
        loop must not nest another)."""
        refunds: list[WCRefund] = []
        page = 1
        while True:
            request = self._http.build_request(
                "GET", _path("orders", _id(order_id), "refunds"),
                params={"per_page": str(PAGE_SIZE), "page": str(page)})
            response = send(NAME, self._http, request, _wc_error)
            batch = parse_wire_list(WCRefund, response.content,
                                    f"GET refunds of order {order_id}")
            refunds.extend(batch)
            pages = _int(response.headers.get("X-WP-TotalPages"))
            if not batch or pages is None or page >= pages:
                return refunds
            page += 1

    def get_refund(self, order_id: str, refund_id: str) -> WCRefund | None:
        """The refund, or None if WooCommerce has no such refund (any more)."""
        request = self._http.build_request(
            "GET", _path("orders", _id(order_id), "refunds", _id(refund_id)))
        try:
            response = self._call(request)
        except PermanentProviderError as exc:
            if exc.code in REFUND_MISSING_CODES:
                return None
            raise
        return parse_wire(WCRefund, response.content, f"GET refund {refund_id}")

    # ---------------------------------------------------------------- plumbing
    def _call(self, request: httpx.Request) -> httpx.Response:
        return self._retry.call(lambda: send(NAME, self._http, request, _wc_error))

    def _create(self, request: httpx.Request, model: type[M],
                find_existing: Callable[[], M | None], what: str) -> M:
        attempts = 0

        def attempt() -> M:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                try:
                    existing = find_existing()
                except PermanentProviderError as exc:
                    # The earlier POST may have worked. Reporting "refused" here would let a
                    # new attempt (and key) pay again; "try later" keeps this key, and the
                    # next run asks again before posting.
                    raise TransientProviderError(
                        NAME, f"{what}: an earlier try may have succeeded and looking for it "
                              f"failed: {exc.message}") from exc
                if existing is not None:
                    return existing
            response = send(NAME, self._http, request, _wc_error)
            return parse_wire(model, response.content, what)

        return self._retry.call(attempt)


def _id(value: str) -> str:
    # Ids go into the path: only digits, so nothing can walk to another endpoint.
    if not value.isdigit():
        raise PermanentProviderError(NAME, f"'{value}' is not a WooCommerce id",
                                     code="invalid_id")
    return value


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
