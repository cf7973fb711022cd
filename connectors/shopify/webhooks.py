"""Shopify webhooks: check `X-Shopify-Hmac-Sha256`, then read the topic's body.

The signature is the base64 HMAC-SHA256 of the raw body under the app's client secret. It
covers the body only, not the headers, so the headers (topic, shop, webhook id, time) are
trusted only as far as the body they came with; in particular `X-Shopify-Triggered-At` is
no protection against replays. Replays are harmless anyway: every event we produce carries a
stable id (the return's or refund's GID) that our inbox dedupes on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeVar

from pydantic import ValidationError

from refundbridge.connectors.base import check_freshness, header_value, validation_error
from refundbridge.connectors.shopify.transformers import NAME
from refundbridge.connectors.shopify.wire import WebhookRefund, WebhookReturn
from refundbridge.core.errors import WebhookRejected
from refundbridge.core.request import loads_strict

HMAC_HEADER: Final = "X-Shopify-Hmac-Sha256"
TOPIC_HEADER: Final = "X-Shopify-Topic"
SHOP_HEADER: Final = "X-Shopify-Shop-Domain"
WEBHOOK_ID_HEADER: Final = "X-Shopify-Webhook-Id"
TRIGGERED_AT_HEADER: Final = "X-Shopify-Triggered-At"

RETURNS_REQUEST: Final = "returns/request"
REFUNDS_CREATE: Final = "refunds/create"
ORDERS_UPDATED: Final = "orders/updated"


def verify(body: bytes, header: str | None, secret: str) -> None:
    """Raise `WebhookRejected` unless `header` is Shopify's HMAC of exactly these bytes."""
    if not header:
        raise WebhookRejected(NAME, f"missing {HMAC_HEADER} header")
    try:
        given = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebhookRejected(NAME, f"{HMAC_HEADER} is not base64") from exc
    expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    if not hmac.compare_digest(given, expected):
        raise WebhookRejected(NAME, "bad signature: the body was not signed with this app's "
                                    "client secret")


@dataclass(frozen=True, slots=True)
class Delivery:
    """The headers of one verified delivery that we act on."""

    topic: str
    webhook_id: str | None
    triggered_at: datetime | None


_NANOS = re.compile(r"(\.\d{6})\d+")


def _triggered_at(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        # Shopify writes nanoseconds ("…:27.877041743Z"); Python reads up to microseconds.
        moment = datetime.fromisoformat(_NANOS.sub(r"\1", raw.strip()).replace("Z", "+00:00"))
    except ValueError as exc:
        raise WebhookRejected(NAME, f"{TRIGGERED_AT_HEADER} is not a timestamp: {raw!r}"
                              ) from exc
    if moment.tzinfo is None:
        raise WebhookRejected(NAME, f"{TRIGGERED_AT_HEADER} has no time zone: {raw!r}")
    return moment


def check(headers: Mapping[str, str], body: bytes, secret: str, shop_domain: str,
          now: datetime, tolerance: int | None) -> Delivery:
    """Verify a delivery and say what it is. The shop header is compared because one app
    (one client secret) can be installed on many shops: a genuine webhook of another shop
    must not open a case in this one."""
    verify(body, header_value(headers, HMAC_HEADER), secret)
    shop = (header_value(headers, SHOP_HEADER) or "").strip().lower()
    if shop != shop_domain.lower():
        raise WebhookRejected(NAME, f"webhook is for shop {shop or '(none)'!r}, this connector "
                                    f"serves {shop_domain!r}")
    topic = (header_value(headers, TOPIC_HEADER) or "").strip()
    if not topic:
        raise WebhookRejected(NAME, f"missing {TOPIC_HEADER} header")
    triggered_at = _triggered_at(header_value(headers, TRIGGERED_AT_HEADER))
    if tolerance is not None:
        if triggered_at is None:
            raise WebhookRejected(NAME, f"missing {TRIGGERED_AT_HEADER} header")
        check_freshness(NAME, triggered_at.timestamp(), now, tolerance)
    return Delivery(topic=topic, webhook_id=header_value(headers, WEBHOOK_ID_HEADER),
                    triggered_at=triggered_at)


B = TypeVar("B", WebhookReturn, WebhookRefund)


def _parse(model: type[B], body: bytes) -> B:
    loads_strict(body)
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error(exc) from exc


def parse_return(body: bytes) -> WebhookReturn:
    return _parse(WebhookReturn, body)


def parse_refund(body: bytes) -> WebhookRefund:
    return _parse(WebhookRefund, body)
