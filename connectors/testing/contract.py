"""The contract test classes; the fixtures they need are described in the package docstring."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
import pytest
import respx

from refundbridge.connectors.base import ConnectorContext, RetryPolicy
from refundbridge.connectors.registry import check_connector_class
from refundbridge.core.errors import (
    ConfigError,
    InvalidRequest,
    NotSupported,
    PermanentProviderError,
    TransientProviderError,
    WebhookRejected,
)
from refundbridge.core.model import RefundResult, RefundStatus
from refundbridge.core.money import Money
from refundbridge.core.ports import (
    CAPABILITY_METHODS,
    Capability,
    ExternalRefund,
    Ignored,
    QuarantineOrder,
    RecallScope,
    RefundOrder,
    RefundRequested,
    RefundUpdate,
    ReplacementItem,
    ReplacementOrder,
    ReplacementResult,
    ReplacementState,
    ReturnBooking,
    StatusOutcome,
    StatusUpdate,
    WebhookEvent,
)
from refundbridge.core.request import ReasonCode

Delivery = tuple[dict[str, str], bytes]
SignedDelivery = Callable[..., Delivery]
KeyReader = Callable[[httpx.Request], str | None]

# No waiting between attempts: the contract counts attempts, it does not time them.
CONTRACT_RETRY: Final = RetryPolicy(attempts=3, initial_wait=0, max_wait=0)

_ORDER_ID = "SO-contract-1"
_CASE_ID = "rc_contract0001"

# The flows a connector may leave out, each with a call that asks for it. `ConnectorBase`
# answers each with `NotSupported`; a connector that overrides one must declare it.
OPTIONAL_FLOWS: Final[Mapping[Capability, Callable[[Any], object]]] = {
    Capability.LOOKUP_ORDER: lambda c: c.lookup_order(_ORDER_ID),
    Capability.WRITE_BACK: lambda c: c.write_back(StatusUpdate(
        case_id=_CASE_ID, order_id=_ORDER_ID, external_id="contract-request-1",
        outcome=StatusOutcome.APPROVED)),
    Capability.SHIPPED_UNITS: lambda c: c.shipped_units(_ORDER_ID),
    Capability.CONSIGNEES: lambda c: c.consignees(RecallScope(sku="SKU-contract"), None, 10),
    Capability.QUARANTINE: lambda c: c.quarantine_stock(QuarantineOrder(
        idempotency_key="rcp_contract.quarantine", reference="RC-contract",
        scope=RecallScope(sku="SKU-contract", lots=("LOT-1",)))),
    Capability.REPLACEMENT: lambda c: c.create_replacement(ReplacementOrder(
        idempotency_key=f"{_CASE_ID}.replacement", case_id=_CASE_ID, order_id=_ORDER_ID,
        customer_id="contract-customer", customer_email=None,
        items=(ReplacementItem("SKU-contract", "Contract item", 1,
                               Money.parse("1.00", "CNY")),))),
}


def dedupe_key(event: WebhookEvent) -> str | None:
    """What the inbox (requests) or the refund's record (updates) knows a redelivery by."""
    if isinstance(event, RefundRequested):
        return event.request.external_id
    if isinstance(event, RefundUpdate):
        return event.event_id or event.idempotency_key or event.result.provider_ref
    if isinstance(event, ExternalRefund):
        return event.external_id
    return None


class ConnectorContract:
    """What every connector owes: a well-formed class, honest `NotSupported`, strict settings."""

    @pytest.fixture
    def connector_context(self) -> ConnectorContext:
        return ConnectorContext(shop_id="contract-shop", retry=CONTRACT_RETRY)

    @pytest.fixture
    def entry_point_name(self, connector_class: type[Any]) -> str:
        return str(connector_class.name)

    @pytest.fixture
    def connector(self, connector_class: type[Any], connector_settings: Mapping[str, Any],
                  connector_context: ConnectorContext) -> Iterator[Any]:
        instance = connector_class.from_config(connector_settings, connector_context)
        yield instance
        close = getattr(instance, "close", None)
        if callable(close):
            close()

    def test_class_keeps_the_connector_contract(self, connector_class: type[Any],
                                                entry_point_name: str) -> None:
        check_connector_class(entry_point_name, connector_class)

    @pytest.mark.parametrize("flow", list(OPTIONAL_FLOWS), ids=str)
    def test_undeclared_flow_raises_not_supported(self, connector: Any,
                                                  flow: Capability) -> None:
        if flow in connector.capabilities:
            pytest.skip(f"{connector.name} declares {flow.value}")
        method = CAPABILITY_METHODS[flow][0]
        assert callable(getattr(connector, method, None)), (
            f"{connector.name} has no `{method}`: inherit ConnectorBase, or define it to raise "
            f"NotSupported")
        with pytest.raises(NotSupported) as info:
            OPTIONAL_FLOWS[flow](connector)
        assert info.value.flow == flow.value
        assert info.value.connector == connector.name

    def test_unknown_settings_key_is_refused_by_name(
            self, connector_class: type[Any], connector_settings: Mapping[str, Any],
            connector_context: ConnectorContext) -> None:
        # A typo in a shop's config must stop start-up, not be silently ignored.
        with pytest.raises(ConfigError) as info:
            connector_class.from_config({**connector_settings, "no_such_setting": "x"},
                                        connector_context)
        assert "no_such_setting" in info.value.key
        assert str(connector_class.name) in info.value.key


class WebhookContract(ConnectorContract):
    """What a connector that takes signed webhooks owes."""

    @pytest.fixture
    def webhook_now(self) -> datetime:
        return datetime.now(UTC)

    @pytest.fixture
    def signature_headers(self) -> tuple[str, ...]:
        return ()

    @pytest.fixture
    def invalid_body(self) -> bytes:
        return b"{}"

    @pytest.fixture
    def freshness_tolerance(self) -> float | None:
        return None

    def test_signed_delivery_is_accepted(self, connector: Any, signed_delivery: SignedDelivery,
                                         webhook_now: datetime) -> None:
        headers, body = signed_delivery()

        event = connector.parse_webhook(headers, body, webhook_now)

        assert isinstance(event, RefundRequested | RefundUpdate | ExternalRefund), event

    def test_lower_cased_header_names_are_accepted(
            self, connector: Any, signed_delivery: SignedDelivery, webhook_now: datetime
    ) -> None:
        # Web servers hand headers over lower-cased (Starlette does).
        headers, body = signed_delivery()
        lowered = {name.lower(): value for name, value in headers.items()}

        assert not isinstance(connector.parse_webhook(lowered, body, webhook_now), Ignored)

    def test_forged_signature_is_rejected(self, connector: Any,
                                          signed_delivery: SignedDelivery,
                                          webhook_now: datetime) -> None:
        headers, body = signed_delivery(forged=True)

        with pytest.raises(WebhookRejected):
            connector.parse_webhook(headers, body, webhook_now)

    def test_tampered_body_is_rejected(self, connector: Any, signed_delivery: SignedDelivery,
                                       webhook_now: datetime) -> None:
        headers, body = signed_delivery()
        # Whitespace keeps JSON meaning the same: only a check over the raw bytes notices.
        tampered = body[:-1] + b" " + body[-1:]

        with pytest.raises(WebhookRejected):
            connector.parse_webhook(headers, tampered, webhook_now)

    def test_unsigned_delivery_is_rejected(self, connector: Any,
                                           signed_delivery: SignedDelivery,
                                           signature_headers: tuple[str, ...],
                                           webhook_now: datetime) -> None:
        if not signature_headers:
            pytest.skip("no signature_headers given: the signature travels in the body")
        headers, body = signed_delivery()
        dropped = {n.lower() for n in signature_headers}
        unsigned = {k: v for k, v in headers.items() if k.lower() not in dropped}
        assert unsigned != headers, f"none of {signature_headers} is in the delivery's headers"

        with pytest.raises(WebhookRejected):
            connector.parse_webhook(unsigned, body, webhook_now)

    @pytest.mark.parametrize("direction", [1, -1], ids=["stale", "from-the-future"])
    def test_delivery_signed_too_far_from_now_is_rejected(
            self, connector: Any, signed_delivery: SignedDelivery, webhook_now: datetime,
            freshness_tolerance: float | None, direction: int) -> None:
        if freshness_tolerance is None:
            pytest.skip("no freshness_tolerance given: the signature covers no timestamp")
        headers, body = signed_delivery()
        # Signed at `webhook_now`; received well outside the tolerance, later or earlier.
        received = webhook_now + timedelta(seconds=direction * (freshness_tolerance + 60))

        assert not isinstance(connector.parse_webhook(headers, body, webhook_now), Ignored)
        with pytest.raises(WebhookRejected):
            connector.parse_webhook(headers, body, received)

    def test_duplicate_delivery_parses_to_the_same_event(
            self, connector: Any, signed_delivery: SignedDelivery, webhook_now: datetime
    ) -> None:
        headers, body = signed_delivery()

        first = connector.parse_webhook(headers, body, webhook_now)
        again = connector.parse_webhook(dict(headers), body, webhook_now)

        assert first == again
        assert dedupe_key(first), f"{first!r} carries nothing to deduplicate it on"
        if isinstance(first, RefundRequested):
            assert first.request.fingerprint() == again.request.fingerprint()

    def test_signed_body_that_does_not_validate_names_the_field(
            self, connector: Any, signed_delivery: SignedDelivery, invalid_body: bytes,
            webhook_now: datetime) -> None:
        headers, body = signed_delivery(invalid_body)

        with pytest.raises(InvalidRequest) as info:
            connector.parse_webhook(headers, body, webhook_now)

        assert info.value.field


def route_for(router: respx.MockRouter, method: str, url: str) -> respx.Route:
    """The route of `router` that a `method` request to `url` reaches (for `refund_route`)."""
    probe = httpx.Request(method, url)
    for route in router.routes:
        if route.pattern.match(probe):
            return route
    raise LookupError(f"no route of the router answers {method} {url}")


def _answer_with(route: respx.Route, key_of: KeyReader,
                 failures: Callable[[httpx.Request], httpx.Response | None],
                 lose_answers: int = 0) -> None:
    """Let `failures` answer money-moving requests first; otherwise the fake answers. The
    fake's first `lose_answers` answers to money-moving requests are lost: it did the work,
    then the connection timed out before its answer arrived."""
    lost = 0
    fake = route.side_effect
    fixed = route.return_value
    if (fake is None and fixed is None) or (fake is not None and not callable(fake)):
        raise TypeError("refund_route must answer with a function (side_effect=) or a fixed "
                        "response (return_value=) so the contract can wrap it")

    def answer(request: httpx.Request, route: respx.Route, **params: Any) -> httpx.Response:
        nonlocal lost
        if key_of(request) is not None:
            failure = failures(request)
            if failure is not None:
                return failure
        if fake is None:
            assert fixed is not None
            return fixed
        assert callable(fake)
        if "route" in inspect.getfullargspec(fake).args:
            params["route"] = route
        result = fake(request, **params)
        if not isinstance(result, httpx.Response):
            raise TypeError(f"refund_route's side effect answered {result!r}, not a response")
        if key_of(request) is not None and lost < lose_answers:
            lost += 1
            raise httpx.ReadTimeout("contract: the answer was lost", request=request)
        return result

    route.side_effect = answer


def _fail_first(*failures: type[httpx.TransportError] | int
                ) -> Callable[[httpx.Request], httpx.Response | None]:
    pending = list(failures)

    def fail(request: httpx.Request) -> httpx.Response | None:
        if not pending:
            return None
        failure = pending.pop(0)
        if isinstance(failure, int):
            return httpx.Response(failure, json={"error": "contract: injected failure"})
        raise failure("contract: injected failure", request=request)

    return fail


class PaymentContract(ConnectorContract):
    """What a connector that pays money back owes."""

    @pytest.fixture
    def refund_order(self) -> RefundOrder:
        return RefundOrder(
            case_id=_CASE_ID, attempt=1, idempotency_key=f"{_CASE_ID}-refund-1",
            amount=Money.parse("25.00", "CNY"), payment_reference="pay-contract-0001",
            order_id=_ORDER_ID, reason=ReasonCode.DEFECTIVE,
            paid_total=Money.parse("80.00", "CNY"),
        )

    @pytest.fixture
    def refusal(self) -> httpx.Response:
        return httpx.Response(400, json={"error": {"message": "refused by the contract"}})

    @pytest.fixture
    def paid_refunds(self) -> Callable[[], int] | None:
        return None

    @staticmethod
    def assert_paid_once(paid_refunds: Callable[[], int] | None) -> None:
        if paid_refunds is not None:
            assert paid_refunds() == 1, f"the fake paid {paid_refunds()} refunds, not one"

    @staticmethod
    def money_calls(route: respx.Route, key_of: KeyReader) -> list[str]:
        keys = (key_of(call.request) for call in route.calls)
        return [key for key in keys if key is not None]

    def assert_twice_is_one_refund(self, connector: Any, order: RefundOrder,
                                   refund_route: respx.Route, key_of: KeyReader,
                                   paid_refunds: Callable[[], int] | None) -> None:
        """Asked twice for the same refund, the connector answers one refund, asked for
        under one key, and the provider paid once."""
        first = connector.issue_refund(order)
        again = connector.issue_refund(order)

        assert first.provider_ref and again.provider_ref == first.provider_ref
        assert set(self.money_calls(refund_route, key_of)) == {order.idempotency_key}
        self.assert_paid_once(paid_refunds)

    def test_refund_is_idempotent_under_retries(
            self, connector: Any, router: respx.MockRouter, refund_route: respx.Route,
            idempotency_key_of: KeyReader, refund_order: RefundOrder,
            paid_refunds: Callable[[], int] | None) -> None:
        _answer_with(refund_route, idempotency_key_of, _fail_first(httpx.ConnectError, 503))

        result = connector.issue_refund(refund_order)

        assert isinstance(result, RefundResult) and result.provider_ref
        keys = self.money_calls(refund_route, idempotency_key_of)
        assert keys == [refund_order.idempotency_key] * 3
        self.assert_paid_once(paid_refunds)

    def test_a_lost_answer_is_not_paid_again(
            self, connector: Any, router: respx.MockRouter, refund_route: respx.Route,
            idempotency_key_of: KeyReader, refund_order: RefundOrder,
            paid_refunds: Callable[[], int] | None) -> None:
        # The provider paid, then its answer was lost: the retry must come back with that
        # refund, never make a second one (a provider without idempotency keys is the test).
        if paid_refunds is None:
            pytest.skip("no paid_refunds given: the fake's refunds cannot be counted")
        _answer_with(refund_route, idempotency_key_of, lambda request: None, lose_answers=1)

        result = connector.issue_refund(refund_order)

        self.assert_paid_once(paid_refunds)
        found = connector.find_refund(refund_order)
        assert found is not None and result.provider_ref == found.provider_ref
        assert set(self.money_calls(refund_route, idempotency_key_of)) == {
            refund_order.idempotency_key}

    def test_same_order_twice_answers_the_same_refund(
            self, connector: Any, router: respx.MockRouter, refund_route: respx.Route,
            idempotency_key_of: KeyReader, refund_order: RefundOrder,
            paid_refunds: Callable[[], int] | None) -> None:
        self.assert_twice_is_one_refund(connector, refund_order, refund_route,
                                        idempotency_key_of, paid_refunds)

    def test_full_refund_twice_answers_the_same_refund(
            self, connector: Any, router: respx.MockRouter, refund_route: respx.Route,
            idempotency_key_of: KeyReader, refund_order: RefundOrder,
            paid_refunds: Callable[[], int] | None) -> None:
        # Once the whole payment is back, nothing is left to refund: a connector that works
        # out what is left before it asks must still answer with the refund under its key.
        full = dataclasses.replace(refund_order, amount=refund_order.paid_total)
        self.assert_twice_is_one_refund(connector, full, refund_route, idempotency_key_of,
                                        paid_refunds)

    def test_refusal_is_permanent_and_not_retried(
            self, connector: Any, router: respx.MockRouter, refund_route: respx.Route,
            idempotency_key_of: KeyReader, refund_order: RefundOrder,
            refusal: httpx.Response) -> None:
        _answer_with(refund_route, idempotency_key_of, lambda request: refusal)

        with pytest.raises(PermanentProviderError):
            connector.issue_refund(refund_order)

        assert len(self.money_calls(refund_route, idempotency_key_of)) == 1

    def test_transient_failures_are_retried_a_bounded_number_of_times(
            self, connector: Any, router: respx.MockRouter, refund_route: respx.Route,
            idempotency_key_of: KeyReader, refund_order: RefundOrder,
            connector_context: ConnectorContext) -> None:
        _answer_with(refund_route, idempotency_key_of,
                     lambda request: httpx.Response(503, json={"error": "unavailable"}))

        with pytest.raises(TransientProviderError):
            connector.issue_refund(refund_order)

        assert len(self.money_calls(refund_route, idempotency_key_of)) == (
            connector_context.retry.attempts)

    def test_find_refund_finds_the_refund_made_under_the_key(
            self, connector: Any, router: respx.MockRouter, refund_order: RefundOrder
    ) -> None:
        # How a worker that died mid-call learns whether the money already moved.
        assert connector.find_refund(refund_order) is None
        paid = connector.issue_refund(refund_order)

        found = connector.find_refund(refund_order)

        assert found is not None and found.provider_ref == paid.provider_ref

    def test_unknown_status_is_reported_as_unknown(
            self, connector: Any, router: respx.MockRouter, refund_order: RefundOrder,
            unknown_status_answer: Callable[[str], str]) -> None:
        paid = connector.issue_refund(refund_order)
        assert paid.provider_ref
        raw = unknown_status_answer(paid.provider_ref)

        result = connector.refund_status(paid.provider_ref, refund_order)

        assert result.status is RefundStatus.UNKNOWN
        assert result.raw_status == raw


class ErpContract(ConnectorContract):
    """What a connector that books returns owes."""

    def test_booking_the_same_case_twice_books_it_once(
            self, connector: Any, router: respx.MockRouter, return_booking: ReturnBooking
    ) -> None:
        first = connector.book_return(return_booking)
        again = connector.book_return(return_booking)

        assert first and again == first


class ReplacementContract(ConnectorContract):
    """What a connector that sends an exchange's replacement (`erp.replacement`) owes."""

    def test_nothing_is_found_before_the_replacement_is_made(
            self, connector: Any, router: respx.MockRouter,
            replacement_order: ReplacementOrder) -> None:
        assert connector.find_replacement(replacement_order) is None

    def test_creating_the_same_replacement_twice_makes_one(
            self, connector: Any, router: respx.MockRouter,
            replacement_order: ReplacementOrder,
            replacement_count: Callable[[], int]) -> None:
        first = connector.create_replacement(replacement_order)
        again = connector.create_replacement(replacement_order)

        assert isinstance(first, ReplacementResult) and first.document
        assert again == first
        assert first.state is ReplacementState.SHIPPED and first.delivery
        assert replacement_count() == 1

    def test_the_replacement_made_is_found_by_its_key(
            self, connector: Any, router: respx.MockRouter,
            replacement_order: ReplacementOrder) -> None:
        made = connector.create_replacement(replacement_order)

        assert connector.find_replacement(replacement_order) == made
        other = dataclasses.replace(replacement_order,
                                    idempotency_key=replacement_order.idempotency_key + "-other")
        assert connector.find_replacement(other) is None
