"""Stripe connector against Stripe's wire format: respx at the transport, the official SDK
to sign webhooks. No network, no sleeps."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
import stripe
import tenacity

from refundbridge.connectors.base import ConnectorContext, RetryPolicy
from refundbridge.connectors.stripe import StripeConnector
from refundbridge.connectors.stripe.transformers import StripeRefund, to_refund_result
from refundbridge.core.errors import (
    AmountNotRepresentable,
    InvalidRequest,
    PermanentProviderError,
    TransientProviderError,
    WebhookRejected,
)
from refundbridge.core.model import RefundStatus
from refundbridge.core.money import Money
from refundbridge.core.ports import Ignored, RefundOrder, RefundUpdate
from refundbridge.core.request import ReasonCode
from tests.connectors.helpers import FAST
from tests.fakes.common import installed
from tests.fakes.stripe import StripeFake

BASE_URL = "https://api.stripe.com"
API_KEY = "sk_test_51PqRsTuVwXyZ0123456789abcdef"
WEBHOOK_SECRET = "whsec_3b9c0e5d1f7a4c2e8b6d0f1a2c3e4b5d"
IDEMPOTENCY_KEY = "rc_8f14e45fceea167a5a36dedd4bea2543:refund:1"
NOW = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)


# A Refund as Stripe documents it (https://docs.stripe.com/api/refunds/object), as created
# by the POST below.
REFUND: dict[str, Any] = {
    "id": "re_3PqRsT2eZvKYlo2C1ABCdEfG",
    "object": "refund",
    "amount": 2500,
    "balance_transaction": "txn_3PqRsT2eZvKYlo2C1hIjKlMn",
    "charge": "ch_3PqRsT2eZvKYlo2C1oPqRsTu",
    "created": 1719835200,
    "currency": "usd",
    "destination_details": {"card": {"reference_status": "pending", "type": "refund"},
                            "type": "card"},
    "metadata": {
        "case_id": "rc_8f14e45fceea167a5a36dedd4bea2543",
        "idempotency_key": IDEMPOTENCY_KEY,
        "attempt": "1",
    },
    "payment_intent": "pi_3PqRsT2eZvKYlo2C1vWxYz01",
    "reason": "requested_by_customer",
    "receipt_number": None,
    "source_transfer_reversal": None,
    "status": "pending",
    "transfer_reversal": None,
}

STRIPE_ERROR: dict[str, Any] = {
    "error": {
        "code": "charge_already_refunded",
        "doc_url": "https://stripe.com/docs/error-codes/charge-already-refunded",
        "message": "Charge ch_3PqRsT2eZvKYlo2C1oPqRsTu has already been refunded.",
        "request_log_url": "https://dashboard.stripe.com/test/logs/req_a1B2c3D4e5F6g7",
        "type": "invalid_request_error",
    }
}


def refund(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(REFUND)
    body.update(changes)
    return body


def event(event_type: str, obj: dict[str, Any], event_id: str = "evt_1PqRsT2eZvKYlo2Cabc"
          ) -> bytes:
    body = {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": 1719835260,
        "data": {"object": obj, "previous_attributes": {"status": "pending"}},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    return json.dumps(body).encode()


def make_order(reference: str = "pi_3PqRsT2eZvKYlo2C1vWxYz01", amount: str = "25.00"
               ) -> RefundOrder:
    return RefundOrder(
        case_id="rc_8f14e45fceea167a5a36dedd4bea2543",
        attempt=1,
        idempotency_key=IDEMPOTENCY_KEY,
        amount=Money.parse(amount, "USD"),
        payment_reference=reference,
        order_id="1001",
        reason=ReasonCode.DEFECTIVE,
        paid_total=Money.parse("80.00", "USD"),
    )


def make_connector(retry: RetryPolicy = FAST) -> StripeConnector:
    ctx = ConnectorContext(shop_id="s1", retry=retry)
    return StripeConnector.from_config({"api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET},
                                       ctx)


@pytest.fixture
def api() -> Any:
    with respx.mock(base_url=BASE_URL, assert_all_called=False) as router:
        yield router


@pytest.fixture
def connector() -> Any:
    conn = make_connector()
    yield conn
    conn.close()


def form_of(request: httpx.Request) -> dict[str, str]:
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


# ---------------------------------------------------------------- issuing a refund


def test_refund_is_posted_as_stripe_expects(api: Any, connector: StripeConnector) -> None:
    route = api.post("/v1/refunds").respond(200, json=REFUND)

    result = connector.issue_refund(make_order())

    assert route.call_count == 1
    request = route.calls.last.request
    assert request.method == "POST"
    assert request.url == f"{BASE_URL}/v1/refunds"
    assert form_of(request) == {
        "payment_intent": "pi_3PqRsT2eZvKYlo2C1vWxYz01",
        "amount": "2500",
        "reason": "requested_by_customer",
        "metadata[case_id]": "rc_8f14e45fceea167a5a36dedd4bea2543",
        "metadata[idempotency_key]": IDEMPOTENCY_KEY,
        "metadata[attempt]": "1",
    }
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Idempotency-Key"] == IDEMPOTENCY_KEY
    assert request.headers["Stripe-Version"] == "2024-06-20"
    assert result.status is RefundStatus.PENDING
    assert result.provider_ref == "re_3PqRsT2eZvKYlo2C1ABCdEfG"
    assert result.amount == Money(Decimal("25.00"), "USD")
    assert result.raw_status == "pending"


def test_charge_reference_is_sent_as_charge(api: Any, connector: StripeConnector) -> None:
    route = api.post("/v1/refunds").respond(200, json=REFUND)

    connector.issue_refund(make_order(reference="ch_3PqRsT2eZvKYlo2C1oPqRsTu"))

    form = form_of(route.calls.last.request)
    assert form["charge"] == "ch_3PqRsT2eZvKYlo2C1oPqRsTu"
    assert "payment_intent" not in form


def test_zero_amount_is_never_sent(api: Any, connector: StripeConnector) -> None:
    # Stripe would read a missing amount as "refund everything".
    route = api.post("/v1/refunds").respond(200, json=REFUND)

    with pytest.raises(InvalidRequest) as info:
        connector.issue_refund(make_order(amount="0.00"))

    assert info.value.field == "amount"
    assert route.call_count == 0


def test_transient_failures_are_retried_with_the_same_key(api: Any,
                                                          connector: StripeConnector) -> None:
    route = api.post("/v1/refunds").mock(side_effect=[
        httpx.ConnectError("connection refused"),
        httpx.Response(503, json={"error": {"type": "api_error", "message": "try again"}}),
        httpx.Response(200, json=refund(status="succeeded")),
    ])

    result = connector.issue_refund(make_order())

    assert result.status is RefundStatus.SUCCEEDED
    assert route.call_count == 3
    keys = {call.request.headers["Idempotency-Key"] for call in route.calls}
    assert keys == {IDEMPOTENCY_KEY}
    assert len({call.request.content for call in route.calls}) == 1


def test_retries_are_bounded(api: Any, connector: StripeConnector) -> None:
    route = api.post("/v1/refunds").respond(500, json={"error": {"type": "api_error"}})

    with pytest.raises(TransientProviderError):
        connector.issue_refund(make_order())

    assert route.call_count == 3


def test_409_from_a_concurrent_request_is_retried(api: Any, connector: StripeConnector) -> None:
    in_flight = {"error": {"type": "idempotency_error",
                           "message": "There is currently another in-progress request using "
                                      "this Stripe API key and idempotency key."}}
    route = api.post("/v1/refunds").mock(side_effect=[
        httpx.Response(409, json=in_flight), httpx.Response(200, json=REFUND),
    ])

    assert connector.issue_refund(make_order()).provider_ref == REFUND["id"]
    assert route.call_count == 2


def test_429_is_retried_after_retry_after(api: Any) -> None:
    rate_limited = httpx.Response(
        429, headers={"Retry-After": "7"},
        json={"error": {"type": "invalid_request_error", "code": "rate_limit",
                        "message": "Too many requests hit the API too quickly."}},
    )
    route = api.post("/v1/refunds").mock(side_effect=[rate_limited,
                                                       httpx.Response(200, json=REFUND)])
    conn = make_connector(RetryPolicy(attempts=3, initial_wait=0, max_wait=0,
                                      max_retry_after=0))

    result = conn.issue_refund(make_order())

    assert result.provider_ref == REFUND["id"]
    assert route.call_count == 2
    assert {c.request.headers["Idempotency-Key"] for c in route.calls} == {IDEMPOTENCY_KEY}


def test_retry_after_sets_the_wait(api: Any) -> None:
    api.post("/v1/refunds").respond(
        429, headers={"Retry-After": "7"},
        json={"error": {"type": "invalid_request_error", "code": "rate_limit"}},
    )
    conn = make_connector(RetryPolicy(attempts=1))

    with pytest.raises(TransientProviderError) as info:
        conn.issue_refund(make_order())

    assert info.value.retry_after == 7.0
    state = tenacity.RetryCallState(tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.set_exception((TransientProviderError, info.value, None))
    assert RetryPolicy().wait(state) == 7.0


def test_stripe_4xx_is_permanent_with_stripes_message(api: Any,
                                                      connector: StripeConnector) -> None:
    route = api.post("/v1/refunds").respond(400, json=STRIPE_ERROR)

    with pytest.raises(PermanentProviderError) as info:
        connector.issue_refund(make_order())

    assert info.value.message == STRIPE_ERROR["error"]["message"]
    assert info.value.code == "charge_already_refunded"
    assert route.call_count == 1


def test_stripe_error_without_code_uses_its_type(api: Any, connector: StripeConnector) -> None:
    body = {"error": {"type": "invalid_request_error", "param": "amount",
                      "message": "Refund amount ($250.00) is greater than charge amount "
                                 "($80.00)"}}
    api.post("/v1/refunds").respond(400, json=body)

    with pytest.raises(PermanentProviderError) as info:
        connector.issue_refund(make_order())

    assert info.value.message == body["error"]["message"]
    assert info.value.code == "invalid_request_error"


def test_4xx_that_is_not_stripes_shape_is_still_permanent(api: Any,
                                                          connector: StripeConnector) -> None:
    route = api.post("/v1/refunds").respond(403, text="<html>Forbidden</html>")

    with pytest.raises(PermanentProviderError) as info:
        connector.issue_refund(make_order())

    assert "Forbidden" in info.value.message
    assert route.call_count == 1


def test_unreadable_success_body_is_an_error(api: Any, connector: StripeConnector) -> None:
    api.post("/v1/refunds").respond(200, json={"object": "refund"})

    with pytest.raises(PermanentProviderError) as info:
        connector.issue_refund(make_order())

    assert info.value.code == "invalid_response"


# ---------------------------------------------------------------- reading refunds


def test_refund_status_reads_the_refund(api: Any, connector: StripeConnector) -> None:
    route = api.get("/v1/refunds/re_3PqRsT2eZvKYlo2C1ABCdEfG").respond(
        200, json=refund(status="failed", failure_reason="expired_or_canceled_card"))

    result = connector.refund_status("re_3PqRsT2eZvKYlo2C1ABCdEfG", make_order())

    assert route.call_count == 1
    assert route.calls.last.request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert result.status is RefundStatus.FAILED
    assert result.message == "expired_or_canceled_card"


def test_find_refund_matches_the_idempotency_key(api: Any, connector: StripeConnector) -> None:
    other = refund(id="re_other", metadata={"idempotency_key": "rc_other:refund:1"})
    mine = refund(status="succeeded")
    route = api.get("/v1/refunds").respond(
        200, json={"object": "list", "url": "/v1/refunds", "has_more": False,
                   "data": [other, mine]})

    result = connector.find_refund(make_order())

    assert result is not None
    assert result.provider_ref == REFUND["id"]
    assert result.status is RefundStatus.SUCCEEDED
    params = route.calls.last.request.url.params
    assert params["payment_intent"] == "pi_3PqRsT2eZvKYlo2C1vWxYz01"
    assert params["limit"] == "100"


def test_find_refund_returns_none_when_absent(api: Any, connector: StripeConnector) -> None:
    other = refund(id="re_other", metadata={"idempotency_key": "rc_other:refund:1"})
    api.get("/v1/refunds").respond(
        200, json={"object": "list", "url": "/v1/refunds", "has_more": False, "data": [other]})

    assert connector.find_refund(make_order()) is None


def test_find_refund_by_charge_reads_every_page(api: Any, connector: StripeConnector) -> None:
    first_page = [refund(id=f"re_{n}", metadata={}) for n in range(100)]
    route = api.get("/v1/refunds").mock(side_effect=[
        httpx.Response(200, json={"object": "list", "has_more": True, "data": first_page}),
        httpx.Response(200, json={"object": "list", "has_more": False, "data": [REFUND]}),
    ])

    result = connector.find_refund(make_order(reference="ch_3PqRsT2eZvKYlo2C1oPqRsTu"))

    assert result is not None and result.provider_ref == REFUND["id"]
    first, second = (call.request.url.params for call in route.calls)
    assert first["charge"] == "ch_3PqRsT2eZvKYlo2C1oPqRsTu" and "starting_after" not in first
    assert second["starting_after"] == "re_99"


# ---------------------------------------------------------------- status mapping


@pytest.mark.parametrize(("raw", "expected"), [
    ("pending", RefundStatus.PENDING),
    ("requires_action", RefundStatus.PENDING),
    ("succeeded", RefundStatus.SUCCEEDED),
    ("failed", RefundStatus.FAILED),
    ("canceled", RefundStatus.FAILED),
    ("in_review", RefundStatus.UNKNOWN),
    (None, RefundStatus.UNKNOWN),
])
def test_status_mapping(raw: str | None, expected: RefundStatus) -> None:
    result = to_refund_result(StripeRefund.model_validate(refund(status=raw)))

    assert result.status is expected
    assert result.raw_status == raw


def test_amount_uses_the_currencys_minor_unit() -> None:
    result = to_refund_result(StripeRefund.model_validate(refund(amount=2500, currency="jpy")))

    assert result.amount == Money(Decimal("2500"), "JPY")


# ---------------------------------------------------------------- webhooks


def signed(body: bytes, timestamp: int | None = None, secret: str = WEBHOOK_SECRET
           ) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret,
                                                               timestamp=timestamp)
    return {"Stripe-Signature": header}


def at(moment: datetime) -> int:
    return int(moment.timestamp())


def test_signed_refund_event_is_accepted(connector: StripeConnector) -> None:
    body = event("refund.updated", refund(status="succeeded"))
    headers = signed(body)  # signed now, as Stripe would

    update = connector.parse_webhook(headers, body, datetime.now(UTC))

    assert isinstance(update, RefundUpdate)
    assert update.result.status is RefundStatus.SUCCEEDED
    assert update.result.provider_ref == REFUND["id"]
    assert update.idempotency_key == IDEMPOTENCY_KEY
    assert update.event_id == "evt_1PqRsT2eZvKYlo2Cabc"
    # Our fixture is a real Stripe event as far as the SDK's own parser is concerned.
    assert stripe.Webhook.construct_event(body, headers["Stripe-Signature"],
                                          WEBHOOK_SECRET).id == update.event_id


def test_header_name_is_case_insensitive(connector: StripeConnector) -> None:
    body = event("refund.updated", REFUND)
    headers = {"stripe-signature": signed(body, at(NOW))["Stripe-Signature"]}

    assert isinstance(connector.parse_webhook(headers, body, NOW), RefundUpdate)


def test_refund_failed_event(connector: StripeConnector) -> None:
    body = event("refund.failed", refund(status="failed", failure_reason="lost_or_stolen_card"),
                 event_id="evt_failed")

    update = connector.parse_webhook(signed(body, at(NOW)), body, NOW)

    assert isinstance(update, RefundUpdate)
    assert update.result.status is RefundStatus.FAILED
    assert update.result.message == "lost_or_stolen_card"
    assert update.case_id == "rc_8f14e45fceea167a5a36dedd4bea2543"
    assert update.event_id == "evt_failed"


def test_charge_refund_updated_event(connector: StripeConnector) -> None:
    body = event("charge.refund.updated", refund(status="canceled"))

    update = connector.parse_webhook(signed(body, at(NOW)), body, NOW)

    assert isinstance(update, RefundUpdate)
    assert update.result.status is RefundStatus.FAILED


def test_unrelated_event_is_ignored(connector: StripeConnector) -> None:
    body = event("customer.created", {"id": "cus_9s6XKzkNRiz8i3", "object": "customer"})

    outcome = connector.parse_webhook(signed(body, at(NOW)), body, NOW)

    assert isinstance(outcome, Ignored)
    assert "customer.created" in outcome.reason


def test_bad_signature_is_rejected(connector: StripeConnector) -> None:
    body = event("refund.updated", REFUND)
    headers = signed(body, at(NOW), secret="whsec_someone_else_entirely")

    with pytest.raises(WebhookRejected) as info:
        connector.parse_webhook(headers, body, NOW)

    assert isinstance(info.value.__cause__, stripe.SignatureVerificationError)


def test_tampered_body_is_rejected(connector: StripeConnector) -> None:
    body = event("refund.updated", refund(amount=2500))
    headers = signed(body, at(NOW))

    with pytest.raises(WebhookRejected):
        connector.parse_webhook(headers, body.replace(b"2500", b"9500"), NOW)


@pytest.mark.parametrize("headers", [{}, {"Stripe-Signature": ""}])
def test_missing_signature_is_rejected(connector: StripeConnector,
                                       headers: dict[str, str]) -> None:
    with pytest.raises(WebhookRejected):
        connector.parse_webhook(headers, event("refund.updated", REFUND), NOW)


def test_garbled_header_is_rejected(connector: StripeConnector) -> None:
    with pytest.raises(WebhookRejected):
        connector.parse_webhook({"Stripe-Signature": "t=soon,v1=abc"},
                                event("refund.updated", REFUND), NOW)


@pytest.mark.parametrize("offset", [timedelta(seconds=-301), timedelta(hours=-2)])
def test_stale_signature_is_rejected(connector: StripeConnector, offset: timedelta) -> None:
    body = event("refund.updated", REFUND)

    with pytest.raises(WebhookRejected, match="ago"):
        connector.parse_webhook(signed(body, at(NOW + offset)), body, NOW)


@pytest.mark.parametrize("offset", [timedelta(seconds=301), timedelta(days=1)])
def test_future_signature_is_rejected(connector: StripeConnector, offset: timedelta) -> None:
    body = event("refund.updated", REFUND)

    with pytest.raises(WebhookRejected, match="future"):
        connector.parse_webhook(signed(body, at(NOW + offset)), body, NOW)


@pytest.mark.parametrize("offset", [timedelta(seconds=-300), timedelta(seconds=300)])
def test_signature_at_the_tolerance_edge_is_accepted(connector: StripeConnector,
                                                     offset: timedelta) -> None:
    body = event("refund.updated", REFUND)

    update = connector.parse_webhook(signed(body, at(NOW + offset)), body, NOW)

    assert isinstance(update, RefundUpdate)


def test_now_is_the_clock_not_the_wall(connector: StripeConnector) -> None:
    # Years before today: the SDK's wall-clock check would refuse it; ours goes by `now`.
    then = datetime(2019, 3, 1, tzinfo=UTC)
    body = event("refund.updated", REFUND)

    assert isinstance(connector.parse_webhook(signed(body, at(then)), body, then + timedelta(
        seconds=10)), RefundUpdate)
    with pytest.raises(WebhookRejected):
        connector.parse_webhook(signed(body, at(then)), body, datetime.now(UTC))


def test_any_matching_v1_entry_is_enough(connector: StripeConnector) -> None:
    body = event("refund.updated", REFUND)
    good = signed(body, at(NOW))["Stripe-Signature"]  # "t=…,v1=…"
    stamp, v1 = good.split(",")
    header = f"{stamp},v1={'0' * 64},{v1},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba8"

    assert isinstance(connector.parse_webhook({"Stripe-Signature": header}, body, NOW),
                      RefundUpdate)


def test_no_matching_v1_entry_is_rejected(connector: StripeConnector) -> None:
    body = event("refund.updated", REFUND)
    stamp = signed(body, at(NOW))["Stripe-Signature"].split(",")[0]
    header = f"{stamp},v1={'0' * 64},v1={'f' * 64}"

    with pytest.raises(WebhookRejected):
        connector.parse_webhook({"Stripe-Signature": header}, body, NOW)


def test_signed_body_that_is_not_an_event_names_the_field(connector: StripeConnector) -> None:
    body = json.dumps({"object": "event", "type": "refund.updated", "created": 1719835260,
                       "data": {"object": REFUND}}).encode()

    with pytest.raises(InvalidRequest) as info:
        connector.parse_webhook(signed(body, at(NOW)), body, NOW)

    assert info.value.field == "id"


def test_refund_event_without_a_refund_names_the_field(connector: StripeConnector) -> None:
    obj = refund()
    del obj["amount"]
    body = event("refund.updated", obj)

    with pytest.raises(InvalidRequest) as info:
        connector.parse_webhook(signed(body, at(NOW)), body, NOW)

    assert info.value.field == "data.object.amount"


def test_signed_body_that_is_not_json(connector: StripeConnector) -> None:
    body = b"not json at all"

    with pytest.raises(InvalidRequest) as info:
        connector.parse_webhook(signed(body, at(NOW)), body, NOW)

    assert info.value.field == "body"


# ---------------------------------------------------------------- Stripe's own minor units


def isk_order(amount: str | Decimal = "500") -> RefundOrder:
    value = Money(amount, "ISK") if isinstance(amount, Decimal) else Money.parse(amount, "ISK")
    return RefundOrder(
        case_id="rc_8f14e45fceea167a5a36dedd4bea2543", attempt=1,
        idempotency_key=IDEMPOTENCY_KEY, amount=value,
        payment_reference="pi_3PqRsT2eZvKYlo2C1vWxYz01", order_id="1001",
        reason=ReasonCode.DEFECTIVE, paid_total=Money.parse("7960", "ISK"),
    )


@pytest.fixture
def stripe_fake() -> Any:
    fake = StripeFake()
    with installed(fake):
        yield fake


def test_isk_goes_over_the_wire_in_stripes_units(stripe_fake: StripeFake,
                                                 connector: StripeConnector) -> None:
    # CLDR gives ISK no decimals; Stripe writes it with two (500 ISK = 50000). Sending 500
    # refunded a hundredth.
    stripe_fake.currency = "isk"

    result = connector.issue_refund(isk_order("500"))

    [request] = stripe_fake.posts
    assert form_of(request)["amount"] == "50000"
    assert stripe_fake.paid()[0]["amount"] == 50000
    assert result.amount == Money.parse("500", "ISK")
    assert result.status is RefundStatus.SUCCEEDED


def test_stripes_answer_in_its_units_maps_back(stripe_fake: StripeFake,
                                               connector: StripeConnector) -> None:
    stripe_fake.currency = "isk"
    issued = connector.issue_refund(isk_order("7960"))
    assert issued.provider_ref is not None

    polled = connector.refund_status(issued.provider_ref, isk_order("7960"))
    found = connector.find_refund(isk_order("7960"))

    assert polled.amount == Money.parse("7960", "ISK")
    assert found is not None and found.amount == Money.parse("7960", "ISK")


def test_an_amount_stripe_cannot_take_is_refused_before_any_call(
        stripe_fake: StripeFake, connector: StripeConnector) -> None:
    stripe_fake.currency = "kwd"
    kwd = RefundOrder(
        case_id="rc_8f14e45fceea167a5a36dedd4bea2543", attempt=1,
        idempotency_key=IDEMPOTENCY_KEY, amount=Money.parse("1.234", "KWD"),
        payment_reference="pi_3PqRsT2eZvKYlo2C1vWxYz01", order_id="1001",
        reason=ReasonCode.DEFECTIVE, paid_total=Money.parse("10.000", "KWD"),
    )

    with pytest.raises(AmountNotRepresentable) as info:
        connector.issue_refund(kwd)

    assert isinstance(info.value, PermanentProviderError)
    assert info.value.code == "amount_not_representable"
    assert "1.234 KWD" in str(info.value)
    assert stripe_fake.posts == []


def test_isk_refund_event_is_read_in_stripes_units(connector: StripeConnector) -> None:
    body = event("refund.updated", refund(amount=796000, currency="isk", status="succeeded"))
    headers = signed(body)
    # Stripe's own SDK reads the same body: the amount on the wire is in its units.
    assert stripe.Webhook.construct_event(body, headers["Stripe-Signature"],
                                          WEBHOOK_SECRET).data.object.amount == 796000

    update = connector.parse_webhook(headers, body, datetime.now(UTC))

    assert isinstance(update, RefundUpdate)
    assert update.result.amount == Money.parse("7960", "ISK")


def test_refund_event_with_a_fraction_of_a_krona_names_the_field(
        connector: StripeConnector) -> None:
    body = event("refund.updated", refund(amount=50050, currency="isk"))

    with pytest.raises(InvalidRequest) as info:
        connector.parse_webhook(signed(body), body, datetime.now(UTC))

    assert info.value.field == "data.object.amount"
