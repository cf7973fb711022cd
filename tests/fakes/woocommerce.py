"""A WooCommerce (REST API v3) fake for respx: orders, order notes and refunds, with state.

It answers in WooCommerce's shapes and with its rules, as read from WooCommerce's own code:
- HTTP Basic auth with the consumer key and secret, else 401
  `woocommerce_rest_authentication_error`;
- `POST /orders/<id>/refunds` works like `wc_create_refund()`: it refuses more than is left
  to refund, stores the refund (reason first), "calls the gateway", and sets
  `refunded_payment: true`; a gateway refusal deletes the refund again and answers 500
  `woocommerce_rest_cannot_create_order_refund` with the gateway's message; meta_data is
  written after the gateway returned; a full refund sets the order to `refunded`;
- there is no idempotency key: posting twice refunds twice (which is what the connector
  must prevent);
- lists page with `per_page`/`page` and `X-WP-Total`/`X-WP-TotalPages`.

Webhook deliveries are built as WooCommerce sends them: PHP's `json_encode` (`\\/`,
`\\uXXXX`) signed with base64 HMAC-SHA256, and the unsigned creation ping.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import respx

from tests.fakes.common import hooked_answer

BASE = "https://shop.acme-medical.example.com"
API = f"{BASE}/wp-json/wc/v3"
CONSUMER_KEY = "ck_4f1c2b9e8d7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e"
CONSUMER_SECRET = "cs_9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b"
WEBHOOK_SECRET = "k8#Yq2&vL9!pZ3@wR7$tN5^mB1*xC4"
CREATED = datetime(2024, 6, 20, 9, 30, tzinfo=UTC)


def php_json(value: Any) -> bytes:
    """`wp_json_encode($value)` as WooCommerce sends it: compact, `/` escaped as `\\/`,
    non-ASCII as `\\uXXXX` (UTF-16 surrogate pairs beyond the BMP), lower-case hex."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    # "/" only ever occurs inside JSON strings, and an escaped backslash before it stays one.
    return text.replace("/", "\\/").encode("ascii")


def wc_signature(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    """`WC_Webhook::generate_signature`: base64 of the raw HMAC-SHA256 digest."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def delivery(payload: Any, topic: str = "order.updated", secret: str = WEBHOOK_SECRET,
             webhook_id: int = 7, body: bytes | None = None) -> tuple[dict[str, str], bytes]:
    """Headers and body of one webhook delivery, as `WC_Webhook::deliver` builds them."""
    raw = php_json(payload) if body is None else body
    resource, _, event = topic.partition(".")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "WooCommerce/9.1.2 Hookshot (WordPress/6.5.5)",
        "X-WC-Webhook-Source": f"{BASE}/",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": resource,
        "X-WC-Webhook-Event": event,
        "X-WC-Webhook-Signature": wc_signature(raw, secret),
        "X-WC-Webhook-ID": str(webhook_id),
        "X-WC-Webhook-Delivery-ID": hashlib.md5(raw + str(webhook_id).encode(),
                                                usedforsecurity=False).hexdigest(),
    }
    return headers, raw


def ping(webhook_id: int = 7) -> tuple[dict[str, str], bytes]:
    """`WC_Webhook::deliver_ping`: a form body, no signature, no X-WC headers."""
    return ({"Content-Type": "application/x-www-form-urlencoded",
             "User-Agent": "WooCommerce/9.1.2 Hookshot (WordPress/6.5.5)"},
            f"webhook_id={webhook_id}".encode())


def _wc_date(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def _error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"code": code, "message": message,
                                        "data": {"status": status}})


@dataclass
class Line:
    """One line of a fake order: net total after discounts and its tax, as strings."""

    sku: str | None
    name: str
    quantity: int
    total: str
    total_tax: str = "0.00"
    tax_rate_id: int = 1
    meta: dict[str, Any] = field(default_factory=dict)
    product_id: int = 0


class WooCommerceFake:
    def __init__(self, consumer_key: str = CONSUMER_KEY,
                 consumer_secret: str = CONSUMER_SECRET, base: str = BASE) -> None:
        self.base = base
        self.api = f"{base}/wp-json/wc/v3"
        self._auth = "Basic " + base64.b64encode(
            f"{consumer_key}:{consumer_secret}".encode()).decode()
        self.orders: dict[int, dict[str, Any]] = {}
        self.refunds: dict[int, dict[str, Any]] = {}  # refund id -> refund (with parent_id)
        self.notes: dict[int, list[dict[str, Any]]] = {}
        self.requests: list[httpx.Request] = []
        self.restocked: list[tuple[int, int, int]] = []  # (order id, item id, quantity)
        # Hooks: return a Response to answer instead of the fake.
        self.before_refund: list[Callable[[httpx.Request], httpx.Response | None]] = []
        # Run after the refund was paid and stored, before the answer goes out: a Response
        # returned here replaces the answer (a 503 from a proxy that lost the real one).
        self.after_refund: list[Callable[[dict[str, Any]], httpx.Response | None]] = []
        self.after_note: list[Callable[[dict[str, Any]], httpx.Response | None]] = []
        self.before_list_refunds: list[Callable[[httpx.Request], httpx.Response | None]] = []
        self.gateway_error: str | None = None  # the gateway refuses with this message
        self.gateway_hangs = False  # PHP dies during the gateway call: refund left unpaid
        self.page_size_cap = 100
        self._next = {"order": 1001, "item": 501, "refund": 2001, "note": 3001, "meta": 9001}

    def _id(self, kind: str) -> int:
        value = self._next[kind]
        self._next[kind] += 1
        return value

    # ------------------------------------------------------------- building state
    def add_order(self, lines: Sequence[Line], *, status: str = "completed",
                  currency: str = "EUR", shipping_total: str = "0.00",
                  shipping_tax: str = "0.00", customer_id: int = 17,
                  email: str = "anna.schmidt@example.de", phone: str = "+49 30 1234567",
                  payment_method: str = "stripe", transaction_id: str = "pi_3PqRsT2eZvKYlo2C",
                  meta: dict[str, Any] | None = None, created: datetime = CREATED,
                  completed: datetime | None = CREATED + timedelta(days=2),
                  modified: datetime | None = None) -> dict[str, Any]:
        order_id = self._id("order")
        items: list[dict[str, Any]] = []
        for index, line in enumerate(lines):
            total, tax = Decimal(line.total), Decimal(line.total_tax)
            items.append({
                "id": self._id("item"), "name": line.name,
                "product_id": line.product_id or 100 + index, "variation_id": 0,
                "quantity": line.quantity, "tax_class": "", "subtotal": line.total,
                "subtotal_tax": line.total_tax, "total": line.total, "total_tax": line.total_tax,
                "taxes": ([{"id": line.tax_rate_id, "total": line.total_tax,
                            "subtotal": line.total_tax}] if tax else []),
                "meta_data": [self._meta(k, v, display=True) for k, v in line.meta.items()],
                "sku": line.sku, "price": float(total / line.quantity),
                "image": {"id": 0, "src": ""}, "parent_name": None,
            })
        lines_total = sum((Decimal(i["total"]) for i in items), Decimal(0))
        lines_tax = sum((Decimal(i["total_tax"]) for i in items), Decimal(0))
        total = lines_total + lines_tax + Decimal(shipping_total) + Decimal(shipping_tax)
        order = {
            "id": order_id, "parent_id": 0, "number": str(order_id),
            "order_key": f"wc_order_{order_id}abc", "created_via": "checkout",
            "version": "9.1.2", "status": status, "currency": currency,
            "date_created": _wc_date(created), "date_created_gmt": _wc_date(created),
            "date_modified": _wc_date(modified or created + timedelta(days=5)),
            "date_modified_gmt": _wc_date(modified or created + timedelta(days=5)),
            "discount_total": "0.00", "discount_tax": "0.00",
            "shipping_total": shipping_total, "shipping_tax": shipping_tax,
            "cart_tax": str(lines_tax), "total": str(total),
            "total_tax": str(lines_tax + Decimal(shipping_tax)), "prices_include_tax": False,
            "customer_id": customer_id, "customer_ip_address": "203.0.113.7",
            "customer_user_agent": "Mozilla/5.0", "customer_note": "",
            "billing": {"first_name": "Anna", "last_name": "Schmidt", "company": "",
                        "address_1": "Hauptstraße 5", "address_2": "", "city": "Berlin",
                        "state": "", "postcode": "10115", "country": "DE", "email": email,
                        "phone": phone},
            "shipping": {"first_name": "Anna", "last_name": "Schmidt", "company": "",
                         "address_1": "Hauptstraße 5", "address_2": "", "city": "Berlin",
                         "state": "", "postcode": "10115", "country": "DE", "phone": ""},
            "payment_method": payment_method,
            "payment_method_title": "Credit Card (Stripe)" if payment_method else "",
            "transaction_id": transaction_id,
            "date_paid": _wc_date(created), "date_paid_gmt": _wc_date(created),
            "date_completed": _wc_date(completed) if completed else None,
            "date_completed_gmt": _wc_date(completed) if completed else None,
            "cart_hash": "0f3c9e", "meta_data": [self._meta(k, v) for k, v in
                                                 (meta or {}).items()],
            "line_items": items, "tax_lines": [], "fee_lines": [], "coupon_lines": [],
            "shipping_lines": [], "refunds": [],
            "payment_url": f"{self.base}/checkout/order-pay/{order_id}/",
            "is_editable": False, "needs_payment": False, "needs_processing": True,
            "currency_symbol": "€",
            "_links": {"self": [{"href": f"{self.api}/orders/{order_id}"}],
                       "collection": [{"href": f"{self.api}/orders"}]},
        }
        self.orders[order_id] = order
        self.notes[order_id] = []
        return order

    def _meta(self, key: str, value: Any, display: bool = False) -> dict[str, Any]:
        entry: dict[str, Any] = {"id": self._id("meta"), "key": key, "value": value}
        if display:
            entry.update(display_key=key, display_value=value)
        return entry

    def add_admin_refund(self, order_id: int, amount: str, reason: str = "") -> dict[str, Any]:
        """A refund made by hand in the shop's admin (no gateway, no RefundBridge marker)."""
        return self._store_refund(self.orders[order_id], Decimal(amount), reason, False, [],
                                  [])

    def delivery(self, order_id: int, topic: str = "order.updated",
                 secret: str = WEBHOOK_SECRET) -> tuple[dict[str, str], bytes]:
        return delivery(self.orders[order_id], topic, secret)

    # ------------------------------------------------------------- routes
    def install(self, router: respx.MockRouter) -> None:
        order = rf"{re.escape(self.api)}/orders/(?P<order_id>\d+)"
        router.get(url__regex=rf"{order}/refunds/(?P<refund_id>\d+)$").mock(
            side_effect=self._guard(self._get_refund))
        router.get(url__regex=rf"{order}/refunds(\?.*)?$").mock(
            side_effect=self._guard(self._list_refunds))
        router.post(url__regex=rf"{order}/refunds$").mock(
            side_effect=self._guard(self._create_refund))
        router.get(url__regex=rf"{order}/notes(\?.*)?$").mock(
            side_effect=self._guard(self._list_notes))
        router.post(url__regex=rf"{order}/notes$").mock(side_effect=self._guard(self._add_note))
        router.get(url__regex=rf"{order}$").mock(side_effect=self._guard(self._get_order))
        router.put(url__regex=rf"{order}$").mock(side_effect=self._guard(self._update_order))

    def _guard(self, handler: Callable[..., httpx.Response]) -> Callable[..., httpx.Response]:
        def guarded(request: httpx.Request, **ids: str) -> httpx.Response:
            self.requests.append(request)
            if request.headers.get("Authorization") != self._auth:
                return _error(401, "woocommerce_rest_authentication_error",
                              "Consumer key is invalid.")
            order = self.orders.get(int(ids.pop("order_id")))
            if order is None:
                return _error(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
            return handler(request, order, **ids)
        return guarded

    def _get_order(self, request: httpx.Request, order: dict[str, Any]) -> httpx.Response:
        return httpx.Response(200, json=order)

    def _update_order(self, request: httpx.Request, order: dict[str, Any]) -> httpx.Response:
        changes = json.loads(request.content)
        if "status" in changes:
            order["status"] = changes["status"]
            order["date_modified_gmt"] = order["date_modified"] = _wc_date(
                datetime.now(UTC))
        return httpx.Response(200, json=order)

    def _list_notes(self, request: httpx.Request, order: dict[str, Any]) -> httpx.Response:
        return httpx.Response(200, json=list(reversed(self.notes[order["id"]])))

    def _add_note(self, request: httpx.Request, order: dict[str, Any]) -> httpx.Response:
        body = json.loads(request.content)
        note = {"id": self._id("note"), "author": "RefundBridge API",
                "date_created": _wc_date(datetime.now(UTC)),
                "date_created_gmt": _wc_date(datetime.now(UTC)), "note": body["note"],
                "customer_note": bool(body.get("customer_note", False)), "added_by_user": False}
        self.notes[order["id"]].append(note)
        for after in self.after_note:
            answer = after(note)
            if answer is not None:
                return answer
        return httpx.Response(201, json=note)

    def _refunds_of(self, order: dict[str, Any]) -> list[dict[str, Any]]:
        # Newest first, as `WC_Order::get_refunds()` lists them.
        mine = [r for r in self.refunds.values() if r["parent_id"] == order["id"]]
        return sorted(mine, key=lambda r: r["id"], reverse=True)

    def _list_refunds(self, request: httpx.Request, order: dict[str, Any]) -> httpx.Response:
        for before in self.before_list_refunds:
            answer = before(request)
            if answer is not None:
                return answer
        per_page = min(int(request.url.params.get("per_page", "10")), self.page_size_cap)
        page = int(request.url.params.get("page", "1"))
        everything = self._refunds_of(order)
        chunk = everything[(page - 1) * per_page: page * per_page]
        pages = max(1, -(-len(everything) // per_page))
        return httpx.Response(200, json=[self._public(r) for r in chunk],
                              headers={"X-WP-Total": str(len(everything)),
                                       "X-WP-TotalPages": str(pages)})

    def _get_refund(self, request: httpx.Request, order: dict[str, Any],
                    refund_id: str) -> httpx.Response:
        refund = self.refunds.get(int(refund_id))
        if refund is None:
            return _error(404, "woocommerce_rest_shop_order_refund_invalid_id", "Invalid ID.")
        if refund["parent_id"] != order["id"]:
            return _error(404, "woocommerce_rest_invalid_order_refund_id",
                          "Invalid order refund ID.")
        return httpx.Response(200, json=self._public(refund))

    @staticmethod
    def _public(refund: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in refund.items() if k != "parent_id"}

    def _create_refund(self, request: httpx.Request, order: dict[str, Any]) -> httpx.Response:
        for before in self.before_refund:
            answer = before(request)
            if answer is not None:
                return answer
        body = json.loads(request.content)
        amount = Decimal(str(body["amount"]))
        refunded = sum((Decimal(r["amount"]) for r in self._refunds_of(order)), Decimal(0))
        if amount < 0:
            return _error(400, "woocommerce_rest_invalid_order_refund",
                          "Refund amount must be greater than zero.")
        if amount > Decimal(order["total"]) - refunded:
            return _error(500, "woocommerce_rest_cannot_create_order_refund",
                          "Invalid refund amount.")
        api_refund = body.get("api_refund", True) is not False
        refund = self._store_refund(order, amount, body.get("reason") or "", False,
                                    body.get("line_items") or [], [])
        if api_refund:
            if self.gateway_hangs:
                # The refund row stays, unpaid and without meta; PHP answered nothing useful.
                return _error(500, "internal_server_error",
                              "There has been a critical error on this website.")
            if self.gateway_error is not None:
                self._delete_refund(order, refund)
                return _error(500, "woocommerce_rest_cannot_create_order_refund",
                              self.gateway_error)
            refund["refunded_payment"] = True
        if body.get("api_restock", True) is not False:
            for line in body.get("line_items") or []:
                self.restocked.append((order["id"], int(line["id"]), int(line["quantity"])))
        refund["meta_data"] = [self._meta(m["key"], m["value"])
                               for m in body.get("meta_data") or []]
        if Decimal(order["total"]) - refunded - amount <= 0:
            order["status"] = "refunded"
        if (answer := hooked_answer(self.after_refund, refund)) is not None:
            return answer
        return httpx.Response(201, json=self._public(refund))

    def _store_refund(self, order: dict[str, Any], amount: Decimal, reason: str,
                      paid: bool, line_items: list[dict[str, Any]],
                      meta: list[dict[str, Any]]) -> dict[str, Any]:
        refund_id = self._id("refund")
        now = _wc_date(datetime.now(UTC))
        by_id = {item["id"]: item for item in order["line_items"]}
        refund = {
            "id": refund_id, "parent_id": order["id"], "date_created": now,
            "date_created_gmt": now, "amount": f"{amount:.2f}", "reason": reason,
            "refunded_by": 1, "refunded_payment": paid, "meta_data": meta,
            "line_items": [
                {"id": self._id("item"), "name": by_id[int(li["id"])]["name"],
                 "product_id": by_id[int(li["id"])]["product_id"], "variation_id": 0,
                 "quantity": -int(li.get("quantity", 0)), "tax_class": "",
                 "subtotal": f"-{li.get('refund_total', '0')}",
                 "total": f"-{li.get('refund_total', '0')}",
                 "meta_data": [{"id": self._id("meta"), "key": "_refunded_item_id",
                                "value": str(li["id"])}],
                 "sku": by_id[int(li["id"])]["sku"]}
                for li in line_items if int(li["id"]) in by_id
            ],
            "shipping_lines": [], "tax_lines": [], "fee_lines": [],
        }
        self.refunds[refund_id] = refund
        order["refunds"].insert(0, {"id": refund_id, "reason": reason,
                                    "total": f"-{amount:.2f}"})
        return refund

    def _delete_refund(self, order: dict[str, Any], refund: dict[str, Any]) -> None:
        del self.refunds[refund["id"]]
        order["refunds"] = [r for r in order["refunds"] if r["id"] != refund["id"]]

    # ------------------------------------------------------------- inspection
    def refunds_of(self, order_id: int) -> list[dict[str, Any]]:
        return [self._public(r) for r in self._refunds_of(self.orders[order_id])]

    def posts(self, path_suffix: str) -> list[httpx.Request]:
        return [r for r in self.requests
                if r.method == "POST" and r.url.path.endswith(path_suffix)]
