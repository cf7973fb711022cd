"""WeChat Pay (API v3) connector against WeChat's wire format: respx at the transport (a
stateful fake that checks our signatures and signs its answers), and the official
`wechatpayv3` SDK to prove our test notifications are the real thing. No network, no
sleeps."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from wechatpayv3 import WeChatPay, WeChatPayType

from refundbridge.connectors.base import ConnectorContext, RetryPolicy
from refundbridge.connectors.registry import ConnectorRegistry
from refundbridge.connectors.wechatpay import WeChatPayConnector
from refundbridge.connectors.wechatpay.client import UnverifiedRefundAnswer
from refundbridge.connectors.wechatpay.transformers import (
    ERROR_CODES,
    REASON_TEXT,
    STATUS_MAP,
    Retry,
    WeChatRefund,
    classify,
    to_refund_result,
)
from refundbridge.core.errors import (
    ConfigError,
    InvalidRequest,
    NotSupported,
    PermanentProviderError,
    TransientProviderError,
    WebhookRejected,
)
from refundbridge.core.model import RefundStatus
from refundbridge.core.money import Money
from refundbridge.core.ports import (
    Capability,
    Ignored,
    RefundOrder,
    RefundUpdate,
    Role,
    StatusOutcome,
    StatusUpdate,
)
from refundbridge.core.request import ReasonCode
from tests.connectors.helpers import CASE_ID, FAST, KEY
from tests.fakes.common import installed
from tests.fakes.wechatpay import BASE, REFUNDS, WeChatPayFake, WeChatPayKeys

NOW = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)
TRADE_NO = "ACME20240701000123"
AUTH_RE = re.compile(
    r'^WECHATPAY2-SHA256-RSA2048 mchid="(?P<mchid>\d+)",nonce_str="(?P<nonce>[0-9A-F]{32})",'
    r'signature="(?P<signature>[A-Za-z0-9+/=]+)",timestamp="(?P<timestamp>\d+)",'
    r'serial_no="(?P<serial>[0-9A-F]+)"$')


@pytest.fixture(scope="module")
def keys() -> WeChatPayKeys:
    return WeChatPayKeys.generate("unit")


def make_order(amount: str = "25.00", currency: str = "CNY", key: str = KEY,
               paid: str = "80.00", reason: ReasonCode = ReasonCode.DEFECTIVE) -> RefundOrder:
    return RefundOrder(
        case_id=CASE_ID, attempt=1, idempotency_key=key,
        amount=Money.parse(amount, currency), payment_reference=TRADE_NO, order_id="1001",
        reason=reason, paid_total=Money.parse(paid, currency),
    )


def make_connector(keys: WeChatPayKeys, retry: RetryPolicy = FAST,
                   now: datetime = NOW, **config: Any) -> WeChatPayConnector:
    ctx = ConnectorContext(shop_id="s1", retry=retry, clock=lambda: now)
    return WeChatPayConnector.from_config(keys.connector_config(**config), ctx)


@pytest.fixture
def fake(keys: WeChatPayKeys) -> Iterator[WeChatPayFake]:
    wechat = WeChatPayFake(keys, clock=NOW.timestamp)
    with installed(wechat):
        yield wechat


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
def connector(keys: WeChatPayKeys) -> Iterator[WeChatPayConnector]:
    conn = make_connector(keys)
    yield conn
    conn.close()


def check_signed_by_merchant(request: httpx.Request, keys: WeChatPayKeys) -> dict[str, str]:
    """Verify the Authorization header as WeChat Pay does, independently of our code."""
    match = AUTH_RE.match(request.headers["Authorization"])
    assert match is not None, request.headers["Authorization"]
    message = (f"{request.method}\n{request.url.raw_path.decode()}\n{match['timestamp']}\n"
               f"{match['nonce']}\n").encode() + request.content + b"\n"
    keys.merchant_key.public_key().verify(base64.b64decode(match["signature"]), message,
                                          padding.PKCS1v15(), hashes.SHA256())
    return match.groupdict()


# ---------------------------------------------------------------- issuing a refund


def test_refund_is_posted_as_wechat_expects(fake: WeChatPayFake, keys: WeChatPayKeys,
                                            connector: WeChatPayConnector) -> None:
    result = connector.issue_refund(make_order())

    [request] = fake.requests
    assert request.method == "POST"
    assert request.url == f"{BASE}{REFUNDS}"
    assert json.loads(request.content) == {
        "out_trade_no": TRADE_NO,
        "out_refund_no": KEY,
        "reason": "商品质量问题",
        "notify_url": "https://refunds.acme-medical.cn/webhooks/acme/wechatpay",
        "amount": {"refund": 2500, "total": 8000, "currency": "CNY"},
    }
    auth = check_signed_by_merchant(request, keys)
    assert auth["mchid"] == keys.mchid
    assert auth["serial"] == keys.merchant_serial_no
    assert auth["timestamp"] == str(int(NOW.timestamp()))
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Wechatpay-Serial"] == keys.public_key_id
    assert result.status is RefundStatus.PENDING
    assert result.raw_status == "PROCESSING"
    assert result.provider_ref == fake.refunds[KEY]["refund_id"]
    assert result.amount == Money(Decimal("25.00"), "CNY")


def test_a_tampered_signature_is_refused_by_the_fake(fake: WeChatPayFake,
                                                     keys: WeChatPayKeys) -> None:
    # The fake really checks our signature: a request signed with another merchant key (but
    # the same serial) is refused, as WeChat Pay refuses it.
    other = WeChatPayKeys.generate("intruder")
    conn = make_connector(keys, merchant_private_key=other.merchant_private_pem)

    with pytest.raises(PermanentProviderError) as info:
        conn.issue_refund(make_order())

    assert info.value.code == "SIGN_ERROR"
    assert fake.refunds == {}


def test_transaction_id_reference(fake: WeChatPayFake, keys: WeChatPayKeys) -> None:
    conn = make_connector(keys, payment_reference="transaction_id", notify_url=None)

    conn.issue_refund(make_order())

    body = json.loads(fake.posts()[-1].content)
    assert body["transaction_id"] == TRADE_NO
    assert "out_trade_no" not in body
    assert "notify_url" not in body


def test_the_same_out_refund_no_refunds_once(fake: WeChatPayFake,
                                             connector: WeChatPayConnector) -> None:
    first = connector.issue_refund(make_order())
    again = connector.issue_refund(make_order())

    assert len(fake.refunds) == 1
    assert again.provider_ref == first.provider_ref
    bodies = {r.content for r in fake.posts()}
    assert len(bodies) == 1


def test_transient_failures_are_retried_with_the_same_body(
        fake: WeChatPayFake, keys: WeChatPayKeys) -> None:
    answers: list[httpx.Response | None] = [
        fake.error(503, "SYSTEM_ERROR", "系统繁忙，请稍后重试"),
        fake.error(500, "SYSTEM_ERROR", "系统超时"),
        None,
    ]
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response | None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return answers.pop(0)

    fake.before_post.append(flaky)
    conn = make_connector(keys, retry=RetryPolicy(attempts=4, initial_wait=0, max_wait=0))

    result = conn.issue_refund(make_order())

    posts = fake.posts()
    assert len(posts) == 4
    assert {json.loads(p.content)["out_refund_no"] for p in posts} == {KEY}
    assert len({p.content for p in posts}) == 1  # byte for byte the same body
    nonces = {check_signed_by_merchant(p, keys)["nonce"] for p in posts}
    assert len(nonces) == 4  # each attempt signed afresh
    assert len(fake.refunds) == 1
    assert result.provider_ref == fake.refunds[KEY]["refund_id"]


def test_transport_errors_then_success_with_respx_side_effects(
        api: respx.MockRouter, keys: WeChatPayKeys) -> None:
    wechat = WeChatPayFake(keys, clock=NOW.timestamp)
    refund = {"refund_id": "50000000382019052709732678859", "out_refund_no": KEY,
              "status": "SUCCESS", "amount": {"refund": 2500, "total": 8000,
                                              "currency": "CNY"}}
    route = api.post(REFUNDS).mock(side_effect=[
        httpx.ConnectError("connection refused"),
        httpx.Response(503),
        wechat.error(500, "SYSTEM_ERROR", "系统超时"),
        wechat.answer(refund),
    ])
    conn = make_connector(keys, retry=RetryPolicy(attempts=4, initial_wait=0, max_wait=0))

    result = conn.issue_refund(make_order())

    assert result.status is RefundStatus.SUCCEEDED
    assert route.call_count == 4
    assert len({c.request.content for c in route.calls}) == 1
    for call in route.calls:
        check_signed_by_merchant(call.request, keys)


def test_retries_are_bounded(api: respx.MockRouter, keys: WeChatPayKeys,
                             connector: WeChatPayConnector) -> None:
    wechat = WeChatPayFake(keys, clock=NOW.timestamp)
    route = api.post(REFUNDS).mock(
        side_effect=lambda request: wechat.error(500, "SYSTEM_ERROR", "系统超时"))

    with pytest.raises(TransientProviderError, match="SYSTEM_ERROR"):
        connector.issue_refund(make_order())

    assert route.call_count == 3


def test_frequency_limited_honours_retry_after(api: respx.MockRouter,
                                               keys: WeChatPayKeys) -> None:
    wechat = WeChatPayFake(keys, clock=NOW.timestamp)
    limited = wechat.error(429, "FREQUENCY_LIMITED", "频率限制")
    limited.headers["Retry-After"] = "7"
    api.post(REFUNDS).mock(return_value=limited)
    conn = make_connector(keys, retry=RetryPolicy(attempts=1))

    with pytest.raises(TransientProviderError) as info:
        conn.issue_refund(make_order())

    assert info.value.retry_after == 7.0


@pytest.mark.parametrize(("status", "code", "message"), [
    (403, "NOT_ENOUGH", "基本账户余额不足，请充值后重新发起"),
    (400, "INVALID_REQUEST", "申请退款金额超过订单可退金额"),
    (400, "PARAM_ERROR", "参数错误"),
    (403, "USER_ACCOUNT_ABNORMAL", "退款请求失败"),
    (403, "NO_AUTH", "没有该接口权限"),
    (404, "RESOURCE_NOT_EXISTS", "订单不存在"),
    (401, "SIGN_ERROR", "签名错误"),
])
def test_refusals_are_permanent_with_wechats_words(api: respx.MockRouter,
                                                   keys: WeChatPayKeys,
                                                   connector: WeChatPayConnector,
                                                   status: int, code: str,
                                                   message: str) -> None:
    wechat = WeChatPayFake(keys, clock=NOW.timestamp)
    route = api.post(REFUNDS).mock(return_value=wechat.error(status, code, message))

    with pytest.raises(PermanentProviderError) as info:
        connector.issue_refund(make_order())

    assert info.value.code == code
    assert info.value.message == message
    assert route.call_count == 1  # never retried


@pytest.mark.parametrize(("status", "code", "expected"), [
    (500, "SYSTEM_ERROR", Retry.TRANSIENT),
    (429, "FREQUENCY_LIMITED", Retry.TRANSIENT),
    (403, "FREQUENCY_LIMITED", Retry.TRANSIENT),  # the code decides on a 4xx
    (400, "BIZ_ERR_NEED_RETRY", Retry.TRANSIENT),
    (503, None, Retry.TRANSIENT),
    (502, "SOMETHING_NEW", Retry.TRANSIENT),
    (409, None, Retry.TRANSIENT),
    (403, "NOT_ENOUGH", Retry.PERMANENT),
    (400, "INVALID_REQUEST", Retry.PERMANENT),
    (400, "PARAM_ERROR", Retry.PERMANENT),
    (403, "USER_ACCOUNT_ABNORMAL", Retry.PERMANENT),
    (401, "SIGN_ERROR", Retry.PERMANENT),
    (404, "RESOURCE_NOT_EXISTS", Retry.PERMANENT),
    (400, "SOMETHING_NEW", Retry.PERMANENT),
    (404, None, Retry.PERMANENT),
])
def test_error_classification_table(status: int, code: str | None, expected: Retry) -> None:
    assert classify(status, code) is expected


def test_every_error_code_is_classified() -> None:
    assert {"SYSTEM_ERROR", "FREQUENCY_LIMITED"} <= {
        c for c, r in ERROR_CODES.items() if r is Retry.TRANSIENT}
    assert {"NOT_ENOUGH", "INVALID_REQUEST", "PARAM_ERROR", "USER_ACCOUNT_ABNORMAL"} <= {
        c for c, r in ERROR_CODES.items() if r is Retry.PERMANENT}


def test_a_4xx_with_a_retryable_code_is_retried(api: respx.MockRouter, keys: WeChatPayKeys,
                                                connector: WeChatPayConnector) -> None:
    wechat = WeChatPayFake(keys, clock=NOW.timestamp)
    refund = {"refund_id": "50000000382019052709732678859", "out_refund_no": KEY,
              "status": "PROCESSING", "amount": {"refund": 2500, "total": 8000}}
    route = api.post(REFUNDS).mock(side_effect=[
        wechat.error(403, "BIZ_ERR_NEED_RETRY", "退款业务流程错误，需要商户触发重试来解决"),
        wechat.answer(refund),
    ])

    assert connector.issue_refund(make_order()).status is RefundStatus.PENDING
    assert route.call_count == 2


def test_an_error_that_is_not_wechats_shape(api: respx.MockRouter,
                                            connector: WeChatPayConnector) -> None:
    api.post(REFUNDS).respond(403, text="<html>Forbidden</html>")

    with pytest.raises(PermanentProviderError) as info:
        connector.issue_refund(make_order())

    assert info.value.code == "403"
    assert "Forbidden" in info.value.message


def test_only_cny_is_refunded(api: respx.MockRouter, connector: WeChatPayConnector) -> None:
    route = api.post(REFUNDS).respond(200)

    with pytest.raises(PermanentProviderError) as info:
        connector.issue_refund(make_order(currency="USD"))

    assert info.value.code == "UNSUPPORTED_CURRENCY"
    assert route.call_count == 0


def test_zero_is_never_sent(api: respx.MockRouter, connector: WeChatPayConnector) -> None:
    route = api.post(REFUNDS).respond(200)

    with pytest.raises(PermanentProviderError):
        connector.issue_refund(make_order(amount="0.00"))

    assert route.call_count == 0


@pytest.mark.parametrize("reason", list(ReasonCode))
def test_every_reason_has_a_text_wechat_accepts(reason: ReasonCode) -> None:
    assert 1 <= len(REASON_TEXT[reason]) <= 80


# ---------------------------------------------------------------- verifying answers


def _refund_json(status: str = "PROCESSING") -> dict[str, Any]:
    return {"refund_id": "50000000382019052709732678859", "out_refund_no": KEY,
            "status": status, "amount": {"refund": 2500, "total": 8000, "currency": "CNY"}}


def test_an_unsigned_refund_answer_is_not_acted_on(api: respx.MockRouter,
                                                   connector: WeChatPayConnector) -> None:
    route = api.post(REFUNDS).respond(200, json=_refund_json("SUCCESS"))

    with pytest.raises(UnverifiedRefundAnswer) as info:
        connector.issue_refund(make_order())

    # Money may have moved: never a refusal, retried under the same out_refund_no.
    assert isinstance(info.value, TransientProviderError)
    assert not isinstance(info.value, PermanentProviderError)
    assert route.call_count == 3
    assert len({c.request.content for c in route.calls}) == 1


def test_a_tampered_refund_answer_is_not_acted_on(api: respx.MockRouter, keys: WeChatPayKeys,
                                                  connector: WeChatPayConnector) -> None:
    good = WeChatPayFake(keys, clock=NOW.timestamp).answer(_refund_json("PROCESSING"))
    forged = httpx.Response(200, headers=dict(good.headers),
                            content=good.content.replace(b"PROCESSING", b"SUCCESS"))
    api.post(REFUNDS).mock(return_value=forged)

    with pytest.raises(UnverifiedRefundAnswer, match="does not verify"):
        connector.issue_refund(make_order())


def test_an_answer_signed_by_another_key_is_not_acted_on(api: respx.MockRouter,
                                                         keys: WeChatPayKeys,
                                                         connector: WeChatPayConnector
                                                         ) -> None:
    stranger = WeChatPayKeys.generate("intruder")
    impostor = WeChatPayFake(WeChatPayKeys(
        keys.mchid, keys.merchant_serial_no, keys.merchant_key, stranger.platform_key,
        keys.apiv3_key, keys.public_key_id), clock=NOW.timestamp)
    api.post(REFUNDS).mock(return_value=impostor.answer(_refund_json()))

    with pytest.raises(UnverifiedRefundAnswer):
        connector.issue_refund(make_order())


def test_a_stale_answer_is_not_acted_on(api: respx.MockRouter, keys: WeChatPayKeys,
                                        connector: WeChatPayConnector) -> None:
    old = WeChatPayFake(keys, clock=(NOW - timedelta(minutes=10)).timestamp)
    api.post(REFUNDS).mock(return_value=old.answer(_refund_json()))

    with pytest.raises(UnverifiedRefundAnswer, match="away from now"):
        connector.issue_refund(make_order())


def test_an_unverified_status_is_a_permanent_read_error(api: respx.MockRouter,
                                                        connector: WeChatPayConnector
                                                        ) -> None:
    # Reading is not paying: the case waits for a person, its refund key stays open.
    api.get(f"{REFUNDS}/{KEY}").respond(200, json=_refund_json("SUCCESS"))

    with pytest.raises(PermanentProviderError) as info:
        connector.refund_status("50000000382019052709732678859", make_order())

    assert info.value.code == "UNVERIFIED_RESPONSE"


def test_a_signed_answer_that_is_not_a_refund(api: respx.MockRouter, keys: WeChatPayKeys,
                                              connector: WeChatPayConnector) -> None:
    wechat = WeChatPayFake(keys, clock=NOW.timestamp)
    api.post(REFUNDS).mock(return_value=wechat.answer({"refund_id": "5000"}))

    with pytest.raises(UnverifiedRefundAnswer, match="out_refund_no"):
        connector.issue_refund(make_order())


# ---------------------------------------------------------------- status and lookup


@pytest.mark.parametrize(("raw", "expected"), [
    ("SUCCESS", RefundStatus.SUCCEEDED),
    ("PROCESSING", RefundStatus.PENDING),
    ("CLOSED", RefundStatus.FAILED),
    ("ABNORMAL", RefundStatus.FAILED),
    ("REFUNDCLOSE", RefundStatus.UNKNOWN),
    ("", RefundStatus.UNKNOWN),
])
def test_status_map(raw: str, expected: RefundStatus) -> None:
    result = to_refund_result(WeChatRefund.model_validate(_refund_json(raw)))

    assert result.status is expected
    assert result.raw_status == raw


def test_status_map_covers_every_documented_status() -> None:
    assert set(STATUS_MAP) == {"SUCCESS", "PROCESSING", "CLOSED", "ABNORMAL"}


def test_abnormal_says_a_person_must_act() -> None:
    result = to_refund_result(WeChatRefund.model_validate(_refund_json("ABNORMAL")))

    assert result.message is not None and "by hand" in result.message


def test_refund_status_queries_by_out_refund_no(fake: WeChatPayFake, keys: WeChatPayKeys,
                                                connector: WeChatPayConnector) -> None:
    issued = connector.issue_refund(make_order())
    fake.settle(KEY, "SUCCESS")

    assert issued.provider_ref is not None
    result = connector.refund_status(issued.provider_ref, make_order())

    request = fake.requests[-1]
    assert request.method == "GET"
    assert request.url == f"{BASE}{REFUNDS}/{KEY}"
    assert request.content == b""
    check_signed_by_merchant(request, keys)
    assert result.status is RefundStatus.SUCCEEDED
    assert result.provider_ref == issued.provider_ref


def test_find_refund(fake: WeChatPayFake, connector: WeChatPayConnector) -> None:
    assert connector.find_refund(make_order()) is None

    connector.issue_refund(make_order())
    found = connector.find_refund(make_order())

    assert found is not None
    assert found.provider_ref == fake.refunds[KEY]["refund_id"]


def test_find_refund_does_not_mistake_any_404_for_none(api: respx.MockRouter,
                                                       connector: WeChatPayConnector) -> None:
    api.get(f"{REFUNDS}/{KEY}").respond(404, text="Not Found")

    with pytest.raises(PermanentProviderError):
        connector.find_refund(make_order())


# ---------------------------------------------------------------- notifications


def sdk(keys: WeChatPayKeys, cert_dir: Path | None = None) -> WeChatPay:
    """The official SDK, offline: public-key mode, or certificates from a directory."""
    common: dict[str, Any] = dict(
        wechatpay_type=WeChatPayType.NATIVE, mchid=keys.mchid,
        private_key=keys.merchant_private_pem, cert_serial_no=keys.merchant_serial_no,
        appid="wxd678efh567hg6787", apiv3_key=keys.apiv3_key)
    if cert_dir is not None:
        return WeChatPay(cert_dir=str(cert_dir), **common)
    return WeChatPay(public_key=keys.platform_public_pem, public_key_id=keys.public_key_id,
                     **common)


def resource(keys: WeChatPayKeys, status: str = "SUCCESS", **changes: Any) -> dict[str, Any]:
    body = {
        "mchid": keys.mchid, "out_trade_no": TRADE_NO,
        "transaction_id": "4200000000202407011234567890",
        "out_refund_no": KEY, "refund_id": "50000000382019052709732678859",
        "refund_status": status, "success_time": "2024-07-01T20:00:05+08:00",
        "user_received_account": "招商银行信用卡0403",
        "amount": {"total": 8000, "refund": 2500, "payer_total": 8000, "payer_refund": 2500},
    }
    body.update(changes)
    return body


def at(moment: datetime) -> int:
    return int(moment.timestamp())


@pytest.mark.parametrize(("event_type", "status", "expected"), [
    ("REFUND.SUCCESS", "SUCCESS", RefundStatus.SUCCEEDED),
    ("REFUND.ABNORMAL", "ABNORMAL", RefundStatus.FAILED),
    ("REFUND.CLOSED", "CLOSED", RefundStatus.FAILED),
])
def test_refund_notification(keys: WeChatPayKeys, connector: WeChatPayConnector,
                             event_type: str, status: str, expected: RefundStatus) -> None:
    headers, body, sent = keys.notification(resource(keys, status), event_type=event_type,
                                            timestamp=at(NOW), event_id="EV-2018022511223320873")

    # The official SDK accepts it: it verifies and decrypts to the very resource we read.
    accepted = sdk(keys).callback(headers, body)
    assert accepted is not None
    assert accepted["resource"] == sent
    assert accepted["event_type"] == event_type

    update = connector.parse_webhook(headers, body, NOW)

    assert isinstance(update, RefundUpdate)
    assert update.idempotency_key == sent["out_refund_no"] == KEY
    assert update.result.provider_ref == sent["refund_id"]
    assert update.result.raw_status == sent["refund_status"]
    assert update.result.status is expected
    assert update.result.amount == Money.from_minor(sent["amount"]["refund"], "CNY")
    assert update.event_id == "EV-2018022511223320873"


def test_certificate_mode_notification(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    keys = WeChatPayKeys.generate("certs", certificate_mode=True, now=now)
    (tmp_path / f"{keys.platform_serial}.pem").write_text(keys.certificate_pem)
    headers, body, sent = keys.notification(resource(keys), timestamp=at(now))
    assert headers["Wechatpay-Serial"] == keys.platform_serial
    assert not headers["Wechatpay-Serial"].startswith("PUB_KEY_ID_")

    accepted = sdk(keys, cert_dir=tmp_path).callback(headers, body)
    assert accepted is not None and accepted["resource"] == sent

    conn = make_connector(keys, now=now)
    assert conn.platform.public_key is None
    update = conn.parse_webhook(headers, body, now)
    assert isinstance(update, RefundUpdate)
    assert update.result.status is RefundStatus.SUCCEEDED
    # Serials are hex: case and leading zeros do not matter.
    lower = {**headers, "Wechatpay-Serial": "00" + keys.platform_serial.lower()}
    assert isinstance(conn.parse_webhook(lower, body, now), RefundUpdate)


def test_certificate_outside_its_validity_is_refused() -> None:
    now = datetime.now(UTC)
    keys = WeChatPayKeys.generate("certs", certificate_mode=True, now=now)
    later = now + timedelta(days=365 * 6)
    headers, body, _ = keys.notification(resource(keys), timestamp=at(later))
    conn = make_connector(keys, now=later)

    with pytest.raises(WebhookRejected, match="not valid"):
        conn.parse_webhook(headers, body, later)


def test_both_modes_at_once_accept_either_signer(keys: WeChatPayKeys) -> None:
    now = datetime.now(UTC)
    certs = WeChatPayKeys.generate("certs", certificate_mode=True, now=now)
    conn = make_connector(keys, now=now, platform_certificates=[certs.certificate_pem])
    by_cert = WeChatPayKeys(keys.mchid, keys.merchant_serial_no, keys.merchant_key,
                            certs.platform_key, keys.apiv3_key, keys.public_key_id,
                            certs.certificate)

    for signer in (keys, by_cert):
        headers, body, _ = signer.notification(resource(keys), timestamp=at(now))
        assert isinstance(conn.parse_webhook(headers, body, now), RefundUpdate)


def test_fake_notification_round_trip(fake: WeChatPayFake, keys: WeChatPayKeys,
                                      connector: WeChatPayConnector) -> None:
    issued = connector.issue_refund(make_order())
    headers, body = fake.notification_for(KEY, "SUCCESS")

    assert sdk(keys).callback(headers, body) is not None
    update = connector.parse_webhook(headers, body, NOW)
    assert isinstance(update, RefundUpdate)
    assert update.result.provider_ref == issued.provider_ref
    assert update.result.status is RefundStatus.SUCCEEDED


def test_header_names_are_case_insensitive(keys: WeChatPayKeys,
                                           connector: WeChatPayConnector) -> None:
    headers, body, _ = keys.notification(resource(keys), timestamp=at(NOW))
    lowered = {k.lower(): v for k, v in headers.items()}

    assert isinstance(connector.parse_webhook(lowered, body, NOW), RefundUpdate)


def test_tampered_body_is_rejected(keys: WeChatPayKeys, connector: WeChatPayConnector) -> None:
    headers, body, _ = keys.notification(resource(keys), timestamp=at(NOW))
    tampered = body.replace(b"REFUND.SUCCESS", b"REFUND.CLOSED")

    assert sdk(keys).callback(headers, tampered) is None  # the SDK agrees
    with pytest.raises(WebhookRejected) as info:
        connector.parse_webhook(headers, tampered, NOW)
    assert isinstance(info.value.__cause__.__cause__, InvalidSignature)  # type: ignore[union-attr]


def test_wrong_serial_is_rejected(keys: WeChatPayKeys, connector: WeChatPayConnector) -> None:
    headers, body, _ = keys.notification(resource(keys), timestamp=at(NOW))
    headers["Wechatpay-Serial"] = "PUB_KEY_ID_0114232134912410000000000000000000"

    with pytest.raises(WebhookRejected, match="no platform key"):
        connector.parse_webhook(headers, body, NOW)


def test_signature_by_another_key_is_rejected(keys: WeChatPayKeys,
                                              connector: WeChatPayConnector) -> None:
    stranger = WeChatPayKeys.generate("intruder")
    impostor = WeChatPayKeys(keys.mchid, keys.merchant_serial_no, keys.merchant_key,
                             stranger.platform_key, keys.apiv3_key, keys.public_key_id)
    headers, body, _ = impostor.notification(resource(keys), timestamp=at(NOW))

    with pytest.raises(WebhookRejected, match="does not verify"):
        connector.parse_webhook(headers, body, NOW)


def test_signature_probe_is_rejected(keys: WeChatPayKeys, connector: WeChatPayConnector) -> None:
    # WeChat Pay sends deliberately bad signatures to check that merchants verify.
    headers, body, _ = keys.notification(resource(keys), timestamp=at(NOW))
    headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"]

    with pytest.raises(WebhookRejected):
        connector.parse_webhook(headers, body, NOW)


@pytest.mark.parametrize("missing", ["Wechatpay-Timestamp", "Wechatpay-Nonce",
                                     "Wechatpay-Signature", "Wechatpay-Serial"])
def test_missing_header_is_rejected(keys: WeChatPayKeys, connector: WeChatPayConnector,
                                    missing: str) -> None:
    headers, body, _ = keys.notification(resource(keys), timestamp=at(NOW))
    del headers[missing]

    with pytest.raises(WebhookRejected, match=missing):
        connector.parse_webhook(headers, body, NOW)


def test_unknown_signature_type_is_rejected(keys: WeChatPayKeys,
                                            connector: WeChatPayConnector) -> None:
    headers, body, _ = keys.notification(resource(keys), timestamp=at(NOW))
    headers["Wechatpay-Signature-Type"] = "WECHATPAY2-SM2-WITH-SM3"

    with pytest.raises(WebhookRejected, match="Signature-Type"):
        connector.parse_webhook(headers, body, NOW)


@pytest.mark.parametrize("offset", [timedelta(seconds=-301), timedelta(hours=-2)])
def test_stale_notification_is_rejected(keys: WeChatPayKeys, connector: WeChatPayConnector,
                                        offset: timedelta) -> None:
    headers, body, _ = keys.notification(resource(keys), timestamp=at(NOW + offset))

    with pytest.raises(WebhookRejected, match="ago"):
        connector.parse_webhook(headers, body, NOW)


@pytest.mark.parametrize("offset", [timedelta(seconds=301), timedelta(days=1)])
def test_future_notification_is_rejected(keys: WeChatPayKeys, connector: WeChatPayConnector,
                                         offset: timedelta) -> None:
    headers, body, _ = keys.notification(resource(keys), timestamp=at(NOW + offset))

    with pytest.raises(WebhookRejected, match="future"):
        connector.parse_webhook(headers, body, NOW)


@pytest.mark.parametrize("offset", [timedelta(seconds=-300), timedelta(seconds=300)])
def test_notification_at_the_tolerance_edge_is_accepted(keys: WeChatPayKeys,
                                                        connector: WeChatPayConnector,
                                                        offset: timedelta) -> None:
    headers, body, _ = keys.notification(resource(keys), timestamp=at(NOW + offset))

    assert isinstance(connector.parse_webhook(headers, body, NOW), RefundUpdate)


def test_other_event_types_are_ignored(keys: WeChatPayKeys,
                                       connector: WeChatPayConnector) -> None:
    headers, body, _ = keys.notification({"out_trade_no": TRADE_NO},
                                         event_type="TRANSACTION.SUCCESS", timestamp=at(NOW))

    outcome = connector.parse_webhook(headers, body, NOW)

    assert isinstance(outcome, Ignored)
    assert "TRANSACTION.SUCCESS" in outcome.reason


def test_resource_sealed_with_another_apiv3_key_is_rejected(keys: WeChatPayKeys,
                                                            connector: WeChatPayConnector
                                                            ) -> None:
    other = WeChatPayKeys(keys.mchid, keys.merchant_serial_no, keys.merchant_key,
                          keys.platform_key, "0123456789abcdef0123456789abcdef",
                          keys.public_key_id)
    headers, body, _ = other.notification(resource(keys), timestamp=at(NOW))

    assert sdk(keys).callback(headers, body) is None  # the SDK cannot decrypt it either
    with pytest.raises(WebhookRejected, match="decrypt"):
        connector.parse_webhook(headers, body, NOW)


def test_notification_for_another_merchant_is_rejected(keys: WeChatPayKeys,
                                                       connector: WeChatPayConnector) -> None:
    headers, body, _ = keys.notification(resource(keys, mchid="1900000999"),
                                         timestamp=at(NOW))

    with pytest.raises(WebhookRejected, match="1900000999"):
        connector.parse_webhook(headers, body, NOW)


def test_signed_body_that_is_not_a_notification_names_the_field(
        keys: WeChatPayKeys, connector: WeChatPayConnector) -> None:
    body = json.dumps({"id": "EV-1", "create_time": "2024-07-01T20:00:00+08:00",
                       "event_type": "REFUND.SUCCESS"}).encode()

    with pytest.raises(InvalidRequest) as info:
        connector.parse_webhook(keys.sign_headers(body, at(NOW)), body, NOW)

    assert info.value.field == "resource"


def test_resource_without_out_refund_no_names_the_field(keys: WeChatPayKeys,
                                                        connector: WeChatPayConnector
                                                        ) -> None:
    sent = resource(keys)
    del sent["out_refund_no"]
    headers, body, _ = keys.notification(sent, timestamp=at(NOW))

    with pytest.raises(InvalidRequest) as info:
        connector.parse_webhook(headers, body, NOW)

    assert info.value.field == "resource.out_refund_no"


def test_signed_body_that_is_not_json(keys: WeChatPayKeys,
                                      connector: WeChatPayConnector) -> None:
    body = b"not json at all"

    with pytest.raises(InvalidRequest) as info:
        connector.parse_webhook(keys.sign_headers(body, at(NOW)), body, NOW)

    assert info.value.field == "body"


# ---------------------------------------------------------------- the connector itself


def test_declares_payment_flows_and_nothing_else(connector: WeChatPayConnector) -> None:
    assert connector.roles == frozenset({Role.PAYMENT})
    assert connector.capabilities == frozenset({
        Capability.ISSUE_REFUND, Capability.REFUND_STATUS, Capability.REFUND_NOTIFICATIONS})
    with pytest.raises(NotSupported) as info:
        connector.lookup_order("1001")
    assert info.value.flow == Capability.LOOKUP_ORDER.value
    assert "wechatpay" in str(info.value)
    with pytest.raises(NotSupported):
        connector.write_back(StatusUpdate(CASE_ID, "1001", "ext-1", StatusOutcome.APPROVED))
    with pytest.raises(NotSupported):
        connector.shipped_units("1001")


def test_registered_through_the_entry_point() -> None:
    assert ConnectorRegistry.discover().load("wechatpay") is WeChatPayConnector


def test_nothing_is_opened_until_used(keys: WeChatPayKeys) -> None:
    conn = make_connector(keys)

    assert conn._client is None
    conn.close()


def _config_error(keys: WeChatPayKeys, **config: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        make_connector(keys, **config)
    return info.value


@pytest.mark.parametrize(("config", "key"), [
    ({"apiv3_key": "a-key-of-31-bytes-0123456789abc"}, "apiv3_key"),
    ({"apiv3_key": "密钥" * 6}, "apiv3_key"),  # 36 bytes in UTF-8, 12 characters
    ({"merchant_private_key": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"},
     "merchant_private_key"),
    ({"platform_public_key": "not a key"}, "platform_public_key"),
    ({"platform_public_key_id": None}, "platform_public_key_id"),
    ({"platform_public_key_id": "0114232134912410"}, "platform_public_key_id"),
    ({"platform_public_key": None, "platform_public_key_id": None}, "platform_certificates"),
    ({"platform_certificates": ["-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----"]},
     "platform_certificates"),
    ({"notify_url": "http://refunds.acme-medical.cn/wechatpay"}, "notify_url"),
    ({"notify_url": "https://refunds.acme-medical.cn/wechatpay?shop=acme"}, "notify_url"),
    ({"mchid": "mch-1900"}, "mchid"),
])
def test_bad_settings_are_refused_naming_the_key(keys: WeChatPayKeys, config: dict[str, Any],
                                                 key: str) -> None:
    error = _config_error(keys, **config)

    assert error.key == f"shops.s1.wechatpay.{key}"


def test_a_bare_base64_merchant_key_is_accepted_and_kept_as_pem(
        fake: WeChatPayFake, keys: WeChatPayKeys) -> None:
    bare = "".join(line for line in keys.merchant_private_pem.splitlines()
                   if "-----" not in line)
    conn = make_connector(keys, merchant_private_key=bare)

    assert conn.settings.merchant_private_key.get_secret_value().startswith(
        "-----BEGIN PRIVATE KEY-----")
    conn.issue_refund(make_order())
    check_signed_by_merchant(fake.posts()[-1], keys)


def test_a_platform_key_shorter_than_2048_bits_is_refused(keys: WeChatPayKeys) -> None:
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    pem = short.public_bytes(serialization.Encoding.PEM,
                             serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    error = _config_error(keys, platform_public_key=pem)

    assert error.key == "shops.s1.wechatpay.platform_public_key"
    assert "2048" in str(error)


def test_placeholder_apiv3_key_is_refused(keys: WeChatPayKeys) -> None:
    error = _config_error(keys, apiv3_key="changeme-changeme-changeme-12345")

    assert error.key == "shops.s1.wechatpay.apiv3_key"
    assert "placeholder" in str(error)


def test_secrets_are_not_shown(keys: WeChatPayKeys, connector: WeChatPayConnector) -> None:
    shown = repr(connector.settings)

    assert keys.apiv3_key not in shown
    assert "PRIVATE KEY" not in shown
