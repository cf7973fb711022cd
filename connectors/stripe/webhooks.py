"""Stripe webhooks: check the `Stripe-Signature` header, then read refund events."""

from __future__ import annotations

from datetime import datetime
from typing import Final

import stripe
from pydantic import ValidationError

from refundbridge.connectors.base import check_freshness, validation_error
from refundbridge.connectors.stripe.transformers import (
    StripeEvent,
    StripeRefund,
    to_refund_result,
)
from refundbridge.core.errors import WebhookRejected
from refundbridge.core.ports import Ignored, RefundUpdate, WebhookEvent
from refundbridge.core.request import loads_strict

NAME = "stripe"
SIGNATURE_HEADER: Final = "Stripe-Signature"

# Events whose `data.object` is a Refund. A refund can succeed and fail later, so every change
# is passed on, not just the first.
REFUND_EVENTS: Final = frozenset({"refund.updated", "refund.failed", "charge.refund.updated"})


def _signed_at(header: str) -> int:
    # The first `t=` entry, as the SDK reads it when it checks the signature.
    for item in header.split(","):
        key, _, value = item.partition("=")
        if key == "t":
            try:
                return int(value)
            except ValueError as exc:  # the SDK accepted it, so this is not reached
                raise WebhookRejected(NAME, "the signature's timestamp is not a number"
                                      ) from exc
    raise WebhookRejected(NAME, "the signature has no timestamp")


def verify(body: bytes, header: str | None, secret: str, tolerance: int, now: datetime) -> None:
    """Raise `WebhookRejected` unless Stripe signed `body` within `tolerance` seconds of `now`.

    The SDK checks the HMAC (any of several `v1` entries may match). Its own age check reads
    the wall clock and ignores timestamps in the future, so it is switched off
    (`tolerance=None`) and both directions are checked here against the caller's `now`.
    """
    if not header:
        raise WebhookRejected(NAME, f"missing {SIGNATURE_HEADER} header")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookRejected(NAME, "body is not UTF-8, so Stripe did not send it") from exc
    try:
        stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=None)
    except stripe.SignatureVerificationError as exc:
        raise WebhookRejected(NAME, f"bad signature: {exc.user_message}") from exc
    check_freshness(NAME, _signed_at(header), now, tolerance)


def parse_event(body: bytes) -> WebhookEvent:
    """Translate a verified event body; raises `InvalidRequest` naming the bad field."""
    loads_strict(body)  # a key twice: which copy did Stripe sign? Neither is read.
    try:
        event = StripeEvent.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error(exc) from exc
    if event.type not in REFUND_EVENTS:
        return Ignored(f"stripe event type '{event.type}' is not about a refund")
    try:
        refund = StripeRefund.model_validate(event.data.object)
    except ValidationError as exc:
        raise validation_error(exc, prefix="data.object") from exc
    return RefundUpdate(
        result=to_refund_result(refund, where="data.object."),
        idempotency_key=refund.metadata.get("idempotency_key"),
        case_id=refund.metadata.get("case_id"),
        event_id=event.id,
    )
