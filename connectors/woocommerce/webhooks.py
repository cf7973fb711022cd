"""WooCommerce webhooks: check `X-WC-Webhook-Signature`, answer the creation ping, and turn an
order delivery into a refund request or an outside refund.

WooCommerce signs `base64(HMAC-SHA256(secret, body))` over the body exactly as sent, which is
PHP's `wp_json_encode`: slashes escaped as `\\/` and non-ASCII as `\\uXXXX`. Decoding and
re-encoding that JSON in Python gives other bytes, so the signature is checked on the raw
body before anything parses it. Deliveries carry no timestamp, so there is no freshness to
check; a replayed delivery dedupes on its external id like any redelivery.

Which delivery means what (topics `order.created` / `order.updated`; the body is the full
REST order):
- the order's status is the shop's "refund requested" status → `RefundRequested`, with the
  external id `order-<id>-refund-request` (plus the plugin's request id, if it keeps one);
  an exchange as the shop configured it (`exchanges.py`: the exchange status, line meta
  naming replacements) → `RefundRequested` of kind `exchange` / `return_and_exchange`;
- otherwise, the order has a refund RefundBridge did not make → `ExternalRefund` for the
  newest such refund;
- anything else, and every other topic → `Ignored`.
The request wins when both apply: a refund made in the admin while a request is open is
reported by the next delivery after the status moves on (our own write-back makes one).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Final

from pydantic import ValidationError

from refundbridge.connectors.base import header_value
from refundbridge.connectors.woocommerce.exchanges import to_request
from refundbridge.connectors.woocommerce.transformers import (
    NAME,
    OrderMapping,
    external_refund,
    validation_error,
)
from refundbridge.connectors.woocommerce.wire import WCOrder
from refundbridge.core.errors import InvalidRequest, WebhookRejected
from refundbridge.core.ports import Ignored, RefundRequested, WebhookEvent
from refundbridge.core.request import loads_strict

SIGNATURE_HEADER: Final = "X-WC-Webhook-Signature"
TOPIC_HEADER: Final = "X-WC-Webhook-Topic"
ORDER_TOPICS: Final = frozenset({"order.created", "order.updated"})

# WooCommerce's creation ping: `wp_safe_remote_post(url, ['body' => 'webhook_id=' . $id])`,
# form-encoded and unsigned. It must be answered with exactly 200 or the webhook is not saved.
_PING: Final = re.compile(rb"\Awebhook_id=\d+\Z")

# What `wp_specialchars_decode($secret, ENT_QUOTES)` turns back into characters: WooCommerce
# applies it to the stored secret before using it as the HMAC key.
_WP_ENTITY: Final = re.compile(
    r"&(?:(lt|gt|amp|quot)|#0*(60|62|38|34|39)|#[xX]0*(26|22|27));")
_NAMED: Final = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def _decode_entity(match: re.Match[str]) -> str:
    named, decimal, hexadecimal = match.groups()
    if named:
        return _NAMED[named]
    return chr(int(decimal)) if decimal else chr(int(hexadecimal, 16))


def hmac_key(secret: str) -> bytes:
    return _WP_ENTITY.sub(_decode_entity, secret).encode("utf-8")


def sign(body: bytes, secret: str) -> str:
    """The `X-WC-Webhook-Signature` WooCommerce puts on `body` (`generate_signature`)."""
    digest = hmac.new(hmac_key(secret), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def is_ping(body: bytes) -> bool:
    return _PING.match(body.strip()) is not None


def verify(body: bytes, header: str | None, secret: str) -> None:
    """Raise `WebhookRejected` unless `header` is WooCommerce's signature of these bytes."""
    if not header:
        raise WebhookRejected(NAME, f"missing {SIGNATURE_HEADER} header")
    expected = sign(body, secret).encode("ascii")
    # Bytes on both sides: compare_digest refuses non-ASCII str. A header with characters
    # base64 never uses cannot match, whatever they encode to.
    if not hmac.compare_digest(expected, header.strip().encode("utf-8", "replace")):
        raise WebhookRejected(NAME, "signature does not match the body")


def parse_delivery(headers: Mapping[str, str], body: bytes, secret: str,
                   mapping: OrderMapping) -> WebhookEvent:
    signature = header_value(headers, SIGNATURE_HEADER)
    if not signature and is_ping(body):
        return Ignored("WooCommerce webhook creation ping")
    verify(body, signature, secret)
    if is_ping(body):
        return Ignored("WooCommerce webhook creation ping")
    topic = header_value(headers, TOPIC_HEADER)
    if not topic:
        raise InvalidRequest(TOPIC_HEADER, "missing: every WooCommerce delivery names its topic")
    if topic not in ORDER_TOPICS:
        return Ignored(f"WooCommerce topic '{topic}' is not about an order's refunds")
    loads_strict(body)
    try:
        order = WCOrder.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error(exc) from exc
    request = to_request(order, mapping)  # refund or exchange, as the shop configured
    if request is not None:
        return RefundRequested(request)
    outside = external_refund(order)
    if outside is not None:
        return outside
    return Ignored(f"order {order.id} is '{order.status}' and has no refund made outside "
                   "RefundBridge")
