"""The pure parts of the SMS channel: phone numbers in E.164, quiet hours in the shop's time
zone, opt-out words, and a case's SMS records (they never keep it open)."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest
from pydantic import ValidationError

from refundbridge.config.settings import PolicySettings
from refundbridge.core.errors import InvalidRequest
from refundbridge.core.model import (
    Channel,
    DeliveryState,
    DeliveryStatus,
    NotificationKind,
    sms_message_id,
)
from refundbridge.core.phones import to_e164
from refundbridge.core.policy import Jurisdiction, ShopPolicy
from refundbridge.core.services.notifications import _report_target, is_opt_out
from refundbridge.store.mapping import _notification
from tests.unit.builders import approval, at, open_case


@pytest.mark.parametrize(("raw", "region", "e164"), [
    ("138 0013 8000", "CN", "+8613800138000"),
    ("+86 138-0013-8000", None, "+8613800138000"),
    ("(415) 555-2671", "US", "+14155552671"),
    ("030 1234567", "DE", "+49301234567"),
])
def test_numbers_are_normalised_to_e164(raw: str, region: str | None, e164: str) -> None:
    assert to_e164(raw, region) == e164


@pytest.mark.parametrize(("raw", "region"), [
    ("12345", "CN"), ("not a phone", "CN"), ("13800138000", None), ("+999 1234567", None),
    ("+86 138 0013 8000 12345", None)])
def test_what_is_not_a_number_names_customer_phone(raw: str, region: str | None) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_e164(raw, region)
    assert caught.value.field == "customer.phone"


def test_the_default_region_follows_the_jurisdiction() -> None:
    assert ShopPolicy(jurisdiction=Jurisdiction.CN).phone_region == "CN"
    assert ShopPolicy(jurisdiction=Jurisdiction.US).phone_region == "US"
    assert ShopPolicy(jurisdiction=Jurisdiction.EU).phone_region is None
    assert ShopPolicy(jurisdiction=Jurisdiction.EU, country="DE").phone_region == "DE"


def test_policy_settings_check_country_and_quiet_hours() -> None:
    policy = PolicySettings(country="cn", sms_quiet_hours="21:00-08:00").to_policy()
    assert policy.country == "CN" and policy.sms_quiet_hours == (time(21), time(8))
    for bad in ({"country": "XX"}, {"sms_quiet_hours": "9pm-8am"},
                {"sms_quiet_hours": "08:00-08:00"}, {"sms_quiet_hours": "21:00"}):
        with pytest.raises(ValidationError):
            PolicySettings(**bad)  # type: ignore[arg-type]


SHANGHAI_NIGHT = ShopPolicy(timezone="Asia/Shanghai", sms_quiet_hours=(time(21), time(8)))


@pytest.mark.parametrize(("utc", "until"), [
    # 22:30 in Shanghai: until 08:00 the next morning.
    (datetime(2026, 12, 2, 14, 30, tzinfo=UTC), datetime(2026, 12, 3, 0, 0, tzinfo=UTC)),
    # 06:00 in Shanghai: until 08:00 the same morning.
    (datetime(2026, 12, 2, 22, 0, tzinfo=UTC), datetime(2026, 12, 3, 0, 0, tzinfo=UTC)),
    # 12:00 and 20:59 in Shanghai: not quiet; 08:00 sharp is already morning.
    (datetime(2026, 12, 2, 4, 0, tzinfo=UTC), None),
    (datetime(2026, 12, 2, 12, 59, tzinfo=UTC), None),
    (datetime(2026, 12, 3, 0, 0, tzinfo=UTC), None),
])
def test_quiet_hours_end_in_the_shops_morning(utc: datetime, until: datetime | None) -> None:
    assert SHANGHAI_NIGHT.quiet_until(utc) == until


def test_quiet_hours_within_one_day_and_none() -> None:
    lunch = ShopPolicy(timezone="UTC", sms_quiet_hours=(time(12), time(13)))
    assert lunch.quiet_until(datetime(2026, 1, 1, 12, 30, tzinfo=UTC)) == datetime(
        2026, 1, 1, 13, tzinfo=UTC)
    assert lunch.quiet_until(datetime(2026, 1, 1, 13, 0, tzinfo=UTC)) is None
    assert ShopPolicy().quiet_until(datetime(2026, 1, 1, 23, tzinfo=UTC)) is None


def test_only_the_recall_kinds_are_urgent() -> None:
    # a recall notice and its reminders are safety messages: quiet hours do not hold them
    assert {kind for kind in NotificationKind if kind.urgent} == {
        NotificationKind.RECALL_NOTICE, NotificationKind.RECALL_REMINDER}


@pytest.mark.parametrize(("text", "opts_out"), [
    ("STOP", True), ("stop", True), (" Stop. ", True), ("退订", True), ("TD", True),
    ("unsubscribe please", True), ("谢谢", False), ("", False), ("please stop", False)])
def test_opt_out_words(text: str, opts_out: bool) -> None:
    assert is_opt_out(text) is opts_out


def test_message_ids_name_case_and_kind() -> None:
    message_id = sms_message_id("rc_abc", NotificationKind.APPROVED)
    assert _report_target(message_id) == ("rc_abc", NotificationKind.APPROVED)
    assert _report_target("rc_abc.approved") is None  # an email's id
    assert _report_target("rc_abc.nonsense.sms") is None
    assert _report_target(None) is None


def test_sms_records_never_keep_a_case_open() -> None:
    case = open_case()
    sms = case.add_sms(NotificationKind.RECEIVED)
    assert sms.channel is Channel.SMS and case.add_sms(NotificationKind.RECEIVED) is sms
    assert case.pending_sms() == [sms]
    assert all(n.channel is Channel.EMAIL for n in case.pending_notifications())
    case.claim_sms(NotificationKind.RECEIVED, at(1))
    assert sms.in_flight and sms.attempts == 1
    case.record_sms(NotificationKind.RECEIVED, at(2), state=DeliveryState.FAILED,
                    error="refused")
    assert sms.status is DeliveryStatus.FAILED and not sms.in_flight
    assert sms not in case.undelivered_notifications()
    # Settled: a late outcome changes nothing; a report moves the state.
    case.record_sms(NotificationKind.RECEIVED, at(3), state=DeliveryState.QUEUED,
                    provider_id="X")
    assert sms.state is DeliveryState.FAILED
    case.start_evaluation(at(4))
    case.decide(approval(case, minute=5))
    assert case.sms(NotificationKind.APPROVED) is None  # made by the notify step


def test_sms_records_round_trip_and_old_rows_are_emails() -> None:
    case = open_case()
    sms = case.add_sms(NotificationKind.RECEIVED)
    case.claim_sms(NotificationKind.RECEIVED, at(1))
    case.defer_sms(NotificationKind.RECEIVED, at(2), at(60), "quiet hours")
    again = _notification(sms.as_json())
    assert again == sms
    old = _notification({"kind": "received", "status": "sent", "attempts": 1})
    assert old.channel is Channel.EMAIL and old.state is None
