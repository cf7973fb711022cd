"""Alipay's asynchronous notifications: check the RSA2 `sign`, then read refund news.

Alipay POSTs the notification form-encoded to the `notify_url` of the original payment and
re-sends it (for about 25 hours) until the answer's body is the literal `success`
(`AlipayConnector.acknowledgement`).

No age check: a tolerance would have to cover Alipay's own re-sends over those 25 hours, and
what a notification says (this refund was paid) stays true however often it is replayed: the
core applies it idempotently.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import parse_qsl

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from refundbridge.connectors import rsa_signing
from refundbridge.connectors.alipay import signing
from refundbridge.connectors.alipay.transformers import (
    NAME,
    AlipayNotification,
    notified_refund,
)
from refundbridge.connectors.base import validation_error
from refundbridge.core.errors import WebhookRejected
from refundbridge.core.ports import Ignored, RefundUpdate, WebhookEvent

DEFAULT_CHARSET: Final = "utf-8"


def parse_form(body: bytes) -> dict[str, str]:
    """The notification's parameters, URL-decoded in the charset it names."""
    try:
        text = body.decode("ascii")  # a form body is percent-encoded ASCII
    except UnicodeDecodeError as exc:
        raise WebhookRejected(NAME, "the body is not a form-encoded Alipay notification"
                              ) from exc
    # `charset` itself is ASCII: find it with a lenient read, then decode strictly in it.
    named = dict(parse_qsl(text, keep_blank_values=True, errors="replace"))
    charset = named.get("charset", DEFAULT_CHARSET).lower()
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding=charset, errors="strict")
    except (UnicodeDecodeError, LookupError) as exc:
        raise WebhookRejected(NAME, f"the body is not valid {charset}") from exc
    params = dict(pairs)
    if len(params) != len(pairs):
        # Which copy did Alipay sign? Nobody can say, so neither is accepted.
        raise WebhookRejected(NAME, "a parameter appears twice")
    return params


def verify(params: Mapping[str, str], alipay_public_key: rsa.RSAPublicKey) -> None:
    """Raise `WebhookRejected` unless Alipay's key signed these parameters."""
    signature = params.get("sign")
    if not signature:
        raise WebhookRejected(NAME, "the notification has no sign")
    sign_type = params.get("sign_type", signing.SIGN_TYPE)
    if sign_type != signing.SIGN_TYPE:
        # RSA (SHA-1) is refused outright rather than verified with a weaker hash.
        raise WebhookRejected(NAME, f"sign_type {sign_type!r} is not {signing.SIGN_TYPE}")
    base = signing.notification_sign_base(params)
    try:
        rsa_signing.verify(alipay_public_key,
                           base.encode(params.get("charset", DEFAULT_CHARSET)), signature)
    except InvalidSignature as exc:
        raise WebhookRejected(NAME, "bad signature") from exc


def parse(params: Mapping[str, str], app_id: str) -> WebhookEvent:
    """Translate verified parameters; raises `InvalidRequest` naming the bad field."""
    # A genuine notification for another of the merchant's apps is not ours to apply.
    if params.get("app_id") != app_id:
        raise WebhookRejected(NAME, f"notification for app_id {params.get('app_id')!r}, "
                                    f"not {app_id!r}")
    try:
        note = AlipayNotification.model_validate(dict(params))
    except ValidationError as exc:
        raise validation_error(exc) from exc
    if not note.is_refund:
        return Ignored(f"alipay {note.notify_type} ({note.trade_status or 'no trade_status'}) "
                       "does not announce a refund")
    return RefundUpdate(
        result=notified_refund(note),
        idempotency_key=note.out_biz_no,
        event_id=note.notify_id,
    )
