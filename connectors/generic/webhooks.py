"""The generic storefront webhook: the body IS the normalized request.

Signature header: `X-RefundBridge-Signature: t=<unix seconds>,v1=<hex>` where
`v1 = HMAC-SHA256(shop secret, "<t>.<raw body>")`. Several `v1` entries may be sent while a
secret is rotated; any match passes. Timestamps more than `tolerance_seconds` away from now,
in either direction, are refused so a captured request can't be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import datetime
from typing import ClassVar

from pydantic import SecretStr

from refundbridge.connectors.base import (
    ConnectorBase,
    ConnectorSettings,
    check_freshness,
    header_value,
)
from refundbridge.core.errors import WebhookRejected
from refundbridge.core.ports import Capability, RefundRequested, Role, WebhookEvent
from refundbridge.core.request import parse_request

SIGNATURE_HEADER = "x-refundbridge-signature"
TIMESTAMP = re.compile(r"[0-9]{1,12}")


class GenericSettings(ConnectorSettings):
    secret: SecretStr
    tolerance_seconds: int = 300


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value a sender puts on `body` (used by the demo and by senders' tests)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify_signature(header: str | None, body: bytes, secret: str, now: datetime,
                     tolerance: int, connector: str = "generic") -> None:
    if not header:
        raise WebhookRejected(connector, "missing X-RefundBridge-Signature header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        # ASCII digits, as many as a unix time has: a 4,000-digit "timestamp" is no time.
        if key == "t" and TIMESTAMP.fullmatch(value):
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise WebhookRejected(connector, "X-RefundBridge-Signature needs t=<unix seconds> "
                                         "and v1=<hex>")
    check_freshness(connector, timestamp, now, tolerance)
    expected = sign(secret, body, timestamp).split("v1=", 1)[1].encode()
    # Bytes, not str: compare_digest refuses non-ASCII str, and headers are any latin-1.
    if not any(hmac.compare_digest(expected, c.encode()) for c in candidates):
        raise WebhookRejected(connector, "signature does not match")


class GenericStorefrontConnector(ConnectorBase):
    name: ClassVar[str] = "generic"
    roles: ClassVar[frozenset[Role]] = frozenset({Role.STOREFRONT})
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.RECEIVE_REQUESTS})
    Settings = GenericSettings
    settings: GenericSettings
    # Its parse is a signature check and validation, no call out: the API may run it on its
    # event loop (api/routes/webhooks.py) rather than take a thread for it.
    parses_offline: ClassVar[bool] = True

    def parse_webhook(self, headers: Mapping[str, str], body: bytes,
                      now: datetime) -> WebhookEvent:
        header = header_value(headers, SIGNATURE_HEADER)
        verify_signature(header, body, self.settings.secret.get_secret_value(), now,
                         self.settings.tolerance_seconds)
        return RefundRequested(parse_request(body))
