"""Twilio's wire format (pydantic models) and its mapping to and from the core's SMS types.

No I/O here: `client.py` sends what these functions build, `callbacks.py` reads what Twilio
pushes with the tables below.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import httpx
from pydantic import ConfigDict, Field

from refundbridge.core.ports import DeliveryState, SmsReceipt
from refundbridge.core.request import PROVIDER_REF_MAX, WireModel

log = logging.getLogger(__name__)

NAME = "twilio"
MESSAGE_ID_PARAM: Final = "message_id"
_LINK: Final = re.compile(r"https?://\S+")
E164: Final = re.compile(r"^\+[1-9]\d{6,14}$")
BODY_MAX: Final = 1600  # Twilio refuses longer bodies (error 21617)

# Every Message status Twilio documents (https://www.twilio.com/docs/messaging/api/message-resource
# #message-status-values). `read` is WhatsApp's and RCS's "delivered and opened"; `receiving`
# and `received` are inbound messages, which are never the answer to our send.
STATUS_MAP: Final[Mapping[str, DeliveryState]] = MappingProxyType({
    "queued": DeliveryState.QUEUED,
    "accepted": DeliveryState.QUEUED,
    "scheduled": DeliveryState.QUEUED,
    "sending": DeliveryState.SENT,
    "sent": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
    "read": DeliveryState.DELIVERED,
    "undelivered": DeliveryState.FAILED,
    "failed": DeliveryState.FAILED,
    "canceled": DeliveryState.FAILED,
})

# Refusals of a send that say "not now" rather than "no" (https://www.twilio.com/docs/api/
# errors): the message waits (`SendDeferred`) instead of failing the case.
DEFERRED_CODES: Final = frozenset({
    "14107",  # send rate limit between two numbers (15-30 in 30 s): held for 30 s
    "21611",  # this 'From' number has exceeded the maximum number of queued messages
})

# What the error codes a delivery report carries mean, for the person reading the case
# (the rest are named by their number and Twilio's page about it).
ERROR_TEXT: Final[Mapping[str, str]] = MappingProxyType({
    "14107": "send rate limit between the two numbers exceeded; send again later",
    "21610": "the recipient has opted out (replied STOP)",
    "21614": "the number is not a mobile number",
    "30001": "queue overflow; send again later",
    "30003": "unreachable destination handset",
    "30004": "message blocked",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "filtered by the carrier",
    "30008": "unknown error",
})


class _Wire(WireModel):
    # Twilio adds fields to its resources; unknown ones must not break parsing.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class TwilioMessage(_Wire):
    """The Message resource, the fields we use (dates are RFC 2822 text, in GMT)."""

    sid: str = Field(min_length=1, max_length=PROVIDER_REF_MAX)
    status: str
    to: str | None = None
    from_: str | None = Field(default=None, alias="from")
    body: str | None = None
    direction: str | None = None
    date_created: str | None = None
    date_sent: str | None = None  # null until the message left Twilio
    error_code: int | None = None
    error_message: str | None = None
    num_segments: str | None = None


class TwilioMessagePage(_Wire):
    """One page of `GET .../Messages.json`."""

    messages: list[TwilioMessage]
    next_page_uri: str | None = None


class TwilioError(_Wire):
    """Twilio's error body (https://www.twilio.com/docs/usage/twilios-response#response-formats
    -exceptions)."""

    code: int | None = None
    message: str
    more_info: str | None = None
    status: int | None = None


def map_state(raw: str | None) -> DeliveryState | None:
    """A Twilio status as ours; None for one the table lacks (logged, so someone adds it)."""
    state = STATUS_MAP.get(raw or "")
    if state is None:
        log.warning("%s: unmapped message status %r", NAME, raw)
    return state


def error_text(code: str) -> str:
    meaning = ERROR_TEXT.get(code)
    about = f": {meaning}" if meaning else ""
    return f"Twilio error {code}{about} (https://www.twilio.com/docs/errors/{code})"


def message_form(*, to: str, body: str, from_number: str | None,
                 messaging_service_sid: str | None, status_callback: str | None
                 ) -> dict[str, str]:
    """The form of `POST .../Messages.json`. With a Messaging Service, Twilio picks the
    sender from its pool (or uses `From`, if given too, from that pool)."""
    form = {"To": to, "Body": body}
    if messaging_service_sid:
        form["MessagingServiceSid"] = messaging_service_sid
    if from_number:
        form["From"] = from_number
    if status_callback:
        form["StatusCallback"] = status_callback
    return form


def to_receipt(message: TwilioMessage) -> SmsReceipt:
    state = map_state(message.status)
    if state is None:
        # Twilio answered 2xx with a Message SID: it took the message, whatever it calls that.
        return SmsReceipt(message.sid, DeliveryState.QUEUED,
                          f"unmapped Twilio status {message.status!r}")
    detail = ""
    if message.error_code is not None:
        detail = error_text(str(message.error_code))
    elif message.error_message:
        detail = message.error_message
    return SmsReceipt(message.sid, state, detail)


def callback_url(base: str, message_id: str) -> str:
    """Where Twilio posts this message's status callbacks: the configured URL with our
    message id added to its query. Twilio posts to (and signs) exactly this URL, so the id
    comes back with every delivery report."""
    return str(httpx.URL(base).copy_merge_params({MESSAGE_ID_PARAM: message_id}))


def message_id_of(url: str) -> str | None:
    return httpx.URL(url).params.get(MESSAGE_ID_PARAM) or None


def _masked(text: str) -> str:
    return _LINK.sub("<link>", text)


def is_our_send(message: TwilioMessage, to: str, body: str) -> bool:
    """Whether Twilio's `message` is our send of `body` to `to`.

    Twilio keeps no metadata of ours on a Message, so the text is the link: each of our
    bodies carries the case number and reads differently per kind, so the same number and
    body mean the same case and kind. Links are left out of the comparison (a status link
    signed again later carries a new timestamp), and a trial account prefixes "Sent from
    your Twilio trial account - ", hence a body that ends with ours counts too.
    """
    return (message.to == to and (message.direction or "outbound").startswith("outbound")
            and message.body is not None and _masked(message.body).endswith(_masked(body)))

