"""Alipay's RSA2 signatures: what is signed. Keys, signing and verifying are
`connectors.rsa_signing`, shared with WeChat Pay.

Three things are signed, each over a different text:

- our request: every parameter but `sign`, sorted by key, as `k=v` joined with `&`, the
  values neither URL-encoded nor trimmed (`request_sign_base`);
- a synchronous response: the raw text of the inner `<method>_response` object exactly as
  Alipay sent it (`signed_response_parts`), never a re-serialization, since whitespace,
  escaping (`\\/`, `\\uXXXX`) and key order would all change the bytes;
- an asynchronous notification: every parameter but `sign` and `sign_type`, sorted, URL-decoded
  (`notification_sign_base`).

The signature itself is SHA256withRSA, PKCS#1 v1.5, base64 ("RSA2").
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

SIGN_TYPE: Final = "RSA2"

_DECODER = json.JSONDecoder()


# ------------------------------------------------------------------ sign bases


def request_sign_base(params: Mapping[str, str]) -> str:
    """What we sign for a request. Empty values are left out, as Alipay's SDKs leave them."""
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v != "")


def notification_sign_base(params: Mapping[str, str]) -> str:
    """What Alipay signed in a notification: `sign_type` is not part of it (unlike requests),
    and empty values are (Alipay's `rsaCheckV1`)."""
    return "&".join(f"{k}={v}" for k, v in sorted(params.items())
                    if k not in ("sign", "sign_type"))


# ------------------------------------------------------------------ responses


@dataclass(frozen=True, slots=True)
class SignedResponse:
    """A synchronous answer split into its parts, the inner object kept as raw text."""

    key: str  # "<method>_response" or "error_response"
    content: str  # the inner object's text exactly as sent: what Alipay signed
    sign: str | None


def _skip(text: str, pos: int) -> int:
    """The position of the next character that is not JSON whitespace."""
    while pos < len(text) and text[pos] in " \t\n\r":
        pos += 1
    return pos


def _top_level_members(text: str) -> dict[str, tuple[int, int]]:
    """The span of each top-level member's value in a JSON object's text.

    Spans come from the JSON grammar (a string may hold `{` or `}`), not from counting braces
    as some SDKs do. A key that appears twice is refused: the signature would cover one copy
    while a parser might read the other.
    """
    pos = _skip(text, 0)
    if text[pos:pos + 1] != "{":
        raise ValueError("the response is not a JSON object")
    pos = _skip(text, pos + 1)
    spans: dict[str, tuple[int, int]] = {}
    if text[pos:pos + 1] == "}":
        return spans
    while True:
        if text[pos:pos + 1] != '"':
            raise ValueError(f"expected a member name at {pos}")
        name, pos = _DECODER.raw_decode(text, pos)
        pos = _skip(text, pos)
        if text[pos:pos + 1] != ":":
            raise ValueError(f"expected ':' at {pos}")
        start = _skip(text, pos + 1)
        _, end = _DECODER.raw_decode(text, start)
        if name in spans:
            raise ValueError(f"member '{name}' appears twice")
        spans[name] = (start, end)
        pos = _skip(text, end)
        separator = text[pos:pos + 1]
        if separator == "}":
            break
        if separator != ",":
            raise ValueError(f"expected ',' or '}}' at {pos}")
        pos = _skip(text, pos + 1)
    if text[pos + 1:].strip():
        raise ValueError("text after the JSON object")
    return spans


def signed_response_parts(text: str, response_key: str) -> SignedResponse:
    """Find the inner object (or Alipay's `error_response`) and the `sign` in a response.

    Raises `ValueError` if the text is not a JSON object holding one of them.
    """
    spans = _top_level_members(text)
    key = response_key if response_key in spans else "error_response"
    if key not in spans:
        raise ValueError(f"neither '{response_key}' nor 'error_response' is in the response")
    start, end = spans[key]
    if text[start:start + 1] != "{":
        raise ValueError(f"'{key}' is not an object")
    signature: str | None = None
    if "sign" in spans:
        sign_start, sign_end = spans["sign"]
        value = json.loads(text[sign_start:sign_end])
        if not isinstance(value, str):
            raise ValueError("'sign' is not a string")
        signature = value or None
    return SignedResponse(key, text[start:end], signature)
