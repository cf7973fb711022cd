"""An Alipay OpenAPI gateway fake for respx that speaks Alipay's wire format and rules.

Like the gateway it
- reads the public parameters from the query string and the form body alike, and checks our
  RSA2 request signature with the app's public key (a bad one answers `isv.invalid-signature`);
- pays each `out_request_no` of a trade once: a replay with the same amount answers `10000`
  with `fund_change: "N"`, a different amount `ACQ.DISCORDANT_REPEAT_REQUEST`; more than is
  left to refund is `ACQ.REASON_TRADE_REFUND_FEE_ERR`; an unknown trade `ACQ.TRADE_NOT_EXIST`;
- answers `alipay.trade.fastpay.refund.query` (no `refund_status` when there is no refund);
- signs every answer with the platform key over the exact inner JSON text it sends, which
  keeps non-ASCII as is (as Alipay does), so re-serialized JSON would not verify.

It also writes the asynchronous refund notification Alipay would send (`notification`).
State can live in a JSON file so several processes see the same "provider".
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import respx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.fakes.common import (
    exclusive,
    hooked_answer,
    private_key_pem,
    public_key_pem,
    read_state,
    write_state,
)

GATEWAY = "https://openapi.alipay.com/gateway.do"
APP_ID = "2021004123456789"
SELLER_ID = "2088621234567890"
REFUND = "alipay.trade.refund"
QUERY = "alipay.trade.fastpay.refund.query"
BEIJING = timezone(timedelta(hours=8))
REQUIRED = ("app_id", "method", "charset", "sign_type", "timestamp", "version", "biz_content",
            "sign")


@dataclass(frozen=True)
class AlipayKeys:
    """The two RSA key pairs of the protocol: the app's (we sign, Alipay verifies) and the
    platform's (Alipay signs, we verify). PEM text, as a shop's config holds them."""

    app_private: str
    app_public: str
    platform_private: str
    platform_public: str

    @classmethod
    def generate(cls) -> AlipayKeys:
        app, platform = (rsa.generate_private_key(public_exponent=65537, key_size=2048)
                         for _ in range(2))
        return cls(private_key_pem(app), public_key_pem(app.public_key()),
                   private_key_pem(platform), public_key_pem(platform.public_key()))


def rsa2_sign(message: str, private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    raw = key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(raw).decode()


def rsa2_verify(message: str, signature: str, public_pem: str) -> bool:
    key = serialization.load_pem_public_key(public_pem.encode())
    assert isinstance(key, rsa.RSAPublicKey)
    try:
        key.verify(base64.b64decode(signature), message.encode(), padding.PKCS1v15(),
                   hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def response_key(method: str) -> str:
    return method.replace(".", "_") + "_response"


class AlipayFake:
    def __init__(self, keys: AlipayKeys, app_id: str = APP_ID, gateway: str = GATEWAY,
                 state_file: Path | None = None) -> None:
        self.keys = keys
        self.app_id = app_id
        self.gateway = httpx.URL(gateway)
        self.state_file = state_file
        self.trades: dict[str, dict[str, Any]] = {}  # out_trade_no -> trade with its refunds
        self.requests: list[httpx.Request] = []
        self.calls: list[dict[str, Any]] = []  # every call's parameters, biz_content decoded
        # Hooks: return a Response to answer instead of the fake (503s, refusals, garbage).
        self.before_call: list[Callable[[httpx.Request], httpx.Response | None]] = []
        # Hooks run after a refund was paid and stored, before the answer goes out.
        self.after_pay: list[Callable[[dict[str, Any]], None]] = []

    # ------------------------------------------------------------- set-up
    def add_trade(self, out_trade_no: str, total_amount: str, trade_no: str | None = None
                  ) -> str:
        """A paid trade that can be refunded; returns Alipay's trade_no for it."""
        with self._exclusive():
            self._load()
            trade_no = trade_no or datetime.now(BEIJING).strftime("%Y%m%d") + "2200" + "".join(
                secrets.choice("0123456789") for _ in range(16))
            self.trades[out_trade_no] = {
                "out_trade_no": out_trade_no, "trade_no": trade_no,
                "total_amount": f"{Decimal(total_amount):.2f}", "refunded": "0.00",
                "refunds": {},
            }
            self._save()
        return trade_no

    def install(self, router: respx.MockRouter) -> None:
        router.route(method="POST", scheme=self.gateway.scheme, host=self.gateway.host,
                     path=self.gateway.path).mock(side_effect=self._handle)

    # ------------------------------------------------------------- state
    def _load(self) -> None:
        state = read_state(self.state_file)
        if state is not None:
            self.trades = state["trades"]

    def _save(self) -> None:
        write_state(self.state_file, {"trades": self.trades})

    def _exclusive(self) -> AbstractContextManager[None]:
        return exclusive(self.state_file)

    # ------------------------------------------------------------- answers
    def answer(self, method: str, inner: Mapping[str, Any] | None = None, *,
               raw_inner: str | None = None, signed: bool = True,
               sign: str | None = None, key: str | None = None) -> httpx.Response:
        """An answer as the gateway writes it: `{"<key>":<inner>,"sign":"…"}`, signed with the
        platform key over the inner text exactly as written (`raw_inner` to choose it)."""
        text = raw_inner if raw_inner is not None else json.dumps(
            dict(inner or {}), ensure_ascii=False, separators=(",", ":"))
        body = f'{{"{key or response_key(method)}":{text}'
        if signed:
            body += f',"sign":"{sign or rsa2_sign(text, self.keys.platform_private)}"'
        body += "}"
        return httpx.Response(200, content=body.encode(),
                              headers={"Content-Type": "text/html;charset=utf-8"})

    def _refusal(self, method: str, code: str, msg: str, sub_code: str, sub_msg: str,
                 **extra: str) -> httpx.Response:
        return self.answer(method, {"code": code, "msg": msg, "sub_code": sub_code,
                                    "sub_msg": sub_msg, **extra})

    # ------------------------------------------------------------- the gateway
    def _params(self, request: httpx.Request) -> dict[str, str] | None:
        pairs = list(request.url.params.multi_items())
        charset = request.url.params.get("charset", "utf-8")
        if request.content:
            pairs += parse_qsl(request.content.decode("ascii"), keep_blank_values=True,
                               encoding=charset)
        params = dict(pairs)
        return params if len(params) == len(pairs) else None

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if (response := hooked_answer(self.before_call, request)) is not None:
            return response
        params = self._params(request)
        method = (params or {}).get("method", "")
        if params is None:
            return self._refusal(method, "40002", "Invalid Arguments", "isv.invalid-parameter",
                                 "参数重复")
        missing = [name for name in REQUIRED if not params.get(name)]
        if missing:
            return self._refusal(method, "40001", "Missing Required Arguments",
                                 f"isv.missing-{missing[0].replace('_', '-')}",
                                 f"缺少参数 {missing[0]}")
        if params["app_id"] != self.app_id:
            # The gateway answers a wrong app id unsigned, under error_response.
            return self.answer(method, {"code": "40002", "msg": "Invalid Arguments",
                                        "sub_code": "isv.invalid-app-id",
                                        "sub_msg": "无效的AppID参数"},
                               key="error_response", signed=False)
        if params["sign_type"] != "RSA2" or params["charset"].lower() != "utf-8" or params[
                "version"] != "1.0":
            return self._refusal(method, "40002", "Invalid Arguments", "isv.invalid-parameter",
                                 "sign_type, charset or version not supported by this fake")
        try:
            datetime.strptime(params["timestamp"], "%Y-%m-%d %H:%M:%S")
        except ValueError:
            return self._refusal(method, "40002", "Invalid Arguments", "isv.invalid-timestamp",
                                 "非法的时间戳参数")
        base = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v)
        if not rsa2_verify(base, params["sign"], self.keys.app_public):
            return self._refusal(method, "40002", "Invalid Arguments", "isv.invalid-signature",
                                 f"验签出错，网关生成的验签字符串为：{base}")
        try:
            biz = json.loads(params["biz_content"])
        except ValueError:
            return self._refusal(method, "40002", "Invalid Arguments",
                                 "isv.invalid-biz-content", "biz_content 不是 JSON")
        self.calls.append({**params, "biz_content": biz})
        with self._exclusive():
            self._load()
            if method == REFUND:
                return self._refund(biz)
            if method == QUERY:
                return self._query(biz)
        return self._refusal(method, "40002", "Invalid Arguments", "isv.invalid-method",
                             "不存在的方法名")

    def _trade(self, biz: Mapping[str, Any]) -> dict[str, Any] | None:
        if biz.get("trade_no"):
            return next((t for t in self.trades.values() if t["trade_no"] == biz["trade_no"]),
                        None)
        return self.trades.get(str(biz.get("out_trade_no", "")))

    def _refund(self, biz: Mapping[str, Any]) -> httpx.Response:
        trade = self._trade(biz)
        if trade is None:
            return self._refusal(REFUND, "40004", "Business Failed", "ACQ.TRADE_NOT_EXIST",
                                 "交易不存在")
        try:
            amount = Decimal(str(biz["refund_amount"]))
        except (KeyError, InvalidOperation):
            amount = Decimal(-1)
        if amount <= 0 or amount.as_tuple().exponent < -2:  # type: ignore[operator]
            return self._refusal(REFUND, "40004", "Business Failed", "ACQ.INVALID_PARAMETER",
                                 "参数无效")
        total, refunded = Decimal(trade["total_amount"]), Decimal(trade["refunded"])
        number = str(biz.get("out_request_no") or trade["out_trade_no"])
        if "out_request_no" not in biz and amount != total:
            return self._refusal(REFUND, "40004", "Business Failed",
                                 "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "撤销或退款金额与订单金额不一致")
        common = {"trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"],
                  "buyer_logon_id": "159****5620", "buyer_user_id": "2088101117955611"}
        earlier = trade["refunds"].get(number)
        if earlier is not None:
            if Decimal(earlier["refund_amount"]) != amount:
                return self._refusal(REFUND, "40004", "Business Failed",
                                     "ACQ.DISCORDANT_REPEAT_REQUEST", "不一致的请求")
            return self.answer(REFUND, {"code": "10000", "msg": "Success", **common,
                                        "fund_change": "N", "refund_fee": trade["refunded"],
                                        "gmt_refund_pay": earlier["gmt_refund_pay"],
                                        "send_back_fee": "0.00"})
        if refunded + amount > total:
            return self._refusal(REFUND, "40004", "Business Failed",
                                 "ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额无效",
                                 refund_fee="0.00", send_back_fee="0.00")
        refund = {"out_request_no": number, "refund_amount": f"{amount:.2f}",
                  "refund_reason": str(biz.get("refund_reason", "")),
                  "gmt_refund_pay": datetime.now(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
                  "trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"],
                  "refund_status": "REFUND_SUCCESS"}  # what the query reports; tests may edit
        trade["refunds"][number] = refund
        trade["refunded"] = f"{refunded + amount:.2f}"
        self._save()
        for hook in self.after_pay:
            hook(refund)
        return self.answer(REFUND, {"code": "10000", "msg": "Success", **common,
                                    "fund_change": "Y", "refund_fee": trade["refunded"],
                                    "gmt_refund_pay": refund["gmt_refund_pay"],
                                    "send_back_fee": refund["refund_amount"]})

    def _query(self, biz: Mapping[str, Any]) -> httpx.Response:
        trade = self._trade(biz)
        if trade is None:
            return self._refusal(QUERY, "40004", "Business Failed", "ACQ.TRADE_NOT_EXIST",
                                 "交易不存在")
        common = {"code": "10000", "msg": "Success", "trade_no": trade["trade_no"],
                  "out_trade_no": trade["out_trade_no"]}
        refund = trade["refunds"].get(str(biz.get("out_request_no", "")))
        if refund is None:  # Alipay's "no such refund": success, without refund_status
            return self.answer(QUERY, common)
        return self.answer(QUERY, {**common, "out_request_no": refund["out_request_no"],
                                   "total_amount": trade["total_amount"],
                                   "refund_amount": refund["refund_amount"],
                                   "refund_status": refund["refund_status"]})

    # ------------------------------------------------------------- notifications
    def sign_notification(self, params: Mapping[str, str]) -> dict[str, str]:
        """`params` plus `sign_type` and `sign`, signed as Alipay signs notifications."""
        base = "&".join(f"{k}={v}" for k, v in sorted(params.items())
                        if k not in ("sign", "sign_type"))
        return {**params, "sign_type": "RSA2",
                "sign": rsa2_sign(base, self.keys.platform_private)}

    def notification(self, out_request_no: str, **overrides: str) -> bytes:
        """The form body Alipay POSTs to the trade's notify_url once it paid this refund."""
        with self._exclusive():
            self._load()
        trade, refund = next((t, t["refunds"][out_request_no]) for t in self.trades.values()
                             if out_request_no in t["refunds"])
        now = datetime.now(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
        full = Decimal(trade["refunded"]) == Decimal(trade["total_amount"])
        params = {
            "notify_time": now, "notify_type": "trade_status_sync",
            "notify_id": "2024" + secrets.token_hex(16), "charset": "utf-8", "version": "1.0",
            "app_id": self.app_id, "auth_app_id": self.app_id,
            "trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"],
            "out_biz_no": out_request_no, "buyer_id": "2088101117955611",
            "seller_id": SELLER_ID,
            "trade_status": "TRADE_CLOSED" if full else "TRADE_SUCCESS",
            "total_amount": trade["total_amount"], "receipt_amount": trade["total_amount"],
            "refund_fee": trade["refunded"], "gmt_refund": refund["gmt_refund_pay"] + ".000",
            "subject": "医疗器械订单 " + trade["out_trade_no"], **overrides,
        }
        return urlencode(self.sign_notification(params)).encode("ascii")

    # ------------------------------------------------------------- inspection
    def request_numbers(self, method: str = REFUND) -> list[str]:
        """`out_request_no` of every signed call to `method`, retries included."""
        return [str(c["biz_content"]["out_request_no"]) for c in self.calls
                if c["method"] == method]

    def set_refund_status(self, out_request_no: str, status: str) -> None:
        """Make the refund query report `status` for this refund from now on."""
        with self._exclusive():
            self._load()
            for trade in self.trades.values():
                if out_request_no in trade["refunds"]:
                    trade["refunds"][out_request_no]["refund_status"] = status
            self._save()

    def paid(self) -> list[dict[str, Any]]:
        with self._exclusive():
            self._load()
        return [r for t in self.trades.values() for r in t["refunds"].values()]
