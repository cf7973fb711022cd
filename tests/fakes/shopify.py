"""A Shopify fake for respx: the Admin GraphQL API with state, and webhook bodies to match.

It keeps orders (line items, a fulfillment, transactions), returns and refunds; answers the
operations the connector sends (dispatched on `operationName`, as GraphQL over HTTP allows);
pays a refundCreate once per `@idempotent` key and replays the first refund for the same
key; and records every request. `return_webhook`/`refund_webhook` build the REST-shaped
bodies Shopify posts for `returns/request` and `refunds/create`, and `webhook_headers` signs
them as Shopify does (base64 HMAC-SHA256 of the raw body with the app's client secret).

Like Shopify, it prices every query before answering it (`query_cost`, by the documented
rules: scalars and enums 0, objects 1, mutations 10, a connection 2 plus `first` times one
node) and refuses one over 1,000 points with `MAX_COST_EXCEEDED`; and it answers only the
fields asked for, one page of each connection at a time, with `pageInfo` and cursors.

Money is written the way Shopify writes it in GraphQL ("199.0", "16.99"), in the order's
presentment currency.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import httpx
import respx

from tests.fakes.common import hooked_answer
from tests.fakes.shopify_exchanges import ExchangeDesk

SHOP_DOMAIN = "acme-medical.myshopify.com"
BASE = f"https://{SHOP_DOMAIN}"
API_VERSION = "2026-01"
GRAPHQL_PATH = f"/admin/api/{API_VERSION}/graphql.json"
CLIENT_SECRET = "shpss_" + "5f0c1a9e3b7d4e2f8a6c0b1d9e7f3a2c"
ACCESS_TOKEN = "shpat_" + "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
PLACED_AT = datetime(2024, 6, 20, 9, 30, tzinfo=UTC)


def gql_amount(amount: Decimal) -> str:
    """Shopify's GraphQL `Money`: trailing zeros dropped but one decimal kept ("199.0")."""
    normal = amount.normalize()
    exponent = normal.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= 0:
        return f"{int(normal)}.0"
    return format(normal, "f")


def rest_amount(amount: Decimal, currency: str) -> str:
    """REST (webhook) amounts carry the currency's decimals ("199.00", yen "1000")."""
    digits = 0 if currency in {"JPY", "KRW"} else 2
    return f"{amount:.{digits}f}"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def signature(body: bytes, secret: str = CLIENT_SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def webhook_headers(topic: str, body: bytes, *, secret: str = CLIENT_SECRET,
                    shop_domain: str = SHOP_DOMAIN, webhook_id: str | None = None,
                    triggered_at: datetime | None = None) -> dict[str, str]:
    """The headers Shopify sends with a webhook delivery."""
    return {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": signature(body, secret),
        "X-Shopify-Shop-Domain": shop_domain,
        "X-Shopify-API-Version": API_VERSION,
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
        "X-Shopify-Event-Id": str(uuid.uuid4()),
        "X-Shopify-Triggered-At": iso(triggered_at or datetime.now(UTC)),
    }


# ------------------------------------------------------------------ GraphQL: parse, cost, answer
# Enough of GraphQL to read the documents the connector sends (operations, fields, aliases,
# arguments, directives, inline fragments; no named fragments), so that the fake can do what
# Shopify does before running a query (price it, and refuse it above the limit) and answer
# with what was asked for and nothing more, one page of each connection at a time.

MAX_QUERY_COST = 1000  # "A single query to the API cannot exceed a cost of 1000."
MUTATION_COST = 10
_COST_DOCS = "https://shopify.dev/api/usage/rate-limits"

_TOKEN = re.compile(r"""
    (?P<skip>[\s,]+|\#[^\n]*)
  | (?P<spread>\.\.\.)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
  | (?P<punct>[!$():=@\[\]{}|&])
""", re.VERBOSE)


class GraphQLSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class Field:
    name: str
    alias: str | None
    args: dict[str, Any]
    selections: tuple[Field | Fragment, ...] | None  # None: a scalar or an enum

    @property
    def key(self) -> str:
        return self.alias or self.name


@dataclass(frozen=True)
class Fragment:
    """An inline fragment (`... on Type { }`): a union's or an interface's branch."""

    on: str | None
    selections: tuple[Field | Fragment, ...]


@dataclass(frozen=True)
class Operation:
    kind: str  # "query" or "mutation"
    name: str | None
    selections: tuple[Field | Fragment, ...]


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        position = 0
        while position < len(source):
            match = _TOKEN.match(source, position)
            if match is None:
                raise GraphQLSyntaxError(f"unexpected character {source[position]!r}")
            position = match.end()
            kind = match.lastgroup or ""
            if kind != "skip":
                self.tokens.append((kind, match.group()))
        self.at = 0

    def peek(self, value: str | None = None) -> bool:
        if self.at >= len(self.tokens):
            return False
        return value is None or self.tokens[self.at][1] == value

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        if self.at >= len(self.tokens):
            raise GraphQLSyntaxError(f"expected {value or kind}, found the end")
        token_kind, token = self.tokens[self.at]
        if (value is not None and token != value) or (kind is not None and token_kind != kind):
            raise GraphQLSyntaxError(f"expected {value or kind}, found {token!r}")
        self.at += 1
        return token

    def document(self) -> Operation:
        if self.peek("{"):
            operation = Operation("query", None, self.selection_set())
        else:
            kind = self.take(kind="name")
            if kind not in {"query", "mutation"}:
                raise GraphQLSyntaxError(f"{kind!r} operations are not supported here")
            name = self.take(kind="name") if not self.peek("(") and not self.peek("{") \
                and not self.peek("@") else None
            if self.peek("("):
                self.skip_balanced("(", ")")  # variable definitions: types are not checked
            self.directives()
            operation = Operation(kind, name, self.selection_set())
        if self.peek():
            raise GraphQLSyntaxError("one operation per document")
        return operation

    def skip_balanced(self, left: str, right: str) -> None:
        depth = 0
        while True:
            token = self.take()
            depth += token == left
            depth -= token == right
            if depth == 0:
                return

    def selection_set(self) -> tuple[Field | Fragment, ...]:
        self.take("{")
        selections: list[Field | Fragment] = []
        while not self.peek("}"):
            selections.append(self.selection())
        self.take("}")
        if not selections:
            raise GraphQLSyntaxError("empty selection set")
        return tuple(selections)

    def selection(self) -> Field | Fragment:
        if self.peek("..."):
            self.take("...")
            on = None
            if self.peek("on"):
                self.take("on")
                on = self.take(kind="name")
            elif not self.peek("{") and not self.peek("@"):
                raise GraphQLSyntaxError("named fragments are not supported by the fake")
            self.directives()
            return Fragment(on, self.selection_set())
        name = self.take(kind="name")
        alias = None
        if self.peek(":"):
            self.take(":")
            alias, name = name, self.take(kind="name")
        args = self.arguments()
        self.directives()
        selections = self.selection_set() if self.peek("{") else None
        return Field(name, alias, args, selections)

    def arguments(self) -> dict[str, Any]:
        return self.named_values("(", ")") if self.peek("(") else {}

    def named_values(self, opening: str, closing: str) -> dict[str, Any]:
        """`name: value` pairs up to `closing`: a field's arguments, or an input object."""
        self.take(opening)
        values: dict[str, Any] = {}
        while not self.peek(closing):
            name = self.take(kind="name")
            self.take(":")
            values[name] = self.value()
        self.take(closing)
        return values

    def directives(self) -> None:
        while self.peek("@"):
            self.take("@")
            self.take(kind="name")
            self.arguments()

    def value(self) -> Any:
        if self.peek("$"):
            self.take("$")
            return Var(self.take(kind="name"))
        if self.peek("["):
            self.take("[")
            items = []
            while not self.peek("]"):
                items.append(self.value())
            self.take("]")
            return items
        if self.peek("{"):
            return self.named_values("{", "}")
        kind, token = self.tokens[self.at] if self.peek() else ("", "")
        self.take()
        if kind == "string":
            return json.loads(token)
        if kind == "number":
            return float(token) if any(c in token for c in ".eE") else int(token)
        return {"true": True, "false": False, "null": None}.get(token, token)  # or an enum


def parse_operation(document: str) -> Operation:
    return _Parser(document).document()


def _arg(field: Field, name: str, variables: dict[str, Any]) -> Any:
    value = field.args.get(name)
    return variables.get(value.name) if isinstance(value, Var) else value


def _page_size(field: Field, variables: dict[str, Any]) -> int | None:
    first, last = _arg(field, "first", variables), _arg(field, "last", variables)
    if first is None and last is None:
        return None
    return max(int(first or 0), int(last or 0))


def _is_connection(field: Field) -> bool:
    return any(isinstance(s, Field) and s.name in {"nodes", "edges"}
               for s in field.selections or ())


def selections_cost(selections: Sequence[Field | Fragment], variables: dict[str, Any]) -> int:
    """Fields add up; of a union's or an interface's branches only the dearest counts
    ("maximum of possible selections")."""
    fields = sum(field_cost(s, variables) for s in selections if isinstance(s, Field))
    branches = [selections_cost(s.selections, variables) for s in selections
                if isinstance(s, Fragment)]
    return fields + max(branches, default=0)


def field_cost(field: Field, variables: dict[str, Any]) -> int:
    """Shopify's documented cost of one field: scalars and enums 0, objects 1, and a field
    sized by `first`/`last` (a connection, or a list that takes `first`) 2 plus that many
    times the cost of one item (an item being a node: the object, 1, plus its fields)."""
    if field.selections is None:
        return 0
    size = _page_size(field, variables)
    if size is None:
        if _is_connection(field):
            raise GraphQLSyntaxError(f"you must provide one of first or last on {field.name}")
        return 1 + selections_cost(field.selections, variables)
    if not _is_connection(field):
        return 2 + size * (1 + selections_cost(field.selections, variables))
    per_item = 0
    once = 0
    for sub in field.selections:
        if isinstance(sub, Field) and sub.name == "nodes":
            per_item += 1 + selections_cost(sub.selections or (), variables)
        elif isinstance(sub, Field) and sub.name == "edges":
            # An edge is priced by its node; its cursor is a scalar.
            per_item += selections_cost(sub.selections or (), variables)
        else:
            once += (field_cost(sub, variables) if isinstance(sub, Field)
                     else selections_cost(sub.selections, variables))
    return 2 + size * per_item + once


def query_cost(document: str, variables: dict[str, Any] | None = None) -> int:
    """The requested cost of a document, as Shopify works it out before running it."""
    operation = parse_operation(document)
    variables = variables or {}
    if operation.kind == "mutation":
        return sum(MUTATION_COST + (selections_cost(s.selections or (), variables)
                                    if isinstance(s, Field) else 0)
                   for s in operation.selections)
    return selections_cost(operation.selections, variables)


def _cursor(index: int) -> str:
    return base64.b64encode(json.dumps({"last_index": index}).encode()).decode()


def _cursor_index(cursor: str) -> int:
    return int(json.loads(base64.b64decode(cursor))["last_index"])


def _page(raw: Any, field: Field, variables: dict[str, Any]) -> Any:
    """One page of a connection (`{"nodes": [...]}` in the fake's state) or a list."""
    first, last = _arg(field, "first", variables), _arg(field, "last", variables)
    after, before = _arg(field, "after", variables), _arg(field, "before", variables)
    if isinstance(raw, list):
        return raw[:first] if first is not None else raw[-last:] if last else raw
    items = list(raw["nodes"])
    start = _cursor_index(after) + 1 if after else 0
    stop = _cursor_index(before) if before else len(items)
    if first is not None:
        stop = min(stop, start + int(first))
    elif last is not None:
        start = max(start, stop - int(last))
    chunk = items[start:stop]
    return {
        **{k: v for k, v in raw.items() if k != "nodes"},
        "nodes": chunk,
        "edges": [{"cursor": _cursor(start + i), "node": node} for i, node in enumerate(chunk)],
        "pageInfo": {
            "hasNextPage": stop < len(items), "hasPreviousPage": start > 0,
            "startCursor": _cursor(start) if chunk else None,
            "endCursor": _cursor(stop - 1) if chunk else None,
        },
    }


def answer(value: Any, selections: Sequence[Field | Fragment], variables: dict[str, Any]
           ) -> Any:
    """`value` cut down to what `selections` ask for, connections paged. A field the fake
    does not hold raises KeyError: the connector asked for something the fake cannot give."""
    if value is None:
        return None
    if isinstance(value, list):
        return [answer(item, selections, variables) for item in value]
    result: dict[str, Any] = {}
    for sel in selections:
        if isinstance(sel, Fragment):
            result.update(answer(value, sel.selections, variables))
            continue
        raw = value[sel.name]
        if _page_size(sel, variables) is not None and raw is not None:
            raw = _page(raw, sel, variables)
        result[sel.key] = raw if sel.selections is None else answer(raw, sel.selections,
                                                                     variables)
    return result


@dataclass(frozen=True)
class Line:
    sku: str | None
    name: str
    quantity: int
    unit_price: str


def _legacy(gid: str) -> int:
    return int(gid.rsplit("/", 1)[1])


class ShopifyFake(ExchangeDesk):  # a return's exchange lines
    # The operations answered, by `operationName`, and the method answering each. Each
    # method returns everything it holds; the query's selection then picks from that.
    OPERATIONS: ClassVar[dict[str, str]] = {
        "RefundBridgeOrder": "_order",
        "RefundBridgeOrderLines": "_order",
        "RefundBridgeFulfillmentLines": "_fulfillment",
        "RefundBridgeOrderRefunds": "_order_refunds",
        "RefundBridgeRefund": "_refund_by_id",
        "RefundBridgeRefundCreate": "_refund_create",
        "RefundBridgeReturn": "_return",
        "RefundBridgeReturnApprove": "_return_approve",
        "RefundBridgeReturnDecline": "_return_decline",
        "RefundBridgeReturnExchanges": "_return_exchanges",
    }

    def __init__(self, base: str = BASE, api_version: str = API_VERSION) -> None:
        self.url = f"{base}/admin/api/{api_version}/graphql.json"
        self.orders: dict[str, dict[str, Any]] = {}  # GID -> GraphQL Order (+ "refunds")
        self.returns: dict[str, dict[str, Any]] = {}  # GID -> our record of a Return
        self.refunds: dict[str, dict[str, Any]] = {}  # GID -> GraphQL Refund (+ "orderId")
        self.by_key: dict[str, tuple[str, Any]] = {}  # idempotency key -> (refund, input)
        self.requests: list[httpx.Request] = []
        # Hooks: return a Response to answer instead of the fake (503s, throttling…).
        self.before: list[Callable[[httpx.Request, dict[str, Any]], httpx.Response | None]] = []
        self.next_status = "SUCCESS"  # status of the next refund's transactions
        self._ids = itertools.count(5_100_000_001)

    def _gid(self, kind: str) -> str:
        return f"gid://shopify/{kind}/{next(self._ids)}"

    # ------------------------------------------------------------- arranging state
    def add_order(self, lines: Sequence[Line] = (), *, currency: str = "USD",
                  paid: str | None = None, gateway: str = "shopify_payments",
                  email: str | None = "jane.doe@example.com", phone: str | None = "+15555550123",
                  locale: str | None = "en", customer: bool = True,
                  placed_at: datetime = PLACED_AT,
                  delivered_at: datetime | None = PLACED_AT + timedelta(days=3)) -> str:
        lines = list(lines) or [Line("GLU-METER-01", "Glucose meter", 2, "49.95")]
        order_id = self._gid("Order")
        line_items = [{
            "id": self._gid("LineItem"), "sku": line.sku, "name": line.name,
            "quantity": line.quantity,
            "discountedUnitPriceAfterAllDiscountsSet": self._bag(Decimal(line.unit_price),
                                                                 currency),
        } for line in lines]
        total = sum((Decimal(line.unit_price) * line.quantity for line in lines), Decimal(0))
        sale = {"id": self._gid("OrderTransaction"), "kind": "SALE", "status": "SUCCESS",
                "gateway": gateway, "parentTransaction": None,
                "amountSet": self._bag(Decimal(paid) if paid else total, currency)}
        self.orders[order_id] = {
            "id": order_id,
            "name": f"#{1000 + len(self.orders) + 1}",
            "createdAt": iso(placed_at),
            "processedAt": iso(placed_at),
            "email": email,
            "phone": phone,
            "customerLocale": locale,
            "presentmentCurrencyCode": currency,
            "customer": {"id": self._gid("Customer"), "locale": locale} if customer else None,
            "lineItems": {"nodes": line_items},
            "fulfillments": [{
                "id": self._gid("Fulfillment"),
                "deliveredAt": iso(delivered_at) if delivered_at else None,
                "fulfillmentLineItems": {"nodes": [
                    {"id": self._gid("FulfillmentLineItem"), "lineItem": {"id": li["id"]}}
                    for li in line_items]},
            }],
            "transactions": [sale],
            "refunds": [],
        }
        return order_id

    def add_return(self, order_id: str,
                   items: Sequence[tuple[int, int, str]] = ((0, 1, "DEFECTIVE"),),
                   note: str = "", status: str = "REQUESTED") -> str:
        """A return on `order_id`: items are (line index, quantity, ReturnReason)."""
        order = self.orders[order_id]
        fulfillment_lines = order["fulfillments"][0]["fulfillmentLineItems"]["nodes"]
        return_id = self._gid("Return")
        self.returns[return_id] = {
            "id": return_id, "status": status, "orderId": order_id, "decline": None,
            "lineItems": [{"id": self._gid("ReturnLineItem"),
                           "fulfillmentLineItem": fulfillment_lines[index],
                           "quantity": quantity, "returnReason": reason,
                           "returnReasonNote": note, "customerNote": None}
                          for index, quantity, reason in items],
        }
        return return_id

    def add_external_refund(self, order_id: str, amount: str, note: str = "",
                            status: str = "SUCCESS") -> str:
        """A refund a person made in the Shopify admin."""
        order = self.orders[order_id]
        sale = order["transactions"][0]
        return self._refund(order, [{"parentId": sale["id"], "gateway": sale["gateway"],
                                     "amount": amount}], note, status)

    # ------------------------------------------------------------- webhook bodies
    def return_webhook(self, return_id: str) -> bytes:
        """The `returns/request` body (REST Return) Shopify posts for this return."""
        ret = self.returns[return_id]
        order_id = ret["orderId"]
        body = {
            "id": _legacy(return_id), "admin_graphql_api_id": return_id,
            "status": ret["status"].lower(),
            "order": {"id": _legacy(order_id), "admin_graphql_api_id": order_id},
            "total_return_line_items": len(ret["lineItems"]),
            "name": f"{self.orders[order_id]['name']}-R1",
            "return_line_items": [{
                "id": _legacy(item["id"]), "admin_graphql_api_id": item["id"],
                "fulfillment_line_item": {
                    "id": _legacy(item["fulfillmentLineItem"]["id"]),
                    "admin_graphql_api_id": item["fulfillmentLineItem"]["id"],
                    "line_item": {
                        "id": _legacy(item["fulfillmentLineItem"]["lineItem"]["id"]),
                        "admin_graphql_api_id": item["fulfillmentLineItem"]["lineItem"]["id"],
                    },
                },
                "quantity": item["quantity"],
                "return_reason": item["returnReason"].lower(),
                "return_reason_note": item["returnReasonNote"],
                "customer_note": item["customerNote"],
            } for item in ret["lineItems"]],
        }
        if exchanges := self.exchange_webhook_items(return_id):
            body.update(exchange_line_items=exchanges, total_exchange_line_items=len(exchanges))
        return json.dumps(body).encode()

    def refund_webhook(self, refund_id: str) -> bytes:
        """The `refunds/create` body (REST Refund) Shopify posts for this refund."""
        refund = self.refunds[refund_id]
        order_id = refund["orderId"]
        currency = self.orders[order_id]["presentmentCurrencyCode"]
        body = {
            "id": _legacy(refund_id), "admin_graphql_api_id": refund_id,
            "order_id": _legacy(order_id), "created_at": refund["createdAt"],
            "note": refund["note"], "user_id": None, "processed_at": refund["createdAt"],
            "restock": False, "duties": [], "refund_line_items": [], "order_adjustments": [],
            "transactions": [{
                "id": _legacy(tx["id"]), "admin_graphql_api_id": tx["id"],
                "order_id": _legacy(order_id), "kind": "refund", "gateway": tx["gateway"],
                "status": tx["status"].lower(), "message": None,
                "created_at": refund["createdAt"], "test": True, "authorization": None,
                "parent_id": _legacy(tx["parentTransaction"]["id"]),
                "amount": rest_amount(Decimal(tx["amountSet"]["presentmentMoney"]["amount"]),
                                      currency),
                "currency": currency,
            } for tx in refund["transactions"]["nodes"]],
        }
        return json.dumps(body).encode()

    # ------------------------------------------------------------- routes
    def install(self, router: respx.MockRouter) -> None:
        router.post(self.url).mock(side_effect=self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = json.loads(request.content)
        if (hooked := hooked_answer(self.before, request, body)) is not None:
            return hooked
        if request.headers.get("X-Shopify-Access-Token") != ACCESS_TOKEN:
            return httpx.Response(401, json={
                "errors": "[API] Invalid API key or access token (unrecognized login or "
                          "wrong password)"})
        variables = body.get("variables") or {}
        try:
            operation = parse_operation(body["query"])
            cost = query_cost(body["query"], variables)
        except GraphQLSyntaxError as exc:
            return self._errors(str(exc))
        if cost > MAX_QUERY_COST:
            return self.max_cost_exceeded(cost)
        method = self.OPERATIONS.get(body.get("operationName", ""))
        if method is None:
            return self._errors(f"Unknown operation {body.get('operationName')!r}")
        data = getattr(self, method)(variables, body["query"])
        if isinstance(data, httpx.Response):
            return data
        return httpx.Response(200, json={
            "data": answer(data, operation.selections, variables),
            "extensions": {"cost": {
                "requestedQueryCost": cost, "actualQueryCost": cost,
                "throttleStatus": {"maximumAvailable": 2000.0,
                                   "currentlyAvailable": 2000.0 - cost,
                                   "restoreRate": 100.0}}}})

    @staticmethod
    def max_cost_exceeded(cost: int) -> httpx.Response:
        """Shopify's answer to a query dearer than the single-query limit: HTTP 200, and the
        query is not run at all."""
        return httpx.Response(200, json={"errors": [{
            "message": f"Query cost is {cost}, which exceeds the single query max cost limit "
                       f"({MAX_QUERY_COST}).\n\nSee {_COST_DOCS} for more information on "
                       "how the\ncost of a query is calculated.\n\nTo query larger amounts "
                       "of data with fewer limits, bulk operations should be used instead.\n"
                       "See https://shopify.dev/docs/api/usage/bulk-operations/queries for "
                       "usage details.\n",
            "extensions": {"code": "MAX_COST_EXCEEDED", "cost": cost,
                           "maxCost": MAX_QUERY_COST, "documentation": _COST_DOCS},
        }]})

    @staticmethod
    def _errors(message: str, code: str | None = None) -> httpx.Response:
        error: dict[str, Any] = {"message": message}
        if code:
            error["extensions"] = {"code": code}
        return httpx.Response(200, json={"errors": [error]})

    def _order(self, variables: dict[str, Any], _: str) -> dict[str, Any]:
        order = self.orders.get(variables["id"])
        if order is None:
            return {"order": None}
        view = {k: copy.deepcopy(v) for k, v in order.items() if k != "refunds"}
        return {"order": view}

    def _fulfillment(self, variables: dict[str, Any], _: str) -> dict[str, Any]:
        for order in self.orders.values():
            for fulfillment in order["fulfillments"]:
                if fulfillment["id"] == variables["id"]:
                    return {"fulfillment": copy.deepcopy(fulfillment)}
        return {"fulfillment": None}

    def _order_refunds(self, variables: dict[str, Any], _: str) -> dict[str, Any]:
        order = self.orders.get(variables["id"])
        if order is None:
            return {"order": None}
        return {"order": {"id": order["id"], "refunds": [
            self._refund_view(self.refunds[r]) for r in order["refunds"]]}}

    def _refund_by_id(self, variables: dict[str, Any], _: str) -> dict[str, Any]:
        refund = self.refunds.get(variables["id"])
        return {"refund": self._refund_view(refund) if refund else None}

    def _refund_create(self, variables: dict[str, Any], query: str
                       ) -> dict[str, Any] | httpx.Response:
        if "@idempotent(key: $idempotencyKey)" not in query:
            # Required from 2026-04; we hold ourselves to it already.
            return self._errors("The @idempotent directive is required for this mutation.",
                                "BAD_REQUEST")
        key = variables["idempotencyKey"]
        given = variables["input"]
        if key in self.by_key:
            refund_id, first_input = self.by_key[key]
            if first_input != given:
                return {"refundCreate": {"refund": None, "userErrors": [{
                    "field": None, "message": "IDEMPOTENCY_KEY_PARAMETER_MISMATCH: the "
                                              "idempotency key was used with other input"}]}}
            return {"refundCreate": {"refund": self._refund_view(self.refunds[refund_id]),
                                     "userErrors": []}}
        order = self.orders.get(given["orderId"])
        if order is None:
            return {"refundCreate": {"refund": None, "userErrors": [
                {"field": ["orderId"], "message": "Order does not exist"}]}}
        errors = self._check_transactions(order, given)
        if errors:
            return {"refundCreate": {"refund": None, "userErrors": errors}}
        refund_id = self._refund(order, given["transactions"], given.get("note") or "",
                                 self.next_status)
        self.by_key[key] = (refund_id, copy.deepcopy(given))
        return {"refundCreate": {"refund": self._refund_view(self.refunds[refund_id]),
                                 "userErrors": []}}

    def _check_transactions(self, order: dict[str, Any], given: dict[str, Any]
                            ) -> list[dict[str, Any]]:
        if given.get("currency") not in (None, order["presentmentCurrencyCode"]):
            return [{"field": ["currency"], "message": "Currency must match the order's "
                                                      "presentment currency"}]
        by_id = {tx["id"]: tx for tx in order["transactions"]}
        for index, tx in enumerate(given.get("transactions") or []):
            parent = by_id.get(tx.get("parentId"))
            if parent is None or parent["kind"] not in {"SALE", "CAPTURE"}:
                return [{"field": ["transactions", str(index), "parentId"],
                         "message": "Parent transaction does not exist"}]
            refunded = sum((Decimal(t["amountSet"]["presentmentMoney"]["amount"])
                            for t in order["transactions"]
                            if t["kind"] == "REFUND" and t["status"] in {"SUCCESS", "PENDING"}
                            and t["parentTransaction"]["id"] == parent["id"]), Decimal(0))
            left = Decimal(parent["amountSet"]["presentmentMoney"]["amount"]) - refunded
            if Decimal(tx["amount"]) > left:
                return [{"field": ["transactions", str(index), "amount"],
                         "message": f"Refund amount must be less than or equal to {left}"}]
        return []

    def _refund(self, order: dict[str, Any], transactions: Sequence[dict[str, Any]],
                note: str, status: str) -> str:
        currency = order["presentmentCurrencyCode"]
        refund_id = self._gid("Refund")
        created = iso(datetime.now(UTC))
        nodes = [{"id": self._gid("OrderTransaction"), "kind": "REFUND", "status": status,
                  "gateway": tx["gateway"], "parentTransaction": {"id": tx["parentId"]},
                  "amountSet": self._bag(Decimal(tx["amount"]), currency)}
                 for tx in transactions]
        total = sum((Decimal(tx["amount"]) for tx in transactions), Decimal(0))
        self.refunds[refund_id] = {
            "id": refund_id, "note": note or None, "createdAt": created,
            "totalRefundedSet": self._bag(total if status == "SUCCESS" else Decimal(0),
                                          currency),
            "transactions": {"nodes": nodes}, "orderId": order["id"],
        }
        order["transactions"].extend(copy.deepcopy(nodes))
        order["refunds"].append(refund_id)
        return refund_id

    def _return(self, variables: dict[str, Any], _: str) -> dict[str, Any]:
        ret = self.returns.get(variables["id"])
        return {"return": {"id": ret["id"], "status": ret["status"]} if ret else None}

    def _answer_request(self, mutation: str, return_id: str, status: str, refusal: str
                        ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """A requested return moved to `status`, and the mutation's answer; a return in any
        other state stays as it is and the answer is `refusal` (no return then)."""
        ret = self.returns.get(return_id)
        if ret is None or ret["status"] != "REQUESTED":
            return None, {mutation: {"return": None, "userErrors": [{
                "field": ["input", "id"], "code": "INVALID_STATE", "message": refusal}]}}
        ret["status"] = status
        return ret, {mutation: {"return": {"id": ret["id"], "status": status},
                                "userErrors": []}}

    def _return_approve(self, variables: dict[str, Any], _: str) -> dict[str, Any]:
        _, answer = self._answer_request(
            "returnApproveRequest", variables["input"]["id"], "OPEN",
            "Return is not approvable. Only returns with status REQUESTED can be approved.")
        return answer

    def _return_decline(self, variables: dict[str, Any], _: str) -> dict[str, Any]:
        given = variables["input"]
        ret, answer = self._answer_request(
            "returnDeclineRequest", given["id"], "DECLINED",
            "Return is not declinable. Only non-refunded returns with status REQUESTED can be "
            "declined.")
        if ret is not None:
            ret["decline"] = {"reason": given["declineReason"], "note": given.get("declineNote")}
        return answer

    # ------------------------------------------------------------- helpers and inspection
    @staticmethod
    def _bag(amount: Decimal, currency: str) -> dict[str, Any]:
        return {"presentmentMoney": {"amount": gql_amount(amount), "currencyCode": currency}}

    @staticmethod
    def _refund_view(refund: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in refund.items() if k != "orderId"}

    def bodies(self, operation: str | None = None) -> list[dict[str, Any]]:
        """The JSON bodies received, optionally only those of one operation."""
        bodies = [json.loads(r.content) for r in self.requests]
        return [b for b in bodies if operation is None or b.get("operationName") == operation]

    def keys_posted(self) -> list[str]:
        return [b["variables"]["idempotencyKey"]
                for b in self.bodies("RefundBridgeRefundCreate")]

    def paid(self) -> list[dict[str, Any]]:
        """Every refund that exists, ours and the admin's."""
        return list(self.refunds.values())
