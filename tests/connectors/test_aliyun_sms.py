"""Aliyun SMS connector against Aliyun's wire format: a respx fake of dysmsapi that checks
every call's V3 signature with Alibaba Cloud's own signer, and the SDK itself to prove our
signature is Alibaba Cloud's. No network, no sleeps."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any, ClassVar

import httpx
import pytest
from alibabacloud_dysmsapi20170525 import models as sdk_models
from alibabacloud_dysmsapi20170525.client import Client as SdkClient
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.utils import Utils as SdkUtils
from alibabacloud_tea_openapi.utils_models import Config as SdkConfig
from darabonba.core import DaraCore
from darabonba.request import DaraRequest
from darabonba.response import DaraResponse

from refundbridge.connectors.aliyun_sms import AliyunSmsConnector
from refundbridge.connectors.aliyun_sms.transformers import (
    Verdict,
    aliyun_phone,
    classify,
    defer_seconds,
    e164_from_aliyun,
    is_opt_out,
)
from refundbridge.connectors.base import ConnectorContext, RetryPolicy
from refundbridge.connectors.registry import check_connector_class
from refundbridge.connectors.testing import ConnectorContract
from refundbridge.core.errors import (
    ConfigError,
    InvalidRequest,
    PermanentProviderError,
    SendDeferred,
    TransientProviderError,
    WebhookRejected,
)
from refundbridge.core.model import CAMPAIGN_KINDS, NotificationKind
from refundbridge.core.ports import (
    Capability,
    DeliveryReport,
    DeliveryState,
    InboundSms,
    OutgoingMessage,
    Role,
    SmsReceipt,
)
from tests.connectors.helpers import CASE_ID, FAST, ContractFixtures, in_turn
from tests.fakes.aliyun_sms import (
    ACCESS_KEY_ID,
    ACCESS_KEY_SECRET,
    BEIJING,
    SIGN_NAME,
    AliyunSmsFake,
    answer,
)
from tests.fakes.common import installed

NOW = datetime(2024, 7, 1, 4, 30, 5, tzinfo=UTC)  # 12:30:05 in Beijing
PHONE = "+8613800138000"
SECRET = "cb_7Hq2xLm9RvT4kPw8"
CALLBACK = f"https://rb.kanghu.cn/webhooks/kanghu/aliyun_sms/{SECRET}"
TEMPLATES = {"received": "SMS_465320001",
             "approved": {"code": "SMS_465320002",
                          "params": ["order_id", "amount", "currency", "status_path"]},
             "denied": {"code": "SMS_465320003", "params": ["order_id", "case_id"]},
             "refunded": "SMS_465320004"}
SETTINGS: dict[str, Any] = {
    "access_key_id": ACCESS_KEY_ID, "access_key_secret": ACCESS_KEY_SECRET,
    "sign_name": SIGN_NAME, "templates": TEMPLATES, "callback_secret": SECRET,
    "status_url_prefix": "https://shop.kanghu.cn/s/",
}


def settings(**changes: Any) -> dict[str, Any]:
    return {**SETTINGS, **changes}


def make_connector(retry: RetryPolicy = FAST, now: datetime = NOW, **changes: Any
                   ) -> AliyunSmsConnector:
    ctx = ConnectorContext(shop_id="kanghu", retry=retry, clock=lambda: now)
    return AliyunSmsConnector.from_config(settings(**changes), ctx)


def message(kind: NotificationKind = NotificationKind.RECEIVED, phone: str | None = PHONE,
            **context: Any) -> OutgoingMessage:
    return OutgoingMessage(
        case_id=CASE_ID, kind=kind, locale="zh-CN", email=None, phone=phone,
        message_id=f"{CASE_ID}.{kind.value}",
        context={"case_id": CASE_ID, "shop_id": "kanghu", "order_id": "KH/2024 0042*",
                 "amount": "25.00", "currency": "CNY", "is_return": False, **context})


@pytest.fixture
def fake() -> Iterator[AliyunSmsFake]:
    service = AliyunSmsFake(now=lambda: NOW)
    with installed(service):
        yield service


@pytest.fixture
def connector() -> Iterator[AliyunSmsConnector]:
    conn = make_connector()
    yield conn
    conn.close()


def on_action(action: str, *answers: httpx.Response | Exception
              ) -> Callable[[httpx.Request], httpx.Response | None]:
    """A fake hook answering the next calls of one action with `answers`, in turn."""
    next_answer = in_turn(*answers)

    def hook(request: httpx.Request) -> httpx.Response | None:
        return next_answer() if request.headers.get("x-acs-action") == action else None

    return hook


def actions(fake: AliyunSmsFake) -> list[str]:
    return [str(r.headers["x-acs-action"]) for r in fake.requests]


# ------------------------------------------------------------------ the signature

def test_our_signature_is_the_one_alibaba_clouds_sdk_computes() -> None:
    conn = make_connector()
    params = {"PhoneNumbers": "13800138000", "SignName": SIGN_NAME,
              "TemplateCode": "SMS_465320001", "OutId": f"{CASE_ID}.received",
              # a space, *, ~, /, +, quotes and Chinese: every encoding rule at once
              "TemplateParam": '{"order_id":"KH/2024 0042*~/+","name":"李 华"}'}
    request = conn.client.signed_request("SendSms", params)
    signed = ["host", "x-acs-action", "x-acs-content-sha256", "x-acs-date",
              "x-acs-signature-nonce", "x-acs-version"]
    sdk = DaraRequest()
    sdk.method, sdk.pathname, sdk.query = "POST", "/", dict(params)
    sdk.headers = {name: request.headers[name] for name in signed}
    assert request.headers["x-acs-content-sha256"] == SdkUtils.hex_encode(
        SdkUtils.hash(b"", "ACS3-HMAC-SHA256"))
    assert request.headers["Authorization"] == SdkUtils.get_authorization(
        sdk, "ACS3-HMAC-SHA256", request.headers["x-acs-content-sha256"], ACCESS_KEY_ID,
        ACCESS_KEY_SECRET)
    assert request.headers["Authorization"].startswith(
        f"ACS3-HMAC-SHA256 Credential={ACCESS_KEY_ID},SignedHeaders={';'.join(signed)},")
    assert request.headers["x-acs-date"] == "2024-07-01T04:30:05Z"
    assert request.headers["host"] == "dysmsapi.aliyuncs.com"
    assert request.content == b""


def _through_fake(fake: AliyunSmsFake) -> Callable[..., DaraResponse]:
    """The SDK's transport, replaced by the fake: the SDK's own request, as it would go out
    (its URL from the SDK's `compose_url`), answered by the fake's handler."""
    def do_action(request: DaraRequest, runtime_option: Any = None) -> DaraResponse:
        outgoing = httpx.Request(request.method, DaraCore.compose_url(request),
                                 headers=request.headers, content=request.body or b"")
        reply = fake.handle(outgoing)
        response = DaraResponse()
        response.status_code, response.headers = reply.status_code, dict(reply.headers)
        response.body = reply.content
        return response

    return do_action


def test_the_fake_accepts_what_alibaba_clouds_sdk_signs_and_refuses_a_wrong_key(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The fake's check is Alibaba Cloud's, not an echo of ours: the SDK's own calls (which
    # sign more headers, and encode the query its own way) pass, a wrong secret does not.
    service = AliyunSmsFake()  # the SDK dates its calls with the real clock
    monkeypatch.setattr(DaraCore, "do_action", staticmethod(_through_fake(service)))
    sdk_request = sdk_models.SendSmsRequest(
        phone_numbers="13800138000", sign_name=SIGN_NAME, template_code="SMS_465320004",
        template_param='{"order_id":"KH 1","amount":"25.00","currency":"CNY"}',
        out_id="rc_1.refunded")
    client = SdkClient(SdkConfig(access_key_id=ACCESS_KEY_ID,
                                 access_key_secret=ACCESS_KEY_SECRET,
                                 endpoint="dysmsapi.aliyuncs.com"))
    sent = client.send_sms(sdk_request)
    assert sent.body.code == "OK"
    assert sent.body.biz_id == service.sends[0]["BizId"]
    assert "user-agent" in service.requests[0].headers["Authorization"]
    wrong = SdkClient(SdkConfig(access_key_id=ACCESS_KEY_ID,
                                access_key_secret="not-" + ACCESS_KEY_SECRET,
                                endpoint="dysmsapi.aliyuncs.com"))
    with pytest.raises(ClientException) as refused:
        wrong.send_sms(sdk_request)
    assert refused.value.code == "SignatureDoesNotMatch"
    assert len(service.sends) == 1


def test_the_fake_refuses_our_call_signed_with_another_secret(fake: AliyunSmsFake) -> None:
    conn = make_connector(access_key_secret="another-secret-0123456789abcdef")
    with pytest.raises(PermanentProviderError) as refused:
        conn.send_sms(message())
    assert refused.value.code == "SignatureDoesNotMatch"
    assert fake.sends == []


# ------------------------------------------------------------------ sending

def test_a_send_carries_exactly_aliyuns_fields_and_is_queued_with_its_biz_id(
        fake: AliyunSmsFake, connector: AliyunSmsConnector) -> None:
    receipt = connector.send_sms(message())
    call = fake.calls[-1]
    assert call == {
        "Action": "SendSms", "PhoneNumbers": "13800138000", "SignName": SIGN_NAME,
        "TemplateCode": "SMS_465320001", "OutId": f"{CASE_ID}.received",
        "TemplateParam": call["TemplateParam"],
    }
    # TemplateParam is a JSON *string*, its values strings, exactly what the template needs
    # and more (no `params` given for "received": everything we have).
    assert isinstance(call["TemplateParam"], str)
    assert json.loads(call["TemplateParam"]) == {
        "order_id": "KH/2024 0042*", "amount": "25.00", "currency": "CNY", "case_id": CASE_ID}
    assert receipt.provider_id == fake.sends[0]["BizId"]
    assert receipt.state is DeliveryState.QUEUED
    assert fake.sends[0]["Content"] == (f"【{SIGN_NAME}】您的退款申请已收到：订单KH/2024 0042*，"
                                        f"金额25.00CNY，申请编号{CASE_ID}。")


def test_a_template_gets_the_variables_it_lists_and_the_status_link_after_its_prefix(
        fake: AliyunSmsFake, connector: AliyunSmsConnector) -> None:
    connector.send_sms(message(NotificationKind.APPROVED,
                               status_url="https://shop.kanghu.cn/s/Zx8.tok-1"))
    assert json.loads(fake.calls[-1]["TemplateParam"]) == {
        "order_id": "KH/2024 0042*", "amount": "25.00", "currency": "CNY",
        "status_path": "Zx8.tok-1"}
    assert fake.sends[0]["Content"].endswith("进度 https://shop.kanghu.cn/s/Zx8.tok-1")


def test_a_status_link_outside_the_templates_prefix_is_refused_before_any_call(
        fake: AliyunSmsFake, connector: AliyunSmsConnector) -> None:
    with pytest.raises(PermanentProviderError) as refused:
        connector.send_sms(message(NotificationKind.APPROVED,
                                   status_url="https://evil.example.net/s/tok"))
    assert refused.value.code == "status_url_prefix"
    with pytest.raises(PermanentProviderError) as missing:
        connector.send_sms(message(NotificationKind.APPROVED))  # no status link at all
    assert missing.value.code == "template_param"
    assert fake.requests == []


@pytest.mark.parametrize(("e164", "wire"), [
    ("+8613800138000", "13800138000"),  # mainland: 11 digits, no +86
    ("+85261234567", "85261234567"),  # Hong Kong: country code and number, no +
    ("+12025550123", "12025550123"),
    ("+447911123456", "447911123456"),
])
def test_numbers_go_out_as_aliyun_writes_them(e164: str, wire: str) -> None:
    assert aliyun_phone(e164) == wire


def test_an_international_number_is_sent_with_its_country_code(
        fake: AliyunSmsFake, connector: AliyunSmsConnector) -> None:
    connector.send_sms(message(phone="+85261234567"))
    assert fake.calls[-1]["PhoneNumbers"] == "85261234567"


def test_the_per_number_limit_defers_the_message_without_a_hot_retry(
        fake: AliyunSmsFake, connector: AliyunSmsConnector) -> None:
    fake.per_minute_limit = 1
    connector.send_sms(message())
    with pytest.raises(SendDeferred) as deferred:
        connector.send_sms(message())
    assert deferred.value.retry_after == 60
    assert "isv.BUSINESS_LIMIT_CONTROL" in deferred.value.message
    assert "触发分钟级流控" in deferred.value.message
    assert actions(fake) == ["SendSms", "SendSms"]  # deferred at once, nothing looked up
    assert len(fake.sends) == 1


@pytest.mark.parametrize(("words", "seconds"), [
    ("触发分钟级流控Permits:1", 60), ("触发小时级流控Permits:5", 3600),
    # 12:30:05 in Beijing: the day's limit lifts at Beijing's midnight
    ("触发天级流控Permits:10", 11 * 3600 + 29 * 60 + 55), ("", 60)])
def test_a_deferral_waits_as_long_as_the_limit_aliyun_names(words: str, seconds: int,
                                                             fake: AliyunSmsFake) -> None:
    fake.before_call.append(on_action("SendSms", answer("isv.BUSINESS_LIMIT_CONTROL", words)))
    with pytest.raises(SendDeferred) as deferred:
        make_connector().send_sms(message())
    assert deferred.value.retry_after == seconds
    assert defer_seconds(words, NOW) == seconds


def test_an_illegal_number_is_a_permanent_refusal_with_aliyuns_code_and_words(
        fake: AliyunSmsFake, connector: AliyunSmsConnector) -> None:
    with pytest.raises(PermanentProviderError) as refused:
        connector.send_sms(message(phone="+8610012345678"))
    assert refused.value.code == "isv.MOBILE_NUMBER_ILLEGAL"
    assert "isv.MOBILE_NUMBER_ILLEGAL: 非法手机号" in refused.value.message
    assert actions(fake) == ["SendSms"]  # a refusal is not retried


def test_an_unapproved_template_is_permanent(fake: AliyunSmsFake) -> None:
    conn = make_connector(templates={**TEMPLATES, "received": "SMS_100000009"})
    with pytest.raises(PermanentProviderError) as refused:
        conn.send_sms(message())
    assert refused.value.code == "isv.SMS_TEMPLATE_ILLEGAL"


OPTIONAL = (NotificationKind.GOODS_RECEIVED, NotificationKind.REFUND_FAILED)


@pytest.mark.parametrize("kind", OPTIONAL)
def test_a_shop_without_a_template_for_an_optional_kind_sends_no_sms_of_it(
        fake: AliyunSmsFake, connector: AliyunSmsConnector, kind: NotificationKind) -> None:
    # the four required kinds are enough to configure the connector (`connector` has them)
    with pytest.raises(PermanentProviderError) as refused:
        connector.send_sms(message(kind))
    assert refused.value.code == "no_template"
    assert f"templates.{kind.value}" in refused.value.message
    assert fake.requests == []


def test_the_optional_kinds_go_out_by_their_own_templates() -> None:
    service = AliyunSmsFake(now=lambda: NOW, templates={
        "SMS_465320001": "您的退款申请已收到：订单${order_id}。",
        "SMS_465320005": "订单${order_id}的退货已签收，申请编号${case_id}。",
        "SMS_465320006": "订单${order_id}的退款未成功，我们将重新为您退款。"})
    conn = make_connector(templates={**TEMPLATES, "goods_received": "SMS_465320005",
                                     "refund_failed": {"code": "SMS_465320006",
                                                       "params": ["order_id"]}})
    with installed(service):
        conn.send_sms(message(NotificationKind.GOODS_RECEIVED))
        conn.send_sms(message(NotificationKind.REFUND_FAILED))
    conn.close()
    first, second = service.calls
    assert (first["TemplateCode"], first["OutId"]) == ("SMS_465320005",
                                                       f"{CASE_ID}.goods_received")
    assert json.loads(second["TemplateParam"]) == {"order_id": "KH/2024 0042*"}
    assert service.sends[0]["Content"] == (f"【{SIGN_NAME}】订单KH/2024 0042*的退货已签收，"
                                           f"申请编号{CASE_ID}。")


CAMPAIGN_ID = "rcp_bea7664778d841fdbcc6fb93de13f571"
ACK_PREFIX = "https://shop.kanghu.cn/status/recall/"
ACK_URL = f"{ACK_PREFIX}eyJyIjoicmNwXzEifQ.axCy5Q.wSXq"


def recall_message(kind: NotificationKind = NotificationKind.RECALL_NOTICE,
                   **context: Any) -> OutgoingMessage:
    """A campaign's message to one consignee, as core/services/campaigns.py builds it."""
    reminder = 1 if kind is NotificationKind.RECALL_REMINDER else 0
    return OutgoingMessage(
        case_id=CAMPAIGN_ID, kind=kind, locale="zh-CN", email=None, phone=PHONE,
        message_id=f"{CAMPAIGN_ID}.7.{'reminder1' if reminder else 'notice'}",
        context={"campaign_id": CAMPAIGN_ID, "shop_id": "kanghu", "reference": "RC-2026-001",
                 "recall_class": "I", "notice_date": "2026-12-01", "consignee_name": "王诊所",
                 "product": {"sku": "GM-100", "gtin": "06901234567892"},
                 "units": [{"sku": "GM-100", "quantity": 2, "lot": "L2406A", "serial": None,
                            "document": "SO-1001", "shipped_on": "2026-10-14"}],
                 "quantity": 2, "actions": ["stop_use", "return"], "instructions": "",
                 "ack_url": ACK_URL, "reminder": reminder, "return_address": "", **context})


RECALL_TEMPLATES = {
    "SMS_465320007": "您收到的医疗器械${product}涉及${recall_class}级召回（召回编号${reference}），"
                     "请立即停止使用并查看邮件。确认收到：https://shop.kanghu.cn/status/recall/"
                     "${ack_path}",
    "SMS_465320008": "第${reminder}次提醒：召回${reference}，您尚未确认收到，请查看邮件。"}


def test_a_recall_goes_out_by_its_template_with_the_campaigns_variables() -> None:
    service = AliyunSmsFake(now=lambda: NOW, templates=RECALL_TEMPLATES)
    conn = make_connector(ack_url_prefix=ACK_PREFIX, templates={
        **TEMPLATES, "recall_notice": "SMS_465320007",
        "recall_reminder": {"code": "SMS_465320008", "params": ["reminder", "reference"]}})
    with installed(service):
        conn.send_sms(recall_message())
        conn.send_sms(recall_message(NotificationKind.RECALL_REMINDER))
    conn.close()

    first, second = service.calls
    assert (first["TemplateCode"], first["OutId"]) == ("SMS_465320007",
                                                       f"{CAMPAIGN_ID}.7.notice")
    # every variable a recall has, none of a case's: the campaign's id is not for the
    # consignee's eyes
    assert json.loads(first["TemplateParam"]) == {
        "reference": "RC-2026-001", "product": "GM-100", "recall_class": "I",
        "reminder": "0", "ack_path": "eyJyIjoicmNwXzEifQ.axCy5Q.wSXq"}
    assert json.loads(second["TemplateParam"]) == {"reminder": "1",
                                                   "reference": "RC-2026-001"}
    assert service.sends[0]["Content"] == (
        f"【{SIGN_NAME}】您收到的医疗器械GM-100涉及I级召回（召回编号RC-2026-001），请立即停止使用并"
        f"查看邮件。确认收到：{ACK_URL}")


def test_a_recall_template_needing_a_link_without_its_prefix_is_refused(
        fake: AliyunSmsFake) -> None:
    conn = make_connector(templates={**TEMPLATES, "recall_notice": {
        "code": "SMS_465320007", "params": ["product", "ack_path"]}})
    with pytest.raises(PermanentProviderError) as refused:
        conn.send_sms(recall_message())
    conn.close()
    assert refused.value.code == "template_param"
    assert "ack_path" in refused.value.message
    assert fake.requests == []


def test_an_ack_link_outside_its_prefix_is_refused(fake: AliyunSmsFake) -> None:
    conn = make_connector(ack_url_prefix="https://other.kanghu.cn/r/",
                          templates={**TEMPLATES, "recall_notice": "SMS_465320007"})
    with pytest.raises(PermanentProviderError) as refused:
        conn.send_sms(recall_message())
    conn.close()
    assert refused.value.code == "ack_url_prefix"
    assert fake.requests == []


@pytest.mark.parametrize("kind", sorted(CAMPAIGN_KINDS))
def test_a_shop_without_recall_templates_sends_no_recall_sms(
        fake: AliyunSmsFake, connector: AliyunSmsConnector, kind: NotificationKind) -> None:
    with pytest.raises(PermanentProviderError) as refused:
        connector.send_sms(recall_message(kind))
    assert refused.value.code == "no_template"
    assert f"templates.{kind.value}" in refused.value.message
    assert fake.requests == []


def test_a_message_without_a_phone_is_refused_before_any_call(
        fake: AliyunSmsFake, connector: AliyunSmsConnector) -> None:
    with pytest.raises(PermanentProviderError) as refused:
        connector.send_sms(message(phone=None))
    assert refused.value.code == "no_phone"
    assert fake.requests == []


def test_a_refused_5xx_is_transient_and_each_retry_looks_the_send_up_first(
        fake: AliyunSmsFake, connector: AliyunSmsConnector) -> None:
    unavailable = httpx.Response(503, text="Service Unavailable")
    fake.before_call.append(on_action("SendSms", unavailable, unavailable, unavailable))
    with pytest.raises(TransientProviderError):
        connector.send_sms(message())
    assert actions(fake) == ["SendSms", "QuerySendDetails", "SendSms", "QuerySendDetails",
                             "SendSms"]
    assert fake.sends == []


@pytest.mark.parametrize("failure", [
    httpx.Response(502, text="Bad Gateway"),
    answer("Throttling.User", "Request was denied due to user flow control.", 400),
    answer("isp.SYSTEM_ERROR", "System error"),
    httpx.ConnectError("connection refused"),
], ids=["502", "throttling", "isp.SYSTEM_ERROR", "network"])
def test_a_transient_failure_is_retried_once_nothing_was_sent(
        failure: httpx.Response | Exception, fake: AliyunSmsFake,
        connector: AliyunSmsConnector) -> None:
    fake.before_call.append(on_action("SendSms", failure))
    receipt = connector.send_sms(message())
    assert actions(fake) == ["SendSms", "QuerySendDetails", "SendSms"]
    assert len(fake.sends) == 1 and receipt.provider_id == fake.sends[0]["BizId"]
    nonces = {r.headers["x-acs-signature-nonce"] for r in fake.requests}
    assert len(nonces) == 3  # every attempt signed afresh: Aliyun refuses a nonce twice


def test_a_send_whose_answer_is_lost_is_found_not_sent_twice(
        fake: AliyunSmsFake, connector: AliyunSmsConnector) -> None:
    lost = in_turn(httpx.Response(504, text="Gateway Timeout"))
    fake.after_send.append(lambda _stored: lost())  # stored, then the answer is lost
    receipt = connector.send_sms(message())
    assert actions(fake) == ["SendSms", "QuerySendDetails"]
    assert len(fake.sends) == 1
    assert receipt == SmsReceipt("", DeliveryState.SENT, receipt.detail)
    assert "SendStatus 1" in receipt.detail


def test_a_look_up_aliyun_refuses_keeps_the_send_transient_never_blind(
        fake: AliyunSmsFake, connector: AliyunSmsConnector) -> None:
    fake.before_call.append(on_action("SendSms", httpx.Response(503)))
    fake.before_call.append(lambda r: answer("Forbidden.RAM", "User not authorized to "
                                             "operate on the specified resource.", 403)
                            if r.headers["x-acs-action"] == "QuerySendDetails" else None)
    with pytest.raises(TransientProviderError) as caught:
        connector.send_sms(message())
    assert "cannot look the send up" in caught.value.message
    assert "Forbidden.RAM" in caught.value.message
    assert actions(fake).count("SendSms") == 1


@pytest.mark.parametrize(("code", "verdict"), [
    ("OK", Verdict.OK), ("isv.BUSINESS_LIMIT_CONTROL", Verdict.DEFER),
    ("isv.MOBILE_NUMBER_ILLEGAL", Verdict.PERMANENT), ("isv.AMOUNT_NOT_ENOUGH",
                                                       Verdict.PERMANENT),
    ("isv.DAY_LIMIT_CONTROL", Verdict.PERMANENT), ("Throttling.User", Verdict.TRANSIENT),
    ("Throttling.Api", Verdict.TRANSIENT), ("isp.SYSTEM_ERROR", Verdict.TRANSIENT),
    ("SignatureDoesNotMatch", Verdict.PERMANENT), ("SignatureNonceUsed", Verdict.TRANSIENT),
    (None, Verdict.PERMANENT)])
def test_every_answer_code_is_sorted_on_purpose(code: str | None, verdict: Verdict) -> None:
    assert classify(code) is verdict


# ------------------------------------------------------------------ finding a send

def test_find_sms_matches_our_out_id_among_the_numbers_sends_of_the_day(
        fake: AliyunSmsFake, connector: AliyunSmsConnector) -> None:
    connector.send_sms(message(NotificationKind.DENIED))
    connector.send_sms(message())
    found = connector.find_sms(message(), NOW.date())
    assert found is not None and found.state is DeliveryState.SENT
    fake.deliver(f"{CASE_ID}.received")
    delivered = connector.find_sms(message(), NOW.date())
    assert delivered is not None and delivered.state is DeliveryState.DELIVERED
    assert "DELIVERED" in delivered.detail
    assert connector.find_sms(message(NotificationKind.REFUNDED), NOW.date()) is None
    assert connector.find_sms(message(phone="+8613900139000"), NOW.date()) is None
    query = fake.calls[-1]
    assert query == {"Action": "QuerySendDetails", "PhoneNumber": "13900139000",
                     "SendDate": "20240701", "PageSize": "50", "CurrentPage": "1"}


def test_find_sms_reads_every_page(fake: AliyunSmsFake, connector: AliyunSmsConnector
                                   ) -> None:
    connector.send_sms(message())
    for n in range(60):  # later sends to the number push ours to page two
        fake.sends.append({**fake.sends[0], "OutId": f"other-{n}", "BizId": f"{n}^0"})
    found = connector.find_sms(message(), NOW.date())
    assert found is not None
    assert [c["CurrentPage"] for c in fake.calls if c["Action"] == "QuerySendDetails"] == [
        "1", "2"]


def test_find_sms_prefers_a_delivered_send_to_a_failed_one_of_the_same_message(
        fake: AliyunSmsFake, connector: AliyunSmsConnector) -> None:
    connector.send_sms(message())
    fake.deliver(f"{CASE_ID}.received", success=False)
    fake.sends.append({**fake.sends[0], "BizId": "2^0", "SendStatus": 3,
                       "ErrCode": "DELIVERED"})
    found = connector.find_sms(message(), NOW.date())
    assert found is not None and found.state is DeliveryState.DELIVERED


def test_find_sms_also_asks_beijings_next_day_but_never_the_future(
        fake: AliyunSmsFake) -> None:
    late = datetime(2024, 7, 1, 17, 0, tzinfo=UTC)  # already 2 July, 01:00 in Beijing
    fake.now = lambda: late
    conn = make_connector(now=late)
    conn.send_sms(message())
    assert fake.sends[0]["SendDate"].startswith("2024-07-02")
    assert conn.find_sms(message(), date(2024, 7, 1)) is not None
    assert [c["SendDate"] for c in fake.calls if c["Action"] == "QuerySendDetails"] == [
        "20240701", "20240702"]
    fake.calls.clear()
    fake.now = lambda: NOW
    make_connector().find_sms(message(), date(2024, 7, 1))  # 12:30 in Beijing, 1 July
    assert [c["SendDate"] for c in fake.calls] == ["20240701"]


# ------------------------------------------------------------------ pushes

def test_a_receipt_pushed_to_the_shops_secret_url_is_read(
        fake: AliyunSmsFake, connector: AliyunSmsConnector) -> None:
    receipt = connector.send_sms(message())
    body = fake.deliver(f"{CASE_ID}.received")
    callback = connector.parse_callback(CALLBACK, {"Content-Type": "application/json"},
                                        body, NOW)
    assert callback.replies == ()
    assert callback.reports == (DeliveryReport(
        provider_id=receipt.provider_id, message_id=f"{CASE_ID}.received", phone=PHONE,
        state=DeliveryState.DELIVERED, error="", at=NOW),)


def test_a_failed_receipt_carries_aliyuns_code_and_words(
        fake: AliyunSmsFake, connector: AliyunSmsConnector) -> None:
    connector.send_sms(message())
    body = fake.deliver(f"{CASE_ID}.received", success=False)
    (report,) = connector.parse_callback(CALLBACK, {}, body, NOW).reports
    assert report.state is DeliveryState.FAILED
    assert report.error == "MK:0001: 空号"


@pytest.mark.parametrize("url", [
    "https://rb.kanghu.cn/webhooks/kanghu/aliyun_sms/cb_7Hq2xLm9RvT4kPw9",  # one off
    "https://rb.kanghu.cn/webhooks/kanghu/aliyun_sms",  # no secret
    f"https://rb.kanghu.cn/webhooks/kanghu/aliyun_sms/{SECRET}/",  # not the last segment
    f"https://rb.kanghu.cn/webhooks/kanghu/aliyun_sms?secret={SECRET}",  # not in the path
    f"https://rb.kanghu.cn/webhooks/kanghu/aliyun_sms/{SECRET}x",
])
def test_a_push_to_any_other_url_is_rejected(url: str, fake: AliyunSmsFake,
                                             connector: AliyunSmsConnector) -> None:
    with pytest.raises(WebhookRejected):
        connector.parse_callback(url, {}, fake.reply("13800138000", "TD"), NOW)


@pytest.mark.parametrize(("content", "opts_out"), [
    ("TD", True), ("退订", True), ("STOP", True), ("T", True), ("stop", True),
    (" td ", True), ("退订。", True), ("你好，什么时候退款？", False), ("TDD", False)])
def test_replies_are_read_and_opt_out_words_known(content: str, opts_out: bool,
                                                  fake: AliyunSmsFake,
                                                  connector: AliyunSmsConnector) -> None:
    callback = connector.parse_callback(CALLBACK, {}, fake.reply("13800138000", content),
                                        NOW)
    assert callback.reports == ()
    assert callback.replies == (InboundSms(PHONE, content.strip(), NOW),)
    assert is_opt_out(callback.replies[0].text) is opts_out


@pytest.mark.parametrize(("body", "field"), [
    (b'[{"phone_number": "13800138000", "content": "TD", "content": "OK"}]',
     "0.content"),
    (b'{"phone_number": "13800138000", "content": "TD"}', "body"),
    (b'[{"phone_number": "13800138000", "success": "yes"}]', "body.0.success"),
    (b'[{"phone_number": "13800138000", "success": true, "report_time": "1 July"}]',
     "body.0.report_time"),
    (b'[{"phone_number": "1380013\\u00008000", "content": "TD"}]', "body.0.phone_number"),
    (b'[NaN]', "body"),
])
def test_a_push_that_is_not_aliyuns_is_refused_naming_the_field(
        body: bytes, field: str, connector: AliyunSmsConnector) -> None:
    with pytest.raises(InvalidRequest) as refused:
        connector.parse_callback(CALLBACK, {}, body, NOW)
    assert refused.value.field == field


def test_an_empty_push_is_nothing_and_the_answer_is_what_aliyun_wants() -> None:
    assert make_connector().parse_callback(CALLBACK, {}, b"[]", NOW).reports == ()
    ack = AliyunSmsConnector.acknowledgement
    assert ack.status == 200 and json.loads(ack.body) == {"code": 0, "msg": "接收成功"}


@pytest.mark.parametrize(("raw", "e164"), [
    ("13800138000", "+8613800138000"), ("8613800138000", "+8613800138000"),
    ("85261234567", "+85261234567"), ("12025550123", "+12025550123")])
def test_numbers_in_pushes_come_back_as_e164(raw: str, e164: str) -> None:
    assert e164_from_aliyun(raw) == e164


# ------------------------------------------------------------------ settings

def test_the_connector_keeps_the_contract_and_is_a_notifier_for_sms() -> None:
    check_connector_class("aliyun_sms", AliyunSmsConnector)
    assert AliyunSmsConnector.roles == frozenset({Role.NOTIFIER})
    assert AliyunSmsConnector.capabilities == frozenset({Capability.SEND_SMS})


@pytest.mark.parametrize(("changes", "key"), [
    ({"templates": {"received": "SMS_1"}}, "templates"),
    ({"templates": {**TEMPLATES, "received": "1234"}}, "templates.received.code"),
    ({"templates": {**TEMPLATES, "approved": {"code": "SMS_1", "params": ["name"]}}},
     "templates.approved.params.0"),
    ({"templates": {**TEMPLATES, "shipped": "SMS_1"}}, "templates.shipped.[key]"),
    ({"callback_secret": "short"}, "callback_secret"),
    ({"callback_secret": "has/a/slash/in-it-0123"}, "callback_secret"),
    ({"access_key_secret": "changeme-changeme"}, "access_key_secret"),
    ({"base_url": "ftp://dysmsapi.aliyuncs.com"}, "base_url"),
    ({"status_url_prefix": "shop.kanghu.cn/s/"}, "status_url_prefix"),
    ({"region": "Hangzhou"}, "region"),
    ({"sign_name": ""}, "sign_name"),
    ({"sign_nam": "x"}, "sign_nam"),
])
def test_a_bad_setting_is_refused_naming_it(changes: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as refused:
        make_connector(**changes)
    assert refused.value.key == f"shops.kanghu.aliyun_sms.{key}"


@pytest.mark.parametrize(("region", "endpoint"), [
    ("cn-hangzhou", "https://dysmsapi.aliyuncs.com"),
    ("cn-shanghai", "https://dysmsapi.aliyuncs.com"),
    ("ap-southeast-1", "https://dysmsapi.ap-southeast-1.aliyuncs.com")])
def test_the_region_picks_the_endpoint_as_the_sdk_does(region: str, endpoint: str) -> None:
    assert make_connector(region=region).settings.endpoint == endpoint
    assert make_connector(region=region, base_url="http://127.0.0.1:9/").settings.endpoint == (
        "http://127.0.0.1:9")


def test_a_local_endpoint_is_signed_with_its_host_and_port() -> None:
    service = AliyunSmsFake(endpoint="http://127.0.0.1:8731", now=lambda: NOW)
    with installed(service):
        make_connector(base_url="http://127.0.0.1:8731").send_sms(message())
    assert service.requests[0].headers["host"] == "127.0.0.1:8731"
    assert len(service.sends) == 1


class TestAliyunSmsContract(ContractFixtures, ConnectorContract):
    CONNECTOR_CLASS = AliyunSmsConnector
    SETTINGS: ClassVar[dict[str, Any]] = SETTINGS


def test_times_are_beijing_times() -> None:
    assert NOW.astimezone(BEIJING).hour == 12
