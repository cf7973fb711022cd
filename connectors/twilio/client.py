"""The only module of the Twilio connector that makes HTTP calls."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date
from typing import TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from refundbridge.connectors.base import ConnectorContext, send, unexpected_answer
from refundbridge.connectors.twilio.transformers import (
    NAME,
    TwilioError,
    TwilioMessage,
    TwilioMessagePage,
)
from refundbridge.core.errors import PermanentProviderError

API_VERSION = "2010-04-01"
PAGE_SIZE = 50
MAX_PAGES = 20  # a number gets a handful of our messages a day; 1 000 is far past that

M = TypeVar("M", bound=BaseModel)


def _twilio_error(response: httpx.Response) -> tuple[str, str | None]:
    """Twilio's own message and code for a refusal, from its documented error body."""
    try:
        error = TwilioError.model_validate_json(response.content)
    except ValidationError:  # not Twilio's shape (a proxy, say): report the raw body
        return f"HTTP {response.status_code}: {response.text[:500]}", str(response.status_code)
    more = f" ({error.more_info})" if error.more_info else ""
    code = str(error.code) if error.code is not None else str(response.status_code)
    return f"{error.message}{more}", code


class TwilioClient:
    def __init__(self, ctx: ConnectorContext, *, base_url: str, account_sid: str,
                 username: str, password: SecretStr) -> None:
        self._retry = ctx.retry
        # Basic auth: the Account SID and its Auth Token, or an API key's SID and secret.
        self._http = ctx.http_client(base_url,
                                     auth=httpx.BasicAuth(username, password.get_secret_value()),
                                     headers={"Accept": "application/json"})
        self._messages = f"/{API_VERSION}/Accounts/{quote(account_sid, safe='')}/Messages.json"

    def close(self) -> None:
        self._http.close()

    def create_message(self, form: Mapping[str, str]) -> TwilioMessage:
        """One attempt at `POST .../Messages.json`: Twilio has no idempotency key, so the
        caller decides about another attempt (after looking for this one)."""
        request = self._http.build_request("POST", self._messages, data=dict(form))
        return self._parse(request, send(NAME, self._http, request, _twilio_error),
                           TwilioMessage)

    def list_messages(self, to: str, sent_on: date | None) -> Iterator[TwilioMessage]:
        """Messages to `to` (sent that day, when `sent_on` is given), newest first, page by
        page along Twilio's `next_page_uri`."""
        params = {"To": to, "PageSize": str(PAGE_SIZE)}
        if sent_on is not None:
            params["DateSent"] = sent_on.isoformat()
        request = self._http.build_request("GET", self._messages, params=params)
        for _ in range(MAX_PAGES):
            page = self._call(request, TwilioMessagePage)
            yield from page.messages
            if not page.next_page_uri or not page.messages:
                return
            # A path with its query, on the API's host: never follow it anywhere else.
            if not page.next_page_uri.startswith(f"/{API_VERSION}/"):
                raise PermanentProviderError(
                    NAME, f"unexpected answer: next_page_uri {page.next_page_uri!r}",
                    code="invalid_response")
            request = self._http.build_request("GET", page.next_page_uri)

    def _call(self, request: httpx.Request, model: type[M]) -> M:
        response = self._retry.call(lambda: send(NAME, self._http, request, _twilio_error))
        return self._parse(request, response, model)

    @staticmethod
    def _parse(request: httpx.Request, response: httpx.Response, model: type[M]) -> M:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise unexpected_answer(NAME, f"{request.method} {request.url.path}", exc
                                    ) from exc

