"""Alipay connector against Alipay's wire format: a respx fake of the OpenAPI gateway that
checks our RSA2 signature and signs its answers, and the official `python-alipay-sdk` to
prove both directions of the signature protocol. No network, no sleeps."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from alipay import AliPay
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from refundbridge.connectors.alipay import AlipayConnector
from refundbridge.connectors.alipay.transformers import (
    PERMANENT_SUB_CODES,
    REASON_TEXT,
    TRANSIENT_SUB_CODES,
    Verdict,
    classify,
    map_status,
    reference_field,
)
from refundbridge.connectors.base import ConnectorContext, RetryPolicy, is_placeholder
from refundbridge.connectors.registry import ConnectorRegistry, check_connector_class
from refundbridge.connectors.testing import Delivery, PaymentContract, WebhookContract
from refundbridge.core.errors import (
    ConfigError,
    ConnectorError,
    InvalidRequest,
    NotSupported,
    PermanentProviderError,
    TransientProviderError,
    WebhookRejected,
)
from refundbridge.core.model import RefundStatus, new_case_id
from refundbridge.core.money import Money
from refundbridge.core.ports import (
    Capability,
    Ignored,
    RefundOrder,
    RefundUpdate,
    Role,
    StatusOutcome,
    StatusUpdate,
    WebhookAck,
)
from refundbridge.core.request import ReasonCode
from tests.connectors.helpers import CASE_ID, FAST, KEY, ContractFixtures, in_turn
from tests.fakes.alipay import APP_ID, GATEWAY, QUERY, REFUND, AlipayFake, AlipayKeys
from tests.fakes.common import installed

OUT_TRADE_NO = "ACME-20240701-0042"
NOW = datetime(2024, 7, 1, 4, 30, 5, tzinfo=UTC)  # 12:30:05 in Beijing
PUBLIC_PARAMS = {"app_id", "method", "charset", "sign_type", "timestamp", "version",
                 "biz_content", "sign"}


@cache
def keys() -> AlipayKeys:
    # Generated once per test run, never at import.
    return AlipayKeys.generate()


@cache
def other_keys() -> AlipayKeys:
    return AlipayKeys.generate()


def make_order(amount: str = "25.00", currency: str = "CNY", reference: str = OUT_TRADE_NO,
               key: str = KEY) -> RefundOrder:
    return RefundOrder(
        case_id=CASE_ID, attempt=1, idempotency_key=key,
        amount=Money.parse(amount, currency), payment_reference=reference, order_id="1001",
        reason=ReasonCode.DEFECTIVE, paid_total=Money.parse("80.00", currency),
    )


def settings(**changes: Any) -> dict[str, Any]:
    return {"app_id": APP_ID, "app_private_key": keys().app_private,
            "alipay_public_key": keys().platform_public, **changes}


def make_connector(retry: RetryPolicy = FAST, **changes: Any) -> AlipayConnector:
    ctx = ConnectorContext(shop_id="s1", retry=retry, clock=lambda: NOW)
    return AlipayConnector.from_config(settings(**changes), ctx)


@pytest.fixture
def fake() -> Iterator[AlipayFake]:
    gateway = AlipayFake(keys())
    gateway.add_trade(OUT_TRADE_NO, "80.00", trade_no="2024070122001455661412345678")
    with installed(gateway):
        yield gateway


@pytest.fixture
def connector() -> Iterator[AlipayConnector]:
    conn = make_connector()
    yield conn
    conn.close()


def params_of(request: httpx.Request) -> dict[str, str]:
    """Everything a call carries: public parameters in the query, biz_content in the form."""
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded;charset=utf-8"
    form = dict(parse_qsl(request.content.decode("ascii")))
    assert set(form) == {"biz_content"}
    return {**dict(request.url.params), **form}


def answering(*responses: httpx.Response | Exception
              ) -> Callable[[httpx.Request], httpx.Response | None]:
    """A before_call hook that answers with each of `responses` in turn, then lets the fake
    answer."""
    next_answer = in_turn(*responses)
    return lambda request: next_answer()


# ---------------------------------------------------------------- the request


def test_refund_request_is_signed_as_the_official_sdk_signs(
        fake: AlipayFake, connector: AlipayConnector) -> None:
    result = connector.issue_refund(make_order())

    assert len(fake.requests) == 1
    request = fake.requests[0]
    assert request.method == "POST"
    assert str(request.url).startswith(GATEWAY + "?")
    params = params_of(request)
    assert set(params) == PUBLIC_PARAMS
    assert params["app_id"] == APP_ID
    assert params["method"] == "alipay.trade.refund"
    assert params["charset"] == "utf-8"
    assert params["sign_type"] == "RSA2"
    assert params["version"] == "1.0"
    assert params["timestamp"] == "2024-07-01 12:30:05"  # Beijing time
    assert json.loads(params["biz_content"]) == {
        "out_trade_no": OUT_TRADE_NO,
        "refund_amount": "25.00",
        "out_request_no": KEY,
        "refund_reason": REASON_TEXT[ReasonCode.DEFECTIVE],
    }
    # PKCS#1 v1.5 is deterministic: the SDK, signing the same parameters with the app key,
    # must produce our very signature, so our sign base is the SDK's.
    sdk = AliPay(appid=APP_ID, app_private_key_string=keys().app_private,
                 alipay_public_key_string=keys().app_public)
    unsigned = {k: v for k, v in params.items() if k != "sign"}
    sdk_signed = dict(parse_qsl(sdk.sign_data(dict(unsigned))))
    assert sdk_signed["sign"] == params["sign"]
    # And the SDK, holding our app public key as "alipay_public_key", verifies it.
    sdk_base = "&".join(f"{k}={v}" for k, v in sorted(unsigned.items()))
    assert sdk._verify(sdk_base, params["sign"])
    assert result.status is RefundStatus.SUCCEEDED
    assert result.provider_ref == KEY
    assert result.amount == Money(Decimal("25.00"), "CNY")
    assert fake.paid()[0]["refund_amount"] == "25.00"


def test_a_request_signed_with_another_key_is_refused_by_the_gateway(
        fake: AlipayFake) -> None:
    conn = make_connector(app_private_key=other_keys().app_private)

    with pytest.raises(PermanentProviderError) as info:
        conn.issue_refund(make_order())

    assert info.value.code == "isv.invalid-signature"
    assert fake.paid() == []


def test_alipay_trade_number_is_sent_as_trade_no(fake: AlipayFake,
                                                 connector: AlipayConnector) -> None:
    connector.issue_refund(make_order(reference="2024070122001455661412345678"))

    biz = json.loads(params_of(fake.requests[0])["biz_content"])
    assert biz["trade_no"] == "2024070122001455661412345678"
    assert "out_trade_no" not in biz
    assert len(fake.paid()) == 1


@pytest.mark.parametrize(("reference", "kind", "expected"), [
    ("2024070122001455661412345678", "auto", "trade_no"),
    ("ACME-20240701-0042", "auto", "out_trade_no"),
    ("20150320010101001", "auto", "out_trade_no"),  # 17 digits: a shop's number
    ("2024070122001455661412345678", "out_trade_no", "out_trade_no"),
    ("ACME-1", "trade_no", "trade_no"),
])
def test_reference_field(reference: str, kind: Any, expected: str) -> None:
    assert reference_field(reference, kind) == expected


def test_the_idempotency_key_format_fits_out_request_no(fake: AlipayFake) -> None:
    # Alipay's out_request_no holds at most 64 characters; ours is "<case id>-refund-<n>".
    key = f"{new_case_id()}-refund-999999"
    assert len(key) <= 64
    conn = make_connector()

    assert conn.issue_refund(make_order(key=key)).status is RefundStatus.SUCCEEDED
    assert fake.request_numbers() == [key]


def test_a_key_alipay_cannot_take_is_refused_before_any_call(
        fake: AlipayFake, connector: AlipayConnector) -> None:
    with pytest.raises(InvalidRequest) as info:
        connector.issue_refund(make_order(key="x" * 65))

    assert info.value.field == "idempotency_key"
    assert fake.requests == []


def test_non_cny_is_refused_without_a_call(fake: AlipayFake,
                                          connector: AlipayConnector) -> None:
    with pytest.raises(PermanentProviderError) as info:
        connector.issue_refund(make_order(currency="USD"))

    assert info.value.code == "unsupported_currency"
    assert fake.requests == []


def test_zero_is_never_sent(fake: AlipayFake, connector: AlipayConnector) -> None:
    with pytest.raises(InvalidRequest) as info:
        connector.issue_refund(make_order(amount="0.00"))

    assert info.value.field == "amount"
    assert fake.requests == []


def test_every_reason_has_a_text() -> None:
    assert set(REASON_TEXT) == set(ReasonCode)
    assert all(0 < len(text) <= 256 for text in REASON_TEXT.values())


# ---------------------------------------------------------------- exactly once


def test_a_replayed_number_pays_once_and_reads_the_first_refund(
        fake: AlipayFake, connector: AlipayConnector) -> None:
    first = connector.issue_refund(make_order())
    again = connector.issue_refund(make_order())

    assert len(fake.paid()) == 1
    assert first.status is again.status is RefundStatus.SUCCEEDED
    # The replay's fund_change "N" is settled by the refund query, as Alipay advises.
    assert [c["method"] for c in fake.calls] == [REFUND, REFUND, QUERY]
    assert again.provider_ref == KEY
    assert again.amount == Money(Decimal("25.00"), "CNY")


def test_transient_failures_are_retried_with_the_same_out_request_no(
        fake: AlipayFake) -> None:
    fake.before_call.append(answering(
        httpx.ConnectError("connection refused"),
        httpx.Response(503, text="<html>Service Unavailable</html>"),
        fake.answer(REFUND, {"code": "20000", "msg": "Service Currently Unavailable",
                             "sub_code": "isp.unknow-error", "sub_msg": "系统繁忙"}),
        fake.answer(REFUND, {"code": "40004", "msg": "Business Failed",
                             "sub_code": "ACQ.SYSTEM_ERROR", "sub_msg": "系统错误"}),
    ))
    conn = make_connector(RetryPolicy(attempts=5, initial_wait=0, max_wait=0))

    result = conn.issue_refund(make_order())

    assert result.status is RefundStatus.SUCCEEDED
    assert len(fake.requests) == 5
    # One signed request, sent five times: same number, same timestamp, same signature.
    assert len({str(r.url) for r in fake.requests}) == 1
    assert len({r.content for r in fake.requests}) == 1
    numbers = {json.loads(params_of(r)["biz_content"])["out_request_no"] for r in fake.requests}
    assert numbers == {KEY}
    assert len(fake.paid()) == 1


def test_retries_are_bounded(fake: AlipayFake, connector: AlipayConnector) -> None:
    busy = {"code": "20000", "msg": "Service Currently Unavailable",
            "sub_code": "isp.unknow-error", "sub_msg": "系统繁忙"}
    fake.before_call.append(lambda request: fake.answer(REFUND, busy))

    with pytest.raises(TransientProviderError) as info:
        connector.issue_refund(make_order())

    assert "系统繁忙" in info.value.message
    assert len(fake.requests) == 3


# ---------------------------------------------------------------- refusals


def test_unknown_trade_is_a_permanent_refusal(fake: AlipayFake,
                                              connector: AlipayConnector) -> None:
    with pytest.raises(PermanentProviderError) as info:
        connector.issue_refund(make_order(reference="NO-SUCH-ORDER"))

    assert info.value.code == "ACQ.TRADE_NOT_EXIST"
    assert "交易不存在" in info.value.message
    assert len(fake.requests) == 1


def test_refunding_more_than_is_left_is_refused(fake: AlipayFake,
                                                connector: AlipayConnector) -> None:
    connector.issue_refund(make_order(amount="60.00"))

    with pytest.raises(PermanentProviderError) as info:
        connector.issue_refund(make_order(amount="30.00", key=f"{CASE_ID}-refund-2"))

    assert info.value.code == "ACQ.REASON_TRADE_REFUND_FEE_ERR"
    assert len(fake.paid()) == 1


def test_the_same_number_with_another_amount_is_refused(
        fake: AlipayFake, connector: AlipayConnector) -> None:
    connector.issue_refund(make_order(amount="25.00"))

    with pytest.raises(PermanentProviderError) as info:
        connector.issue_refund(make_order(amount="26.00"))

    assert info.value.code == "ACQ.DISCORDANT_REPEAT_REQUEST"
    assert len(fake.paid()) == 1


def test_balance_refusal_carries_alipays_words(fake: AlipayFake,
                                               connector: AlipayConnector) -> None:
    fake.before_call.append(lambda request: fake.answer(REFUND, {
        "code": "40004", "msg": "Business Failed", "sub_code": "ACQ.SELLER_BALANCE_NOT_ENOUGH",
        "sub_msg": "卖家余额不足", "refund_fee": "0.00", "send_back_fee": "0.00"}))

    with pytest.raises(PermanentProviderError) as info:
        connector.issue_refund(make_order())

    assert info.value.message == "卖家余额不足 (ACQ.SELLER_BALANCE_NOT_ENOUGH)"
    assert info.value.code == "ACQ.SELLER_BALANCE_NOT_ENOUGH"
    assert len(fake.requests) == 1


def test_an_unsigned_gateway_refusal_is_still_a_refusal(fake: AlipayFake) -> None:
    conn = make_connector(app_id="2021000000000000")

    with pytest.raises(PermanentProviderError) as info:
        conn.issue_refund(make_order())

    assert info.value.code == "isv.invalid-app-id"
    assert len(fake.requests) == 1


@pytest.mark.parametrize(("code", "sub_code", "expected"), [
    ("10000", None, Verdict.SUCCESS),
    ("20000", "isp.unknow-error", Verdict.TRANSIENT),
    ("20000", None, Verdict.TRANSIENT),
    ("40004", "ACQ.SYSTEM_ERROR", Verdict.TRANSIENT),
    ("40004", "AQC.SYSTEM_ERROR", Verdict.TRANSIENT),
    ("40004", "ACQ.REFUND_CHARGE_ERROR", Verdict.TRANSIENT),
    ("40004", "ACQ.TRADE_NOT_EXIST", Verdict.PERMANENT),
    ("40004", "ACQ.SELLER_BALANCE_NOT_ENOUGH", Verdict.PERMANENT),
    ("40004", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", Verdict.PERMANENT),
    ("40004", "ACQ.REASON_TRADE_REFUND_FEE_ERR", Verdict.PERMANENT),
    ("40004", "ACQ.DISCORDANT_REPEAT_REQUEST", Verdict.PERMANENT),
    ("40004", "ACQ.TRADE_HAS_FINISHED", Verdict.PERMANENT),
    ("40004", "ACQ.SOMETHING_NEW", Verdict.PERMANENT),  # 40004 is a business "no"
    ("20001", "aop.invalid-auth-token", Verdict.PERMANENT),
    ("40001", "isv.missing-signature", Verdict.PERMANENT),
    ("40002", "isv.invalid-signature", Verdict.PERMANENT),
    ("40006", "isv.insufficient-isv-permissions", Verdict.PERMANENT),
    ("50000", None, Verdict.TRANSIENT),  # undocumented: asking again is the safe side
    (None, None, Verdict.TRANSIENT),
])
def test_answer_classification(code: str | None, sub_code: str | None,
                               expected: Verdict) -> None:
    assert classify(code, sub_code) is expected


def test_listed_sub_codes_are_classified_as_listed() -> None:
    assert not TRANSIENT_SUB_CODES & PERMANENT_SUB_CODES
    assert {classify("40004", s) for s in PERMANENT_SUB_CODES} == {Verdict.PERMANENT}
    assert {classify("40004", s) for s in TRANSIENT_SUB_CODES} == {Verdict.TRANSIENT}


# ---------------------------------------------------------------- answer signatures

SUCCESS = {"code": "10000", "msg": "Success", "trade_no": "2024070122001455661412345678",
           "out_trade_no": OUT_TRADE_NO, "buyer_logon_id": "159****5620", "fund_change": "Y",
           "refund_fee": "25.00", "gmt_refund_pay": "2024-07-01 12:30:06"}


def test_answer_signed_by_another_key_is_not_taken_as_paid(
        fake: AlipayFake, connector: AlipayConnector) -> None:
    text = json.dumps(SUCCESS, separators=(",", ":"))
    forged = base64.b64encode(b"\x00" * 256).decode()
    fake.before_call.append(lambda request: fake.answer(REFUND, raw_inner=text, sign=forged))

    with pytest.raises(ConnectorError) as info:
        connector.issue_refund(make_order())

    # Not "permanent" (which reads as "no money moved") and not retried: we cannot tell.
    assert type(info.value) is ConnectorError
    assert "signature" in info.value.message
    assert len(fake.requests) == 1


def test_a_tampered_answer_does_not_verify(fake: AlipayFake,
                                           connector: AlipayConnector) -> None:
    genuine = fake.answer(REFUND, dict(SUCCESS, fund_change="N")).content
    tampered = genuine.replace(b'"fund_change":"N"', b'"fund_change":"Y"')
    assert tampered != genuine
    fake.before_call.append(lambda request: httpx.Response(200, content=tampered))

    with pytest.raises(ConnectorError) as info:
        connector.issue_refund(make_order())

    assert not isinstance(info.value, PermanentProviderError | TransientProviderError)


def test_an_unsigned_success_is_not_believed(fake: AlipayFake,
                                             connector: AlipayConnector) -> None:
    fake.before_call.append(lambda request: fake.answer(REFUND, SUCCESS, signed=False))

    with pytest.raises(ConnectorError) as info:
        connector.issue_refund(make_order())

    assert "not signed" in info.value.message


def test_bad_signature_on_a_query_is_a_permanent_error(fake: AlipayFake,
                                                       connector: AlipayConnector) -> None:
    other = AlipayFake(other_keys())  # signs with a platform key that is not configured
    fake.before_call.append(lambda request: other.answer(QUERY, {"code": "10000",
                                                                  "msg": "Success"}))

    with pytest.raises(PermanentProviderError) as info:
        connector.find_refund(make_order())

    assert info.value.code == "invalid_signature"


def test_signature_is_checked_on_the_raw_inner_text(fake: AlipayFake,
                                                    connector: AlipayConnector) -> None:
    # As sent: spaces, "\/" escapes, non-ASCII kept, and braces inside strings. Any
    # re-serialization of the parsed object would change these bytes.
    raw = ('{ "code" : "10000", "msg":"Success", "trade_no":"2024070122001455661412345678",'
           ' "out_trade_no":"ACME-20240701-0042", "buyer_logon_id":"{159****5620}",'
           ' "store_name":"爱康医疗\\/旗舰店 }", "fund_change":"Y", "refund_fee":"25.00",'
           ' "gmt_refund_pay":"2024-07-01 12:30:06" }')
    assert json.dumps(json.loads(raw), separators=(",", ":"), ensure_ascii=False) != raw
    fake.before_call.append(lambda request: fake.answer(REFUND, raw_inner=raw))

    result = connector.issue_refund(make_order())

    assert result.status is RefundStatus.SUCCEEDED


def test_a_member_twice_is_refused(fake: AlipayFake, connector: AlipayConnector) -> None:
    # The signature covers one copy; a parser could read the other.
    good = fake.answer(QUERY, {"code": "10000", "msg": "Success"}).content.decode()
    doubled = good[:-1] + ',"alipay_trade_fastpay_refund_query_response":{"code":"10000",' \
                          '"refund_status":"REFUND_SUCCESS"}}'
    fake.before_call.append(lambda request: httpx.Response(200, content=doubled.encode()))

    with pytest.raises(PermanentProviderError) as info:
        connector.find_refund(make_order())

    assert info.value.code == "invalid_response"


def test_an_unreadable_answer_to_a_refund_is_asked_again(fake: AlipayFake,
                                                         connector: AlipayConnector) -> None:
    fake.before_call.append(answering(httpx.Response(200, content=b'{"alipay_trade_refund_r')))

    result = connector.issue_refund(make_order())

    assert result.status is RefundStatus.SUCCEEDED
    assert len(fake.requests) == 2
    assert len(fake.paid()) == 1


# ---------------------------------------------------------------- reading refunds


def test_find_refund_is_none_when_alipay_has_none(fake: AlipayFake,
                                                  connector: AlipayConnector) -> None:
    assert connector.find_refund(make_order()) is None

    params = params_of(fake.requests[0])
    assert params["method"] == "alipay.trade.fastpay.refund.query"
    assert json.loads(params["biz_content"]) == {"out_trade_no": OUT_TRADE_NO,
                                                 "out_request_no": KEY}


def test_find_refund_finds_the_paid_refund(fake: AlipayFake,
                                           connector: AlipayConnector) -> None:
    connector.issue_refund(make_order(amount="12.34"))

    found = connector.find_refund(make_order(amount="12.34"))

    assert found is not None
    assert found.status is RefundStatus.SUCCEEDED
    assert found.provider_ref == KEY
    assert found.amount == Money(Decimal("12.34"), "CNY")
    assert found.raw_status == "REFUND_SUCCESS"


def test_refund_status_reads_the_query(fake: AlipayFake, connector: AlipayConnector) -> None:
    connector.issue_refund(make_order())

    assert connector.refund_status(KEY, make_order()).status is RefundStatus.SUCCEEDED


def test_refund_status_of_a_refund_alipay_forgot_is_unknown(
        fake: AlipayFake, connector: AlipayConnector) -> None:
    result = connector.refund_status(KEY, make_order())

    # Never FAILED: that would let an operator start a second refund.
    assert result.status is RefundStatus.UNKNOWN
    assert result.provider_ref == KEY


def test_a_query_answer_about_another_refund_is_refused(
        fake: AlipayFake, connector: AlipayConnector) -> None:
    fake.before_call.append(lambda request: fake.answer(QUERY, {
        "code": "10000", "msg": "Success", "out_request_no": "someone-else",
        "refund_amount": "25.00", "refund_status": "REFUND_SUCCESS"}))

    with pytest.raises(PermanentProviderError) as info:
        connector.find_refund(make_order())

    assert info.value.code == "invalid_response"


def test_accepted_but_unpaid_is_pending_without_a_reference(
        fake: AlipayFake, connector: AlipayConnector) -> None:
    fake.before_call.append(answering(fake.answer(REFUND, dict(SUCCESS, fund_change="N"))))

    result = connector.issue_refund(make_order())

    # No provider_ref: the next run asks find_refund, then sends the same number again.
    assert result.status is RefundStatus.PENDING
    assert result.provider_ref is None
    assert fake.paid() == []


@pytest.mark.parametrize(("raw", "expected"), [
    ("REFUND_SUCCESS", RefundStatus.SUCCEEDED),
    ("REFUND_PROCESSING", RefundStatus.UNKNOWN),
    ("REFUND_FAIL", RefundStatus.UNKNOWN),
    ("", RefundStatus.UNKNOWN),
    (None, RefundStatus.UNKNOWN),
])
def test_status_mapping(raw: str | None, expected: RefundStatus) -> None:
    assert map_status(raw) is expected


def test_an_unmapped_status_is_reported_as_unknown(fake: AlipayFake,
                                                   connector: AlipayConnector) -> None:
    fake.before_call.append(lambda request: fake.answer(QUERY, {
        "code": "10000", "msg": "Success", "out_request_no": KEY, "refund_amount": "25.00",
        "refund_status": "REFUND_PROCESSING"}))

    found = connector.find_refund(make_order())

    assert found is not None
    assert found.status is RefundStatus.UNKNOWN
    assert found.raw_status == "REFUND_PROCESSING"


# ---------------------------------------------------------------- notifications


def notification_params(**changes: str) -> dict[str, str]:
    """A refund notification as Alipay documents it (trade_status_sync with refund fields)."""
    params = {
        "gmt_create": "2024-07-01 11:02:10", "charset": "utf-8",
        "seller_email": "shop@acme-medical.example.com", "subject": "血糖仪 GLU-METER-01",
        "buyer_id": "2088101117955611", "invoice_amount": "80.00",
        "notify_id": "2024070100222123006055661412345678", "fund_bill_list":
            '[{"amount":"80.00","fundChannel":"ALIPAYACCOUNT"}]',
        "notify_type": "trade_status_sync", "trade_status": "TRADE_SUCCESS",
        "receipt_amount": "80.00", "app_id": APP_ID, "buyer_pay_amount": "80.00",
        "notify_time": "2024-07-01 12:30:07", "point_amount": "0.00",
        "total_amount": "80.00", "trade_no": "2024070122001455661412345678",
        "auth_app_id": APP_ID, "out_trade_no": OUT_TRADE_NO, "out_biz_no": KEY,
        "refund_fee": "25.00", "gmt_refund": "2024-07-01 12:30:06.123",
        "gmt_payment": "2024-07-01 11:02:15", "version": "1.0", "seller_id": "2088621234567890",
    }
    params.update(changes)
    return params


def sdk_signed(params: dict[str, str], private_key: str | None = None) -> bytes:
    """Signed by the official SDK with the platform key, as Alipay signs: over everything but
    `sign` and `sign_type`; then form-encoded as Alipay POSTs it."""
    sdk = AliPay(appid=APP_ID, app_private_key_string=private_key or keys().platform_private,
                 alipay_public_key_string=keys().app_public)
    sign = dict(parse_qsl(sdk.sign_data(dict(params))))["sign"]
    return urlencode({**params, "sign_type": "RSA2", "sign": sign}).encode("ascii")


def test_sdk_signed_refund_notification_is_accepted(connector: AlipayConnector) -> None:
    update = connector.parse_webhook({}, sdk_signed(notification_params()), NOW)

    assert isinstance(update, RefundUpdate)
    assert update.idempotency_key == KEY
    assert update.result.status is RefundStatus.SUCCEEDED
    assert update.result.provider_ref == KEY
    assert update.result.raw_status == "TRADE_SUCCESS"
    assert update.event_id == "2024070100222123006055661412345678"


def test_full_refund_closes_the_trade_and_is_a_refund_too(connector: AlipayConnector) -> None:
    body = sdk_signed(notification_params(trade_status="TRADE_CLOSED", refund_fee="80.00",
                                          gmt_close="2024-07-01 12:30:06"))

    update = connector.parse_webhook({}, body, NOW)

    assert isinstance(update, RefundUpdate)
    assert update.result.status is RefundStatus.SUCCEEDED


def test_the_fakes_notification_verifies_with_the_sdk_and_is_accepted(
        fake: AlipayFake, connector: AlipayConnector) -> None:
    connector.issue_refund(make_order())
    body = fake.notification(KEY)
    form = dict(parse_qsl(body.decode()))
    sdk = AliPay(appid=APP_ID, app_private_key_string=keys().app_private,
                 alipay_public_key_string=keys().platform_public)
    sign = form.pop("sign")
    assert sdk.verify(dict(form), sign)

    update = connector.parse_webhook({"Content-Type": "application/x-www-form-urlencoded"},
                                     body, NOW)

    assert isinstance(update, RefundUpdate) and update.idempotency_key == KEY


def test_tampered_notification_is_rejected(connector: AlipayConnector) -> None:
    body = sdk_signed(notification_params())
    tampered = body.replace(b"refund_fee=25.00", b"refund_fee=80.00")
    assert tampered != body

    with pytest.raises(WebhookRejected, match="bad signature"):
        connector.parse_webhook({}, tampered, NOW)


def test_notification_signed_by_another_key_is_rejected(connector: AlipayConnector) -> None:
    body = sdk_signed(notification_params(), private_key=other_keys().platform_private)

    with pytest.raises(WebhookRejected):
        connector.parse_webhook({}, body, NOW)


def test_unsigned_notification_is_rejected(connector: AlipayConnector) -> None:
    form = dict(parse_qsl(sdk_signed(notification_params()).decode()))
    del form["sign"]

    with pytest.raises(WebhookRejected, match="no sign"):
        connector.parse_webhook({}, urlencode(form).encode(), NOW)


def test_rsa_sha1_notification_is_rejected(connector: AlipayConnector) -> None:
    form = dict(parse_qsl(sdk_signed(notification_params()).decode()))
    form["sign_type"] = "RSA"

    with pytest.raises(WebhookRejected, match="sign_type"):
        connector.parse_webhook({}, urlencode(form).encode(), NOW)


def test_notification_for_another_app_is_rejected(connector: AlipayConnector) -> None:
    body = sdk_signed(notification_params(app_id="2021000000000000"))

    with pytest.raises(WebhookRejected, match="app_id"):
        connector.parse_webhook({}, body, NOW)


def test_a_parameter_twice_is_rejected(connector: AlipayConnector) -> None:
    body = sdk_signed(notification_params()) + b"&out_biz_no=rc_other-refund-1"

    with pytest.raises(WebhookRejected, match="twice"):
        connector.parse_webhook({}, body, NOW)


def test_payment_notification_is_ignored(connector: AlipayConnector) -> None:
    params = notification_params()
    for refund_field in ("out_biz_no", "refund_fee", "gmt_refund"):
        del params[refund_field]

    outcome = connector.parse_webhook({}, sdk_signed(params), NOW)

    assert isinstance(outcome, Ignored)
    assert "TRADE_SUCCESS" in outcome.reason


def test_signed_notification_missing_a_field_names_it(connector: AlipayConnector) -> None:
    params = notification_params()
    del params["notify_id"]

    with pytest.raises(InvalidRequest) as info:
        connector.parse_webhook({}, sdk_signed(params), NOW)

    assert info.value.field == "notify_id"


def test_gbk_notification_is_read_in_its_charset(connector: AlipayConnector) -> None:
    params = notification_params(charset="gbk")
    base = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    private = serialization.load_pem_private_key(keys().platform_private.encode(), None)
    assert isinstance(private, rsa.RSAPrivateKey)
    sign = base64.b64encode(private.sign(base.encode("gbk"), padding.PKCS1v15(),
                                         hashes.SHA256())).decode()
    body = urlencode({**params, "sign_type": "RSA2", "sign": sign}, encoding="gbk").encode()

    update = connector.parse_webhook({}, body, NOW)

    assert isinstance(update, RefundUpdate)


def test_a_body_that_is_not_a_form_is_rejected(connector: AlipayConnector) -> None:
    with pytest.raises(WebhookRejected):
        connector.parse_webhook({}, "退款".encode(), NOW)


def test_acknowledgement_is_the_literal_success() -> None:
    assert AlipayConnector.acknowledgement == WebhookAck(200, b"success", "text/plain")


# ---------------------------------------------------------------- the connector


def test_declares_payment_and_its_capabilities() -> None:
    assert AlipayConnector.name == "alipay"
    assert AlipayConnector.roles == frozenset({Role.PAYMENT})
    assert AlipayConnector.capabilities == frozenset({
        Capability.ISSUE_REFUND, Capability.REFUND_STATUS, Capability.REFUND_NOTIFICATIONS})
    check_connector_class("alipay", AlipayConnector)  # raises if the contract is not kept


def test_is_found_through_its_entry_point() -> None:
    assert ConnectorRegistry.discover().load("alipay") is AlipayConnector


def test_other_flows_are_not_supported(connector: AlipayConnector) -> None:
    with pytest.raises(NotSupported) as info:
        connector.lookup_order("1001")
    assert info.value.flow == Capability.LOOKUP_ORDER.value
    with pytest.raises(NotSupported):
        connector.write_back(StatusUpdate(CASE_ID, "1001", "r1", StatusOutcome.APPROVED))
    with pytest.raises(NotSupported):
        connector.shipped_units("1001")


def test_building_the_connector_opens_nothing(connector: AlipayConnector) -> None:
    assert connector._client is None


def test_a_key_in_bare_base64_is_accepted(fake: AlipayFake) -> None:
    bare = "".join(line for line in keys().app_private.splitlines() if "-----" not in line)
    conn = make_connector(app_private_key=bare)

    assert conn.issue_refund(make_order()).status is RefundStatus.SUCCEEDED


def test_a_bare_key_is_kept_as_pem_so_it_never_reads_as_a_placeholder() -> None:
    # Bare base64 may spell "demo" or "todo" by chance; as PEM the shared check knows it for
    # key material, outside demo mode too.
    bare = "".join(line for line in keys().app_private.splitlines() if "-----" not in line)
    conn = make_connector(app_private_key=bare)

    kept = conn.settings.app_private_key
    assert kept.get_secret_value().startswith("-----BEGIN PRIVATE KEY-----")
    assert not is_placeholder(kept)
    assert not conn.ctx.demo


@pytest.mark.parametrize(("key", "value"), [
    ("app_private_key", "changeme"),
    ("app_private_key", "not a key at all, nor base64"),
    ("alipay_public_key", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"),
])
def test_an_unusable_key_is_a_config_error_naming_it(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_connector(FAST, **{key: value})

    assert info.value.key == f"shops.s1.alipay.{key}"


def test_the_private_key_is_never_shown() -> None:
    conn = make_connector()

    assert keys().app_private not in repr(conn.settings)
    assert "PRIVATE KEY" not in str(conn.settings)


# ---------------------------------------------------------------- the shared contract


class TestAlipayContract(ContractFixtures, PaymentContract, WebhookContract):
    """The suite every payment connector runs, with the gateway fake and real signatures."""

    CONNECTOR_CLASS = AlipayConnector
    REFUND_URL = GATEWAY

    @pytest.fixture
    def connector_settings(self) -> dict[str, Any]:
        # Built when a test asks: the keys are generated then, not at import.
        return settings(gateway_url=GATEWAY)

    @pytest.fixture
    def fake(self, refund_order: RefundOrder) -> AlipayFake:
        gateway = AlipayFake(keys())
        gateway.add_trade(refund_order.payment_reference, "80.00")
        return gateway

    @pytest.fixture
    def paid_refunds(self, fake: AlipayFake) -> Callable[[], int]:
        return lambda: sum(len(t["refunds"]) for t in fake.trades.values())

    @pytest.fixture
    def idempotency_key_of(self) -> Callable[[httpx.Request], str | None]:
        def key(request: httpx.Request) -> str | None:
            if request.url.params.get("method") != REFUND:
                return None  # the refund query moves no money
            form = dict(parse_qsl(request.content.decode("ascii")))
            return str(json.loads(form["biz_content"])["out_request_no"])
        return key

    @pytest.fixture
    def refusal(self, fake: AlipayFake) -> httpx.Response:
        return fake.answer(REFUND, {"code": "40004", "msg": "Business Failed",
                                    "sub_code": "ACQ.TRADE_HAS_FINISHED",
                                    "sub_msg": "交易已完结"})

    @pytest.fixture
    def unknown_status_answer(self, fake: AlipayFake) -> Callable[[str], str]:
        def answer(provider_ref: str) -> str:
            fake.set_refund_status(provider_ref, "REFUND_PARTLY_REVERSED")
            return "REFUND_PARTLY_REVERSED"
        return answer

    @pytest.fixture
    def invalid_body(self) -> bytes:
        params = notification_params()
        del params["notify_id"]
        return urlencode(params).encode("ascii")

    @pytest.fixture
    def signed_delivery(self) -> Callable[..., Delivery]:
        def deliver(body: bytes | None = None, *, forged: bool = False) -> Delivery:
            params = (notification_params() if body is None
                      else dict(parse_qsl(body.decode("ascii"), keep_blank_values=True)))
            platform = other_keys() if forged else keys()
            return ({"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
                    sdk_signed(params, private_key=platform.platform_private))
        return deliver
