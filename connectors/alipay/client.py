"""The only module of the Alipay connector that makes HTTP calls.

One call = one signed POST to the OpenAPI gateway. As Alipay's own SDKs do, the public
parameters and `sign` travel in the query string (the gateway reads `charset` there before it
decodes anything) and `biz_content` in the form-encoded body; the signature covers both.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Final, TypeVar
from urllib.parse import urlencode

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from refundbridge.connectors import rsa_signing
from refundbridge.connectors.alipay import signing
from refundbridge.connectors.alipay.transformers import (
    NAME,
    QUERY_METHOD,
    REFUND_METHOD,
    AlipayAnswer,
    AlipayRefundAnswer,
    AlipayRefundQueryAnswer,
    Verdict,
    classify,
)
from refundbridge.connectors.base import ConnectorContext, send
from refundbridge.core.errors import ConnectorError, PermanentProviderError, TransientProviderError

log = logging.getLogger(__name__)

# Alipay reads `timestamp` as Beijing time. China has kept UTC+8 without daylight saving since
# 1991, so a fixed offset is exact and needs no tz database on the host.
BEIJING: Final = timezone(timedelta(hours=8), "Asia/Shanghai")
TIMESTAMP_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
CHARSET: Final = "utf-8"
VERSION: Final = "1.0"

A = TypeVar("A", bound=AlipayAnswer)


def response_key(method: str) -> str:
    """alipay.trade.refund → alipay_trade_refund_response."""
    return method.replace(".", "_") + "_response"


class AlipayClient:
    def __init__(self, ctx: ConnectorContext, *, gateway_url: str, app_id: str,
                 app_private_key: rsa.RSAPrivateKey, alipay_public_key: rsa.RSAPublicKey
                 ) -> None:
        self._retry = ctx.retry
        self._clock: Callable[[], datetime] = ctx.clock
        self._gateway = gateway_url
        self._app_id = app_id
        self._private_key = app_private_key
        self._public_key = alipay_public_key
        self._http = ctx.http_client(gateway_url)

    def close(self) -> None:
        self._http.close()

    def refund(self, biz_content: Mapping[str, str]) -> AlipayRefundAnswer:
        return self._call(REFUND_METHOD, biz_content, AlipayRefundAnswer, moves_money=True)

    def query_refund(self, biz_content: Mapping[str, str]) -> AlipayRefundQueryAnswer:
        return self._call(QUERY_METHOD, biz_content, AlipayRefundQueryAnswer,
                          moves_money=False)

    # ---------------------------------------------------------------- one call
    def signed_request(self, method: str, biz_content: Mapping[str, str]) -> httpx.Request:
        params = {
            "app_id": self._app_id,
            "method": method,
            "charset": CHARSET,
            "sign_type": signing.SIGN_TYPE,
            "timestamp": self._clock().astimezone(BEIJING).strftime(TIMESTAMP_FORMAT),
            "version": VERSION,
        }
        # The very text that is sent is the text that is signed: no second serialization.
        biz = json.dumps(dict(biz_content), ensure_ascii=False, separators=(",", ":"))
        base = signing.request_sign_base({**params, "biz_content": biz})
        params["sign"] = rsa_signing.sign(self._private_key, base.encode(CHARSET))
        return self._http.build_request(
            "POST", self._gateway, params=params,
            content=urlencode({"biz_content": biz}, encoding=CHARSET).encode("ascii"),
            headers={"Content-Type": f"application/x-www-form-urlencoded;charset={CHARSET}"},
        )

    def _call(self, method: str, biz_content: Mapping[str, str], model: type[A], *,
              moves_money: bool) -> A:
        # Built and signed once: every retry sends the same bytes, the same out_request_no
        # and the same timestamp, so Alipay sees one request however often it arrives.
        request = self.signed_request(method, biz_content)

        def attempt() -> A:
            response = send(NAME, self._http, request)
            answer = self._read(method, response, model, moves_money)
            verdict = classify(answer.code, answer.sub_code)
            if verdict is Verdict.TRANSIENT:
                raise TransientProviderError(NAME, f"{method}: {answer.describe()}")
            if verdict is Verdict.PERMANENT:
                raise PermanentProviderError(NAME, answer.describe(),
                                             code=answer.sub_code or answer.code)
            return answer

        return self._retry.call(attempt)

    def _read(self, method: str, response: httpx.Response, model: type[A],
              moves_money: bool) -> A:
        """The inner response object, once its signature is checked on the raw text."""
        try:
            text = response.content.decode(CHARSET)
            parts = signing.signed_response_parts(text, response_key(method))
            inner = json.loads(parts.content, parse_float=Decimal)
            AlipayAnswer.model_validate(inner)  # the public fields, before trusting the rest
        except (UnicodeDecodeError, ValueError, ValidationError) as exc:
            raise self._unreadable(method, f"unreadable answer: {exc}", moves_money) from exc
        if parts.sign is not None:
            try:
                rsa_signing.verify(self._public_key, parts.content.encode(CHARSET), parts.sign)
            except InvalidSignature as exc:
                raise self._unverified(method, "the answer's signature does not verify with "
                                               "alipay_public_key", moves_money) from exc
        elif inner.get("code") == "10000":
            raise self._unverified(method, "the answer claims success but is not signed",
                                   moves_money)
        else:
            # Alipay leaves some gateway refusals (bad app id, bad request signature) unsigned,
            # and its SDKs accept them as refusals; a refusal never tells us money moved.
            log.warning("alipay: unsigned %s from %s: %s", parts.key, method, parts.content)
        try:
            return model.model_validate(inner)
        except ValidationError as exc:
            raise self._unreadable(method, f"unreadable answer: {exc}", moves_money) from exc

    @staticmethod
    def _unreadable(method: str, why: str, moves_money: bool) -> ConnectorError:
        if moves_money:
            # A garbled answer to a refund says nothing about the money; asking again under
            # the same out_request_no is safe, since Alipay pays a number once.
            return TransientProviderError(NAME, f"{method}: {why}")
        return PermanentProviderError(NAME, f"{method}: {why}", code="invalid_response")

    @staticmethod
    def _unverified(method: str, why: str, moves_money: bool) -> ConnectorError:
        if moves_money:
            # Not "permanent": the core reads that as "refused, no money moved" and an operator
            # retry would send a new out_request_no, possibly paying twice. Left unsettled, the
            # next run asks the refund query first, which fails visibly if the key is wrong.
            return ConnectorError(NAME, f"{method}: {why}; whether money moved is unknown")
        return PermanentProviderError(NAME, f"{method}: {why}", code="invalid_signature")
