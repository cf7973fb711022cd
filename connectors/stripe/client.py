"""The only module of the Stripe connector that makes HTTP calls."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from refundbridge.connectors.base import ConnectorContext, send, unexpected_answer
from refundbridge.connectors.stripe.transformers import (
    StripeErrorBody,
    StripeRefund,
    StripeRefundList,
)

NAME = "stripe"
PAGE_SIZE = 100

M = TypeVar("M", bound=BaseModel)


def _stripe_error(response: httpx.Response) -> tuple[str, str | None]:
    """Stripe's own message and code for a refusal, from its documented error body."""
    try:
        detail = StripeErrorBody.model_validate_json(response.content).error
    except ValidationError:  # not Stripe's error shape (a proxy, say): report the raw body
        return f"HTTP {response.status_code}: {response.text[:500]}", str(response.status_code)
    return (detail.message or f"HTTP {response.status_code} {detail.type}",
            detail.code or detail.type)


class StripeClient:
    def __init__(self, ctx: ConnectorContext, *, base_url: str, api_key: SecretStr,
                 api_version: str) -> None:
        self._retry = ctx.retry
        self._http = ctx.http_client(
            base_url,
            headers={
                "Authorization": f"Bearer {api_key.get_secret_value()}",
                # Pinned so a change of the account's default version cannot change the wire
                # format under us.
                "Stripe-Version": api_version,
            },
        )

    def close(self) -> None:
        self._http.close()

    def create_refund(self, form: Mapping[str, str], idempotency_key: str) -> StripeRefund:
        # One request object for every attempt: a retry must carry the very same
        # Idempotency-Key, or Stripe would treat it as a second refund.
        request = self._http.build_request(
            "POST", "/v1/refunds", data=dict(form), headers={"Idempotency-Key": idempotency_key}
        )
        return self._call(request, StripeRefund)

    def get_refund(self, refund_id: str) -> StripeRefund:
        request = self._http.build_request("GET", f"/v1/refunds/{quote(refund_id, safe='')}")
        return self._call(request, StripeRefund)

    def list_refunds(self, field: Literal["charge", "payment_intent"], reference: str
                     ) -> Iterator[StripeRefund]:
        """Every refund of one payment, newest first, page by page."""
        params = {field: reference, "limit": str(PAGE_SIZE)}
        while True:
            request = self._http.build_request("GET", "/v1/refunds", params=params)
            page = self._call(request, StripeRefundList)
            yield from page.data
            if not page.has_more or not page.data:
                return
            params = {**params, "starting_after": page.data[-1].id}

    def _call(self, request: httpx.Request, model: type[M]) -> M:
        response = self._retry.call(lambda: send(NAME, self._http, request, _stripe_error))
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise unexpected_answer(NAME, f"{request.method} {request.url.path}", exc
                                    ) from exc
