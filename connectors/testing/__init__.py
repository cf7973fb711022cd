"""Contract tests any connector can run against its own respx fakes.

Needs `pytest` and `respx` (RefundBridge's `dev` extra); nothing here is imported by the
service itself. Each contract is a base class: a connector's test module subclasses the ones
that fit, names the subclass `Test…`, and provides the fixtures below as methods of that
subclass (a fixture defined on the class wins over one of the same name in a conftest):

    class TestAcmePayContract(PaymentContract, WebhookContract):
        @pytest.fixture
        def connector_class(self) -> type[Any]:
            return AcmePayConnector
        ...

Every contract (`ConnectorContract`):

- `connector_class` (required): the class the entry point names.
- `connector_settings` (required): a valid settings table, as `[shops.<id>.<name>]` holds it.
- `connector_context` (default: shop `contract-shop`, `RetryPolicy(attempts=3,
  initial_wait=0, max_wait=0)`): the `ConnectorContext` the connector is built with.
- `connector` (default: `connector_class.from_config(connector_settings,
  connector_context)`, closed afterwards): the instance under test.
- `entry_point_name` (default: `connector_class.name`): the name it is registered under.

Checks: the class passes `check_connector_class`; every optional flow it does not declare
raises `NotSupported` naming the flow and the connector; an unknown settings key is refused
with a `ConfigError` naming it.

`WebhookContract` (storefronts, and payment providers that notify):

- `signed_delivery` (required): a function `(body: bytes | None = None, *, forged=False)
  -> (headers, body)` making one delivery as the provider sends it, signed at
  `webhook_now` with the key in `connector_settings` (or, when `forged`, with some other
  key). `body=None` means a typical message that needs action; otherwise sign `body` as is.
- `webhook_now` (default: now, UTC): the `now` handed to `parse_webhook`.
- `signature_headers` (default: none): the headers that carry the signature; the
  missing-signature check drops them (skipped when the signature travels in the body).
- `invalid_body` (default `b"{}"`): a body that, once signed, does not validate.
- `freshness_tolerance` (default: none): for a signature that covers a timestamp, how many
  seconds from now the connector accepts it (as configured in `connector_settings`); the
  freshness check is skipped without it.

Checks: a signed delivery is accepted, also with lower-cased header names; a forged, a
tampered and an unsigned one raise `WebhookRejected`, and so does one received more than the
tolerance after or before it was signed; the same delivery twice parses to the same event
with a key to deduplicate it on; a signed body that does not validate raises
`InvalidRequest` naming the field.

`PaymentContract` (`payment.issue_refund`):

- `router` (required): the active `respx` router with the provider's fake installed. The
  fake must behave like the provider: one refund per idempotency key, the same answer again
  for a repeated key, and refunds it can report on and list.
- `refund_route` (required): the `respx.Route` the money-moving request reaches
  (`route_for(router, "POST", url)` finds it). Its answer must be a function
  (`side_effect=`) or a fixed response (`return_value=`); the contract wraps it to inject
  failures.
- `idempotency_key_of` (required): a function `(httpx.Request) -> str | None` reading the
  idempotency key where the provider reads it (a header, a form field, a JSON field), or
  `None` for a request that moves no money.
- `refund_order` (default: CNY 25.00 of an 80.00 order, key `rc_contract0001-refund-1`):
  the `RefundOrder` to pay back. Override it for providers that need lines or references of
  their own shape. Its `paid_total` must be what the fake holds as paid: one check pays it
  all back.
- `unknown_status_answer` (required): a function `(provider_ref) -> str` that makes the fake
  report, for that refund, a status the connector has never heard of, and returns it.
- `refusal` (default: HTTP 400 with a JSON error): what the provider answers when it says no.
- `paid_refunds` (default: none): a function `() -> int` counting the refunds the fake has
  paid, so "pays once" is checked on the fake's books, not only on the keys sent; the
  lost-answer check is skipped without it.

Checks: a refund retried through a connection error and a 503 carries the order's key on
every attempt and pays once; the same order twice answers the same refund, also when it
paid back everything (so nothing is left to refund the second time); a refusal is
permanent and not retried; transient failures are retried a bounded number of times; a
refund whose answer was lost (the provider paid, then the connection timed out) is not paid
again; `find_refund` finds the refund made under the key and nothing before it; an unknown
status is reported as `RefundStatus.UNKNOWN` with the provider's raw status.

`ErpContract` (`erp.book_return`):

- `router` (required): as above, with the ERP's fake installed (and the order it needs).
- `return_booking` (required): a `ReturnBooking` the fake can book.

Checks: booking the same case twice books it once (the same reference comes back).

`ReplacementContract` (`erp.replacement`):

- `router` (required): as above, with the ERP's fake installed, holding the original order
  (its customer) and stock enough to ship the replacement.
- `replacement_order` (required): a `ReplacementOrder` the fake can fill.
- `replacement_count` (required): a function `() -> int` counting the replacement orders
  the fake holds, so "made once" is checked on the fake's books.

Checks: nothing is found under a key before anything was made; creating the same
replacement twice makes one order and one delivery and answers the same result (shipped);
what was made is found again by its key, and nothing under another key.
"""

from refundbridge.connectors.testing.contract import (
    CONTRACT_RETRY,
    OPTIONAL_FLOWS,
    ConnectorContract,
    Delivery,
    ErpContract,
    PaymentContract,
    ReplacementContract,
    WebhookContract,
    dedupe_key,
    route_for,
)

__all__ = [
    "CONTRACT_RETRY",
    "OPTIONAL_FLOWS",
    "ConnectorContract",
    "Delivery",
    "ErpContract",
    "PaymentContract",
    "ReplacementContract",
    "WebhookContract",
    "dedupe_key",
    "route_for",
]
