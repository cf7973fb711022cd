"""WeChat Pay notifications: check the `Wechatpay-*` signature and its age, decrypt the
resource with the APIv3 key, then read refund events.

WeChat Pay wants HTTP 200 or 204 for a notification it may stop sending, and no particular
body ("无需返回应答报文"), so the connector sets no `acknowledgement`; any 4xx/5xx makes it
send again (15 s … 6 h, about 24 h in all).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pydantic import ValidationError

from refundbridge.connectors.base import check_freshness, validation_error
from refundbridge.connectors.wechatpay import signing
from refundbridge.connectors.wechatpay.transformers import (
    NAME,
    REFUND_EVENTS,
    Notification,
    RefundNotice,
    notice_to_refund_result,
)
from refundbridge.core.errors import WebhookRejected
from refundbridge.core.ports import Ignored, RefundUpdate, WebhookEvent
from refundbridge.core.request import loads_strict


def verify(headers: Mapping[str, str], body: bytes, keys: signing.PlatformKeys,
           tolerance: int, now: datetime) -> None:
    """Raise `WebhookRejected` unless WeChat Pay signed `body` within `tolerance` seconds of
    `now`, in either direction (the SDKs check neither)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    try:
        signed = signing.signed_headers(headers)
        signing.verify(keys, signed, body, now)
    except signing.SignatureError as exc:
        raise WebhookRejected(NAME, f"bad signature: {exc}") from exc
    check_freshness(NAME, signed.timestamp, now, tolerance)


def parse_event(body: bytes, apiv3_key: bytes, mchid: str) -> WebhookEvent:
    """Translate a verified notification; raises `InvalidRequest` naming the bad field."""
    loads_strict(body)
    try:
        notification = Notification.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error(exc) from exc
    if notification.event_type not in REFUND_EVENTS:
        return Ignored(f"wechatpay event type '{notification.event_type}' is not about a "
                       "refund")
    resource = notification.resource
    try:
        plaintext = signing.decrypt(apiv3_key, nonce=resource.nonce,
                                    ciphertext=resource.ciphertext,
                                    associated_data=resource.associated_data)
    except signing.DecryptionError as exc:
        # Signed by WeChat Pay yet not sealed with our key: meant for another merchant, or
        # our APIv3 key is wrong. Either way nothing in it may be believed.
        raise WebhookRejected(NAME, f"resource.ciphertext: {exc}") from exc
    loads_strict(plaintext, "resource")
    try:
        notice = RefundNotice.model_validate_json(plaintext)
    except ValidationError as exc:
        raise validation_error(exc, prefix="resource") from exc
    if notice.mchid is not None and notice.mchid != mchid:
        raise WebhookRejected(NAME, f"notification is for merchant {notice.mchid}, not ours")
    return RefundUpdate(
        result=notice_to_refund_result(notice),
        idempotency_key=notice.out_refund_no,
        event_id=notification.id,
    )
