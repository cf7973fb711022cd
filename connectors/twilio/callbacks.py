"""What Twilio pushes to us: status callbacks and inbound messages, form-encoded and signed.

`X-Twilio-Signature` is base64(HMAC-SHA1(Auth Token, URL + every POST parameter's name and
value, sorted by name)), over the full URL Twilio requested (scheme, host, path and query).
Twilio's own validator also accepts the URL with its default port added or removed ("since
signature generation on the back end is inconsistent"); so do we. The signature carries no
timestamp, so a captured callback could be replayed: what it says is idempotent (a delivery
state already recorded, a number already opted out), so a replay changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Final
from urllib.parse import ParseResult, parse_qsl, urlparse

from refundbridge.connectors.base import header_value
from refundbridge.connectors.sms_text import plain
from refundbridge.connectors.twilio.transformers import (
    NAME,
    error_text,
    map_state,
    message_id_of,
)
from refundbridge.core.errors import WebhookRejected
from refundbridge.core.ports import DeliveryReport, InboundSms, SmsCallback

SIGNATURE_HEADER: Final = "X-Twilio-Signature"
# Sent with webhooks signed by a SharedKey instead of the Auth Token (`algorithm=…`).
SETTINGS_HEADER: Final = "X-Twilio-Webhooks-Signature-Settings"
BODY_MAX: Final = 64 * 1024  # a callback is a few hundred bytes; an inbound SMS ≤ 1 600 chars

# Twilio's standard opt-out keywords (https://help.twilio.com/articles/223134027), and the
# Chinese ones (退订 "unsubscribe", TD its usual abbreviation). A reply that is exactly one
# of these, whatever its case and surrounding spaces or punctuation, opts the number out.
OPT_OUT_WORDS: Final = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit",
                                  "optout", "revoke", "退订", "td", "t"})
_PUNCTUATION: Final = " \t\r\n.!。！,，"

Params = list[tuple[str, str]]


def _port_variants(url: str) -> set[str]:
    """`url` with and without its default port, as Twilio's `RequestValidator` builds them."""
    parsed = urlparse(url)
    variants = {parsed.geturl()}
    if parsed.port:
        variants.add(parsed._replace(netloc=parsed.netloc.rsplit(":", 1)[0]).geturl())
    else:
        variants.add(_with_port(parsed))
    return variants


def _with_port(parsed: ParseResult) -> str:
    port = 443 if parsed.scheme == "https" else 80
    return parsed._replace(netloc=f"{parsed.netloc}:{port}").geturl()


def compute_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Twilio's signature of a form POST to `url`. Each name once, in sorted order, followed
    by its distinct values, sorted (as Twilio's own code does for a repeated name)."""
    values: dict[str, set[str]] = {}
    for name, value in params:
        values.setdefault(name, set()).add(value)
    signed = url + "".join(name + value for name in sorted(values)
                           for value in sorted(values[name]))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def read_form(body: bytes) -> Params:
    if len(body) > BODY_MAX:
        raise WebhookRejected(NAME, f"body of {len(body)} bytes is longer than Twilio sends")
    try:
        text = body.decode("utf-8")
        return parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text),
                         errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookRejected(NAME, "body is not a UTF-8 form, so Twilio did not send it"
                              ) from exc


def verify(url: str, headers: Mapping[str, str], params: Params, auth_token: str) -> None:
    """Raise `WebhookRejected` unless Twilio signed these parameters for this URL."""
    signature = header_value(headers, SIGNATURE_HEADER)
    if not signature:
        raise WebhookRejected(NAME, f"missing {SIGNATURE_HEADER} header")
    algorithm = _algorithm(header_value(headers, SETTINGS_HEADER))
    if algorithm != "HMAC_SHA1":
        raise WebhookRejected(NAME, f"signed with {algorithm} by a SharedKey; only Auth Token "
                                    "(HMAC_SHA1) signatures are configured")
    given = signature.strip().encode()
    if not any(hmac.compare_digest(compute_signature(auth_token, candidate, params).encode(),
                                   given) for candidate in sorted(_port_variants(url))):
        raise WebhookRejected(NAME, f"bad {SIGNATURE_HEADER} for {url}")


def _algorithm(settings: str | None) -> str:
    for part in (settings or "").split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip() == "algorithm" and value.strip():
            return value.strip().upper()
    return "HMAC_SHA1"


def _single(params: Params) -> dict[str, str]:
    """The parameters by name; a name given twice with different values is refused (which
    one would we act on?)."""
    fields: dict[str, str] = {}
    for name, value in params:
        if fields.setdefault(name, value) != value:
            raise WebhookRejected(NAME, f"parameter {name} is given twice")
    return fields


def is_opt_out(text: str, opt_out_type: str | None = None) -> bool:
    """A reply that opts out: Twilio's Advanced Opt-Out says so (`OptOutType=STOP`), or the
    text is one of the opt-out words."""
    if opt_out_type and opt_out_type.upper() == "STOP":
        return True
    return plain(text).strip(_PUNCTUATION).casefold() in OPT_OUT_WORDS


def translate(fields: Mapping[str, str], account_sid: str, now: datetime,
              message_id: str | None = None) -> SmsCallback:
    """A verified callback's parameters as the core's `SmsCallback`."""
    if fields.get("AccountSid") != account_sid:
        raise WebhookRejected(NAME, "the callback is about another Twilio account")
    status = fields.get("MessageStatus") or fields.get("SmsStatus")
    if "Body" in fields and status in (None, "received", "receiving"):
        sender = fields.get("From", "")
        if not sender:
            raise WebhookRejected(NAME, "an inbound message without From")
        text = fields["Body"]
        if not is_opt_out(text, fields.get("OptOutType")):
            return SmsCallback()  # any other reply: nobody reads an SMS inbox here
        return SmsCallback(replies=(InboundSms(phone=sender, text=text, at=now),))
    sid = fields.get("MessageSid") or fields.get("SmsSid")
    if not sid or status is None:
        raise WebhookRejected(NAME, "neither a status callback (MessageSid, MessageStatus) "
                                    "nor an inbound message (From, Body)")
    state = map_state(status)
    if state is None:
        return SmsCallback()  # logged by map_state; recorded once someone maps it
    code = fields.get("ErrorCode", "")
    return SmsCallback(reports=(DeliveryReport(
        provider_id=sid, message_id=message_id, phone=fields.get("To") or None, state=state,
        error=error_text(code) if code and code != "0" else "", at=now),))


def parse(url: str, headers: Mapping[str, str], body: bytes, auth_token: str,
          account_sid: str, now: datetime) -> SmsCallback:
    params = read_form(body)
    verify(url, headers, params, auth_token)
    return translate(_single(params), account_sid, now, message_id_of(url))
