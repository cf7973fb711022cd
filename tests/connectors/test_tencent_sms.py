"""Tencent Cloud SMS connector against Tencent's wire format: respx at the transport (a
stateful fake that checks every call's TC3 signature with Tencent's own SDK), and the SDK's
signer to prove ours computes the same. No network, no sleeps."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from tencentcloud.common import credential
from tencentcloud.common.http.request import RequestInternal
from tencentcloud.sms.v20210111 import errorcodes, models, sms_client

from refundbridge.connectors.base import ConnectorContext, RetryPolicy
from refundbridge.connectors.tencent_sms import TencentSmsConnector, signing
from refundbridge.connectors.tencent_sms.callbacks import ACKNOWLEDGEMENT
from refundbridge.connectors.tencent_sms.transformers import (
    DEFERRALS,
    Outcome,
    classify,
    defer_seconds,
)
from refundbridge.core.errors import (
    ConfigError,
    InvalidRequest,
    PermanentProviderError,
    SendDeferred,
    TransientProviderError,
    WebhookRejected,
)
from refundbridge.core.model import CAMPAIGN_KINDS, NotificationKind
from refundbridge.core.ports import Capability, DeliveryState, OutgoingMessage, Role
from tests.connectors.helpers import CASE_ID, FAST, in_turn
from tests.fakes.common import installed
from tests.fakes.tencent_sms import BASE, BEIJING, HOST, TencentSmsFake, sdk_signature

NOW = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)  # 12:00 in Beijing
SECRET_ID = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3gnPhESA"
SECRET_KEY = "Gu5t9xGARNpq86cd98joQYCN3Cozk1qA"
APP_ID = "1400006666"
SIGN = "康复医疗器械"
PHONE = "+8613711112222"
CALLBACK_SECRET = "cb-7f3a9e21c4d84b0e9a5c"
CALLBACK_URL = f"https://refunds.acme-medical.cn/webhooks/acme/tencent_sms/{CALLBACK_SECRET}"
TEMPLATES = {"1110": 1, "1111": 1, "1112": 1, "1113": 2, "2220": 1}


def settings(**extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "secret_id": SECRET_ID, "secret_key": SECRET_KEY, "sdk_app_id": APP_ID,
        "sign_name": SIGN, "callback_secret": CALLBACK_SECRET,
        "templates": {"received": "1110", "approved": "1111", "denied": {"id": "1112"},
                      "refunded": {"id": "1113", "params": ["order_id", "amount"]}},
    }
    config.update(extra)
    return config


def make_connector(retry: RetryPolicy = FAST, now: datetime = NOW,
                   **extra: Any) -> TencentSmsConnector:
    ctx = ConnectorContext(shop_id="acme", retry=retry, clock=lambda: now)
    return TencentSmsConnector.from_config(settings(**extra), ctx)


def message(kind: NotificationKind = NotificationKind.REFUNDED, phone: str | None = PHONE,
            **context: Any) -> OutgoingMessage:
    values = {"case_id": CASE_ID, "order_id": "1001", "amount": "25.00", "currency": "CNY"}
    values.update(context)
    return OutgoingMessage(case_id=CASE_ID, kind=kind, locale="zh-CN", email=None,
                           phone=phone, message_id=f"{CASE_ID}.{kind.value}", context=values)


@pytest.fixture
def fake() -> Iterator[TencentSmsFake]:
    tencent = TencentSmsFake(SECRET_ID, SECRET_KEY, APP_ID, SIGN, dict(TEMPLATES),
                             clock=NOW.timestamp)
    with installed(tencent):
        yield tencent


@pytest.fixture
def connector() -> Iterator[TencentSmsConnector]:
    conn = make_connector()
    yield conn
    conn.close()


# ------------------------------------------------------------------ the signature

def _sdk_request(params: dict[str, Any]) -> RequestInternal:
    """A SendSms request as Tencent's SDK builds and signs it (its own JSON, its clock)."""
    client = sms_client.SmsClient(credential.Credential(SECRET_ID, SECRET_KEY), "ap-guangzhou")
    request = models.SendSmsRequest()
    request._deserialize(params)
    built = RequestInternal(HOST, "POST", "/")
    client._build_req_with_tc3_signature("SendSms", request._serialize(), built)
    return built


@pytest.mark.parametrize("params", [
    {"PhoneNumberSet": [PHONE], "SmsSdkAppId": APP_ID, "SignName": SIGN,
     "TemplateId": "1113", "TemplateParamSet": ["1001", "25.00"],
     "SessionContext": f"{CASE_ID}.refunded"},
    {"PhoneNumberSet": ["+8618501234444", "+8613711112222"], "SmsSdkAppId": APP_ID,
     "SignName": "腾讯云", "TemplateId": "1110", "TemplateParamSet": []},
], ids=["one-number", "two-numbers"])
def test_our_signer_computes_the_sdks_authorization_over_the_sdks_own_request(
        params: dict[str, Any]) -> None:
    built = _sdk_request(params)
    ours = signing.authorization(
        secret_id=SECRET_ID, secret_key=SECRET_KEY, service="sms", host=built.header["Host"],
        content_type=built.header["Content-Type"], body=built.data.encode("utf-8"),
        timestamp=int(built.header["X-TC-Timestamp"]))
    assert ours == built.header["Authorization"]


def test_the_request_we_send_carries_the_sdks_signature_over_its_exact_bytes(
        fake: TencentSmsFake, connector: TencentSmsConnector) -> None:
    connector.send_sms(message())
    (sent,) = fake.requests
    timestamp = int(sent.headers["X-TC-Timestamp"])
    expected = sdk_signature(SECRET_ID, SECRET_KEY, content_type="application/json",
                             host=HOST, body=sent.content, timestamp=timestamp)
    assert sent.headers["Authorization"] == (
        f"TC3-HMAC-SHA256 Credential={SECRET_ID}/2026-03-02/sms/tc3_request, "
        f"SignedHeaders=content-type;host, Signature={expected}")


def test_a_wrong_secret_key_is_refused_by_the_fake_as_tencent_would(
        fake: TencentSmsFake) -> None:
    conn = make_connector(secret_key="Zz9t9xGARNpq86cd98joQYCN3Cozk1qA")
    with pytest.raises(PermanentProviderError) as info:
        conn.send_sms(message())
    assert info.value.code == "AuthFailure.SignatureFailure"
    assert fake.sends == []


def test_a_clock_five_minutes_off_is_refused(fake: TencentSmsFake) -> None:
    conn = make_connector(now=NOW - timedelta(minutes=6))
    with pytest.raises(PermanentProviderError) as info:
        conn.send_sms(message())
    assert info.value.code == "AuthFailure.SignatureExpire"


# ------------------------------------------------------------------ SendSms

def test_send_posts_exactly_the_documented_fields_and_headers(
        fake: TencentSmsFake, connector: TencentSmsConnector) -> None:
    receipt = connector.send_sms(message())
    (sent,) = fake.requests
    assert str(sent.url) == f"{BASE}/"
    assert sent.method == "POST"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["X-TC-Action"] == "SendSms"
    assert sent.headers["X-TC-Version"] == "2021-01-11"
    assert sent.headers["X-TC-Region"] == "ap-guangzhou"
    assert sent.headers["X-TC-Timestamp"] == str(int(NOW.timestamp()))
    assert json.loads(sent.content) == {
        "PhoneNumberSet": [PHONE], "SmsSdkAppId": APP_ID, "SignName": SIGN,
        "TemplateId": "1113", "TemplateParamSet": ["1001", "25.00"],
        "SessionContext": f"{CASE_ID}.refunded",
    }
    assert SIGN.encode() in sent.content  # UTF-8 on the wire, signed as such
    assert receipt.provider_id == fake.sends[0]["SerialNo"]
    assert receipt.state is DeliveryState.QUEUED


@pytest.mark.parametrize(("kind", "template", "params"), [
    (NotificationKind.RECEIVED, "1110", ["1001"]),
    (NotificationKind.APPROVED, "1111", ["1001"]),
    (NotificationKind.DENIED, "1112", ["1001"]),
])
def test_each_kind_uses_its_template_and_default_variables(
        fake: TencentSmsFake, connector: TencentSmsConnector, kind: NotificationKind,
        template: str, params: list[str]) -> None:
    connector.send_sms(message(kind))
    assert fake.sends[0]["TemplateId"] == template
    assert fake.sends[0]["TemplateParamSet"] == params
    assert fake.sends[0]["SessionContext"] == f"{CASE_ID}.{kind.value}"


def test_a_shop_may_choose_the_variables_of_a_template(fake: TencentSmsFake) -> None:
    conn = make_connector(max_param_length=40, templates={
        "received": {"id": "1113", "params": ["case_id", "order_id"]}})
    conn.send_sms(message(NotificationKind.RECEIVED))
    assert fake.sends[0]["TemplateParamSet"] == [CASE_ID, "1001"]


def test_a_number_abroad_uses_the_global_template_and_sign(fake: TencentSmsFake) -> None:
    conn = make_connector(global_templates={"refunded": {"id": "2220", "params": ["amount",
                                                                                   ]}})
    conn.send_sms(message(phone="+6591234567"))
    body = json.loads(fake.requests[0].content)
    assert body["TemplateId"] == "2220"
    assert body["PhoneNumberSet"] == ["+6591234567"]
    assert "SignName" not in body


@pytest.mark.parametrize(("msg", "code", "words"), [
    (message(phone=None), "invalid_phone", "no E.164 phone number"),
    (message(phone="13711112222"), "invalid_phone", "no E.164 phone number"),
    (message(phone="+6591234567"), "no_template", "global_templates"),
    (message(order_id="ACME-2026-0001"), "invalid_message",
     "order_id ('ACME-2026-0001') is 14 characters, more than the 6"),
    (message(currency="USD"), "invalid_message", "without its currency"),
    (message(order_id=""), "invalid_message", "order_id is empty"),
])
def test_a_message_tencent_would_refuse_fails_before_any_call(
        fake: TencentSmsFake, connector: TencentSmsConnector, msg: OutgoingMessage,
        code: str, words: str) -> None:
    with pytest.raises(PermanentProviderError) as info:
        connector.send_sms(msg)
    assert info.value.code == code
    assert words in info.value.message
    assert fake.requests == []


@pytest.mark.parametrize("kind", [NotificationKind.GOODS_RECEIVED,
                                  NotificationKind.REFUND_FAILED])
def test_the_optional_kinds_need_no_template_and_use_one_when_set(
        fake: TencentSmsFake, connector: TencentSmsConnector, kind: NotificationKind) -> None:
    # without one (`connector` has the four first kinds only): no SMS of that kind
    with pytest.raises(PermanentProviderError) as refused:
        connector.send_sms(message(kind))
    assert refused.value.code == "no_template"
    assert f"'{kind.value}'" in refused.value.message
    assert fake.requests == []

    fake.templates["1114"] = 1
    conn = make_connector(templates={"refunded": "1113", kind.value: "1114"})
    conn.send_sms(message(kind))
    conn.close()
    assert fake.sends[0]["TemplateId"] == "1114"
    assert fake.sends[0]["TemplateParamSet"] == ["1001"]  # the order number, by default
    assert fake.sends[0]["SessionContext"] == f"{CASE_ID}.{kind.value}"


CAMPAIGN_ID = "rcp_bea7664778d841fdbcc6fb93de13f571"


def recall_message(kind: NotificationKind = NotificationKind.RECALL_NOTICE) -> OutgoingMessage:
    """A campaign's message to one consignee, as core/services/campaigns.py builds it."""
    reminder = 1 if kind is NotificationKind.RECALL_REMINDER else 0
    return OutgoingMessage(
        case_id=CAMPAIGN_ID, kind=kind, locale="zh-CN", email=None, phone=PHONE,
        message_id=f"{CAMPAIGN_ID}.7.{'reminder1' if reminder else 'notice'}",
        context={"campaign_id": CAMPAIGN_ID, "shop_id": "acme", "reference": "RC-2026-001",
                 "recall_class": "II", "notice_date": "2026-12-01", "consignee_name": "王诊所",
                 "product": {"sku": None, "gtin": "06901234567892"},
                 "units": [{"sku": "GM-100", "quantity": 2, "lot": "L2406A", "serial": None,
                            "document": "SO-1001", "shipped_on": "2026-10-14"}],
                 "quantity": 2, "actions": ["stop_use"], "instructions": "",
                 "ack_url": "https://refunds.acme-medical.cn/status/recall/eyJy.axCy.wSXq",
                 "reminder": reminder, "return_address": ""})


@pytest.mark.parametrize("kind", sorted(CAMPAIGN_KINDS))
def test_a_recall_template_has_no_variable_by_default(
        fake: TencentSmsFake, kind: NotificationKind) -> None:
    # the link cannot be a variable, and a reference rarely fits 6 characters: the default
    # recall template is constant text sending the consignee to the email
    fake.templates["3330"] = 0
    conn = make_connector(templates={"refunded": "1113", kind.value: "3330"})
    conn.send_sms(recall_message(kind))
    conn.close()
    (sent,) = fake.sends
    assert sent["TemplateId"] == "3330" and sent["TemplateParamSet"] == []
    assert sent["SessionContext"] == recall_message(kind).message_id


def test_a_recall_template_may_name_the_recalls_values(fake: TencentSmsFake) -> None:
    fake.templates["3331"] = 4
    conn = make_connector(max_param_length=20, templates={
        "refunded": "1113", "recall_reminder": {
            "id": "3331", "params": ["reminder", "reference", "product", "recall_class"]}})
    conn.send_sms(recall_message(NotificationKind.RECALL_REMINDER))
    conn.close()
    assert fake.sends[0]["TemplateParamSet"] == ["1", "RC-2026-001", "06901234567892", "II"]


def test_a_recall_template_cannot_name_a_case_number(fake: TencentSmsFake) -> None:
    conn = make_connector(templates={"refunded": "1113", "recall_notice": {
        "id": "3331", "params": ["case_id"]}})
    with pytest.raises(PermanentProviderError) as refused:
        conn.send_sms(recall_message())
    conn.close()
    assert refused.value.code == "invalid_message"
    assert "no case_id" in refused.value.message
    assert fake.requests == []


def test_an_empty_params_list_is_a_template_without_variables(fake: TencentSmsFake) -> None:
    fake.templates["3332"] = 0
    conn = make_connector(templates={"refunded": "1113", "received": {"id": "3332",
                                                                      "params": []}})
    conn.send_sms(message(NotificationKind.RECEIVED))
    conn.close()
    assert fake.sends[0]["TemplateParamSet"] == []


def test_a_kind_without_a_template_is_refused_naming_the_kind(fake: TencentSmsFake) -> None:
    conn = make_connector(templates={"refunded": "1113"})
    with pytest.raises(PermanentProviderError, match="no Tencent template for 'denied'"):
        conn.send_sms(message(NotificationKind.DENIED))
    assert fake.requests == []


@pytest.mark.parametrize(("code", "wait"), [
    ("LimitExceeded.PhoneNumberThirtySecondLimit", 30.0),
    ("LimitExceeded.PhoneNumberOneHourLimit", 3600.0),
    ("LimitExceeded.PhoneNumberDailyLimit", 12 * 3600.0),  # 12:00 Beijing → midnight
    ("LimitExceeded.PhoneNumberSameContentDailyLimit", 12 * 3600.0),
    ("LimitExceeded.AppDailyLimit", 12 * 3600.0),
])
def test_a_per_number_limit_defers_the_message_and_is_not_retried(
        fake: TencentSmsFake, connector: TencentSmsConnector, code: str,
        wait: float) -> None:
    fake.number_codes[PHONE] = code
    with pytest.raises(SendDeferred) as info:
        connector.send_sms(message())
    assert info.value.retry_after == wait
    assert code in info.value.message
    assert isinstance(info.value.__cause__, PermanentProviderError)
    assert fake.actions() == ["SendSms"]  # held back: not hammered, not looked up


def test_a_limit_answered_as_the_calls_error_defers_too(
        fake: TencentSmsFake, connector: TencentSmsConnector) -> None:
    fake.before.append(lambda request, action: fake.error(
        "LimitExceeded.PhoneNumberThirtySecondLimit", "单个手机号30秒内下发短信条数超过设定的上限"))
    with pytest.raises(SendDeferred) as info:
        connector.send_sms(message())
    assert info.value.retry_after == 30.0


@pytest.mark.parametrize("code", [
    "FailedOperation.PhoneNumberInBlacklist",
    "FailedOperation.TemplateIncorrectOrUnapproved",
    "InvalidParameterValue.TemplateParameterLengthLimit",
    "InvalidParameterValue.ProhibitedUseUrlInTemplateParameter",
    "UnauthorizedOperation.ServiceSuspendDueToArrears",
    "UnsupportedOperation.ChineseMainlandTemplateToGlobalPhone",
])
def test_a_refusal_for_good_is_permanent_with_tencents_words_and_not_retried(
        fake: TencentSmsFake, connector: TencentSmsConnector, code: str) -> None:
    fake.number_codes[PHONE] = code
    with pytest.raises(PermanentProviderError) as info:
        connector.send_sms(message())
    assert not isinstance(info.value, TransientProviderError)
    assert info.value.code == code
    assert "频率限制" in info.value.message and "RequestId" in info.value.message
    assert fake.actions() == ["SendSms"]


def test_the_fakes_own_template_check_is_a_permanent_refusal(
        fake: TencentSmsFake) -> None:
    conn = make_connector(templates={"refunded": {"id": "9999"}})
    with pytest.raises(PermanentProviderError) as info:
        conn.send_sms(message())
    assert info.value.code == "FailedOperation.TemplateIncorrectOrUnapproved"


@pytest.mark.parametrize("failure", [
    TencentSmsFake.error("InternalError.Timeout", "请求下发短信超时"),
    TencentSmsFake.error("RequestLimitExceeded", "请求的次数超过了频率限制。"),
    TencentSmsFake.error("InternalError.OtherError", "其他错误", status=500),
    httpx.Response(502, text="bad gateway"),
], ids=["InternalError.Timeout", "RequestLimitExceeded", "500", "502"])
def test_a_transient_failure_is_retried_and_sends_one_sms(
        fake: TencentSmsFake, connector: TencentSmsConnector,
        failure: httpx.Response) -> None:
    answers = in_turn(failure)
    fake.before.append(lambda request, action: answers() if action == "SendSms" else None)
    receipt = connector.send_sms(message())
    assert len(fake.sends) == 1
    assert receipt.provider_id == fake.sends[0]["SerialNo"]
    # Before sending again, it asked whether the first attempt went out after all.
    assert fake.actions() == ["SendSms", "PullSmsSendStatusByPhoneNumber", "SendSms"]


def test_a_per_number_internal_error_is_retried(
        fake: TencentSmsFake, connector: TencentSmsConnector) -> None:
    fake.number_codes[PHONE] = "InternalError.Timeout"
    fake.before.append(lambda request, action: fake.number_codes.clear())  # once
    connector.send_sms(message())
    assert len(fake.sends) == 1


def test_transient_failures_are_retried_a_bounded_number_of_times(
        fake: TencentSmsFake, connector: TencentSmsConnector) -> None:
    fake.before.append(lambda request, action: httpx.Response(503) if action == "SendSms"
                       else None)
    with pytest.raises(TransientProviderError) as info:
        connector.send_sms(message())
    assert not isinstance(info.value, SendDeferred)
    assert fake.actions().count("SendSms") == FAST.attempts


def test_an_answer_lost_after_tencent_sent_is_not_sent_again(
        fake: TencentSmsFake, connector: TencentSmsConnector) -> None:
    def lose_the_answer(request: httpx.Request, action: str) -> httpx.Response | None:
        if action == "SendSms" and not fake.sends:
            fake._send(json.loads(request.content))  # Tencent sends, the answer is lost
            raise httpx.ReadTimeout("read timed out", request=request)
        return None

    fake.before.append(lose_the_answer)
    receipt = connector.send_sms(message())
    assert len(fake.sends) == 1
    assert receipt.provider_id == fake.sends[0]["SerialNo"]
    assert receipt.state is DeliveryState.DELIVERED
    assert fake.actions() == ["SendSms", "PullSmsSendStatusByPhoneNumber"]


def test_without_session_context_echoed_a_lost_answer_is_sent_again(
        fake: TencentSmsFake, connector: TencentSmsConnector) -> None:
    # The documented cost of an account without SessionContext in its pulls: a duplicate
    # SMS, never a customer left untold.
    fake.echo_session_context = False

    def lose_the_answer(request: httpx.Request, action: str) -> httpx.Response | None:
        if action == "SendSms" and not fake.sends:
            fake._send(json.loads(request.content))
            raise httpx.ReadTimeout("read timed out", request=request)
        return None

    fake.before.append(lose_the_answer)
    connector.send_sms(message())
    assert len(fake.sends) == 2


def test_a_lookup_tencent_refuses_does_not_stop_the_retry(
        fake: TencentSmsFake, connector: TencentSmsConnector,
        caplog: pytest.LogCaptureFixture) -> None:
    answers = in_turn(httpx.Response(503))
    fake.before.append(lambda request, action: answers() if action == "SendSms" else
                       fake.error("UnauthorizedOperation.RequestPermissionDeny", "请求没有权限"))
    with caplog.at_level(logging.WARNING):
        receipt = connector.send_sms(message())
    assert receipt.provider_id == fake.sends[0]["SerialNo"]
    assert "could not look message" in caplog.text


# ------------------------------------------------------------------ find_sms

def test_find_sms_pulls_the_numbers_day_and_matches_our_session_context(
        fake: TencentSmsFake, connector: TencentSmsConnector) -> None:
    connector.send_sms(message(NotificationKind.APPROVED))
    sent = connector.send_sms(message())
    found = connector.find_sms(message(), NOW.date())
    assert found is not None
    assert found.provider_id == sent.provider_id
    assert found.state is DeliveryState.DELIVERED
    pull = json.loads(fake.requests[-1].content)
    assert fake.requests[-1].headers["X-TC-Action"] == "PullSmsSendStatusByPhoneNumber"
    assert pull == {"BeginTime": int(datetime(2026, 3, 1, 10, tzinfo=UTC).timestamp()),
                    "EndTime": int(NOW.timestamp()), "Offset": 0, "Limit": 100,
                    "PhoneNumber": PHONE, "SmsSdkAppId": APP_ID}


def test_find_sms_answers_none_when_the_message_was_not_sent(
        fake: TencentSmsFake, connector: TencentSmsConnector) -> None:
    connector.send_sms(message(NotificationKind.APPROVED))  # another message, same number
    assert connector.find_sms(message(), NOW.date()) is None


def test_without_session_context_echoed_nothing_is_matched_and_that_is_logged(
        fake: TencentSmsFake, connector: TencentSmsConnector,
        caplog: pytest.LogCaptureFixture) -> None:
    fake.echo_session_context = False
    connector.send_sms(message())
    with caplog.at_level(logging.WARNING):
        assert connector.find_sms(message(), NOW.date()) is None
    assert "does not echo it for this account" in caplog.text
    assert PHONE not in caplog.text  # the number is masked in logs


def test_find_sms_older_than_tencent_keeps_is_a_permanent_error(
        fake: TencentSmsFake, connector: TencentSmsConnector) -> None:
    with pytest.raises(PermanentProviderError) as info:
        connector.find_sms(message(), date(2026, 2, 20))
    assert info.value.code == "status_expired"
    assert fake.requests == []


def test_find_sms_a_week_back_stays_inside_tencents_window(
        fake: TencentSmsFake, connector: TencentSmsConnector) -> None:
    assert connector.find_sms(message(), date(2026, 2, 23)) is None
    pull = json.loads(fake.requests[0].content)
    assert pull["BeginTime"] > NOW.timestamp() - 7 * 86400


# ------------------------------------------------------------------ callbacks

def _body(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


def test_a_status_report_with_the_shops_secret_is_read(
        fake: TencentSmsFake, connector: TencentSmsConnector) -> None:
    connector.send_sms(message())
    delivered = fake.status_report(fake.sends[0])
    failed = {**fake.status_report(fake.sends[0]), "report_status": "FAIL",
              "errmsg": "MK:0001", "description": "空号"}
    callback = connector.parse_callback(CALLBACK_URL, {}, _body([delivered, failed]), NOW)
    first, second = callback.reports
    assert first.provider_id == fake.sends[0]["SerialNo"]
    assert first.message_id == f"{CASE_ID}.refunded"
    assert first.phone == PHONE
    assert first.state is DeliveryState.DELIVERED
    assert first.at == datetime.fromtimestamp(NOW.timestamp() + 3, BEIJING)
    assert second.state is DeliveryState.FAILED
    assert second.error == "MK:0001 空号"
    assert callback.replies == ()


def test_a_report_without_ext_is_matched_by_serial_no(fake: TencentSmsFake,
                                                      connector: TencentSmsConnector) -> None:
    fake.echo_session_context = False
    connector.send_sms(message())
    (report,) = connector.parse_callback(
        CALLBACK_URL, {}, _body([fake.status_report(fake.sends[0])]), NOW).reports
    assert report.message_id is None
    assert report.provider_id == fake.sends[0]["SerialNo"]


@pytest.mark.parametrize("url", [
    "https://refunds.acme-medical.cn/webhooks/acme/tencent_sms/cb-wrong-secret-0000000",
    "https://refunds.acme-medical.cn/webhooks/acme/tencent_sms",
    f"https://refunds.acme-medical.cn/webhooks/acme/tencent_sms/{CALLBACK_SECRET}/x",
    f"https://refunds.acme-medical.cn/webhooks/acme/tencent_sms/{CALLBACK_SECRET[:-1]}",
    f"https://refunds.acme-medical.cn/webhooks/acme/tencent_sms?s={CALLBACK_SECRET}",
])
def test_a_callback_without_the_shops_secret_is_rejected(
        connector: TencentSmsConnector, url: str) -> None:
    with pytest.raises(WebhookRejected):
        connector.parse_callback(url, {}, b"[]", NOW)


def test_a_shop_without_a_callback_secret_takes_no_callback() -> None:
    config = settings()
    del config["callback_secret"]
    conn = TencentSmsConnector.from_config(config, ConnectorContext(shop_id="acme"))
    with pytest.raises(WebhookRejected, match="no callback_secret"):
        conn.parse_callback(CALLBACK_URL, {}, b"[]", NOW)


def test_a_trailing_slash_on_the_callback_url_is_the_same_url(
        connector: TencentSmsConnector) -> None:
    assert connector.parse_callback(CALLBACK_URL + "/", {}, b"[]", NOW).reports == ()


@pytest.mark.parametrize("text", ["TD", "td", "退订", "STOP", " Stop ", "R", "退订。"])
def test_an_opt_out_reply_becomes_an_inbound_sms(fake: TencentSmsFake,
                                                 connector: TencentSmsConnector,
                                                 text: str) -> None:
    body = _body(fake.reply(PHONE, text, at=1457336869))
    (reply,) = connector.parse_callback(CALLBACK_URL, {}, body, NOW).replies
    assert reply.phone == PHONE
    assert reply.text == text.strip()
    assert reply.at == datetime.fromtimestamp(1457336869, UTC)


@pytest.mark.parametrize("text", ["谢谢", "stop sending the wrong size", "请问退款到哪了"])
def test_another_reply_is_acknowledged_and_dropped(fake: TencentSmsFake,
                                                   connector: TencentSmsConnector,
                                                   text: str) -> None:
    callback = connector.parse_callback(CALLBACK_URL, {}, _body(fake.reply(PHONE, text)), NOW)
    assert callback.replies == () and callback.reports == ()


@pytest.mark.parametrize(("body", "field"), [
    (b'[{"sid": "1", "sid": "2"}]', "0.sid"),
    (b'[{"user_receive_time": "2026-03-02 12:00:03", "nationcode": "86", '
     b'"mobile": "13711112222", "report_status": "MAYBE", "sid": "2645:1"}]',
     "0.report_status"),
    (b'{"mobile": "13711112222", "nationcode": "86", "text": "TD"}', "time"),
    (b'{"mobile": "13711112222", "nationcode": "86", "text": "TD", "time": 99999999999999}',
     "time"),
    (b'not json', "body"),
])
def test_a_callback_body_is_read_strictly_naming_the_field(
        connector: TencentSmsConnector, body: bytes, field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        connector.parse_callback(CALLBACK_URL, {}, body, NOW)
    assert info.value.field == field


def test_tencent_gets_the_acknowledgement_it_documents() -> None:
    ack = TencentSmsConnector.acknowledgement
    assert ack is not None and ack.status == 200 and ack.media_type == "application/json"
    assert json.loads(ack.body) == {"result": 0, "errmsg": "OK"} == json.loads(ACKNOWLEDGEMENT)


# ------------------------------------------------------------------ settings

def test_the_connector_declares_the_sms_notifier() -> None:
    assert TencentSmsConnector.name == "tencent_sms"
    assert TencentSmsConnector.roles == frozenset({Role.NOTIFIER})
    assert TencentSmsConnector.capabilities == frozenset({Capability.SEND_SMS})


@pytest.mark.parametrize(("change", "key"), [
    ({"secret_id": "not-a-secret-id"}, "secret_id"),
    ({"sdk_app_id": "app-1"}, "sdk_app_id"),
    ({"sign_name": "【康复医疗】"}, "sign_name"),
    ({"templates": {}}, "templates"),
    ({"templates": {"shipped": "1110"}}, "templates"),
    ({"templates": {"received": "abc"}}, "templates.received.id"),
    ({"templates": {"received": {"id": "1110", "params": ["status_url"]}}},
     "templates.received.params.0"),
    ({"base_url": "sms.tencentcloudapi.com"}, "base_url"),
    ({"callback_secret": "short"}, "callback_secret"),
    ({"callback_secret": "has/a/slash-0123456789"}, "callback_secret"),
    ({"max_param_length": 0}, "max_param_length"),
])
def test_a_bad_setting_is_refused_naming_the_field(change: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_connector(**change)
    assert info.value.key == f"shops.acme.tencent_sms.{key}"


def test_a_missing_secret_key_is_named() -> None:
    config = settings()
    del config["secret_key"]
    with pytest.raises(ConfigError) as info:
        TencentSmsConnector.from_config(config, ConnectorContext(shop_id="acme"))
    assert info.value.key == "shops.acme.tencent_sms.secret_key"


def test_a_placeholder_secret_key_is_refused_outside_the_demo() -> None:
    with pytest.raises(ConfigError) as info:
        make_connector(secret_key="changeme")
    assert info.value.key == "shops.acme.tencent_sms.secret_key"
    demo = ConnectorContext(shop_id="acme", demo=True)
    TencentSmsConnector.from_config(settings(secret_key="changeme"), demo)


# ------------------------------------------------------------------ the error table

def _sdk_codes() -> list[str]:
    return sorted(value for name, value in vars(errorcodes).items()
                  if name.isupper() and isinstance(value, str))


def test_every_error_code_the_sdk_lists_is_sorted_without_guessing(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        outcomes = {code: classify(code) for code in _sdk_codes()}
    assert caplog.text == ""
    assert len(outcomes) > 90
    assert set(DEFERRALS) <= set(outcomes)  # each deferral is a code Tencent documents
    assert {c for c, o in outcomes.items() if o is Outcome.DEFER} == set(DEFERRALS)
    assert outcomes["LimitExceeded.PhoneNumberCountLimit"] is Outcome.PERMANENT
    assert outcomes["InternalError.Timeout"] is Outcome.TRANSIENT
    assert classify("RequestLimitExceeded.IPLimitExceeded") is Outcome.TRANSIENT


def test_an_unknown_error_family_is_a_refusal_and_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert classify("SomethingNew.Entirely") is Outcome.PERMANENT
    assert "SomethingNew.Entirely" in caplog.text


def test_marketing_hours_defer_until_eight_in_beijing() -> None:
    late = datetime(2026, 3, 2, 23, 30, tzinfo=BEIJING)
    assert defer_seconds("FailedOperation.MarketingSendTimeConstraint", late) == 8.5 * 3600
    early = datetime(2026, 3, 2, 7, 0, tzinfo=BEIJING)
    assert defer_seconds("FailedOperation.MarketingSendTimeConstraint", early) == 3600
