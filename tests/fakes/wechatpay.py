"""A WeChat Pay API v3 fake for respx that speaks WeChat's wire format and its rules.

Like WeChat Pay it checks our `Authorization` signature with the merchant's public key (and
the clock, mchid and merchant serial), refunds once per `out_refund_no` (a repeat answers
the first refund), refuses more than the order can still refund, answers errors as
`{"code", "message"}`, and signs every answer with the platform key (`Wechatpay-Signature`,
`-Timestamp`, `-Nonce`, `-Serial`). It can also build the signed, encrypted REFUND.*
notification WeChat Pay would post for a refund, for end-to-end tests.

Its signing is done with the `wechatpayv3` SDK's own helpers and `cryptography`, not with
our connector's code, so a shared mistake cannot pass unnoticed.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import httpx
import respx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID
from wechatpayv3.utils import rsa_sign

from tests.fakes.common import hooked_answer, private_key_pem, public_key_pem

BASE = "https://api.mch.weixin.qq.com"
REFUNDS = "/v3/refund/domestic/refunds"
AUTH = re.compile(r'^WECHATPAY2-SHA256-RSA2048 (?P<params>.+)$')
PARAM = re.compile(r'(\w+)="([^"]*)"')


def _digits(count: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(count))


@cache
def _rsa_key(label: str) -> rsa.RSAPrivateKey:
    # One key per label and test process: generating RSA keys is the slow part.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def self_signed_certificate(key: rsa.RSAPrivateKey, serial: int, not_before: datetime,
                            days: int = 365 * 5) -> x509.Certificate:
    """A platform certificate as WeChat Pay issues them, but self-signed, for cert mode."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tenpay.com")])
    return (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(not_before).not_valid_after(not_before + timedelta(days=days))
            .sign(key, hashes.SHA256()))


@dataclass(frozen=True)
class WeChatPayKeys:
    """A merchant's and WeChat Pay's key material, generated for tests."""

    mchid: str
    merchant_serial_no: str
    merchant_key: rsa.RSAPrivateKey
    platform_key: rsa.RSAPrivateKey
    apiv3_key: str
    public_key_id: str
    certificate: x509.Certificate | None = None

    @classmethod
    def generate(cls, label: str = "default", *, certificate_mode: bool = False,
                 now: datetime | None = None) -> WeChatPayKeys:
        platform = _rsa_key(f"{label}:platform")
        cert = None
        if certificate_mode:
            start = (now or datetime.now(UTC)) - timedelta(days=30)
            cert = self_signed_certificate(platform, int(secrets.token_hex(20), 16) >> 1,
                                           start)
        return cls(
            mchid="1900" + str(int(secrets.token_hex(3), 16)).zfill(6),
            merchant_serial_no=secrets.token_hex(20).upper(),
            merchant_key=_rsa_key(f"{label}:merchant"),
            platform_key=platform,
            apiv3_key=secrets.token_hex(16),  # 32 ASCII characters, as WeChat issues them
            public_key_id="PUB_KEY_ID_01" + secrets.token_hex(14).upper(),
            certificate=cert,
        )

    @property
    def merchant_private_pem(self) -> str:
        return private_key_pem(self.merchant_key)

    @property
    def platform_public_pem(self) -> str:
        return public_key_pem(self.platform_key.public_key())

    @property
    def certificate_pem(self) -> str:
        assert self.certificate is not None
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def platform_serial(self) -> str:
        """What WeChat Pay sends as `Wechatpay-Serial`."""
        if self.certificate is not None:
            return format(self.certificate.serial_number, "X")
        return self.public_key_id

    def connector_config(self, base_url: str = BASE, **extra: Any) -> dict[str, Any]:
        config: dict[str, Any] = {
            "mchid": self.mchid,
            "merchant_serial_no": self.merchant_serial_no,
            "merchant_private_key": self.merchant_private_pem,
            "apiv3_key": self.apiv3_key,
            "notify_url": "https://refunds.acme-medical.cn/webhooks/acme/wechatpay",
            "base_url": base_url,
        }
        if self.certificate is not None:
            config["platform_certificates"] = [self.certificate_pem]
        else:
            config["platform_public_key"] = self.platform_public_pem
            config["platform_public_key_id"] = self.public_key_id
        config.update(extra)
        return config

    # ------------------------------------------------------------- as WeChat Pay signs
    def sign_headers(self, body: bytes, timestamp: int | None = None,
                     nonce: str | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        nonce = nonce or secrets.token_hex(16).upper()
        message = f"{ts}\n{nonce}\n{body.decode()}\n"
        return {
            "Wechatpay-Timestamp": ts,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": rsa_sign(self.platform_key, message),
            "Wechatpay-Serial": self.platform_serial,
            "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
        }

    def notification(self, resource: dict[str, Any], *, event_type: str = "REFUND.SUCCESS",
                     timestamp: int | None = None, event_id: str | None = None
                     ) -> tuple[dict[str, str], bytes, dict[str, Any]]:
        """A refund notification as WeChat Pay posts it: (headers, body, the resource)."""
        nonce = secrets.token_hex(6)  # 12 bytes, as WeChat's are
        plaintext = json.dumps(resource, ensure_ascii=False).encode()
        sealed = AESGCM(self.apiv3_key.encode()).encrypt(nonce.encode(), plaintext, b"refund")
        body = {
            "id": event_id or f"EV-{secrets.token_hex(10)}",
            "create_time": "2024-07-01T20:00:00+08:00",
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": {"REFUND.SUCCESS": "退款成功", "REFUND.ABNORMAL": "退款异常",
                        "REFUND.CLOSED": "退款关闭"}.get(event_type, "通知"),
            "resource": {"original_type": "refund", "algorithm": "AEAD_AES_256_GCM",
                         "ciphertext": base64.b64encode(sealed).decode(),
                         "associated_data": "refund", "nonce": nonce},
        }
        raw = json.dumps(body, ensure_ascii=False).encode()
        return self.sign_headers(raw, timestamp), raw, resource


@dataclass
class WeChatPayFake:
    keys: WeChatPayKeys
    base: str = BASE
    clock: Callable[[], float] = time.time
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)  # by out_refund_no
    requests: list[httpx.Request] = field(default_factory=list)
    # Hooks: return a Response to answer instead of the fake (503s, error codes…).
    before_post: list[Callable[[httpx.Request], httpx.Response | None]] = field(
        default_factory=list)
    next_status: str = "PROCESSING"
    sign_answers: bool = True

    # ------------------------------------------------------------- routes
    def install(self, router: respx.MockRouter) -> None:
        router.post(f"{self.base}{REFUNDS}").mock(side_effect=self._create)
        router.get(url__regex=rf"^{re.escape(self.base)}{REFUNDS}/(?P<out_refund_no>[^/?]+)$"
                   ).mock(side_effect=self._get)

    def posts(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.method == "POST"]

    def _create(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        refused = self._check_auth(request)
        if refused is not None:
            return refused
        if (answer := hooked_answer(self.before_post, request)) is not None:
            return answer
        try:
            body = json.loads(request.content)
            number = body["out_refund_no"]
            amount = body["amount"]
            refund_fen, total_fen = int(amount["refund"]), int(amount["total"])
        except (ValueError, KeyError, TypeError) as exc:
            return self._error(400, "PARAM_ERROR", f"参数错误: {exc}")
        if number in self.refunds:  # 同一退款单号多次请求只退一笔
            return self._answer(200, self.refunds[number])
        if amount.get("currency", "CNY") != "CNY":
            return self._error(400, "PARAM_ERROR", "币种不支持")
        trade = body.get("out_trade_no") or body.get("transaction_id")
        if not trade:
            return self._error(400, "PARAM_ERROR", "transaction_id和out_trade_no必须二选一")
        already = sum(r["amount"]["refund"] for r in self.refunds.values()
                      if trade in (r["out_trade_no"], r["transaction_id"])
                      and r["status"] != "CLOSED")
        if refund_fen <= 0 or already + refund_fen > total_fen:
            return self._error(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
        refund = {
            "refund_id": "50" + _digits(27),
            "out_refund_no": number,
            "transaction_id": body.get("transaction_id") or "4200" + _digits(24),
            "out_trade_no": body.get("out_trade_no") or "",
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": datetime.fromtimestamp(self.clock(), UTC).isoformat(),
            "status": self.next_status,
            "funds_account": "AVAILABLE",
            "amount": {"total": total_fen, "refund": refund_fen, "payer_total": total_fen,
                       "payer_refund": refund_fen, "settlement_refund": refund_fen,
                       "settlement_total": total_fen, "discount_refund": 0,
                       "currency": "CNY", "refund_fee": 0, "from": []},
            "promotion_detail": [],
        }
        self.refunds[number] = refund
        return self._answer(200, refund)

    def _get(self, request: httpx.Request, out_refund_no: str) -> httpx.Response:
        self.requests.append(request)
        refused = self._check_auth(request)
        if refused is not None:
            return refused
        refund = self.refunds.get(out_refund_no)
        if refund is None:
            return self._error(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return self._answer(200, refund)

    # ------------------------------------------------------------- WeChat's checks
    def _check_auth(self, request: httpx.Request) -> httpx.Response | None:
        match = AUTH.match(request.headers.get("Authorization", ""))
        if match is None:
            return self._error(401, "SIGN_ERROR", "Authorization 格式错误", signed=False)
        params = dict(PARAM.findall(match["params"]))
        if params.get("mchid") != self.keys.mchid:
            return self._error(401, "SIGN_ERROR", "商户号不匹配", signed=False)
        if params.get("serial_no") != self.keys.merchant_serial_no:
            return self._error(401, "SIGN_ERROR", "商户证书序列号错误", signed=False)
        try:
            timestamp = int(params["timestamp"])
            signature = base64.b64decode(params["signature"], validate=True)
        except (KeyError, ValueError):
            return self._error(401, "SIGN_ERROR", "签名格式错误", signed=False)
        if abs(self.clock() - timestamp) > 300:
            return self._error(401, "SIGN_ERROR", "请求时间超出有效范围", signed=False)
        message = (f"{request.method}\n{request.url.raw_path.decode()}\n{timestamp}\n"
                   f"{params.get('nonce_str', '')}\n").encode() + request.content + b"\n"
        try:
            self.keys.merchant_key.public_key().verify(signature, message,
                                                       padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return self._error(401, "SIGN_ERROR", "签名错误", signed=False)
        return None

    # ------------------------------------------------------------- answers
    def _answer(self, status: int, body: dict[str, Any], signed: bool = True
                ) -> httpx.Response:
        raw = json.dumps(body, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "Request-ID": secrets.token_hex(16)}
        if signed and self.sign_answers:
            headers.update(self.keys.sign_headers(raw, int(self.clock())))
        return httpx.Response(status, content=raw, headers=headers)

    def _error(self, status: int, code: str, message: str, signed: bool = True
               ) -> httpx.Response:
        return self._answer(status, {"code": code, "message": message}, signed)

    def error(self, status: int, code: str, message: str) -> httpx.Response:
        """A signed WeChat error answer, for hooks and respx side effects."""
        return self._error(status, code, message)

    def answer(self, body: dict[str, Any]) -> httpx.Response:
        return self._answer(200, body)

    # ------------------------------------------------------------- the provider's side
    def settle(self, out_refund_no: str, status: str = "SUCCESS") -> dict[str, Any]:
        refund = self.refunds[out_refund_no]
        refund["status"] = status
        if status == "SUCCESS":
            refund["success_time"] = datetime.fromtimestamp(self.clock(), UTC).isoformat()
        return refund

    def notification_for(self, out_refund_no: str, status: str = "SUCCESS"
                         ) -> tuple[dict[str, str], bytes]:
        """Settle the refund and build the signed notification WeChat Pay would post."""
        refund = self.settle(out_refund_no, status)
        resource = {
            "mchid": self.keys.mchid,
            "out_trade_no": refund["out_trade_no"],
            "transaction_id": refund["transaction_id"],
            "out_refund_no": out_refund_no,
            "refund_id": refund["refund_id"],
            "refund_status": status,
            "success_time": refund.get("success_time"),
            "user_received_account": refund["user_received_account"],
            "amount": {k: refund["amount"][k] for k in ("total", "refund", "payer_total",
                                                         "payer_refund")},
        }
        headers, body, _ = self.keys.notification(
            resource, event_type=f"REFUND.{status}", timestamp=int(self.clock()))
        return headers, body
