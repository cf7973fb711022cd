"""Twilio SMS connector against Twilio's wire format: respx at the transport (a fake that
answers as Twilio documents, error codes included), and Twilio's own `RequestValidator` to
sign and check callbacks. No network, no sleeps."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode

import httpx
import pytest
import respx
import tenacity
from twilio.request_validator import RequestValidator

from refundbridge.connectors.base import ConnectorContext, RetryPolicy
from refundbridge.connectors.registry import ConnectorRegistry, check_connector_class
from refundbridge.connectors.twilio import TwilioConnector
from refundbridge.connectors.twilio.callbacks import compute_signature
from refundbridge.core.errors import (
    ConfigError,
    PermanentProviderError,
    SendDeferred,
    TransientProviderError,
    WebhookRejected,
)
from refundbridge.core.model import NotificationKind
from refundbridge.core.ports import (
    Capability,
    DeliveryReport,
    DeliveryState,
    InboundSms,
    OutgoingMessage,
    Role,
    SmsCallback,
)
from tests.connectors.helpers import FAST, in_turn
from tests.fakes.common import installed
from tests.fakes.twilio import BASE, TwilioFake, twilio_error

ACCOUNT_SID = "AC3f1c8a2b9d4e7f60a1b2c3d4e5f60718"
AUTH_TOKEN = "9c1e0f4b7a2d5e8c3f6a9b0d1e2f3a4b"
API_KEY_SID = "SK0a1b2c3d4e5f60718293a4b5c6d7e8f9"
API_KEY_SECRET = "Vq3kZ8rT1mWn6yPb0cHs4dLf7gJx2aEu"
SERVICE_SID = "MG7e6d5c4b3a29180f7e6d5c4b3a291807"
SENDER = "+14155238886"
CUSTOMER = "+8613800138000"
CALLBACK_URL = "https://rb.kangfu-medical.cn/webhooks/kangfu/twilio"
NOW = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
TODAY = NOW.date()
MESSAGES = f"{BASE}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
MESSAGE_ID = "rc_8f14e45fceea167a5a36dedd4bea2543.received"
SETTINGS: dict[str, Any] = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN,
                            "from_number": SENDER, "status_callback_url": CALLBACK_URL}


def make_message(kind: NotificationKind = NotificationKind.RECEIVED, *, locale: str = "zh-CN",
                 phone: str | None = CUSTOMER, **context: Any) -> OutgoingMessage:
    case_id = "rc_8f14e45fceea167a5a36dedd4bea2543"
    return OutgoingMessage(
        case_id=case_id, kind=kind, locale=locale, email=None, phone=phone,
        message_id=f"{case_id}.{kind.value}",
        context={"case_id": case_id, "shop_id": "kangfu", "order_id": "SO-20261202-0042",
                 "amount": "259.00", "currency": "CNY", "customer_id": "c-7",
                 "reason_text": "袖带漏气", "is_return": True, "customer_message": "",
                 "lines": [{"sku": "BPM-200", "name": "血压计", "quantity": 1}],
                 "shop_name": "康复医疗", **context})


def make_connector(retry: RetryPolicy = FAST, **settings: Any) -> TwilioConnector:
    ctx = ConnectorContext(shop_id="kangfu", retry=retry, clock=lambda: NOW)
    return TwilioConnector.from_config({**SETTINGS, **settings}, ctx)


@pytest.fixture
def fake() -> TwilioFake:
    return TwilioFake(ACCOUNT_SID, AUTH_TOKEN, numbers=(SENDER,), service_sid=SERVICE_SID,
                      now=NOW)


@pytest.fixture
def router(fake: TwilioFake) -> Iterator[respx.MockRouter]:
    with installed(fake) as router:
        yield router


@pytest.fixture
def connector(router: respx.MockRouter) -> Iterator[TwilioConnector]:
    conn = make_connector()
    yield conn
    conn.close()


def form_of(request: httpx.Request) -> dict[str, str]:
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    return {k: v[0] for k, v in parse_qs(request.content.decode(), keep_blank_values=True
                                         ).items()}


def each_in_turn(*answers: httpx.Response | Exception) -> Any:
    """`in_turn` as a fake's hook, which is handed the request (or the stored message)."""
    next_answer = in_turn(*answers)
    return lambda _: next_answer()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def posts_and_gets(fake: TwilioFake) -> tuple[int, int]:
    return len(fake.posts), len(fake.gets)


# ------------------------------------------------------------------ the connector itself


def test_twilio_is_answered_with_empty_twiml() -> None:
    ack = TwilioConnector.acknowledgement
    assert ack is not None and (ack.status, ack.media_type) == (200, "text/xml")
    assert ack.body.endswith(b"<Response></Response>")


def test_the_registry_takes_it_as_an_sms_notifier() -> None:
    check_connector_class("twilio", TwilioConnector)
    registry = ConnectorRegistry({"twilio": TwilioConnector})
    assert registry.get("twilio", Role.NOTIFIER, "shops.kangfu.notifier") is TwilioConnector
    assert TwilioConnector.capabilities == frozenset({Capability.SEND_SMS})
    assert TwilioConnector.roles == frozenset({Role.NOTIFIER})


@pytest.mark.parametrize(("changes", "key", "words"), [
    ({"from_number": None}, "from_number", "from_number or messaging_service_sid"),
    ({"account_sid": "ACnot-a-sid"}, "account_sid", "Account SID"),
    ({"from_number": "+0123"}, "from_number", "E.164"),
    ({"messaging_service_sid": "MG123"}, "messaging_service_sid", "Messaging Service SID"),
    ({"api_key_sid": API_KEY_SID}, "api_key_secret", "set together"),
    ({"status_callback_url": "rb.example.cn/twilio"}, "status_callback_url", "full URL"),
    ({"base_url": "api.twilio.com"}, "base_url", "Twilio's API"),
    ({"auth_token": "changeme-changeme"}, "auth_token", "placeholder"),
    ({"shoe_size": 42}, "shoe_size", "Extra inputs"),
])
def test_settings_refusals_name_the_key(changes: dict[str, Any], key: str, words: str) -> None:
    raw = {k: v for k, v in {**SETTINGS, **changes}.items() if v is not None}
    with pytest.raises(ConfigError) as info:
        TwilioConnector.from_config(raw, ConnectorContext(shop_id="kangfu"))
    assert info.value.key == f"shops.kangfu.twilio.{key}"
    assert words in str(info.value)


def test_a_messaging_service_alone_is_a_sender() -> None:
    raw = {k: v for k, v in SETTINGS.items() if k != "from_number"}
    conn = TwilioConnector.from_config({**raw, "messaging_service_sid": SERVICE_SID},
                                       ConnectorContext(shop_id="kangfu"))
    assert conn.settings.from_number is None


# ------------------------------------------------------------------ sending


def test_send_posts_the_form_twilio_expects(fake: TwilioFake,
                                            connector: TwilioConnector) -> None:
    message = make_message()

    receipt = connector.send_sms(message)

    assert len(fake.posts) == 1
    request = fake.posts[0]
    assert (request.method, str(request.url)) == ("POST", MESSAGES)
    assert request.headers["Authorization"] == basic(ACCOUNT_SID, AUTH_TOKEN)
    body = connector.body(message)
    # Our message id rides in the callback URL, which Twilio posts to and signs as is.
    assert form_of(request) == {"To": CUSTOMER, "From": SENDER, "Body": body,
                                "StatusCallback": f"{CALLBACK_URL}?message_id={MESSAGE_ID}"}
    assert body.startswith("【康复医疗】您的退货退款申请已收到")
    assert "rc_8f14e45fceea167a5a36dedd4bea2543" in body and "SO-20261202-0042" in body
    assert receipt.provider_id == fake.messages[0]["sid"]
    assert receipt.provider_id.startswith("SM")
    assert receipt.state is DeliveryState.QUEUED
    assert fake.gets == []  # nothing looked up when the first call answers


def test_send_through_a_messaging_service_with_an_api_key(fake: TwilioFake,
                                                          router: respx.MockRouter) -> None:
    fake.credentials.add((API_KEY_SID, API_KEY_SECRET))
    conn = make_connector(from_number=None, messaging_service_sid=SERVICE_SID,
                          status_callback_url=None, api_key_sid=API_KEY_SID,
                          api_key_secret=API_KEY_SECRET)

    receipt = conn.send_sms(make_message(locale="en"))

    request = fake.posts[0]
    assert request.headers["Authorization"] == basic(API_KEY_SID, API_KEY_SECRET)
    assert form_of(request) == {"To": CUSTOMER, "MessagingServiceSid": SERVICE_SID,
                                "Body": conn.body(make_message(locale="en"))}
    assert receipt.state is DeliveryState.QUEUED  # Twilio answers "accepted"


@pytest.mark.parametrize(("status", "state"), [
    ("queued", DeliveryState.QUEUED), ("accepted", DeliveryState.QUEUED),
    ("scheduled", DeliveryState.QUEUED), ("sending", DeliveryState.SENT),
    ("sent", DeliveryState.SENT), ("delivered", DeliveryState.DELIVERED),
    ("undelivered", DeliveryState.FAILED), ("failed", DeliveryState.FAILED),
])
def test_twilio_statuses_map_to_delivery_states(fake: TwilioFake, connector: TwilioConnector,
                                                status: str, state: DeliveryState) -> None:
    fake.after_create.append(lambda answer: httpx.Response(201, json={**answer,
                                                                      "status": status}))
    assert connector.send_sms(make_message()).state is state


def test_an_unmapped_status_is_still_a_message_twilio_took(fake: TwilioFake,
                                                           connector: TwilioConnector) -> None:
    fake.after_create.append(lambda answer: httpx.Response(201, json={
        **answer, "status": "partially_delivered"}))
    receipt = connector.send_sms(make_message())
    assert receipt.state is DeliveryState.QUEUED
    assert "partially_delivered" in receipt.detail


@pytest.mark.parametrize(("prepare", "code", "words"), [
    (lambda f: f.unsubscribed.add(CUSTOMER), "21610", "unsubscribed recipient"),
    (lambda f: f.invalid.add(CUSTOMER), "21211", "Invalid 'To' Phone Number"),
    (lambda f: f.numbers.clear(), "21606", "not a valid, SMS-capable"),
    (lambda f: f.credentials.clear(), "20003", "Authenticate"),
])
def test_twilio_refusals_are_permanent_with_twilios_words(
        fake: TwilioFake, connector: TwilioConnector, prepare: Any, code: str, words: str
) -> None:
    prepare(fake)

    with pytest.raises(PermanentProviderError) as info:
        connector.send_sms(make_message())

    assert info.value.code == code
    assert words in info.value.message
    assert f"https://www.twilio.com/docs/errors/{code}" in info.value.message
    assert posts_and_gets(fake) == (1, 0)  # asked once, never again


@pytest.mark.parametrize("phone", [None, "13800138000", "+86 138 0013 8000"])
def test_without_an_e164_number_nothing_is_sent(fake: TwilioFake, connector: TwilioConnector,
                                                phone: str | None) -> None:
    with pytest.raises(PermanentProviderError) as info:
        connector.send_sms(make_message(phone=phone))
    assert info.value.code == "no_phone"
    assert fake.posts == []


def test_a_message_that_cannot_be_written_is_permanent(fake: TwilioFake,
                                                       connector: TwilioConnector) -> None:
    message = make_message()
    broken = replace(message, context={k: v for k, v in message.context.items()
                                       if k != "order_id"})
    with pytest.raises(PermanentProviderError) as info:
        connector.send_sms(broken)
    assert info.value.code == "sms_text"
    assert "'order_id'" in info.value.message
    assert fake.posts == []


CAMPAIGN_ID = "rcp_bea7664778d841fdbcc6fb93de13f571"
ACK_URL = "https://rb.kangfu-medical.cn/status/recall/eyJyIjoicmNwXzEifQ.axCy5Q.wSXqZrTt"


def recall_message(kind: NotificationKind, locale: str, **context: Any) -> OutgoingMessage:
    """A campaign's message to one consignee, as core/services/campaigns.py builds it."""
    reminder = 1 if kind is NotificationKind.RECALL_REMINDER else 0
    return OutgoingMessage(
        case_id=CAMPAIGN_ID, kind=kind, locale=locale, email=None, phone=CUSTOMER,
        message_id=f"{CAMPAIGN_ID}.7.{'reminder1' if reminder else 'notice'}",
        context={"campaign_id": CAMPAIGN_ID, "shop_id": "kangfu", "reference": "RC-2026-001",
                 "recall_class": "I", "notice_date": "2026-12-01", "consignee_name": "王诊所",
                 "product": {"sku": "BPM-200", "gtin": None},
                 "units": [{"sku": "BPM-200", "quantity": 1, "lot": "L2406A", "serial": None,
                            "document": "SO-1001", "shipped_on": "2026-10-14"}],
                 "quantity": 1, "actions": ["stop_use", "return"], "instructions": "",
                 "ack_url": ACK_URL, "reminder": reminder, "return_address": "",
                 "shop_name": "康复医疗", **context})


@pytest.mark.parametrize(("kind", "locale", "words"), [
    (NotificationKind.RECALL_NOTICE, "zh-CN", "医疗器械召回通知"),
    (NotificationKind.RECALL_REMINDER, "zh-CN", "第1次提醒"),
    (NotificationKind.RECALL_NOTICE, "en", "Medical device recall RC-2026-001 (Class I)"),
    (NotificationKind.RECALL_REMINDER, "en", "Reminder 1: medical device recall"),
])
def test_a_recall_sms_carries_the_reference_product_and_acknowledgement_link(
        fake: TwilioFake, connector: TwilioConnector, kind: NotificationKind, locale: str,
        words: str) -> None:
    # (a Chinese shop name would make an English text UCS-2, with room for less)
    shop_name = "康复医疗" if locale == "zh-CN" else "Kangfu Medical"
    connector.send_sms(recall_message(kind, locale, shop_name=shop_name))

    (body,) = [message["body"] for message in fake.messages]
    assert words in body
    assert "RC-2026-001" in body and "BPM-200" in body and body.endswith(ACK_URL)
    assert CAMPAIGN_ID not in body.replace(ACK_URL, "")


def test_a_recall_sms_without_its_link_is_permanent(fake: TwilioFake,
                                                    connector: TwilioConnector) -> None:
    with pytest.raises(PermanentProviderError) as info:
        connector.send_sms(recall_message(NotificationKind.RECALL_NOTICE, "en", ack_url=""))
    assert info.value.code == "sms_text"
    assert "'ack_url'" in info.value.message
    assert fake.posts == []


def test_a_refused_send_before_twilio_took_it_is_looked_for_then_sent_again(
        fake: TwilioFake, connector: TwilioConnector) -> None:
    fake.before_post.append(each_in_turn(
        httpx.ConnectError("connection refused"),
        twilio_error(503, 20503, "Service Unavailable")))

    receipt = connector.send_sms(make_message())

    assert len(fake.posts) == 3
    assert len({p.content for p in fake.posts}) == 1  # the very same form each time
    assert len(fake.messages) == 1
    assert receipt.provider_id == fake.messages[0]["sid"]
    # Before each new attempt: the day's messages to the number, then its latest ones.
    assert [dict(g.url.params) for g in fake.gets] == [
        {"To": CUSTOMER, "PageSize": "50", "DateSent": "2026-12-02"},
        {"To": CUSTOMER, "PageSize": "50"}] * 2


@pytest.mark.parametrize("hold_in_queue", [False, True], ids=["sent", "still queued"])
def test_a_send_twilio_took_before_failing_is_found_not_sent_twice(
        fake: TwilioFake, connector: TwilioConnector, hold_in_queue: bool) -> None:
    # Twilio stored the message, then the answer was lost (a 500, as a timeout would be).
    fake.hold_in_queue = hold_in_queue
    fake.after_create.append(each_in_turn(twilio_error(500, 20500, "Internal Server Error")))

    receipt = connector.send_sms(make_message())

    assert len(fake.posts) == 1
    assert len(fake.messages) == 1
    assert receipt.provider_id == fake.messages[0]["sid"]
    assert receipt.state is (DeliveryState.QUEUED if hold_in_queue else DeliveryState.SENT)


def test_retries_are_bounded(fake: TwilioFake, connector: TwilioConnector) -> None:
    fake.before_post.append(lambda _: twilio_error(500, 20500, "Internal Server Error"))
    with pytest.raises(TransientProviderError):
        connector.send_sms(make_message())
    assert len(fake.posts) == 3


def test_429_is_retried_after_retry_after(fake: TwilioFake, router: respx.MockRouter) -> None:
    fake.before_post.append(each_in_turn(twilio_error(429, 20429, "Too Many Requests",
                                                 headers={"Retry-After": "7"})))
    conn = make_connector(RetryPolicy(attempts=3, initial_wait=0, max_wait=0,
                                      max_retry_after=0))

    receipt = conn.send_sms(make_message())

    assert len(fake.posts) == 2
    assert receipt.provider_id == fake.messages[0]["sid"]


def test_retry_after_sets_the_wait(fake: TwilioFake, router: respx.MockRouter) -> None:
    fake.before_post.append(lambda _: twilio_error(429, 20429, "Too Many Requests",
                                                   headers={"Retry-After": "7"}))
    conn = make_connector(RetryPolicy(attempts=1))

    with pytest.raises(TransientProviderError) as info:
        conn.send_sms(make_message())

    assert info.value.retry_after == 7.0
    state = tenacity.RetryCallState(tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.set_exception((TransientProviderError, info.value, None))
    assert RetryPolicy().wait(state) == 7.0


@pytest.mark.parametrize("code", [21611, 14107])
def test_not_now_from_twilio_defers_without_asking_again(
        fake: TwilioFake, connector: TwilioConnector, code: int) -> None:
    fake.before_post.append(lambda _: twilio_error(400, code, "queue full / rate limit"))
    with pytest.raises(SendDeferred) as info:
        connector.send_sms(make_message())
    assert "queue full" in info.value.message
    assert posts_and_gets(fake) == (1, 0)


@pytest.mark.parametrize("answer", [
    httpx.Response(201, json={"status": "queued"}),
    httpx.Response(201, text="<html>ok</html>"),
])
def test_an_answer_not_in_twilios_shape_is_permanent(
        fake: TwilioFake, connector: TwilioConnector, answer: httpx.Response) -> None:
    fake.before_post.append(lambda _: answer)
    with pytest.raises(PermanentProviderError) as info:
        connector.send_sms(make_message())
    assert info.value.code == "invalid_response"


def test_an_error_not_in_twilios_shape_is_reported_raw(fake: TwilioFake,
                                                       connector: TwilioConnector) -> None:
    fake.before_post.append(lambda _: httpx.Response(403, text="<html>Forbidden</html>"))
    with pytest.raises(PermanentProviderError) as info:
        connector.send_sms(make_message())
    assert (info.value.code, "Forbidden" in info.value.message) == ("403", True)


# ------------------------------------------------------------------ finding a send


def test_find_sms_finds_the_send_by_number_and_text(fake: TwilioFake,
                                                    connector: TwilioConnector) -> None:
    sent = connector.send_sms(make_message())
    fake.gets.clear()

    found = connector.find_sms(make_message(), TODAY)

    assert found is not None
    assert (found.provider_id, found.state) == (sent.provider_id, DeliveryState.SENT)
    assert dict(fake.gets[0].url.params) == {"To": CUSTOMER, "PageSize": "50",
                                             "DateSent": "2026-12-02"}
    assert fake.gets[0].headers["Authorization"] == basic(ACCOUNT_SID, AUTH_TOKEN)


def test_find_sms_tells_kinds_numbers_and_days_apart(fake: TwilioFake,
                                                     connector: TwilioConnector) -> None:
    connector.send_sms(make_message(NotificationKind.RECEIVED))

    assert connector.find_sms(make_message(NotificationKind.APPROVED), TODAY) is None
    assert connector.find_sms(make_message(phone="+8613900139000"), TODAY) is None
    assert connector.find_sms(make_message(), date(2026, 12, 1)) is None
    assert connector.find_sms(make_message(locale="en"), TODAY) is None


def test_find_sms_follows_twilios_pages(fake: TwilioFake, connector: TwilioConnector) -> None:
    ours = connector.send_sms(make_message(NotificationKind.RECEIVED))
    for n in range(60):  # newer messages to the same number push ours to the second page
        connector.send_sms(make_message(NotificationKind.APPROVED, order_id=f"SO-{n}"))
    fake.gets.clear()

    found = connector.find_sms(make_message(NotificationKind.RECEIVED), TODAY)

    assert found is not None and found.provider_id == ours.provider_id
    assert [g.url.params.get("Page") for g in fake.gets] == [None, "1"]


def test_find_sms_finds_a_send_whose_status_link_was_signed_again(
        fake: TwilioFake, connector: TwilioConnector) -> None:
    # A status link carries the time it was signed: the body rebuilt later differs there.
    sent = connector.send_sms(make_message(status_url="https://rb.example.cn/status/abc.1"))
    found = connector.find_sms(make_message(status_url="https://rb.example.cn/status/abc.2"),
                               TODAY)
    assert found is not None and found.provider_id == sent.provider_id


def test_find_sms_reads_a_trial_accounts_prefixed_body(fake: TwilioFake,
                                                       connector: TwilioConnector) -> None:
    sent = connector.send_sms(make_message())
    stored = fake.messages[0]
    stored["body"] = "Sent from your Twilio trial account - " + stored["body"]
    found = connector.find_sms(make_message(), TODAY)
    assert found is not None and found.provider_id == sent.provider_id


def test_a_next_page_elsewhere_is_not_followed(fake: TwilioFake,
                                               connector: TwilioConnector) -> None:
    fake.before_get.append(lambda _: httpx.Response(200, json={
        "messages": [{"sid": "SM" + "0" * 32, "status": "sent", "to": CUSTOMER,
                      "body": "something else", "direction": "outbound-api"}],
        "next_page_uri": "https://evil.example.net/steal"}))
    with pytest.raises(PermanentProviderError) as info:
        connector.find_sms(make_message(), TODAY)
    assert info.value.code == "invalid_response"


# ------------------------------------------------------------------ callbacks

def test_a_status_callback_signed_by_twilios_sdk_is_a_delivery_report(
        fake: TwilioFake, connector: TwilioConnector) -> None:
    sid = connector.send_sms(make_message()).provider_id

    url, headers, body = fake.status_callback(sid, "delivered")

    assert url == f"{CALLBACK_URL}?message_id={MESSAGE_ID}"
    assert connector.parse_callback(url, headers, body, NOW) == SmsCallback(reports=(
        DeliveryReport(provider_id=sid, message_id=MESSAGE_ID, phone=CUSTOMER,
                       state=DeliveryState.DELIVERED, error="", at=NOW),))


@pytest.mark.parametrize(("status", "state"), [
    ("queued", DeliveryState.QUEUED), ("accepted", DeliveryState.QUEUED),
    ("scheduled", DeliveryState.QUEUED), ("sending", DeliveryState.SENT),
    ("sent", DeliveryState.SENT), ("delivered", DeliveryState.DELIVERED),
    ("undelivered", DeliveryState.FAILED), ("failed", DeliveryState.FAILED),
])
def test_callback_statuses_map_to_delivery_states(fake: TwilioFake, connector: TwilioConnector,
                                                  status: str, state: DeliveryState) -> None:
    sid = connector.send_sms(make_message()).provider_id
    callback = connector.parse_callback(*fake.status_callback(sid, status), NOW)
    assert [r.state for r in callback.reports] == [state]


def test_a_failed_delivery_carries_twilios_error_code(fake: TwilioFake,
                                                      connector: TwilioConnector) -> None:
    sid = connector.send_sms(make_message()).provider_id
    callback = connector.parse_callback(*fake.status_callback(sid, "undelivered", "30003"),
                                        NOW)
    (report,) = callback.reports
    assert report.state is DeliveryState.FAILED
    assert "30003" in report.error and "unreachable" in report.error


def test_an_unmapped_callback_status_changes_nothing(fake: TwilioFake,
                                                     connector: TwilioConnector) -> None:
    sid = connector.send_sms(make_message()).provider_id
    assert connector.parse_callback(*fake.status_callback(sid, "partially_delivered"),
                                    NOW) == SmsCallback()


SIGNED_CASES: list[tuple[str, dict[str, str]]] = [
    (CALLBACK_URL, {"MessageSid": "SM" + "a" * 32, "MessageStatus": "delivered",
                    "AccountSid": ACCOUNT_SID, "To": CUSTOMER}),
    ("https://rb.example.cn:8443/webhooks/kangfu/twilio?attempt=2&x=%20y",
     {"Body": "退订，谢谢 & bye", "From": CUSTOMER, "AccountSid": ACCOUNT_SID,
      "ErrorCode": "", "Z": "last", "a": "lower case sorts after upper"}),
    ("http://127.0.0.1:8000/webhooks/kangfu/twilio", {}),
]


@pytest.mark.parametrize(("url", "params"), SIGNED_CASES)
def test_our_signature_is_twilios(url: str, params: dict[str, str]) -> None:
    ours = compute_signature(AUTH_TOKEN, url, params.items())
    sdk = RequestValidator(AUTH_TOKEN)
    assert ours == sdk.compute_signature(url, params)
    assert sdk.validate(url, params, ours)


@pytest.mark.parametrize(("url", "params"), SIGNED_CASES)
def test_what_twilios_sdk_signs_we_accept(connector: TwilioConnector, url: str,
                                          params: dict[str, str]) -> None:
    params = {**params, "AccountSid": ACCOUNT_SID, "MessageSid": "SM" + "b" * 32,
              "MessageStatus": "sent"}
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, params)
    callback = connector.parse_callback(url, {"x-twilio-signature": signature},
                                        urlencode(params).encode(), NOW)
    assert [r.provider_id for r in callback.reports] == ["SM" + "b" * 32]


@pytest.mark.parametrize(("signed", "given"), [
    ("https://rb.kangfu-medical.cn:443/webhooks/kangfu/twilio", CALLBACK_URL),
    (CALLBACK_URL, "https://rb.kangfu-medical.cn:443/webhooks/kangfu/twilio"),
])
def test_the_default_port_may_be_there_or_not_as_twilios_validator_allows(
        connector: TwilioConnector, fake: TwilioFake, signed: str, given: str) -> None:
    params = {"AccountSid": ACCOUNT_SID, "MessageSid": "SM" + "c" * 32,
              "MessageStatus": "delivered", "To": CUSTOMER}
    headers = fake.sign(signed, params)
    assert RequestValidator(AUTH_TOKEN).validate(given, params, headers["X-Twilio-Signature"])
    assert connector.parse_callback(given, headers, urlencode(params).encode(), NOW).reports


def _tamper_param(url: str, headers: dict[str, str], body: bytes
                  ) -> tuple[str, dict[str, str], bytes]:
    return url, headers, body.replace(b"MessageStatus=failed", b"MessageStatus=delivered")


@pytest.mark.parametrize(("tamper", "words"), [
    (_tamper_param, "bad X-Twilio-Signature"),
    (lambda u, h, b: (u.replace("/kangfu/", "/other/"), h, b), "bad X-Twilio-Signature"),
    (lambda u, h, b: (u.replace("https://", "http://"), h, b), "bad X-Twilio-Signature"),
    (lambda u, h, b: (u + "&x=1", h, b), "bad X-Twilio-Signature"),
    (lambda u, h, b: (u.replace("message_id=rc_", "message_id=rx_"), h, b),
     "bad X-Twilio-Signature"),
    (lambda u, h, b: (u, {k: v for k, v in h.items() if k != "X-Twilio-Signature"}, b),
     "missing X-Twilio-Signature"),
    (lambda u, h, b: (u, {**h, "X-Twilio-Signature": ""}, b), "missing X-Twilio-Signature"),
    (lambda u, h, b: (u, {**h, "X-Twilio-Signature": RequestValidator(
        "0" * 32).compute_signature(u, dict(parse_qsl(b.decode())))}, b), "bad X-Twilio-Signature"),
    (lambda u, h, b: (u, {**h, "X-Twilio-Webhooks-Signature-Settings":
                          "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"}, b), "SharedKey"),
    (lambda u, h, b: (u, h, b + b"\xff"), "not a UTF-8 form"),
])
def test_a_callback_twilio_did_not_sign_is_rejected(
        fake: TwilioFake, connector: TwilioConnector, tamper: Any, words: str) -> None:
    sid = connector.send_sms(make_message()).provider_id
    url, headers, body = tamper(*fake.status_callback(sid, "failed", "30005"))

    with pytest.raises(WebhookRejected) as info:
        connector.parse_callback(url, headers, body, NOW)

    assert words in str(info.value)


def test_a_validly_signed_callback_of_another_account_is_rejected(
        connector: TwilioConnector, fake: TwilioFake) -> None:
    params = {"AccountSid": "AC" + "9" * 32, "MessageSid": "SM" + "d" * 32,
              "MessageStatus": "delivered"}
    with pytest.raises(WebhookRejected, match="another Twilio account"):
        connector.parse_callback(CALLBACK_URL, fake.sign(CALLBACK_URL, params),
                                 urlencode(params).encode(), NOW)


def test_a_parameter_given_twice_is_rejected_even_when_signed(
        connector: TwilioConnector) -> None:
    params = [("AccountSid", ACCOUNT_SID), ("MessageSid", "SM" + "e" * 32),
              ("MessageStatus", "failed"), ("MessageStatus", "delivered")]
    headers = {"X-Twilio-Signature": compute_signature(AUTH_TOKEN, CALLBACK_URL, params)}
    with pytest.raises(WebhookRejected, match="given twice"):
        connector.parse_callback(CALLBACK_URL, headers, urlencode(params).encode(), NOW)


@pytest.mark.parametrize(("text", "opt_out_type"), [
    ("STOP", None), ("stop", None), (" Stop. ", None), ("退订", None), ("退订。", None),
    ("TD", None), ("UNSUBSCRIBE", None), ("Stopp", "STOP"),
])
def test_a_stop_reply_is_an_opt_out(fake: TwilioFake, connector: TwilioConnector, text: str,
                                    opt_out_type: str | None) -> None:
    callback = connector.parse_callback(*fake.inbound(CALLBACK_URL, CUSTOMER, text, SENDER,
                                                      opt_out_type), NOW)
    assert callback == SmsCallback(replies=(InboundSms(phone=CUSTOMER, text=text, at=NOW),))


@pytest.mark.parametrize("text", ["Where is my refund?", "请问退款什么时候到账", "stop sending "
                                  "the wrong item", "START"])
def test_another_reply_asks_nothing_of_us(fake: TwilioFake, connector: TwilioConnector,
                                          text: str) -> None:
    assert connector.parse_callback(*fake.inbound(CALLBACK_URL, CUSTOMER, text, SENDER),
                                    NOW) == SmsCallback()


def test_a_callback_that_is_neither_is_rejected(connector: TwilioConnector,
                                                fake: TwilioFake) -> None:
    params = {"AccountSid": ACCOUNT_SID, "Foo": "bar"}
    with pytest.raises(WebhookRejected, match="neither"):
        connector.parse_callback(CALLBACK_URL, fake.sign(CALLBACK_URL, params),
                                 urlencode(params).encode(), NOW)
