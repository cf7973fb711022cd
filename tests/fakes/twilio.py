"""A Twilio Messaging API fake for respx that speaks Twilio's wire format and rules.

Like Twilio it
- takes HTTP Basic auth with the Account SID and Auth Token (or an API key's SID and secret);
  anything else is 401 `20003`;
- refuses a send with the documented error codes: no `To` (21604), a `To` that is not a
  valid number (21211), a recipient who replied STOP (21610), no sender (21603), a `From` the
  account does not own (21606), no `Body` (21602), a body over 1 600 characters (21617);
- answers a send `201` with the Message resource in status `queued` (`accepted` through a
  Messaging Service) and no `date_sent`; afterwards the message leaves the queue (status
  `sent`, `date_sent` set) unless `hold_in_queue` is set;
- lists `GET .../Messages.json` filtered by `To` and `DateSent` (GMT day), newest first,
  in pages of `PageSize` linked by `next_page_uri`;
- writes the status callbacks and inbound messages Twilio would post, signed with the
  Auth Token by Twilio's own `RequestValidator`.

It keeps its state in memory.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import respx
from twilio.request_validator import RequestValidator

from tests.fakes.common import hooked_answer

BASE = "https://api.twilio.com"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def twilio_error(status: int, code: int, message: str,
                 headers: dict[str, str] | None = None) -> httpx.Response:
    """An error answer in Twilio's documented shape."""
    return httpx.Response(status, headers=headers, json={
        "code": code, "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status})


def rfc2822(when: datetime) -> str:
    return format_datetime(when.astimezone(UTC))  # "Wed, 02 Dec 2026 09:30:00 +0000"


class TwilioFake:
    def __init__(self, account_sid: str, auth_token: str, *, numbers: tuple[str, ...] = (),
                 service_sid: str | None = None, now: datetime | None = None) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.credentials = {(account_sid, auth_token)}
        self.numbers = set(numbers)  # senders the account owns
        self.service_sid = service_sid
        self.now = now or datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
        self.unsubscribed: set[str] = set()  # numbers that replied STOP
        # Numbers Twilio finds invalid; +15005550001 is its documented magic one.
        self.invalid: set[str] = {"+15005550001"}
        self.hold_in_queue = False
        self.messages: list[dict[str, Any]] = []  # oldest first
        self.callback_urls: dict[str, str] = {}  # sid -> StatusCallback
        self.posts: list[httpx.Request] = []
        self.gets: list[httpx.Request] = []
        # Hooks: return a Response to answer instead of the fake (503s, 429s, garbage).
        self.before_post: list[Callable[[httpx.Request], httpx.Response | None]] = []
        self.before_get: list[Callable[[httpx.Request], httpx.Response | None]] = []
        # Run after a message was stored, before the answer: may answer instead (a 500
        # after Twilio took the message, as a timeout would look).
        self.after_create: list[Callable[[dict[str, Any]], httpx.Response | None]] = []

    @property
    def path(self) -> str:
        return f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"

    # ------------------------------------------------------------- routes
    def install(self, router: respx.MockRouter) -> None:
        router.post(f"{BASE}{self.path}").mock(side_effect=self._create)
        router.get(f"{BASE}{self.path}").mock(side_effect=self._list)

    def _authorized(self, request: httpx.Request) -> bool:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Basic":
            return False
        user, _, password = base64.b64decode(encoded).decode().partition(":")
        return (user, password) in self.credentials

    def _create(self, request: httpx.Request) -> httpx.Response:
        self.posts.append(request)
        if (answer := hooked_answer(self.before_post, request)) is not None:
            return answer
        if not self._authorized(request):
            return twilio_error(401, 20003, "Authenticate")
        form = dict(parse_qsl(request.content.decode(), keep_blank_values=True))
        refused = self._refused(form)
        if refused is not None:
            return refused
        message = self._message(form)
        self.messages.append(message)
        if form.get("StatusCallback"):
            self.callback_urls[message["sid"]] = form["StatusCallback"]
        created = dict(message)
        if not self.hold_in_queue:  # it leaves the queue once answered
            message.update(status="sent", date_sent=rfc2822(self.now))
        for hook in self.after_create:
            if (hooked := hook(created)) is not None:
                return hooked
        return httpx.Response(201, json=created)

    def _refused(self, form: dict[str, str]) -> httpx.Response | None:
        to, sender = form.get("To", ""), form.get("From")
        service = form.get("MessagingServiceSid")
        if not to:
            return twilio_error(400, 21604, "A 'To' phone number is required.")
        if not E164.match(to) or to in self.invalid:
            return twilio_error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if to in self.unsubscribed:
            return twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")
        if not sender and not service:
            return twilio_error(400, 21603, "A 'From' phone number is required.")
        if sender and sender not in self.numbers:
            return twilio_error(400, 21606, f"The From phone number {sender} is not a valid, "
                                            "SMS-capable inbound phone number or short code "
                                            "for your account.")
        if service and service != self.service_sid:
            return twilio_error(404, 20404, f"The requested resource {service} was not found")
        if not form.get("Body"):
            return twilio_error(400, 21602, "Message body is required.")
        if len(form["Body"]) > 1600:
            return twilio_error(400, 21617, "The concatenated message body exceeds the 1600 "
                                            "character limit.")
        return None

    def _message(self, form: dict[str, str]) -> dict[str, Any]:
        sid = "SM" + secrets.token_hex(16)
        service = form.get("MessagingServiceSid")
        created = rfc2822(self.now)
        return {
            "account_sid": self.account_sid, "api_version": "2010-04-01",
            "body": form["Body"], "date_created": created, "date_sent": None,
            "date_updated": created, "direction": "outbound-api", "error_code": None,
            "error_message": None, "from": form.get("From"), "messaging_service_sid": service,
            "num_media": "0", "num_segments": "1", "price": None, "price_unit": "USD",
            "sid": sid, "status": "accepted" if service else "queued",
            "subresource_uris": {"media": f"{self.path[:-5]}/{sid}/Media.json"},
            "to": form["To"], "uri": f"{self.path[:-5]}/{sid}.json",
        }

    def _list(self, request: httpx.Request) -> httpx.Response:
        self.gets.append(request)
        if (answer := hooked_answer(self.before_get, request)) is not None:
            return answer
        if not self._authorized(request):
            return twilio_error(401, 20003, "Authenticate")
        params = request.url.params
        found = [m for m in reversed(self.messages)
                 if m["to"] == params.get("To", m["to"]) and self._sent_on(m, params)]
        size = int(params.get("PageSize", "50"))
        page = int(params.get("Page", "0"))
        chunk = found[page * size:(page + 1) * size]
        query = {k: v for k, v in params.items() if k not in ("Page", "PageToken")}
        next_uri = None
        if (page + 1) * size < len(found):
            following = {**query, "Page": page + 1, "PageToken": "PA" + secrets.token_hex(16)}
            next_uri = f"{self.path}?{urlencode(following)}"
        return httpx.Response(200, json={
            "messages": chunk, "end": page * size + max(len(chunk) - 1, 0),
            "first_page_uri": f"{self.path}?{urlencode({**query, 'Page': 0})}",
            "next_page_uri": next_uri, "page": page, "page_size": size,
            "previous_page_uri": None, "start": page * size,
            "uri": f"{request.url.path}?{request.url.query.decode()}"})

    @staticmethod
    def _sent_on(message: dict[str, Any], params: httpx.QueryParams) -> bool:
        day: str | None = params.get("DateSent")
        if day is None:
            return True
        sent: str | None = message["date_sent"]
        if sent is None:
            return False
        return datetime.strptime(sent, "%a, %d %b %Y %H:%M:%S %z").date().isoformat() == day

    # ------------------------------------------------------------- what Twilio posts to us
    def sign(self, url: str, params: dict[str, str]) -> dict[str, str]:
        """The headers Twilio sends with a form POST of `params` to `url`."""
        signature = RequestValidator(self.auth_token).compute_signature(url, params)
        return {"X-Twilio-Signature": signature,
                "Content-Type": "application/x-www-form-urlencoded",
                "User-Agent": "TwilioProxy/1.1"}

    def status_callback(self, sid: str, status: str, error_code: str | None = None
                        ) -> tuple[str, dict[str, str], bytes]:
        """The status callback Twilio posts for message `sid` (to its StatusCallback)."""
        message = next(m for m in self.messages if m["sid"] == sid)
        params = {"ApiVersion": "2010-04-01", "AccountSid": self.account_sid,
                  "MessageSid": sid, "SmsSid": sid, "MessageStatus": status,
                  "SmsStatus": status, "To": message["to"]}
        if message["from"]:
            params["From"] = message["from"]
        if message["messaging_service_sid"]:
            params["MessagingServiceSid"] = message["messaging_service_sid"]
        if error_code is not None:
            params["ErrorCode"] = error_code
        url = self.callback_urls[sid]
        return url, self.sign(url, params), urlencode(params).encode()

    def inbound(self, url: str, sender: str, body: str, to: str,
                opt_out_type: str | None = None) -> tuple[str, dict[str, str], bytes]:
        """An SMS a customer sends to one of the account's numbers, as Twilio posts it."""
        sid = "SM" + secrets.token_hex(16)
        params = {"ToCountry": "US", "ToState": "CA", "SmsMessageSid": sid, "NumMedia": "0",
                  "ToCity": "", "FromZip": "", "SmsSid": sid, "FromState": "",
                  "SmsStatus": "received", "FromCity": "", "Body": body, "FromCountry": "CN",
                  "To": to, "ToZip": "", "NumSegments": "1", "MessageSid": sid,
                  "AccountSid": self.account_sid, "From": sender, "ApiVersion": "2010-04-01"}
        if opt_out_type is not None:
            params["OptOutType"] = opt_out_type
        return url, self.sign(url, params), urlencode(params).encode()
