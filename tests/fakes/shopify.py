"""A Shopify fake for respx: the Admin GraphQL API with state, and webhook bodies to match.

It keeps orders (line items, a fulfillment, transactions), returns and refunds; answers the
operations the connector sends (dispatched on `operationName`, as GraphQL over HTTP allows);
pays a refundCreate once per `@idempotent` key and replays the first refund for the same
key; and records every request. `return_webhook`/`refund_webhook` build the REST-shaped
bodies Shopify posts for `returns/request` and `refunds/create`, and `webhook_headers` signs
them as Shopify does (base64 HMAC-SHA256 of the raw body with the app's client secret).

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
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import respx

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


@dataclass(frozen=True)
class Line:
    sku: str | None
    name: str
    quantity: int
    unit_price: str


def _legacy(gid: str) -> int:
    return int(gid.rsplit("/", 1)[1])


class ShopifyFake:
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
        for hook in self.before:
            answer = hook(request, body)
            if answer is not None:
                return answer
        if request.headers.get("X-Shopify-Access-Token") != ACCESS_TOKEN:
            return httpx.Response(401, json={
                "errors": "[API] Invalid API key or access token (unrecognized login or "
                          "wrong password)"})
        handler = {
            "RefundBridgeOrder": self._order,
            "RefundBridgeOrderRefunds": self._order_refunds,
            "RefundBridgeRefund": self._refund_by_id,
            "RefundBridgeRefundCreate": self._refund_create,
            "RefundBridgeReturn": self._return,
            "RefundBridgeReturnApprove": self._return_approve,
            "RefundBridgeReturnDecline": self._return_decline,
        }.get(body.get("operationName", ""))
        if handler is None:
            return self._errors(f"Unknown operation {body.get('operationName')!r}")
        data = handler(body["variables"], body["query"])
        if isinstance(data, httpx.Response):
            return data
        return httpx.Response(200, json={"data": data, "extensions": {"cost": {
            "requestedQueryCost": 12, "actualQueryCost": 12,
            "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1988,
                               "restoreRate": 100.0}}}})

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

    def _return_approve(self, variables: dict[str, Any], _: str) -> dict[str, Any]:
        ret = self.returns.get(variables["input"]["id"])
        if ret is None or ret["status"] != "REQUESTED":
            return {"returnApproveRequest": {"return": None, "userErrors": [{
                "field": ["input", "id"], "code": "INVALID_STATE",
                "message": "Return is not approvable. Only returns with status REQUESTED "
                           "can be approved."}]}}
        ret["status"] = "OPEN"
        return {"returnApproveRequest": {"return": {"id": ret["id"], "status": "OPEN"},
                                         "userErrors": []}}

    def _return_decline(self, variables: dict[str, Any], _: str) -> dict[str, Any]:
        given = variables["input"]
        ret = self.returns.get(given["id"])
        if ret is None or ret["status"] != "REQUESTED":
            return {"returnDeclineRequest": {"return": None, "userErrors": [{
                "field": ["input", "id"], "code": "INVALID_STATE",
                "message": "Return is not declinable. Only non-refunded returns with status "
                           "REQUESTED can be declined."}]}}
        ret["status"] = "DECLINED"
        ret["decline"] = {"reason": given["declineReason"], "note": given.get("declineNote")}
        return {"returnDeclineRequest": {"return": {"id": ret["id"], "status": "DECLINED"},
                                         "userErrors": []}}

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
