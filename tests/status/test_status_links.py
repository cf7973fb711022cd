"""The signed status link: it names one case of one shop, expires after the shop's days,
and a token we did not sign (or changed by one character) reads as forged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from itsdangerous import URLSafeTimedSerializer

from refundbridge.core.status_links import SALT, LinkExpired, LinkForged, StatusLinks

SECRET = "k" * 8 + "-status-link-secret-for-tests-0123456789"
START = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


def days(shop: str) -> int:
    return 90


def test_a_link_names_its_case_and_reads_back() -> None:
    links = StatusLinks(SECRET, "https://returns.example.com/")
    link = links.link_for("rc_01HZX", "acme-medical")
    assert link.startswith("https://returns.example.com/status/")
    token = link.rsplit("/", 1)[1]
    assert links.read(token, lambda shop: 90) == "rc_01HZX"
    assert links.shop_of(token) == "acme-medical"
    assert links.lookup_url("acme-medical") == (
        "https://returns.example.com/status/acme-medical/lookup")


def test_a_link_expires_after_its_shops_days_and_not_before() -> None:
    clock = Clock(START)
    links = StatusLinks(SECRET, "http://x", clock=clock)
    token = links.token_for("rc_1", "acme-medical")
    asked: list[str] = []

    def shop_days(shop: str) -> int:
        asked.append(shop)
        return 90 if shop == "acme-medical" else 7

    clock.at = START + timedelta(days=90) - timedelta(seconds=1)
    assert links.read(token, shop_days) == "rc_1"
    clock.at = START + timedelta(days=90, seconds=1)
    with pytest.raises(LinkExpired) as expired:
        links.read(token, shop_days)
    assert expired.value.shop_id == "acme-medical"
    assert set(asked) == {"acme-medical"}

    other = StatusLinks(SECRET, "http://x", clock=Clock(START)).token_for("rc_2", "beta")
    clock.at = START + timedelta(days=8)
    with pytest.raises(LinkExpired):
        links.read(other, shop_days)  # that shop keeps links 7 days


@pytest.mark.parametrize("change", ["last", "payload", "cut", "empty", "long", "junk"])
def test_a_changed_or_made_up_token_is_forged(change: str) -> None:
    links = StatusLinks(SECRET, "http://x")
    token = links.token_for("rc_1", "acme-medical")
    _, stamp, signature = token.split(".")
    changed = {
        "last": token[:-10] + ("A" if token[-10] != "A" else "B") + token[-9:],
        # another case id, same signature
        "payload": URLSafeTimedSerializer(SECRET, salt=SALT).dumps(
            {"c": "rc_2", "s": "acme-medical"}).split(".")[0] + f".{stamp}.{signature}",
        "cut": token[: len(token) // 2],
        "empty": "",
        "long": token + "A" * 600,
        "junk": "not-a-token",
    }[change]
    with pytest.raises(LinkForged):
        links.read(changed, days)


def test_another_key_or_another_purpose_does_not_pass() -> None:
    ours = StatusLinks(SECRET, "http://x")
    theirs = StatusLinks(SECRET.replace("k", "j"), "http://x").token_for("rc_1", "acme")
    with pytest.raises(LinkForged):
        ours.read(theirs, days)
    # Signed with our very key, but for another use (a session, a CSRF token): no salt.
    other_use = URLSafeTimedSerializer(SECRET).dumps({"c": "rc_1", "s": "acme"})
    with pytest.raises(LinkForged):
        ours.read(str(other_use), days)
    # The right salt and key, but not the shape of a link.
    wrong_shape = URLSafeTimedSerializer(SECRET, salt=SALT).dumps(["rc_1", "acme"])
    with pytest.raises(LinkForged):
        ours.read(str(wrong_shape), days)


def test_a_forged_tokens_shop_is_only_a_hint() -> None:
    links = StatusLinks(SECRET, "http://x")
    forged = StatusLinks("x" * 40, "http://x").token_for("rc_1", "acme-medical")
    assert links.shop_hint(forged) == "acme-medical"
    assert links.shop_hint("junk") is None
    with pytest.raises(LinkForged):
        links.shop_of(forged)


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="status_link_secret"):
        StatusLinks("short", "http://x")
