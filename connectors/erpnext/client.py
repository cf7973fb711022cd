"""The only module that talks to ERPNext: Frappe's REST API (`/api/resource`, `/api/method`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from refundbridge.connectors.base import ConnectorContext, send
from refundbridge.connectors.erpnext.transformers import (
    NAME,
    DocResult,
    M,
    MethodResult,
    error_message,
    parse,
)
from refundbridge.core.errors import PermanentProviderError

MAKE_SALES_RETURN = {
    "Sales Invoice":
        "/api/method/erpnext.accounts.doctype.sales_invoice.sales_invoice.make_sales_return",
    "Delivery Note":
        "/api/method/erpnext.stock.doctype.delivery_note.delivery_note.make_sales_return",
}


def _resource(doctype: str, name: str | None = None) -> str:
    path = f"/api/resource/{quote(doctype)}"
    # Document names may hold "/" (naming series like "SINV/2024/0001").
    return path if name is None else f"{path}/{quote(name, safe='')}"


def _frappe_error(response: httpx.Response) -> tuple[str, str | None]:
    """Frappe answers a refusal with a JSON envelope around a server traceback; the person
    reading the case needs the message inside it."""
    return error_message(response.status_code, response.text), str(response.status_code)


def _number(value: object) -> float:
    """JSON for the Decimal rates we compute. Frappe reads numbers; a float's repr is the
    shortest text that reads back as the same float, so an amount of under 15 digits goes on
    the wire exactly as the Decimal says, and anything that would not is refused."""
    if not isinstance(value, Decimal):
        raise TypeError(f"{type(value).__name__} is not JSON serializable")
    number = float(value)
    if Decimal(repr(number)) != value:
        raise ValueError(f"{value} cannot be sent to ERPNext exactly")
    return number


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

    def list_rows(self, model: type[M], doctype: str, filters: Sequence[Sequence[Any]],
             fields: Sequence[str] = ("name",)) -> M:
        """`GET /api/resource/<DocType>`: every matching row (Frappe pages by 20 unless told
        otherwise; 0 means all)."""
        # Frappe reads `filters` and `fields` as JSON inside the query string.
        params = {"filters": json.dumps(filters), "fields": json.dumps(list(fields)),
                  "limit_page_length": "0"}
        request = self._http.build_request("GET", _resource(doctype), params=params)
        body = self._ctx.retry.call(lambda: self._send_json(request))
        return parse(model, body, f"list {doctype}")

    def list_page(self, model: type[M], doctype: str, filters: Sequence[Sequence[Any]],
                  fields: Sequence[str], order_by: str, limit: int) -> M:
        """`GET /api/resource/<DocType>`: at most `limit` matching rows in `order_by`'s order
        (a walk pages by its own filters, so it always starts at `limit_start` 0)."""
        params = {"filters": json.dumps(filters), "fields": json.dumps(list(fields)),
                  "order_by": order_by, "limit_start": "0",
                  "limit_page_length": str(limit)}
        request = self._http.build_request("GET", _resource(doctype), params=params)
        body = self._ctx.retry.call(lambda: self._send_json(request))
        return parse(model, body, f"list {doctype}")

    def read_method(self, model: type[M], path: str, params: Mapping[str, str]) -> M:
        """`GET /api/method/<dotted.path>?...`: a whitelisted method that only reads."""
        request = self._http.build_request("GET", path, params=dict(params))
        body = self._ctx.retry.call(lambda: self._send_json(request))
        return parse(model, body, path.rsplit(".", 1)[-1])

    def get(self, model: type[M], doctype: str, name: str) -> M:
        """`GET /api/resource/<DocType>/<name>`: the document with its child tables."""
        request = self._http.build_request("GET", _resource(doctype, name))
        body = self._ctx.retry.call(lambda: self._send_json(request))
        return parse(model, body, f"{doctype} {name}")

    def make_sales_return(self, doctype: str, source: str) -> dict[str, Any]:
        """ERPNext's draft return for `source`: every row still returnable, quantities
        negative. A read: nothing is saved."""
        request = self._http.build_request("POST", MAKE_SALES_RETURN[doctype],
                                           json={"source_name": source})
        body = self._ctx.retry.call(lambda: self._send_json(request))
        return parse(MethodResult, body, f"make_sales_return for {source}").message

    def insert(self, doctype: str, doc: Mapping[str, Any],
               find_existing: Callable[[], str | None]) -> str:
        """Insert `doc` and return its name, asking `find_existing` before each retry (a
        failed insert may have committed)."""
        content = json.dumps(dict(doc), default=_number).encode()
        request = self._http.build_request(
            "POST", _resource(doctype), content=content,
            headers={"Content-Type": "application/json"})

        def attempt() -> str:
            body = self._send_json(request)
            return parse(DocResult, body, f"insert {doctype}").data.name

        return self._ctx.retry.call_once(attempt, find_existing)

    def _send_json(self, request: httpx.Request) -> Any:
        response = send(NAME, self._http, request, _frappe_error)
        try:
            return response.json()
        except ValueError as exc:
            # Typically a proxy's or login page's HTML: a misconfigured base_url, not a blip.
            raise PermanentProviderError(
                NAME, f"{request.method} {request.url.path} answered HTTP "
                      f"{response.status_code} with a body that is not JSON") from exc
