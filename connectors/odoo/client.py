"""The only module that talks to Odoo: JSON-RPC `execute_kw` (`/jsonrpc`), or the `/json/2`
API of Odoo 19, behind one small set of ORM calls.

JSON-RPC passes a method's arguments by position and answers errors inside an HTTP 200;
/json/2 passes them by name and answers errors with an HTTP status. `OdooCall` carries both
forms of one call, so the connector does not care which API a shop uses.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import quote

import httpx
from pydantic import SecretStr, ValidationError

from refundbridge.connectors.base import ConnectorContext, send
from refundbridge.connectors.odoo.transformers import (
    NAME,
    ErrorKind,
    OdooException,
    RpcResponse,
    classify,
    error_code,
    parse,
)
from refundbridge.core.errors import PermanentProviderError, TransientProviderError

log = logging.getLogger(__name__)

T = TypeVar("T")
Domain = Sequence[Sequence[Any] | str]


@dataclass(frozen=True, slots=True)
class OdooCall:
    model: str
    method: str
    args: list[Any] = field(default_factory=list)  # JSON-RPC: positional, after model+method
    kwargs: dict[str, Any] = field(default_factory=dict)  # JSON-RPC: by name
    body: dict[str, Any] = field(default_factory=dict)  # /json/2: every argument by name

    @property
    def label(self) -> str:
        return f"{self.model}.{self.method}"


class AccessDeniedError(PermanentProviderError):
    """Odoo refused the credentials (the JSON-RPC client re-authenticates once on it)."""


def _odoo_error(name: str, message: str, what: str) -> Exception:
    kind = classify(name, message)
    text = f"{what}: {message or name}"
    match kind:
        case ErrorKind.TRANSIENT:
            return TransientProviderError(NAME, text)
        case ErrorKind.ACCESS_DENIED:
            return AccessDeniedError(NAME, f"{text} (check database, username/uid and api_key)",
                                     code=error_code(name))
        case ErrorKind.PERMANENT:
            return PermanentProviderError(NAME, text, code=error_code(name))


class Transport(Protocol):
    def execute(self, call: OdooCall) -> Any:
        """One attempt at one call; raises the typed errors of `core.errors`."""
        ...

    def major_version(self) -> int: ...

    def close(self) -> None: ...


def _json(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        # Typically a proxy's or login page's HTML: a misconfigured base_url, not a blip.
        raise PermanentProviderError(
            NAME, f"{what} answered HTTP {response.status_code} with a body that is not JSON",
            code="invalid_response") from exc


class JsonRpcTransport:
    """`POST /jsonrpc` with `service: object, method: execute_kw`, the uid from
    `common.authenticate` (cached; asked again once when Odoo says AccessDenied)."""

    def __init__(self, ctx: ConnectorContext, *, base_url: str, database: str,
                 username: str | None, uid: int | None, api_key: SecretStr) -> None:
        self._http = ctx.http_client(base_url, headers={"Accept": "application/json"})
        self._database = database
        self._username = username
        self._configured_uid = uid
        self._uid = uid if username is None else None
        self._api_key = api_key
        self._ids = itertools.count(1)

    def close(self) -> None:
        self._http.close()

    def _rpc(self, service: str, method: str, args: list[Any], what: str) -> Any:
        payload = {"jsonrpc": "2.0", "method": "call",
                   "params": {"service": service, "method": method, "args": args},
                   "id": next(self._ids)}
        request = self._http.build_request("POST", "/jsonrpc", json=payload)
        # The payload holds the api key: log what is called, never the arguments.
        log.debug("odoo: jsonrpc %s.%s %s", service, method, what)
        answer = parse(RpcResponse, _json(send(NAME, self._http, request), what), what)
        if answer.error is not None:
            data = answer.error.data
            raise _odoo_error(data.name, data.message or answer.error.message, what)
        return answer.result

    def _authenticate(self) -> int:
        if self._username is None:
            assert self._configured_uid is not None
            return self._configured_uid
        uid = self._rpc("common", "authenticate",
                        [self._database, self._username, self._api_key.get_secret_value(), {}],
                        "common.authenticate")
        if not isinstance(uid, int) or isinstance(uid, bool) or uid <= 0:
            # Odoo answers `false`, not an error, to a wrong login or key.
            raise AccessDeniedError(
                NAME, f"common.authenticate refused user {self._username!r} on database "
                      f"{self._database!r} (check username and api_key)", code="AccessDenied")
        self._uid = uid
        return uid

    def major_version(self) -> int:
        info = self._rpc("common", "version", [], "common.version")
        try:
            return int(info["server_version_info"][0])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise PermanentProviderError(NAME, f"common.version answered {info!r}",
                                         code="invalid_response") from exc

    def execute(self, call: OdooCall) -> Any:
        uid = self._uid if self._uid is not None else self._authenticate()
        try:
            return self._execute_kw(uid, call)
        except AccessDeniedError:
            if self._username is None:
                raise
            # The cached uid may belong to a user since renamed, or a rotated key: ask once.
            self._uid = None
            return self._execute_kw(self._authenticate(), call)

    def _execute_kw(self, uid: int, call: OdooCall) -> Any:
        args = [self._database, uid, self._api_key.get_secret_value(), call.model, call.method,
                call.args, call.kwargs]
        return self._rpc("object", "execute_kw", args, call.label)


def _json2_error(response: httpx.Response) -> tuple[str, str | None]:
    """Odoo's own words from a /json/2 refusal (an object with `name` and `message`, or,
    from 19.0's handler for user errors, a bare JSON string)."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:300]}", str(response.status_code)
    if isinstance(body, str):
        return body, str(response.status_code)
    try:
        error = OdooException.model_validate(body)
    except ValidationError:
        return f"HTTP {response.status_code}: {response.text[:300]}", str(response.status_code)
    return error.message or error.name, error_code(error.name) if error.name else str(
        response.status_code)


class Json2Transport:
    """`POST /json/2/<model>/<method>` with a bearer API key (Odoo 19+)."""

    def __init__(self, ctx: ConnectorContext, *, base_url: str, database: str,
                 api_key: SecretStr) -> None:
        self._http = ctx.http_client(base_url, headers={
            "Authorization": f"bearer {api_key.get_secret_value()}",
            "X-Odoo-Database": database,
            "User-Agent": "RefundBridge",
        })

    def close(self) -> None:
        self._http.close()

    def major_version(self) -> int:
        return 19  # /json/2 exists from Odoo 19 on

    def execute(self, call: OdooCall) -> Any:
        path = f"/json/2/{quote(call.model, safe='.')}/{quote(call.method, safe='_')}"
        request = self._http.build_request("POST", path, json=call.body)
        log.debug("odoo: json2 %s", call.label)
        response = send(NAME, self._http, request, _json2_error)
        return _json(response, call.label)


class OdooClient:
    """The ORM calls the connector needs, each retried on transient errors only."""

    def __init__(self, transport: Transport, ctx: ConnectorContext) -> None:
        self._transport = transport
        self._retry = ctx.retry
        self._version: int | None = None

    def close(self) -> None:
        self._transport.close()

    def major_version(self) -> int:
        if self._version is None:
            self._version = self._retry.call(self._transport.major_version)
        return self._version

    def _call(self, call: OdooCall) -> Any:
        return self._retry.call(lambda: self._transport.execute(call))

    def search_read(self, model: str, domain: Domain, fields: Sequence[str], *,
                    limit: int | None = None, order: str | None = None) -> list[Any]:
        named: dict[str, Any] = {"fields": list(fields)}
        if limit is not None:
            named["limit"] = limit
        if order is not None:
            named["order"] = order
        rows = self._call(OdooCall(model, "search_read", [list(domain)], named,
                                   {"domain": list(domain), **named}))
        return list(rows) if isinstance(rows, list) else [rows]

    def read(self, model: str, ids: Sequence[int], fields: Sequence[str]) -> list[Any]:
        if not ids:
            return []
        rows = self._call(OdooCall(model, "read", [list(ids)], {"fields": list(fields)},
                                   {"ids": list(ids), "fields": list(fields)}))
        return list(rows) if isinstance(rows, list) else [rows]

    def field_names(self, model: str) -> set[str]:
        fields = self._call(OdooCall(model, "fields_get", [], {"attributes": ["type"]},
                                     {"attributes": ["type"]}))
        return set(fields) if isinstance(fields, Mapping) else set()

    def create(self, model: str, values: Mapping[str, Any],
               context: Mapping[str, Any] | None = None) -> int:
        """Create one record; for wizards only (a second one is harmless), so it is retried."""
        kwargs = {"context": dict(context)} if context else {}
        # JSON-RPC's `create` answers an id for a dict and a list for a list; /json/2 takes
        # `vals_list` by name and answers the list of ids.
        created = self._call(OdooCall(model, "create", [dict(values)], kwargs,
                                      {"vals_list": [dict(values)], **kwargs}))
        record_id = created[0] if isinstance(created, list) and created else created
        if not isinstance(record_id, int) or isinstance(record_id, bool):
            raise PermanentProviderError(NAME, f"{model}.create answered {created!r}",
                                         code="invalid_response")
        return record_id

    def create_once(self, model: str, values: Mapping[str, Any],
                    find_existing: Callable[[], int | None]) -> int:
        """Create a record that must not exist twice (a picking): before a retry, ask
        `find_existing` for what an attempt that failed after Odoo committed made."""
        call = OdooCall(model, "create", [dict(values)], {}, {"vals_list": [dict(values)]})

        def created(answer: Any) -> int:
            record_id = answer[0] if isinstance(answer, list) and answer else answer
            if not isinstance(record_id, int) or isinstance(record_id, bool):
                raise PermanentProviderError(NAME, f"{model}.create answered {answer!r}",
                                             code="invalid_response")
            return record_id

        return self._retry.call_once(lambda: created(self._transport.execute(call)),
                                     find_existing)

    def write(self, model: str, ids: Sequence[int],
              values: Mapping[str, Any] | Callable[[], Mapping[str, Any] | None]) -> None:
        """Write `values`; a callable is asked again on every attempt, for writes whose
        commands name sub-records (delete line 7) that a committed first attempt changed."""

        def attempt() -> None:
            current = values() if callable(values) else values
            if current is None:
                return
            self._transport.execute(OdooCall(model, "write", [list(ids), dict(current)], {},
                                             {"ids": list(ids), "vals": dict(current)}))

        self._retry.call(attempt)

    def button(self, model: str, ids: Sequence[int], method: str,
               context: Mapping[str, Any] | None,
               find_existing: Callable[[], T | None], result: Callable[[Any], T]) -> T:
        """Call a record method (a button) that changes data, at most once in effect."""
        kwargs = {"context": dict(context)} if context else {}
        call = OdooCall(model, method, [list(ids)], kwargs, {"ids": list(ids), **kwargs})
        return self._retry.call_once(lambda: result(self._transport.execute(call)),
                                     find_existing)


def build_transport(ctx: ConnectorContext, *, api: Literal["jsonrpc", "json2"],
                    base_url: str, database: str, username: str | None, uid: int | None,
                    api_key: SecretStr) -> Transport:
    if api == "json2":
        return Json2Transport(ctx, base_url=base_url, database=database, api_key=api_key)
    return JsonRpcTransport(ctx, base_url=base_url, database=database, username=username,
                            uid=uid, api_key=api_key)
