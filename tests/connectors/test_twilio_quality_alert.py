"""Twilio sends a quality signal's SMS to the shop's quality contact in our own words, once:
after a 5xx that Twilio had taken, the retry finds the first send instead of sending
again."""

from __future__ import annotations

import httpx

from refundbridge.core.signals import QualityAlert, QualityAlertTexter
from tests.connectors.test_twilio import (  # noqa: F401  (fixtures)
    connector,
    fake,
    router,
)
from tests.fakes.twilio import TwilioFake

CONTACT = "+8613900139000"


def alert(phone: str | None = CONTACT) -> QualityAlert:
    return QualityAlert("sig_0123456789abcdef01234567", "kangfu", "zh-CN", None, phone,
                        "sig_0123456789abcdef01234567.quality-alert", "质量信号",
                        "body", "【RefundBridge】质量信号 sig_0123：BPM-200 批次 L1 "
                        "30 天内质量退货 3 件次。")


def test_the_alert_is_sent_as_our_text_to_the_contact(connector, fake: TwilioFake) -> None:  # noqa: F811
    assert isinstance(connector, QualityAlertTexter)
    sid = connector.send_quality_sms(alert())
    [message] = fake.messages
    assert message["sid"] == sid and message["to"] == CONTACT
    assert message["body"] == alert().sms_text


def test_a_send_twilio_took_before_a_5xx_is_found_not_sent_again(
        connector, fake: TwilioFake) -> None:  # noqa: F811
    answers = iter([httpx.Response(500)])
    fake.after_create.append(lambda _message: next(answers, None))  # taken, answer lost
    sid = connector.send_quality_sms(alert())
    assert len(fake.messages) == 1 and fake.messages[0]["sid"] == sid
    assert len(fake.posts) == 1  # found by number and text, not posted again
