"""The only module of the Tencent Cloud SMS connector that makes HTTP calls.

Every attempt is signed afresh (`X-TC-Timestamp` is part of the signature, and Tencent
refuses one more than five minutes off) over the very same body bytes. Tencent answers
errors with HTTP 200 and `{"Response": {"Error": {...}}}`: those are sorted here, the
transient ones raised as `TransientProviderError` (so `RetryPolicy` repeats them), every
other one as `TencentRefusal`, which carries Tencent's code for the connector to act on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TypeVar

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from refundbridge.connectors.base import (
    ConnectorContext,
    retry_after_seconds,
    send,
    unexpected_answer,
)
from refundbridge.connectors.tencent_sms import signing
from refundbridge.connectors.tencent_sms.transformers import (
    CONTENT_TYPE,
    NAME,
    SERVICE,
    VERSION,
    Answer,
    ApiError,
    ErrorAnswer,
    Outcome,
    classify,
    encode,
)
from refundbridge.core.errors import PermanentProviderError, TransientProviderError

USER_AGENT: Final = "RefundBridge-tencent_sms/1"

M = TypeVar("M", bound=BaseModel)


class TencentRefusal(PermanentProviderError):
    """Tencent refused the call (or one number in it) with `code`; the connector decides
    whether that defers the message or fails it."""

    def __init__(self, code: str, message: str, request_id: str = "") -> None:
        where = f" (RequestId {request_id})" if request_id else ""
        super().__init__(NAME, f"{code}: {message}{where}", code=code)
        self.tencent_message = message
        self.request_id = request_id


def raise_for(error: ApiError, request_id: str = "", retry_after: float | None = None
              ) -> None:
    """Raise what an error code means: transient (retried here) or a `TencentRefusal`."""
    if classify(error.Code) is Outcome.TRANSIENT:
        raise TransientProviderError(NAME, f"{error.Code}: {error.Message}",
                                     retry_after=retry_after)
    raise TencentRefusal(error.Code, error.Message, request_id)


def _http_error(response: httpx.Response) -> tuple[str, str | None]:
    """A non-2xx answer: Tencent's own code and words where the body holds them."""
    try:
        inner = Answer.model_validate_json(response.content).Response
        answer = ErrorAnswer.model_validate(inner)
    except ValidationError:
        return f"HTTP {response.status_code}: {response.text[:500]}", str(response.status_code)
    if answer.Error is None:
        return f"HTTP {response.status_code}: {response.text[:500]}", str(response.status_code)
    raise_for(answer.Error, answer.RequestId, retry_after_seconds(response))
    raise AssertionError("raise_for always raises")  # pragma: no cover


class TencentSmsClient:
    def __init__(self, ctx: ConnectorContext, *, base_url: str, secret_id: str,
                 secret_key: SecretStr, region: str) -> None:
        self._clock = ctx.clock
        self._secret_id = secret_id
        self._secret_key = secret_key
        self._region = region
        self._http = ctx.http_client(base_url, headers={"User-Agent": USER_AGENT})

    def close(self) -> None:
        self._http.close()

    def call(self, action: str, body: Mapping[str, Any], model: type[M]) -> M:
        """One attempt at `action`: its answer as `model`, or the error it is."""
        content = encode(body)
        request = self._http.build_request("POST", "/", content=content,
                                           headers={"Content-Type": CONTENT_TYPE})
        timestamp = int(self._clock().timestamp())
        request.headers.update({
            "X-TC-Action": action,
            "X-TC-Version": VERSION,
            "X-TC-Timestamp": str(timestamp),
            "X-TC-Region": self._region,
            # Signed over what goes on the wire: the Host header httpx sends.
            "Authorization": signing.authorization(
                secret_id=self._secret_id, secret_key=self._secret_key.get_secret_value(),
                service=SERVICE, host=request.headers["Host"], content_type=CONTENT_TYPE,
                body=content, timestamp=timestamp),
        })
        response = send(NAME, self._http, request, _http_error)
        try:
            inner = Answer.model_validate_json(response.content).Response
            error = ErrorAnswer.model_validate(inner)
        except ValidationError as exc:
            raise unexpected_answer(NAME, action, exc) from exc
        if error.Error is not None:
            raise_for(error.Error, error.RequestId)
        try:
            return model.model_validate(inner)
        except ValidationError as exc:
            raise unexpected_answer(NAME, action, exc, prefix="Response") from exc
