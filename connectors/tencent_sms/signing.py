"""Tencent Cloud API 3.0 request signing, `TC3-HMAC-SHA256`, done here with hashlib/hmac.

The steps of Tencent's "签名方法 v3" for a POST with a JSON body, signing `content-type` and
`host` only (as Tencent's own SDKs do):

1. canonical request: method, URI `/`, empty query, the two headers lower-cased
   (`content-type:…\\nhost:…\\n`), `content-type;host`, SHA-256 hex of the body bytes;
2. string to sign: `TC3-HMAC-SHA256`, the timestamp, `date/service/tc3_request` (the UTC date
   of the timestamp), SHA-256 hex of the canonical request;
3. key: HMAC-SHA256 chain `"TC3" + SecretKey` → date → service → `tc3_request`;
4. `Authorization: TC3-HMAC-SHA256 Credential=SecretId/scope, SignedHeaders=content-type;host,
   Signature=hex(HMAC(key, string to sign))`.

tests/connectors/test_tencent_sms.py proves this equals `tencentcloud.common` over the same
request, and the fake checks every call with the SDK's code, not with this module.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Final

ALGORITHM: Final = "TC3-HMAC-SHA256"
SIGNED_HEADERS: Final = "content-type;host"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def scope_date(timestamp: int) -> str:
    """The credential scope's date: the UTC day of the timestamp, `YYYY-MM-DD`."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def canonical_request(*, method: str, content_type: str, host: str, body: bytes) -> str:
    headers = f"content-type:{content_type.strip().lower()}\nhost:{host.strip().lower()}\n"
    return "\n".join([method.upper(), "/", "", headers, SIGNED_HEADERS,
                      hashlib.sha256(body).hexdigest()])


def string_to_sign(canonical: str, *, timestamp: int, service: str) -> str:
    scope = f"{scope_date(timestamp)}/{service}/tc3_request"
    return "\n".join([ALGORITHM, str(timestamp), scope,
                      hashlib.sha256(canonical.encode("utf-8")).hexdigest()])


def signature(secret_key: str, to_sign: str, *, timestamp: int, service: str) -> str:
    key = _hmac(("TC3" + secret_key).encode("utf-8"), scope_date(timestamp))
    key = _hmac(key, service)
    key = _hmac(key, "tc3_request")
    return hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def authorization(*, secret_id: str, secret_key: str, service: str, host: str,
                  content_type: str, body: bytes, timestamp: int, method: str = "POST") -> str:
    """The `Authorization` header for one request, signed over exactly these body bytes."""
    canonical = canonical_request(method=method, content_type=content_type, host=host,
                                  body=body)
    signed = signature(secret_key, string_to_sign(canonical, timestamp=timestamp,
                                                  service=service),
                       timestamp=timestamp, service=service)
    return (f"{ALGORITHM} Credential={secret_id}/{scope_date(timestamp)}/{service}/tc3_request, "
            f"SignedHeaders={SIGNED_HEADERS}, Signature={signed}")
