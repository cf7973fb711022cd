"""The only module that talks to ERPNext: Frappe's REST API (`/api/resource`, `/api/method`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from connectors.base import ConnectorContext, send
from connectors.erpnext.transformers import (
    NAME,
    DocResult,
    ListResult,
    MethodResult,
    error_message,
    parse,
)
from core.errors import PermanentProviderError

MAKE_SALES_RETURN = (
    "/api/method/erpnext.accounts.doctype.sales_invoice.sales_invoice.make_sales_return"
)


def _resource(doctype: str) -> str:
    return f"/api/resource/{quote(doctype)}"


def _frappe_error(response: httpx.Response) -> tuple[str, str | None]:
    """Frappe answers a refusal with a JSON envelope around a server traceback; the person
    reading the case needs the message inside it."""
    return error_message(response.status_code, response.text), str(response.status_code)


class ERPNextClient:
    def __init__(self, base_url: str, api_key: SecretStr, api_secret: SecretStr,
                 ctx: ConnectorContext) -> None:
        self._ctx = ctx
        token = f"token {api_key.get_secret_value()}:{api_secret.get_secret_value()}"
        self._http = ctx.http_client(
            base_url,
            headers={"Authorization": token, "Accept": "application/json"},
        )

    def close(self) -> None:
        self._http.close()

    def list_names(self, doctype: str, filters: list[list[Any]]) -> list[str]:
        # Frappe reads `filters` and `fields` as JSON inside the query string.
        params = {"filters": json.dumps(filters), "fields": json.dumps(["name"])}
        request = self._http.build_request("GET", _resource(doctype), params=params)
        body = self._ctx.retry.call(lambda: self._send_json(request))
        return [row.name for row in parse(ListResult, body, f"list {doctype}").data]

    def make_sales_return(self, invoice: str) -> dict[str, Any]:
        """ERPNext's draft return for `invoice`: every row still returnable, quantities negative."""
        request = self._http.build_request("POST", MAKE_SALES_RETURN,
                                           json={"source_name": invoice})
        body = self._ctx.retry.call(lambda: self._send_json(request))
        return parse(MethodResult, body, f"make_sales_return for {invoice}").message

    def insert(self, doctype: str, doc: Mapping[str, Any],
               find_existing: Callable[[], str | None]) -> str:
        """Insert `doc` and return its name, asking `find_existing` again before each retry.

        A 5xx or a timeout may come after Frappe has committed the insert; inserting again
        blindly would book a second credit note.
        """
        request = self._http.build_request("POST", _resource(doctype), json=dict(doc))
        attempts = 0

        def attempt() -> str:
            nonlocal attempts
            attempts += 1
            if attempts > 1 and (name := find_existing()) is not None:
                return name
            body = self._send_json(request)
            return parse(DocResult, body, f"insert {doctype}").data.name

        return self._ctx.retry.call(attempt)

    def _send_json(self, request: httpx.Request) -> Any:
        response = send(NAME, self._http, request, _frappe_error)
        try:
            return response.json()
        except ValueError as exc:
            # Typically a proxy's or login page's HTML: a misconfigured base_url, not a blip.
            raise PermanentProviderError(
                NAME, f"{request.method} {request.url.path} answered HTTP "
                      f"{response.status_code} with a body that is not JSON") from exc
