"""A Stripe fake for respx that speaks Stripe's wire format and its idempotency rules.

Like Stripe, it pays once per Idempotency-Key and replays the first answer (with
`Idempotent-Replayed: true`) for the same key; it can list refunds of a payment intent and
read one back. State can live in a JSON file so several processes (a killed worker and its
successor) see the same "provider".
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import respx

from tests.fakes.common import exclusive, hooked_answer, read_state, write_state

BASE = "https://api.stripe.com"


def _refused_amount(amount: int, currency: str) -> httpx.Response | None:
    """Stripe's documented amount rules (https://docs.stripe.com/currencies): ISK and UGX in
    whole units written with two decimals, three-decimal currencies with a last digit of 0."""
    if currency in {"isk", "ugx"} and amount % 100:
        return httpx.Response(400, json={"error": {
            "type": "invalid_request_error", "code": "invalid_charge_amount_no_decimal_compatible",
            "message": f"Invalid amount. Currency {currency.upper()} has become effectively "
                       "zero-decimal and charged amounts must be evenly divisible by 100."}})
    if currency in {"bhd", "jod", "kwd", "omr", "tnd"} and amount % 10:
        # Stripe documents the rule, not its error code: the fake sends none.
        return httpx.Response(400, json={"error": {
            "type": "invalid_request_error",
            "message": "Invalid amount: the last digit of a three-decimal amount must be 0."}})
    return None


class StripeFake:
    def __init__(self, state_file: Path | None = None) -> None:
        self.state_file = state_file
        self.refunds: dict[str, dict[str, Any]] = {}  # refund id -> refund object
        self.by_key: dict[str, str] = {}  # idempotency key -> refund id
        self.posts: list[httpx.Request] = []
        # Keys of POSTs still being answered: Stripe refuses a second request with the same
        # key while the first is in progress (409 idempotency_key_in_use).
        self.in_flight: set[str] = set()
        self._in_flight_lock = threading.Lock()
        # Hooks: return a Response to answer instead of the fake (503s, 400s, slow calls).
        self.before_post: list[Callable[[httpx.Request], httpx.Response | None]] = []
        self.before_get: list[Callable[[httpx.Request], httpx.Response | None]] = []
        # Hooks run after a refund was paid and stored, before the answer goes out.
        self.after_pay: list[Callable[[dict[str, Any]], None]] = []
        self.keys_log: list[str] = []  # every POST's key, across processes when file-backed
        self.next_status = "succeeded"
        # The charge's currency: a refund takes it from the charge, the form has none.
        self.currency = "cny"

    # ------------------------------------------------------------- state
    def _load(self) -> None:
        state = read_state(self.state_file)
        if state is not None:
            self.refunds, self.by_key = state["refunds"], state["by_key"]
            self.keys_log = state["keys_log"]

    def _save(self) -> None:
        write_state(self.state_file, {"refunds": self.refunds, "by_key": self.by_key,
                                      "keys_log": self.keys_log})

    def _exclusive(self) -> AbstractContextManager[None]:
        return exclusive(self.state_file)

    # ------------------------------------------------------------- routes
    def install(self, router: respx.MockRouter) -> None:
        router.post(f"{BASE}/v1/refunds").mock(side_effect=self._create)
        router.get(url__regex=rf"{BASE}/v1/refunds/(?P<refund_id>re_\w+)").mock(
            side_effect=self._get)
        router.get(f"{BASE}/v1/refunds").mock(side_effect=self._list)

    def _create(self, request: httpx.Request) -> httpx.Response:
        self.posts.append(request)
        key = request.headers.get("Idempotency-Key", "")
        with self._in_flight_lock:
            if key in self.in_flight:
                return httpx.Response(409, json={"error": {
                    "type": "idempotency_error", "code": "idempotency_key_in_use",
                    "message": "There is currently another in-progress request using this "
                               "Idempotent Key (that probably means you submitted twice, and "
                               "the other request is still going through): "
                               f"{key}. Please try again later."}})
            self.in_flight.add(key)
        try:
            if (answer := hooked_answer(self.before_post, request)) is not None:
                return answer
            with self._exclusive():
                return self._pay(request)
        finally:
            with self._in_flight_lock:
                self.in_flight.discard(key)

    def _pay(self, request: httpx.Request) -> httpx.Response:
        self._load()
        key = request.headers["Idempotency-Key"]
        self.keys_log.append(key)
        self._save()
        if key in self.by_key:
            refund = self.refunds[self.by_key[key]]
            return httpx.Response(200, json=refund, headers={"Idempotent-Replayed": "true"})
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        refused = _refused_amount(int(form["amount"]), self.currency)
        if refused is not None:
            return refused
        refund_id = "re_" + secrets.token_hex(12)
        refund = {
            "id": refund_id, "object": "refund", "amount": int(form["amount"]),
            "currency": self.currency, "charge": "ch_" + secrets.token_hex(8),
            "created": int(time.time()), "payment_intent": form.get("payment_intent"),
            "reason": form.get("reason"), "status": self.next_status,
            "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
            "failure_reason": None,
        }
        self.refunds[refund_id] = refund
        self.by_key[key] = refund_id
        self._save()
        for hook in self.after_pay:
            hook(refund)
        return httpx.Response(200, json=refund)

    def _get(self, request: httpx.Request, refund_id: str) -> httpx.Response:
        with self._exclusive():
            self._load()
        refund = self.refunds.get(refund_id)
        if refund is None:
            return httpx.Response(404, json={"error": {
                "type": "invalid_request_error", "code": "resource_missing",
                "message": f"No such refund: '{refund_id}'"}})
        return httpx.Response(200, json=refund)

    def _list(self, request: httpx.Request) -> httpx.Response:
        if (answer := hooked_answer(self.before_get, request)) is not None:
            return answer
        with self._exclusive():
            self._load()
        intent = request.url.params.get("payment_intent")
        data = [r for r in self.refunds.values() if r["payment_intent"] == intent]
        return httpx.Response(200, json={"object": "list", "data": data, "has_more": False,
                                         "url": "/v1/refunds"})

    # ------------------------------------------------------------- inspection
    def keys_posted(self) -> list[str]:
        return [r.headers["Idempotency-Key"] for r in self.posts]

    def paid(self) -> list[dict[str, Any]]:
        self._load()
        return list(self.refunds.values())
