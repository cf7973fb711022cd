"""Alibaba Cloud OpenAPI request signing, V3 `ACS3-HMAC-SHA256`, done here with hashlib/hmac.

The steps of Alibaba Cloud's "V3版本请求体&签名机制" for an RPC call whose parameters travel in
the query string (as Alibaba Cloud's own SDKs send `SendSms` and `QuerySendDetails`):

1. canonical request: method, URI `/`, the canonical query (parameters sorted by name, each
   name and value percent-encoded per RFC 3986: only `A-Z a-z 0-9 - _ . ~` stay as they
   are, a space is `%20`), the signed headers lower-cased and trimmed, sorted by name
   (`name:value\\n` each), their names joined by `;`, and the SHA-256 hex of the body;
2. string to sign: `ACS3-HMAC-SHA256` `\\n` SHA-256 hex of the canonical request;
3. `Authorization: ACS3-HMAC-SHA256 Credential=<AccessKeyId>,SignedHeaders=<names>,
   Signature=<hex HMAC-SHA256 of the string to sign, keyed with the AccessKey secret>`.

Every `x-acs-*` header and `host` are signed. The query we send is the very canonical query
we sign (`canonical_query`), so the server decodes exactly the values we signed.

tests/connectors/test_aliyun_sms.py proves this equals `alibabacloud_tea_openapi`'s
`Utils.get_authorization` over the same request, and the fake (tests/fakes/aliyun_sms.py)
checks every call with the SDK's code, not with this module.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote

ALGORITHM: Final = "ACS3-HMAC-SHA256"
DATE_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"  # x-acs-date: ISO 8601 in UTC


def percent_encode(value: str) -> str:
    """RFC 3986 percent-encoding of UTF-8 text: `~` stays, a space is `%20`, `*` is `%2A`."""
    return quote(value, safe="~", encoding="utf-8")


def canonical_query(params: Mapping[str, str]) -> str:
    return "&".join(f"{percent_encode(key)}={percent_encode(params[key])}"
                    for key in sorted(params))


def content_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def acs_date(when: datetime) -> str:
    return when.astimezone(UTC).strftime(DATE_FORMAT)


def canonical_request(*, method: str, path: str, params: Mapping[str, str],
                      headers: Mapping[str, str], payload_hash: str) -> tuple[str, str]:
    """The canonical request and its signed header names (`host;x-acs-action;…`)."""
    lowered = {name.lower(): value.strip() for name, value in headers.items()}
    names = sorted(lowered)
    canonical_headers = "".join(f"{name}:{lowered[name]}\n" for name in names)
    signed = ";".join(names)
    return "\n".join([method.upper(), path or "/", canonical_query(params), canonical_headers,
                      signed, payload_hash]), signed


def signature(secret: str, canonical: str) -> str:
    to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"
    return hmac.new(secret.encode("utf-8"), to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def authorization(*, access_key_id: str, access_key_secret: str, method: str, path: str,
                  params: Mapping[str, str], headers: Mapping[str, str], body: bytes) -> str:
    """The `Authorization` header for one request; `headers` are exactly the headers to
    sign (they must include `x-acs-content-sha256` of these very body bytes)."""
    canonical, signed = canonical_request(method=method, path=path, params=params,
                                          headers=headers, payload_hash=content_sha256(body))
    return (f"{ALGORITHM} Credential={access_key_id},SignedHeaders={signed},"
            f"Signature={signature(access_key_secret, canonical)}")
