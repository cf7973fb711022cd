"""The only module of the WeChat Pay connector that makes HTTP calls.

Every attempt is signed afresh (new nonce and timestamp: the signature covers the time, and
WeChat Pay refuses stale ones) over the very same body bytes; the idempotency lives in the
body's `out_refund_no`. Every 2xx answer must carry WeChat Pay's signature, or it is not
acted on.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from refundbridge.connectors.base import (
    ConnectorContext,
    first_problem,
    retry_after_seconds,
    send,
)
from refundbridge.connectors.wechatpay import signing
from refundbridge.connectors.wechatpay.transformers import (
    NAME,
    NOT_FOUND,
    REFUNDS_PATH,
    Retry,
    WeChatRefund,
    classify,
    read_error,
)
from refundbridge.core.errors import ConnectorError, PermanentProviderError, TransientProviderError

USER_AGENT: Final = "RefundBridge-wechatpay/1"


class UnverifiedRefundAnswer(TransientProviderError):
    """WeChat Pay's answer to a refund could not be verified or read. The refund may have
    been made, so this is never a refusal: the call is repeated under the same
    out_refund_no (which refunds once), and a later run asks for the refund by that number."""


def _wechat_error(response: httpx.Response) -> tuple[str, str | None]:
    """WeChat's own message and code; a code WeChat documents as retryable (e.g.
    SYSTEM_ERROR, FREQUENCY_LIMITED) is raised as transient even on a 4xx."""
    error = read_error(response.content)
    if error is None:
        return f"HTTP {response.status_code}: {response.text[:500]}", str(response.status_code)
    message = error.message or f"HTTP {response.status_code} {error.code}"
    if classify(response.status_code, error.code) is Retry.TRANSIENT:
        raise TransientProviderError(NAME, f"{error.code}: {message}",
                                     retry_after=retry_after_seconds(response))
    return message, error.code


class WeChatPayClient:
    def __init__(self, ctx: ConnectorContext, *, base_url: str, mchid: str, serial_no: str,
                 private_key: rsa.RSAPrivateKey, platform: signing.PlatformKeys,
                 tolerance_seconds: int) -> None:
        self._retry = ctx.retry
        self._clock = ctx.clock
        self._mchid = mchid
        self._serial_no = serial_no
        self._private_key = private_key
        self._platform = platform
        self._tolerance = tolerance_seconds
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if platform.request_serial is not None:
            headers["Wechatpay-Serial"] = platform.request_serial
        self._http = ctx.http_client(base_url, headers=headers)

    def close(self) -> None:
        self._http.close()

    # ---------------------------------------------------------------- calls
    def create_refund(self, body: bytes) -> WeChatRefund:
        return self._retry.call(lambda: self._attempt("POST", REFUNDS_PATH, body,
                                                      money_moving=True))

    def get_refund(self, out_refund_no: str) -> WeChatRefund:
        path = f"{REFUNDS_PATH}/{quote(out_refund_no, safe='')}"
        refund = self._retry.call(lambda: self._attempt("GET", path, b"", money_moving=False))
        if refund.out_refund_no != out_refund_no:
            raise PermanentProviderError(
                NAME, f"asked for refund {out_refund_no}, WeChat Pay answered with "
                      f"{refund.out_refund_no}", code="UNEXPECTED_RESPONSE")
        return refund

    def find_refund(self, out_refund_no: str) -> WeChatRefund | None:
        try:
            return self.get_refund(out_refund_no)
        except PermanentProviderError as exc:
            if exc.code == NOT_FOUND:
                return None
            raise

    # ---------------------------------------------------------------- one attempt
    def _attempt(self, method: str, path: str, body: bytes, *, money_moving: bool
                 ) -> WeChatRefund:
        request = self._http.build_request(
            method, path, content=body or None,
            headers={"Content-Type": "application/json"} if body else None)
        # Signed over what goes on the wire: the path as encoded, with any base_url prefix.
        request.headers["Authorization"] = signing.authorization(
            mchid=self._mchid, serial_no=self._serial_no, private_key=self._private_key,
            method=method, path_and_query=request.url.raw_path.decode("ascii"), body=body,
            timestamp=int(self._clock().timestamp()), nonce=signing.new_nonce())
        response = send(NAME, self._http, request, _wechat_error)
        self._verify(response, money_moving)
        try:
            return WeChatRefund.model_validate_json(response.content)
        except ValidationError as exc:
            raise self._unusable(f"unexpected answer to {method} {path}: "
                                 f"{first_problem(exc)}", money_moving, "INVALID_RESPONSE"
                                 ) from exc

    def _verify(self, response: httpx.Response, money_moving: bool) -> None:
        now = self._clock()
        try:
            signed = signing.signed_headers(response.headers)
            signing.verify(self._platform, signed, response.content, now)
        except signing.SignatureError as exc:
            raise self._unusable(f"answer not verified: {exc}", money_moving) from exc
        skew = abs(now.timestamp() - signed.timestamp)
        if skew > self._tolerance:
            raise self._unusable(f"answer signed {skew:.0f} s away from now, more than "
                                 f"{self._tolerance} s", money_moving)

    @staticmethod
    def _unusable(message: str, money_moving: bool, code: str = "UNVERIFIED_RESPONSE"
                  ) -> ConnectorError:
        if money_moving:
            return UnverifiedRefundAnswer(NAME, message)
        # A status we cannot trust is not a status: the case waits for a person, and its
        # refund key stays open so nothing is paid twice.
        return PermanentProviderError(NAME, message, code=code)
