"""The one error hierarchy of RefundBridge.

    RefundBridgeError
    ├── DomainError                  a rule of the domain was broken by the caller
    │   ├── IllegalTransition        the state machine has no such edge from the current state
    │   ├── InvalidRequest           a request fails domain validation (names the field)
    │   ├── InvalidUdi               a scanned UDI does not parse (bad check digit, bad date…)
    │   ├── CurrencyMismatch         money of two currencies was combined
    │   ├── ClaimedByAnother         another operator claimed the case
    │   ├── ProposalPending          a colleague's decision waits for a second reviewer
    │   ├── NoProposal               nothing to confirm or send back
    │   └── SameReviewer             four eyes: the proposer cannot confirm their own decision
    ├── NotFound                     no such case, shop or connector (or not the caller's)
    ├── Forbidden                    the caller's role may not do this
    ├── DuplicateDelivery            an external id arrived again (same body: replay; else conflict)
    ├── ConcurrencyConflict          another writer changed the record first; safe to retry
    ├── ConfigError                  settings are invalid (names the key)
    ├── StoreUnavailable             the database refused or dropped the connection; retry
    └── ConnectorError               a provider call or message failed
        ├── WebhookRejected          signature bad or stale, or the body is not the provider's
        ├── NotSupported             the connector does not do this flow
        ├── TransientProviderError   timeouts, 429, 5xx: retry with the same idempotency key
        │   └── SendDeferred         the provider holds a message back for now (rate limits)
        └── PermanentProviderError   the provider said no (4xx): retrying will not help
            └── AmountNotRepresentable  the provider's currency table cannot express it

Adapters translate library errors into these with ``raise ... from exc``; the API maps them
to HTTP status codes in one place (``api.errors``).
"""

from __future__ import annotations


class RefundBridgeError(Exception):
    """Base of every error RefundBridge raises on purpose."""


class DomainError(RefundBridgeError):
    pass


class IllegalTransition(DomainError):
    def __init__(self, case_id: str, state: str, transition: str) -> None:
        super().__init__(f"case {case_id}: transition '{transition}' is not allowed from '{state}'")
        self.case_id = case_id
        self.state = state
        self.transition = transition


class InvalidRequest(DomainError):
    """`errors` lists every failing field as (dotted field path, message); the first is
    also `field`/`message`."""

    def __init__(self, field: str, message: str,
                 errors: list[tuple[str, str]] | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.errors = errors or [(field, message)]


class InvalidUdi(DomainError):
    """A UDI scan that does not parse; `scan` is the raw text, `message` says what is wrong."""

    def __init__(self, scan: str, message: str) -> None:
        super().__init__(f"UDI {scan!r}: {message}")
        self.scan = scan
        self.message = message


class CurrencyMismatch(DomainError):
    pass


class ClaimedByAnother(DomainError):
    """The case is claimed by someone else (claim it with `take_over`, or leave it)."""

    def __init__(self, case_id: str, assignee: str) -> None:
        super().__init__(f"case {case_id} is claimed by {assignee}")
        self.case_id = case_id
        self.assignee = assignee


class ProposalPending(DomainError):
    """Another reviewer's proposal waits for a second person: confirm or reject it."""

    def __init__(self, case_id: str, proposed_by: str) -> None:
        super().__init__(f"case {case_id}: {proposed_by} proposed a decision that waits for a "
                         "second reviewer; confirm it or send it back instead")
        self.case_id = case_id
        self.proposed_by = proposed_by


class NoProposal(DomainError):
    def __init__(self, case_id: str) -> None:
        super().__init__(f"case {case_id} has no proposed decision to confirm or reject")
        self.case_id = case_id


class SameReviewer(DomainError):
    """Four eyes: the person who proposed a decision cannot also confirm or reject it."""

    def __init__(self, case_id: str, actor: str) -> None:
        super().__init__(f"case {case_id}: four eyes — {actor} proposed this decision, so "
                         "another reviewer must confirm or reject it")
        self.case_id = case_id
        self.actor = actor


class NotFound(RefundBridgeError):
    pass


class Forbidden(RefundBridgeError):
    """The caller is known but its role may not do this (a case of a shop it may not see is
    `NotFound` instead: it must not learn that the case exists)."""


class DuplicateDelivery(RefundBridgeError):
    def __init__(self, case_id: str, same_body: bool) -> None:
        kind = "duplicate delivery" if same_body else "external id reused with a different body"
        super().__init__(f"{kind} of case {case_id}")
        self.case_id = case_id
        self.same_body = same_body


class ConcurrencyConflict(RefundBridgeError):
    pass


class ConfigError(RefundBridgeError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class StoreUnavailable(RefundBridgeError):
    """The database cannot be reached (refused, dropped, timed out): nothing was decided, so
    the caller may send the same thing again later."""


class ConnectorError(RefundBridgeError):
    def __init__(self, connector: str, message: str) -> None:
        super().__init__(f"{connector}: {message}")
        self.connector = connector
        self.message = message


class WebhookRejected(ConnectorError):
    pass


class NotSupported(ConnectorError):
    def __init__(self, connector: str, flow: str) -> None:
        super().__init__(connector, f"flow '{flow}' is not supported by connector '{connector}'")
        self.flow = flow


class TransientProviderError(ConnectorError):
    def __init__(self, connector: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(connector, message)
        self.retry_after = retry_after


class SendDeferred(TransientProviderError):
    """The provider holds a message back for now (Aliyun's per-number limit,
    `isv.BUSINESS_LIMIT_CONTROL`): send it later; it is not a failure of the case."""


class DeliveryUncertain(ConnectorError):
    """The message was handed over but the provider's answer never came (an SMTP server
    that took the whole body, then timed out or hung up before its 250): it may have been
    delivered. Not retried, because a retry could deliver it twice; the caller records it
    as sent but unconfirmed."""


class PermanentProviderError(ConnectorError):
    def __init__(self, connector: str, message: str, code: str | None = None) -> None:
        super().__init__(connector, message)
        self.code = code


class AmountNotRepresentable(PermanentProviderError):
    """An amount a provider cannot express in its own minor units (a fraction of its unit, a
    step it refuses, a currency it does not take). Raised before any call, so no money moves;
    retrying cannot help because the amount, not the provider's mood, is the problem."""

    CODE = "amount_not_representable"

    def __init__(self, connector: str, amount: str, currency: str, reason: str) -> None:
        super().__init__(connector, f"{amount} {currency} cannot be sent to {connector}: {reason}",
                         code=self.CODE)
        self.amount = amount
        self.currency = currency
        self.reason = reason
