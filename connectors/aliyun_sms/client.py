"""The only module of the Aliyun SMS connector that makes HTTP calls.

One call = one POST to the dysmsapi endpoint with the action's parameters in the query
string and an empty body, signed V3 (`signing.py`), as Alibaba Cloud's SDKs send RPC calls.
Each call is signed afresh, with its own `x-acs-signature-nonce` and `x-acs-date`: Aliyun
refuses a nonce it has seen (`SignatureNonceUsed`), so a retry is never the same bytes.

The client makes one attempt and sorts its outcome; the connector decides about retries,
because a send is not idempotent and its retries must look the send up first.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TypeVar

import httpx
from pydantic import ValidationError

from refundbridge.connectors.aliyun_sms import signing
from refundbridge.connectors.aliyun_sms.transformers import (
    API_VERSION,
    NAME,
    ErrorAnswer,
    Verdict,
    classify,
    defer_seconds,
)
from refundbridge.connectors.base import ConnectorContext, retry_after_seconds
from refundbridge.core.errors import (
    ConnectorError,
    PermanentProviderError,
    SendDeferred,
    TransientProviderError,
)
from refundbridge.core.request import WireModel

A = TypeVar("A", bound=WireModel)
EMPTY_BODY = b""


class AliyunSmsClient:
    def __init__(self, ctx: ConnectorContext, *, base_url: str, access_key_id: str,
                 access_key_secret: str, nonce: Callable[[], str] | None = None) -> None:
        self._clock: Callable[[], datetime] = ctx.clock
        self._url = httpx.URL(base_url)
        self._access_key_id = access_key_id
        self._access_key_secret = access_key_secret
        self._nonce = nonce or (lambda: uuid.uuid4().hex)
        self._http = ctx.http_client(base_url)

    def close(self) -> None:
        self._http.close()

    @property
    def host(self) -> str:
        return self._url.netloc.decode("ascii")

    # ---------------------------------------------------------------- one call
    def signed_request(self, action: str, params: Mapping[str, str]) -> httpx.Request:
        path = self._url.path or "/"
        signed_headers = {
            "host": self.host,
            "x-acs-action": action,
            "x-acs-version": API_VERSION,
            "x-acs-date": signing.acs_date(self._clock()),
            "x-acs-signature-nonce": self._nonce(),
            "x-acs-content-sha256": signing.content_sha256(EMPTY_BODY),
        }
        auth = signing.authorization(
            access_key_id=self._access_key_id, access_key_secret=self._access_key_secret,
            method="POST", path=path, params=params, headers=signed_headers, body=EMPTY_BODY)
        # The query on the wire is the canonical query that was signed, byte for byte.
        url = self._url.copy_with(path=path, query=signing.canonical_query(params).encode())
        return self._http.build_request(
            "POST", url, content=EMPTY_BODY,
            headers={**signed_headers, "Authorization": auth, "Accept": "application/json"})

    def call(self, action: str, params: Mapping[str, str], model: type[A], *,
             sends: bool) -> A:
        """One signed call; its answer as `model` when Aliyun says `OK`.

        Raises `TransientProviderError` for the network, 5xx, `Throttling*` and Aliyun's
        platform errors; `SendDeferred` for the per-number limit; `PermanentProviderError`
        for any other code, with Aliyun's code and message. A garbled answer to a send is
        transient (whether it went out is unknown: the retry looks it up first), to a
        look-up permanent.
        """
        request = self.signed_request(action, params)
        try:
            response = self._http.send(request)
        except httpx.TransportError as exc:
            raise TransientProviderError(NAME, f"{action}: {type(exc).__name__}: {exc}"
                                         ) from exc
        if response.status_code >= 500:
            raise TransientProviderError(
                NAME, f"{action}: HTTP {response.status_code}: {response.text[:300]}",
                retry_after=retry_after_seconds(response))
        try:
            body = json.loads(response.content.decode("utf-8"))
            error = ErrorAnswer.model_validate(body)
        except (UnicodeDecodeError, ValueError, ValidationError) as exc:
            raise self._unreadable(action, response, f"{exc}", sends) from exc
        self._raise_for(action, response, error)
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise self._unreadable(action, response, f"{exc}", sends) from exc

    def _raise_for(self, action: str, response: httpx.Response, answer: ErrorAnswer) -> None:
        verdict = classify(answer.Code)
        where = f"{action}: {answer.describe()}"
        if answer.RequestId:
            where += f" (RequestId {answer.RequestId})"
        if verdict is Verdict.OK and response.is_success:
            return
        if verdict is Verdict.DEFER:
            raise SendDeferred(NAME, where, retry_after=defer_seconds(answer.Message,
                                                                      self._clock()))
        if verdict is Verdict.TRANSIENT or response.status_code == 429:
            raise TransientProviderError(NAME, where,
                                         retry_after=retry_after_seconds(response))
        raise PermanentProviderError(NAME, where, code=answer.Code)

    @staticmethod
    def _unreadable(action: str, response: httpx.Response, why: str, sends: bool
                    ) -> ConnectorError:
        what = f"{action}: unreadable answer (HTTP {response.status_code}): {why[:300]}"
        if response.status_code == 429 or (sends and response.is_success):
            return TransientProviderError(NAME, what)
        return PermanentProviderError(NAME, what, code="invalid_response")
