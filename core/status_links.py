"""The customer's status link: a signed token that names one case, for `/status/{token}`.

The token is an itsdangerous `URLSafeTimedSerializer` dump of the case's id and shop, signed
with the `status_link_secret` setting under a salt of its own (so no other signature made
with that key can pass for a status link) and stamped with the time it was made. It expires
after the shop's `status_link_days`; nothing in it is secret, but nothing in it can be
changed without the key. itsdangerous does no IO, so this stays in the pure core.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from itsdangerous import (
    BadData,
    SignatureExpired,
    TimestampSigner,
    URLSafeSerializer,
    URLSafeTimedSerializer,
)

SALT = "refundbridge.status-link.v1"
RECALL_SALT = "refundbridge.recall-acknowledgement.v1"
TOKEN_MAX = 512  # a real token is about 100 characters; anything far longer is not ours
DAY = 86400


class StatusLinkError(Exception):
    """The token does not lead to a case."""


class LinkExpired(StatusLinkError):
    """Signed by us, but older than the shop's `status_link_days`."""

    def __init__(self, shop_id: str) -> None:
        super().__init__(f"status link of shop {shop_id} expired")
        self.shop_id = shop_id


class LinkForged(StatusLinkError):
    """Not signed with our key (changed, made up, cut short, or for another purpose)."""


class StatusLinks:
    """Makes and reads status links. `clock` stamps new tokens and measures their age (a
    test freezes it); `base_url` is where customers reach the API (`public_base_url`)."""

    def __init__(self, secret: str, base_url: str, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        if len(secret) < 16:
            raise ValueError("status_link_secret: at least 16 characters")

        class _Signer(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(clock().timestamp())

        self._serializer = URLSafeTimedSerializer(secret, salt=SALT, signer=_Signer)
        # A recall link does not expire with the shop's `status_link_days`: a consignee may
        # answer a recall notice months later, and the campaign says when it is closed.
        self._recall = URLSafeSerializer(secret, salt=RECALL_SALT)
        self.base_url = base_url.rstrip("/")

    def recall_token_for(self, campaign_id: str, consignee_id: int, shop_id: str) -> str:
        # A list, not an object: the link goes in an SMS, where every character counts.
        return str(self._recall.dumps([campaign_id, consignee_id, shop_id]))

    def recall_link_for(self, campaign_id: str, consignee_id: int, shop_id: str) -> str:
        """The consignee's acknowledgement page for one campaign: it shows only their own
        units."""
        token = self.recall_token_for(campaign_id, consignee_id, shop_id)
        return f"{self.base_url}/status/recall/{token}"

    def read_recall(self, token: str) -> tuple[str, int, str]:
        """(campaign id, consignee id, shop) a recall link names; `LinkForged` otherwise."""
        if not token or len(token) > TOKEN_MAX:
            raise LinkForged("not a recall link")
        try:
            data = self._recall.loads(token)
        except BadData as exc:
            raise LinkForged("not a recall link of ours") from exc
        if not (isinstance(data, list) and len(data) == 3 and isinstance(data[0], str)
                and isinstance(data[1], int) and not isinstance(data[1], bool)
                and isinstance(data[2], str)):
            raise LinkForged("not a recall link of ours")
        return data[0], data[1], data[2]

    def token_for(self, case_id: str, shop_id: str) -> str:
        return str(self._serializer.dumps({"c": case_id, "s": shop_id}))

    def link_for(self, case_id: str, shop_id: str) -> str:
        """The absolute URL of the case's status page."""
        return f"{self.base_url}/status/{self.token_for(case_id, shop_id)}"

    def lookup_url(self, shop_id: str) -> str:
        """Where a customer asks for a fresh link for an order of this shop."""
        return f"{self.base_url}/status/{shop_id}/lookup"

    def shop_of(self, token: str) -> str:
        """The shop a token signed by us names, whatever its age; `LinkForged` otherwise."""
        return self._payload(token, None)[1]

    def shop_hint(self, token: str) -> str | None:
        """The shop a token claims to be from, signed or not: only to choose which shop's
        look-up form a page for a broken link offers, never to show anything of a case."""
        if not token or len(token) > TOKEN_MAX:
            return None
        try:
            _, data = self._serializer.loads_unsafe(token)
        except (BadData, ValueError, TypeError):
            return None
        shop = data.get("s") if isinstance(data, dict) else None
        return shop if isinstance(shop, str) else None

    def read(self, token: str, max_age_days_for_shop: Callable[[str], int]) -> str:
        """The case id the token names. `LinkForged` if we did not sign it, `LinkExpired`
        if it is older than `max_age_days_for_shop(its shop)` days."""
        _, shop_id = self._payload(token, None)
        try:
            case_id, _ = self._payload(token, max_age_days_for_shop(shop_id) * DAY)
        except SignatureExpired as exc:
            raise LinkExpired(shop_id) from exc
        return case_id

    def _payload(self, token: str, max_age: int | None) -> tuple[str, str]:
        if not token or len(token) > TOKEN_MAX:
            raise LinkForged("not a status link")
        try:
            data = self._serializer.loads(token, max_age=max_age)
        except SignatureExpired:
            raise
        except BadData as exc:
            raise LinkForged("not a status link of ours") from exc
        if not (isinstance(data, dict) and isinstance(data.get("c"), str)
                and isinstance(data.get("s"), str)):
            raise LinkForged("not a status link of ours")
        return data["c"], data["s"]


# ---- a fresh link, sent to the address on file ------------------------------------------

@dataclass(frozen=True, slots=True)
class StatusLinkMessage:
    """An email carrying a fresh status link, asked for on the look-up form."""

    shop_id: str
    case_id: str
    order_id: str
    email: str
    locale: str
    status_url: str
    message_id: str


@runtime_checkable
class StatusLinkSender(Protocol):
    """A notifier that can send a `StatusLinkMessage` (the `smtp` connector can)."""

    def send_status_link(self, message: StatusLinkMessage) -> None: ...
