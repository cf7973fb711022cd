"""The `RefundCase` aggregate: one customer request, its decision, money and goods.

A case changes only through its methods; each method moves the state machine
(`core.lifecycle`) and appends a hash-chained event to the case's audit trail.

Longer than 500 lines on purpose: `RefundCase` is one aggregate, and its methods are the
lifecycle's named transitions with what each one owes (a refund, a booking, a message).
Split across files, the path of a case could no longer be read in one place. The small
value types it holds come first.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from refundbridge.core.audit import GENESIS, AuditEvent, chain_event
from refundbridge.core.errors import (
    ClaimedByAnother,
    DomainError,
    IllegalTransition,
    InvalidRequest,
    NoProposal,
    NotFound,
    ProposalPending,
    SameReviewer,
)
from refundbridge.core.lifecycle import FINAL_STATES, CaseState, Transition, allows, next_state
from refundbridge.core.money import Money
from refundbridge.core.replacement import (
    CaseReplacement,
    ReplacementProgress,
    ReplacementTiming,
    replacement_key,
)
from refundbridge.core.request import NormalizedRefundRequest


class Step(StrEnum):
    """A unit of work a worker does for a case; each is one job with one side effect."""

    EVALUATE = "evaluate"
    REFUND = "refund"
    STOCK = "stock"
    NOTIFY = "notify"
    WRITE_BACK = "write_back"  # tell the storefront what became of its request
    REPLACE = "replace"  # order an exchange's replacement in the ERP


class Outcome(StrEnum):
    APPROVE = "approve"
    REVIEW = "review"
    DENY = "deny"
    PASS = "pass"


@dataclass(frozen=True, slots=True)
class RuleResult:
    rule_id: str
    outcome: Outcome
    message: str
    line: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.rule_id, "outcome": self.outcome.value, "line": self.line,
                "message": self.message}


class Disposition(StrEnum):
    RESTOCK = "restock"
    QUARANTINE = "quarantine"
    RETURN_TO_MANUFACTURER = "return_to_manufacturer"
    SCRAP = "scrap"
    KEEP_AS_EVIDENCE = "keep_as_evidence"
    PENDING_INSPECTION = "pending_inspection"
    NOT_RETURNED = "not_returned"  # a refund without goods: the unit stays with the customer


@dataclass(frozen=True, slots=True)
class LineDisposition:
    """Where one request line's units go, and the rule that said so."""

    line: int
    sku: str
    disposition: Disposition
    rule: str
    # The lot and serial the rules established (from the request, a UDI or the ERP), so the
    # stock booking and the audit trail name the very units that came back.
    lot: str | None = None
    serial: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"line": self.line, "sku": self.sku, "disposition": self.disposition.value,
                "rule": self.rule, "lot": self.lot, "serial": self.serial}


class ObligationKind(StrEnum):
    ADVERSE_EVENT_REPORT = "adverse_event_report"
    RECALL_NOTICE = "recall_notice"
    REFUND_DEADLINE = "refund_deadline"


@dataclass(frozen=True, slots=True)
class Obligation:
    """Something the shop must do by a date because of this case (a report, a refund)."""

    kind: ObligationKind
    due: date | None  # None: the clock has not started (goods not yet received)
    detail: str
    rule: str

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "due": self.due.isoformat() if self.due else None,
                "detail": self.detail, "rule": self.rule}


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    amount: Money
    rules: tuple[RuleResult, ...]
    decided_by: str
    at: datetime
    # Why, for the shop's own people: kept in the case and its audit trail, never sent to
    # the customer or a storefront (it may name a colleague, a suspicion, a diagnosis).
    internal_note: str = ""
    lines: tuple[LineDisposition, ...] = ()
    obligations: tuple[Obligation, ...] = ()
    # What the customer is told with the decision (its email, the storefront's note); only
    # a person writes one.
    customer_message: str = ""
    # Four eyes: the first reviewer, whose proposal `decided_by` confirmed, and the second
    # reviewer's own note (empty for a decision one person made).
    proposed_by: str = ""
    confirm_note: str = ""

    def as_json(self) -> dict[str, Any]:
        data = {
            "decision": self.outcome.value,
            "refund_amount": str(self.amount.amount),
            "currency": self.amount.currency,
            "rules": [r.as_json() for r in self.rules],
            "lines": [d.as_json() for d in self.lines],
            "obligations": [o.as_json() for o in self.obligations],
            "decided_by": self.decided_by,
            "at": self.at.isoformat(),
            "internal_note": self.internal_note,
            "customer_message": self.customer_message,
        }
        if self.proposed_by:
            data.update(proposed_by=self.proposed_by, confirm_note=self.confirm_note)
        return data


class FourEyesReason(StrEnum):
    """Why a reviewer's decision waits for a second person (`services.four_eyes_reasons`)."""

    AMOUNT = "amount"  # above the shop's `four_eyes_above` for the currency
    ADVERSE_EVENT = "adverse_event"  # a possible adverse event (R14, or a report is due)


@dataclass(frozen=True, slots=True)
class ReviewProposal:
    """A first reviewer's decision on a case that needs a second one (four eyes): kept on
    the case, which stays `awaiting_review` until another person confirms or rejects it."""

    outcome: Outcome
    proposed_by: str
    at: datetime
    internal_note: str
    customer_message: str = ""
    reasons: tuple[FourEyesReason, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {"outcome": self.outcome.value, "proposed_by": self.proposed_by,
                "at": self.at.isoformat(), "internal_note": self.internal_note,
                "customer_message": self.customer_message,
                "reasons": [r.value for r in self.reasons]}


class RefundStatus(StrEnum):
    STARTED = "started"  # stored before the provider is called; key reserved
    PENDING = "pending"  # the provider accepted it but has not settled it
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the provider said something we do not map; never acted on


@dataclass(slots=True)
class RefundAttempt:
    number: int
    idempotency_key: str
    amount: Money
    status: RefundStatus = RefundStatus.STARTED
    provider_ref: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class RefundResult:
    """What a payment provider says about a refund."""

    status: RefundStatus
    provider_ref: str | None
    amount: Money | None = None
    message: str | None = None
    raw_status: str | None = None


class NotificationKind(StrEnum):
    RECEIVED = "received"
    APPROVED = "approved"
    DENIED = "denied"
    GOODS_RECEIVED = "goods_received"  # the warehouse recorded the return's receipt
    REFUNDED = "refunded"
    # The provider refused the refund for good (or reversed a paid one): a person retries it.
    # Once per case, however many attempts fail.
    REFUND_FAILED = "refund_failed"
    # An exchange's replacement: ordered in the ERP, and shipped (only the second when the
    # ERP says it shipped at once: it says the first too).
    REPLACEMENT_ORDERED = "replacement_ordered"
    REPLACEMENT_SHIPPED = "replacement_shipped"
    # A recall campaign's messages to a consignee (core/campaigns.py), not a case's: the
    # notice with its instructions and acknowledgement link, and a reminder of it.
    RECALL_NOTICE = "recall_notice"
    RECALL_REMINDER = "recall_reminder"

    @property
    def urgent(self) -> bool:
        """An urgent message is sent in quiet hours too (`URGENT_KINDS`)."""
        return self in URGENT_KINDS


# Kinds whose SMS do not wait for the end of a shop's quiet hours: a recall notice is a
# safety message, and its reminders keep the notice's time of day.
URGENT_KINDS: frozenset[NotificationKind] = frozenset(
    {NotificationKind.RECALL_NOTICE, NotificationKind.RECALL_REMINDER})
# Kinds a case never owes: campaign messages go through the notifier, not a case's list.
CAMPAIGN_KINDS = URGENT_KINDS


class Channel(StrEnum):
    """How a message reaches the customer. Email is the record (what keeps a case open);
    SMS is a second channel beside it, and its failure is shown, never a case's."""

    EMAIL = "email"
    SMS = "sms"


class DeliveryState(StrEnum):
    """What became of one send, as the provider tells it (re-exported by `core.ports`)."""

    QUEUED = "queued"  # the provider took it
    SENT = "sent"  # handed to the carrier
    DELIVERED = "delivered"  # the handset has it
    FAILED = "failed"  # refused for good (a bad number, a template the provider rejected)
    DEFERRED = "deferred"  # held back for now (a provider's per-number limit, quiet hours)


# States after which a message is never sent again.
SENT_STATES = frozenset({DeliveryState.QUEUED, DeliveryState.SENT, DeliveryState.DELIVERED})


def sms_message_id(case_id: str, kind: NotificationKind) -> str:
    """Our id of a case's SMS of one kind: stable, so a provider's echo of it (Aliyun's
    OutId, Tencent's SessionContext) finds the record, and a resend is recognised."""
    return f"{case_id}.{kind.value}.sms"


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # to be sent; a transient failure leaves it here, with its error
    SENT = "sent"
    FAILED = "failed"  # refused for good, or given up on: a person resends or waives it
    WAIVED = "waived"  # a person decided the customer need not get it (notifications only)


class StatusOutcome(StrEnum):
    """What a storefront is told about its request."""

    APPROVED = "approved"
    DECLINED = "declined"
    REFUNDED = "refunded"


@dataclass(slots=True)
class WriteBack:
    outcome: StatusOutcome
    status: DeliveryStatus = DeliveryStatus.PENDING
    message: str | None = None


# What the customer is still owed: a case does not close while one of these is unsent.
UNDELIVERED = frozenset({DeliveryStatus.PENDING, DeliveryStatus.FAILED})


@dataclass(slots=True)
class Notification:
    """A message the case owes its customer (one per kind), and how sending it went."""

    kind: NotificationKind
    status: DeliveryStatus = DeliveryStatus.PENDING
    last_error: str | None = None
    attempts: int = 0  # sends tried, by notify runs (a transient failure counts too)
    last_attempt_at: datetime | None = None
    waived_by: str | None = None
    waive_reason: str | None = None
    channel: Channel = Channel.EMAIL
    # The provider's word on the send (None: not sent yet) and its id for it.
    state: DeliveryState | None = None
    provider_id: str | None = None
    # A deferred SMS (a provider's limit, quiet hours) is not tried before this.
    next_attempt_at: datetime | None = None
    # Set, and committed, before an SMS call (`in_flight` too, while the call runs): a job
    # that finds it set, by a job that died or whose call timed out, asks the provider
    # whether that send went out before sending again.
    sending_since: datetime | None = None
    in_flight: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "status": self.status.value,
                "attempts": self.attempts, "last_error": self.last_error,
                "last_attempt_at": (self.last_attempt_at.isoformat()
                                    if self.last_attempt_at else None),
                "waived_by": self.waived_by, "waive_reason": self.waive_reason,
                "channel": self.channel.value,
                "state": self.state.value if self.state else None,
                "provider_id": self.provider_id,
                "next_attempt_at": (self.next_attempt_at.isoformat()
                                    if self.next_attempt_at else None),
                "sending_since": (self.sending_since.isoformat()
                                  if self.sending_since else None),
                "in_flight": self.in_flight}


@dataclass(frozen=True, slots=True)
class Inspection:
    line: int
    seal_intact: bool
    condition: str  # as_new | damaged | used
    inspector: str
    udi_scan: str | None = None
    passed: bool = True
    quantity: int | None = None
    temperature_log_ok: bool | None = None  # None: no record came back with the goods

    def as_json(self) -> dict[str, Any]:
        return {"line": self.line, "seal_intact": self.seal_intact,
                "condition": self.condition, "inspector": self.inspector,
                "udi_scan": self.udi_scan, "passed": self.passed, "quantity": self.quantity,
                "temperature_log_ok": self.temperature_log_ok}


@dataclass(frozen=True, slots=True)
class StockMove:
    line: int
    sku: str
    quantity: int
    disposition: Disposition
    lot: str | None = None
    serial: str | None = None


@dataclass(slots=True)
class StockBooking:
    """The case's one booking of its return in the ERP (the credit note and the stock moves),
    reserved under the case's lock before the ERP is called, as a refund attempt is.

    A job that claims it holds it for `lease`; while the lease runs, no other job calls the
    ERP for this case (the ERP has no idempotency key, and two look-before-writes at once
    both find nothing). A claim after the lease ran out (its job died) asks the ERP for
    the earlier booking first: every ERP connector looks for the case's documents before
    it creates one.
    """

    claims: int
    claimed_at: datetime
    held: bool = True  # False once the claiming job's ERP call ended without a booking

    def as_json(self) -> dict[str, Any]:
        return {"claims": self.claims, "claimed_at": self.claimed_at.isoformat(),
                "held": self.held}


@dataclass(frozen=True, slots=True)
class Failure:
    step: Step
    message: str
    resume_state: CaseState
    code: str | None = None


@dataclass(frozen=True, slots=True)
class ShippedUnit:
    """What the ERP says left the warehouse for an order: per lot or serial."""

    sku: str
    quantity: int
    lot: str | None = None
    serial: str | None = None
    expiry_date: date | None = None
    gtin: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"sku": self.sku, "quantity": self.quantity, "lot": self.lot,
                "serial": self.serial,
                "expiry_date": self.expiry_date.isoformat() if self.expiry_date else None,
                "gtin": self.gtin}


# A case in these states holds none of its order's money (the over-refund guard's view).
MONEY_RELEASED_STATES = frozenset({CaseState.DENIED, CaseState.CANCELLED})
REVERSIBLE_STATES = frozenset(
    {CaseState.REFUNDED, CaseState.AWAITING_RETURN, CaseState.RECEIVED_GOODS, CaseState.CLOSED}
)


def new_case_id() -> str:
    return "rc_" + uuid.uuid4().hex


@dataclass
class RefundCase:
    id: str
    shop_id: str
    source: str
    request: NormalizedRefundRequest
    state: CaseState
    created_at: datetime
    refund_timing: str = "on_receipt"
    # An exchange's: when its replacement is ordered (core/replacement.py ReplacementTiming).
    replacement_timing: str = ReplacementTiming.ON_RECEIPT.value
    approved: Money | None = None
    refunded: Money | None = None
    decisions: list[Decision] = field(default_factory=list)
    attempts: list[RefundAttempt] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    inspections: list[Inspection] = field(default_factory=list)
    stock_moves: list[StockMove] = field(default_factory=list)
    # Where each line's units go and what the shop owes, from the latest assessment: the
    # decision's, then the one made again when the goods are inspected.
    dispositions: list[LineDisposition] = field(default_factory=list)
    obligations: list[Obligation] = field(default_factory=list)
    # What the ERP said it shipped for the order when the case was evaluated (R01); None
    # when it was not asked or could not say.
    shipments: list[ShippedUnit] | None = None
    # Whether the storefront the request came from is told of decisions and refunds.
    writes_back: bool = False
    write_backs: list[WriteBack] = field(default_factory=list)
    erp_reference: str | None = None
    stock_booking: StockBooking | None = None
    # An exchange's replacement: reserved (key and claim) before the ERP is called.
    replacement: CaseReplacement | None = None
    failure: Failure | None = None
    # The review desk: who claimed the case, and a first reviewer's decision that waits
    # for a second person (four eyes).
    assignee: str | None = None
    proposal: ReviewProposal | None = None
    # How often the reconciler has found the case idle and revived it since it last moved:
    # bounded, so a step that never makes progress ends in `failed` instead of looping.
    revivals: int = 0
    version: int = 0
    audit_seq: int = 0
    audit_head: str = GENESIS
    new_events: list[AuditEvent] = field(default_factory=list)
    # Work the unit of work must hand to the queue once this case is committed.
    new_steps: list[Step] = field(default_factory=list)

    # ---------------------------------------------------------------- creation
    @classmethod
    def open(
        cls,
        request: NormalizedRefundRequest,
        *,
        shop_id: str,
        source: str,
        refund_timing: str,
        at: datetime,
        case_id: str | None = None,
        replacement_timing: str = ReplacementTiming.ON_RECEIPT.value,
    ) -> RefundCase:
        case = cls(
            id=case_id or new_case_id(),
            shop_id=shop_id,
            source=source,
            request=request,
            state=CaseState.RECEIVED,
            created_at=at,
            refund_timing=refund_timing,
            replacement_timing=replacement_timing,
            refunded=Money.zero(request.currency),
        )
        case.record(
            "received", actor=f"connector:{source}", at=at, from_state=None,
            to_state=CaseState.RECEIVED,
            data={"external_id": request.external_id, "fingerprint": request.fingerprint(),
                  "requested": request.requested.as_json(), "kind": request.kind.value},
        )
        # The "received" email goes out with the decision's, one job later: evaluation is
        # the very next step, and one notify job per case saves a queue round trip.
        case.queue_notification(NotificationKind.RECEIVED, send_now=False)
        case.new_steps.append(Step.EVALUATE)
        return case

    # ---------------------------------------------------------------- facts
    @property
    def currency(self) -> str:
        return self.request.currency

    @property
    def requested(self) -> Money:
        return self.request.requested

    @property
    def is_return(self) -> bool:
        """The customer sends goods back: a return, or an exchange."""
        return self.request.returns_goods

    @property
    def is_exchange(self) -> bool:
        return self.request.is_exchange

    @property
    def replacement_done(self) -> bool:
        """The ERP has the replacement's order (always true of a case that is no exchange)."""
        return not self.is_exchange or (self.replacement is not None
                                        and self.replacement.ordered)

    @property
    def refund_owed(self) -> bool:
        """Money is still to be paid: an exchange with no price difference to refund never
        owes any (its approved amount is zero)."""
        attempt = self.current_attempt
        paid = attempt is not None and attempt.status is RefundStatus.SUCCEEDED
        return not paid and not (self.is_exchange and not (
            self.approved is not None and self.approved.is_positive()))

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def goods_received(self) -> bool:
        return bool(self.inspections)

    @property
    def current_attempt(self) -> RefundAttempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def erp_booked(self) -> bool:
        return self.erp_reference is not None

    @property
    def reserves_money(self) -> bool:
        """Whether this case's approved amount counts against what the order can still refund."""
        return self.approved is not None and self.state not in MONEY_RELEASED_STATES

    # ---------------------------------------------------------------- audit
    def record(
        self,
        name: str,
        *,
        actor: str,
        at: datetime,
        from_state: str | None,
        to_state: str | None,
        data: dict[str, Any] | None = None,
    ) -> AuditEvent:
        event = chain_event(
            self.audit_seq, self.audit_head, at=at, actor=actor, name=name,
            from_state=from_state, to_state=to_state, data=data or {},
        )
        self.audit_seq, self.audit_head = event.seq, event.hash
        self.new_events.append(event)
        return event

    def _move(
        self,
        transition: Transition,
        *,
        actor: str,
        at: datetime,
        data: dict[str, Any] | None = None,
        target: CaseState | None = None,
    ) -> None:
        new = next_state(self.id, self.state, transition, target)
        old, self.state = self.state, new
        self.revivals = 0
        self.record(transition.value, actor=actor, at=at, from_state=old, to_state=new,
                    data=data)

    def queue_notification(self, kind: NotificationKind, send_now: bool = True) -> None:
        if self.request.customer.email is None:
            return
        if any(n.kind is kind and n.channel is Channel.EMAIL for n in self.notifications):
            return
        self.notifications.append(Notification(kind))
        if send_now:
            self._request_notify()

    def _request_notify(self) -> None:
        if Step.NOTIFY not in self.new_steps:
            self.new_steps.append(Step.NOTIFY)

    # ---------------------------------------------------------------- evaluation
    def start_evaluation(self, at: datetime) -> None:
        self._move(Transition.START_EVALUATION, actor="system", at=at)

    def decide(self, decision: Decision) -> None:
        """Apply a decision by the rules (from `evaluating`) or by a reviewer."""
        self.decisions.append(decision)
        self.proposal = None
        if decision.lines or decision.obligations:
            self.dispositions = list(decision.lines)
            self.obligations = list(decision.obligations)
        if decision.outcome is Outcome.DENY:
            # Nothing is refunded, so nothing is due; reports and recall notices still are.
            self.obligations = [o for o in self.obligations
                                if o.kind is not ObligationKind.REFUND_DEADLINE]
        data = decision.as_json()
        actor = decision.decided_by
        if decision.outcome is Outcome.APPROVE:
            self.approved = decision.amount
            self._move(Transition.APPROVE, actor=actor, at=decision.at, data=data)
            self.queue_notification(NotificationKind.APPROVED)
            self._after_approval(decision.at)
        elif decision.outcome is Outcome.DENY:
            self._move(Transition.DENY, actor=actor, at=decision.at, data=data)
            self.queue_notification(NotificationKind.DENIED)
        elif decision.outcome is Outcome.REVIEW:
            self._move(Transition.SEND_TO_REVIEW, actor=actor, at=decision.at, data=data)
        else:
            raise DomainError(f"a decision cannot be '{decision.outcome}'")
        if self.pending_notifications():
            self._request_notify()

    def _after_approval(self, at: datetime) -> None:
        if self.is_exchange:
            # The price difference, if any, is refunded only once the unit is back.
            if self.replacement_timing == ReplacementTiming.ON_APPROVAL.value:
                self._begin_replacement(at)
            else:
                self._move(Transition.AWAIT_RETURN, actor="system", at=at)
        elif self.is_return and self.refund_timing == "on_receipt":
            self._move(Transition.AWAIT_RETURN, actor="system", at=at)
        else:
            self._begin_refund(at)

    # ---------------------------------------------------------------- review desk
    @property
    def possible_adverse_event(self) -> bool:
        """A report may be due (R14's obligation), or R14 sent the case to a person."""
        return any(o.kind is ObligationKind.ADVERSE_EVENT_REPORT for o in self.obligations) \
            or any(r.rule_id == "R14" and r.outcome is Outcome.REVIEW
                   for d in self.decisions for r in d.rules)

    def claim(self, actor: str, at: datetime, *, take_over: bool = False) -> None:
        """`actor` works this case now; another's claim is taken over only on purpose."""
        if self.is_final:
            raise DomainError(f"case {self.id} is {self.state.value}; there is nothing to "
                              "claim")
        if self.assignee == actor:
            return
        if self.assignee is not None and not take_over:
            raise ClaimedByAnother(self.id, self.assignee)
        previous, self.assignee = self.assignee, actor
        self.record("claimed", actor=actor, at=at, from_state=self.state, to_state=self.state,
                    data={"assignee": actor, "previous": previous})

    def release(self, actor: str, at: datetime) -> None:
        """Give the case back to the queue; only its assignee may."""
        if self.assignee is None:
            return
        if self.assignee != actor:
            raise ClaimedByAnother(self.id, self.assignee)
        self.assignee = None
        self.record("released", actor=actor, at=at, from_state=self.state,
                    to_state=self.state, data={"previous": actor})

    def propose_review(self, proposal: ReviewProposal) -> None:
        """A first reviewer's decision, kept until a second person confirms or rejects it.
        Its author may replace it; anyone else must confirm or reject it first."""
        if self.state is not CaseState.AWAITING_REVIEW:
            raise IllegalTransition(self.id, self.state, "propose_review")
        replaces = self.proposal
        if replaces is not None and replaces.proposed_by != proposal.proposed_by:
            raise ProposalPending(self.id, replaces.proposed_by)
        self.proposal = proposal
        self.record("review_proposed", actor=proposal.proposed_by, at=proposal.at,
                    from_state=self.state, to_state=self.state,
                    data={**proposal.as_json(), "replaces": replaces is not None})

    def proposal_for(self, actor: str) -> ReviewProposal:
        """The proposal `actor` may confirm or reject: never their own."""
        proposal = self.proposal
        if proposal is None or self.state is not CaseState.AWAITING_REVIEW:
            raise NoProposal(self.id)
        if proposal.proposed_by == actor:
            raise SameReviewer(self.id, actor)
        return proposal

    def reject_proposal(self, actor: str, at: datetime, note: str) -> None:
        """A second reviewer sends the proposal back: the case waits for a new decision."""
        proposal = self.proposal_for(actor)
        if not note.strip():
            raise InvalidRequest("internal_note", "say why the proposed decision is sent back")
        self.proposal = None
        self.record("review_rejected", actor=actor, at=at, from_state=self.state,
                    to_state=self.state,
                    data={"proposal": proposal.as_json(), "internal_note": note})

    def record_shipments(self, units: Sequence[ShippedUnit] | None, at: datetime,
                         error: str | None = None) -> None:
        """Keep what the ERP said it shipped, as evidence and for the inspection's
        reassessment; `error` is the ERP's answer when it could not say."""
        self.shipments = None if units is None else list(units)
        self.record("shipments_looked_up", actor="system", at=at, from_state=self.state,
                    to_state=self.state,
                    data={"known": units is not None,
                          "units": [u.as_json() for u in units or ()], "error": error})

    # ---------------------------------------------------------------- storefront
    def request_write_back(self) -> None:
        """From now on, tell the storefront about the decision and the refund."""
        self.writes_back = True
        if self.state is CaseState.DENIED:
            self._queue_write_back(StatusOutcome.DECLINED)
        elif self.approved is not None:
            self._queue_write_back(StatusOutcome.APPROVED)

    def _queue_write_back(self, outcome: StatusOutcome) -> None:
        if not self.writes_back or any(w.outcome is outcome for w in self.write_backs):
            return
        self.write_backs.append(WriteBack(outcome))
        if Step.WRITE_BACK not in self.new_steps:
            self.new_steps.append(Step.WRITE_BACK)

    def pending_write_backs(self) -> list[StatusOutcome]:
        return [w.outcome for w in self.write_backs if w.status is DeliveryStatus.PENDING]

    def record_write_backs(self, results: Sequence[tuple[StatusOutcome, str | None]],
                           at: datetime) -> None:
        for outcome, error in results:
            for write_back in self.write_backs:
                if write_back.outcome is outcome and write_back.status is DeliveryStatus.PENDING:
                    write_back.status = (DeliveryStatus.FAILED if error
                                         else DeliveryStatus.SENT)
                    write_back.message = error
                    self.record(f"write_back_{write_back.status.value}", actor="system", at=at,
                                from_state=self.state, to_state=self.state,
                                data={"outcome": outcome.value, "message": error})
        if self.pending_write_backs():
            self.new_steps.append(Step.WRITE_BACK)

    # ---------------------------------------------------------------- money
    def _begin_refund(self, at: datetime) -> None:
        self._move(Transition.START_REFUND, actor="system", at=at)
        self.new_steps.append(Step.REFUND)

    def reserve_attempt(self, at: datetime) -> RefundAttempt:
        """The attempt the refund step works on; a new one only after a failed one.

        The idempotency key is derived from the case and the attempt number, stored before
        the provider is first called, and reused on every retry and re-run of the job.
        """
        if self.approved is None:
            raise DomainError(f"case {self.id} has no approved amount")
        current = self.current_attempt
        if current is not None and current.status is not RefundStatus.FAILED:
            return current
        number = 1 if current is None else current.number + 1
        attempt = RefundAttempt(number, f"{self.id}-refund-{number}", self.approved)
        self.attempts.append(attempt)
        self.record("refund_attempt_reserved", actor="system", at=at, from_state=self.state,
                    to_state=self.state,
                    data={"attempt": number, "idempotency_key": attempt.idempotency_key,
                          "amount": attempt.amount.as_json()})
        return attempt

    def apply_refund_result(self, result: RefundResult, at: datetime, actor: str) -> None:
        """Settle the current attempt from what the provider says; late news changes nothing."""
        attempt = self.current_attempt
        if attempt is None:
            raise DomainError(f"case {self.id} has no refund attempt")
        if result.provider_ref and attempt.provider_ref is None:
            attempt.provider_ref = result.provider_ref
        if result.status is RefundStatus.UNKNOWN:
            self.record("refund_status_unknown", actor=actor, at=at, from_state=self.state,
                        to_state=self.state, data={"raw_status": result.raw_status})
            return
        previous = attempt.status
        attempt.status = result.status
        if result.message:
            attempt.message = result.message
        data = {"attempt": attempt.number, "provider_ref": attempt.provider_ref,
                "status": result.status.value, "message": result.message}
        if result.status is RefundStatus.SUCCEEDED and self.state is CaseState.REFUNDING:
            self.refunded = attempt.amount
            self._move(Transition.CONFIRM_REFUND, actor=actor, at=at, data=data)
            self.queue_notification(NotificationKind.REFUNDED)
            self._queue_write_back(StatusOutcome.REFUNDED)
            self._after_refund(at)
        elif result.status is RefundStatus.FAILED and self.state is CaseState.REFUNDING:
            self.failure = Failure(Step.REFUND, result.message or "refund failed",
                                   CaseState.REFUNDING)
            self._move(Transition.FAIL, actor=actor, at=at, data=data)
            # The customer learns that a person will retry it (once: a second failure of
            # the same case queues nothing new).
            self.queue_notification(NotificationKind.REFUND_FAILED)
        elif (
            result.status is RefundStatus.FAILED and previous is RefundStatus.SUCCEEDED
            and self.state in REVERSIBLE_STATES
        ):
            # The provider paid and then reversed (e.g. the card was closed): reopen.
            self.refunded = Money.zero(self.currency)
            self.failure = Failure(Step.REFUND, result.message or "refund failed after success",
                                   CaseState.REFUNDING)
            self._move(Transition.REFUND_REVERSED, actor=actor, at=at, data=data)
            self.queue_notification(NotificationKind.REFUND_FAILED)
        elif previous is not result.status:
            self.record("refund_status_changed", actor=actor, at=at, from_state=self.state,
                        to_state=self.state, data=data)

    def _after_refund(self, at: datetime) -> None:
        if self.is_return and not self.goods_received:
            self._move(Transition.AWAIT_RETURN, actor="system", at=at)
            return
        self._request_stock_booking()
        self.close_if_done(at)

    # ---------------------------------------------------------------- goods
    def receive_goods(self, inspections: list[Inspection], at: datetime, actor: str) -> None:
        if not self.is_return:
            raise InvalidRequest("kind", "a refund_only case has no goods to receive")
        for inspection in inspections:
            if not 0 <= inspection.line < len(self.request.lines):
                raise InvalidRequest(f"lines.{inspection.line}", "no such line in this case")
        self.inspections = list(inspections)
        self._move(Transition.RECEIVE_GOODS, actor=actor, at=at,
                   data={"inspections": [i.as_json() for i in inspections]})
        self.queue_notification(NotificationKind.GOODS_RECEIVED)
        self._request_stock_booking()
        if self.is_exchange:
            if not self.replacement_done:
                self._begin_replacement(at)
            elif self.refund_owed:
                self._begin_refund(at)
            else:
                self.close_if_done(at)
        elif self.attempts and self.current_attempt and (
            self.current_attempt.status is RefundStatus.SUCCEEDED
        ):
            self.close_if_done(at)
        else:
            self._begin_refund(at)

    def _request_stock_booking(self) -> None:
        if self.stock_booking_due and Step.STOCK not in self.new_steps:
            self.new_steps.append(Step.STOCK)

    @property
    def stock_booking_due(self) -> bool:
        """Whether the ERP must still be told of this case: the one place that decides it.

        A return is booked once its goods are back (with the refund, or while it is paid);
        a refund without goods once the money is confirmed.
        """
        if self.erp_booked or self.state in FINAL_STATES or self.state is CaseState.FAILED:
            return False
        if self.is_return:
            return self.goods_received
        attempt = self.current_attempt
        return attempt is not None and attempt.status is RefundStatus.SUCCEEDED

    def claim_stock_booking(self, at: datetime, lease: timedelta) -> StockBooking | None:
        """Reserve the booking for the calling job, or None when there is nothing to book or
        another job holds a claim that has not run out."""
        if not self.stock_booking_due:
            return None
        booking = self.stock_booking
        if booking is not None and booking.held and at - booking.claimed_at < lease:
            return None
        claims = 1 if booking is None else booking.claims + 1
        self.stock_booking = StockBooking(claims, at)
        self.record("stock_booking_claimed", actor="system", at=at, from_state=self.state,
                    to_state=self.state,
                    data={"claim": claims, "looks_up_first": claims > 1})
        return self.stock_booking

    def reassess(self, lines: Sequence[LineDisposition], obligations: Sequence[Obligation],
                 at: datetime, actor: str = "rules") -> None:
        """Record where the units go once they have been inspected (R08), and the deadlines
        that start with their receipt (R07)."""
        self.dispositions = list(lines)
        self.obligations = list(obligations)
        self.record("reassessed", actor=actor, at=at, from_state=self.state,
                    to_state=self.state,
                    data={"lines": [d.as_json() for d in lines],
                          "obligations": [o.as_json() for o in obligations]})

    def planned_stock_moves(self) -> list[StockMove]:
        """What goes back into which stock: each inspected line by its assessed disposition.
        A line with no assessment is quarantined: nothing is sold again unless a rule said so
        after an inspection."""
        moves: list[StockMove] = []
        if not self.is_return:
            return moves
        by_line = {i.line: i for i in self.inspections}
        assessed = {d.line: d for d in self.dispositions}
        for index, line in enumerate(self.request.lines):
            inspection = by_line.get(index)
            if inspection is None:
                continue
            found = assessed.get(index)
            disposition = found.disposition if found else Disposition.QUARANTINE
            if disposition in {Disposition.PENDING_INSPECTION, Disposition.NOT_RETURNED}:
                disposition = Disposition.QUARANTINE
            moves.append(StockMove(
                index, line.sku, inspection.quantity or line.quantity, disposition,
                line.lot or (found.lot if found else None),
                line.serial or (found.serial if found else None),
            ))
        return moves

    def record_stock_booked(self, reference: str, moves: list[StockMove], at: datetime,
                            actor: str) -> None:
        if self.erp_booked:
            return
        self.erp_reference = reference
        self.stock_moves = moves
        self.record("stock_booked", actor=actor, at=at, from_state=self.state,
                    to_state=self.state,
                    data={"erp_reference": reference,
                          "moves": [{"line": m.line, "sku": m.sku, "quantity": m.quantity,
                                     "disposition": m.disposition.value, "lot": m.lot,
                                     "serial": m.serial} for m in moves]})
        self.close_if_done(at)

    # ---------------------------------------------------------------- exchange
    def _begin_replacement(self, at: datetime) -> None:
        self._move(Transition.START_REPLACEMENT, actor="system", at=at)
        self.new_steps.append(Step.REPLACE)

    def claim_replacement(self, at: datetime, lease: timedelta,
                          avoid_lots: Sequence[str] = ()) -> CaseReplacement | None:
        """Reserve the replacement for the calling job (its key is the case's, always the
        same), or None when there is nothing to order or another job's claim is live. A
        second claim asks the ERP for the first one's order before ordering anything."""
        if self.state is not CaseState.REPLACING or self.replacement_done:
            return None
        current = self.replacement
        if current is not None and current.held and at - current.claimed_at < lease:
            return None
        claims = 1 if current is None else current.claims + 1
        self.replacement = CaseReplacement(replacement_key(self.id), claims, at,
                                           avoid_lots=tuple(avoid_lots))
        self.record("replacement_claimed", actor="system", at=at, from_state=self.state,
                    to_state=self.state,
                    data={"claim": claims, "idempotency_key": self.replacement.idempotency_key,
                          "looks_up_first": claims > 1, "avoid_lots": list(avoid_lots)})
        return self.replacement

    def record_replacement(self, document: str, delivery: str | None, shipped: bool,
                           at: datetime, actor: str, *, found: bool = False) -> None:
        """The ERP's documents of the replacement: its order, and its delivery once made.
        `found`: a look-up after a crash found it, nothing was ordered again. News of a
        replacement already recorded only moves it on (ordered → shipped)."""
        current = self.replacement
        if current is None:
            raise DomainError(f"case {self.id} has no replacement to record")
        progress = ReplacementProgress.SHIPPED if shipped else ReplacementProgress.ORDERED
        data = {"idempotency_key": current.idempotency_key, "document": document,
                "delivery": delivery, "progress": progress.value, "found_after_crash": found}
        if current.ordered:
            if shipped and current.progress is not ReplacementProgress.SHIPPED:
                current.progress, current.delivery = progress, delivery or current.delivery
                self.record("replacement_shipped", actor=actor, at=at, from_state=self.state,
                            to_state=self.state, data=data)
                self.queue_notification(NotificationKind.REPLACEMENT_SHIPPED)
            return
        current.progress, current.document, current.delivery = progress, document, delivery
        current.held, current.message = False, None
        self.queue_notification(NotificationKind.REPLACEMENT_SHIPPED if shipped
                                else NotificationKind.REPLACEMENT_ORDERED)
        if self.state is not CaseState.REPLACING:
            # Failed (or retried) meanwhile: the trail keeps the order; a retry moves on.
            self.record("replacement_recorded", actor=actor, at=at, from_state=self.state,
                        to_state=self.state, data=data)
            return
        self._move(Transition.CONFIRM_REPLACEMENT, actor=actor, at=at, data=data)
        self._after_replacement(at)

    def replacement_unsure(self, message: str, at: datetime) -> None:
        """The ERP call failed in a way that may have ordered it (a timeout, a 5xx): the
        claim is released, so the next try claims at once, and looks the order up first."""
        current = self.replacement
        if current is None or current.ordered:
            return
        current.held, current.message = False, message
        self.record("replacement_attempt_failed", actor="system", at=at,
                    from_state=self.state, to_state=self.state,
                    data={"claim": current.claims, "message": message})

    def replacement_refused(self, message: str, at: datetime, code: str | None = None) -> None:
        """The ERP refused the order for good: nothing was ordered; a person retries it."""
        if self.replacement is not None and not self.replacement.ordered:
            self.replacement.held, self.replacement.message = False, message
        self.step_failed(Step.REPLACE, message, at, code)

    def _after_replacement(self, at: datetime) -> None:
        if not self.goods_received:
            self._move(Transition.AWAIT_RETURN, actor="system", at=at)  # ordered on approval
        elif self.refund_owed:
            self._begin_refund(at)
        else:
            self._request_stock_booking()
            self.close_if_done(at)

    # ---------------------------------------------------------------- notifications
    def pending_notifications(self) -> list[Notification]:
        """The messages a notify run must (still, or again) try to send."""
        return [n for n in self.notifications
                if n.status is DeliveryStatus.PENDING and n.channel is Channel.EMAIL]

    def undelivered_notifications(self) -> list[Notification]:
        """What the customer is owed and has not got: pending, or failed and neither resent
        nor waived. Only a customer with an email address is owed any (`queue_notification`)."""
        return [n for n in self.notifications
                if n.status in UNDELIVERED and n.channel is Channel.EMAIL]

    def record_notifications(
        self,
        outcomes: Sequence[tuple[NotificationKind, DeliveryStatus, str | None]],
        at: datetime,
        *,
        attempted: bool = False,
    ) -> None:
        """Record what a notify run sent, or could not send and why; `attempted`: the outcomes
        are sends just tried (not a verdict such as the reconciler giving up).

        `PENDING` with an error is a transient failure: the message stays owed and its run
        is tried again later, by the reconciler, so no new run is asked for here. `FAILED`
        keeps the case from closing until a person resends or waives the message.
        """
        retrying: set[NotificationKind] = set()
        for kind, status, error in outcomes:
            notification = self._notification_to_settle(kind, status)
            if notification is None:
                continue
            if attempted:
                notification.attempts += 1
                notification.last_attempt_at = at
            notification.last_error = error
            if status is DeliveryStatus.PENDING:
                retrying.add(kind)
                self.record("notification_attempt_failed", actor="system", at=at,
                            from_state=self.state, to_state=self.state,
                            data={"kind": kind.value, "attempt": notification.attempts,
                                  "message": error})
                continue
            notification.status = status
            notification.state = (DeliveryState.SENT if status is DeliveryStatus.SENT
                                   else DeliveryState.FAILED)
            self.record(f"notification_{status.value}", actor="system", at=at,
                        from_state=self.state, to_state=self.state,
                        data={"kind": kind.value, "message": error,
                              "attempts": notification.attempts})
        if any(n.kind not in retrying for n in self.pending_notifications()):
            # Queued by another step while this one was sending: it needs its own run.
            self._request_notify()
        self.close_if_done(at)

    def _notification_to_settle(self, kind: NotificationKind,
                                status: DeliveryStatus) -> Notification | None:
        # A send that was under way when a person waived the message still reached the
        # customer: the trail says so. Nothing else changes a settled message.
        open_to = ({DeliveryStatus.PENDING, DeliveryStatus.WAIVED}
                   if status is DeliveryStatus.SENT else {DeliveryStatus.PENDING})
        return next((n for n in self.notifications
                     if n.kind is kind and n.status in open_to
                     and n.channel is Channel.EMAIL), None)

    def _notification(self, kind: NotificationKind) -> Notification:
        found = next((n for n in self.notifications
                      if n.kind is kind and n.channel is Channel.EMAIL), None)
        if found is None:
            raise NotFound(f"case {self.id} owes its customer no '{kind.value}' message")
        return found

    def waive_notification(self, kind: NotificationKind, at: datetime, actor: str,
                           reason: str) -> None:
        """A person decides the customer need not get this message (told by phone, a wrong
        address): it no longer keeps the case open."""
        if not reason.strip():
            raise InvalidRequest("reason", "say why the customer need not get this message")
        notification = self._notification(kind)
        if notification.status not in UNDELIVERED:
            raise DomainError(f"case {self.id}: the '{kind.value}' message is "
                              f"{notification.status.value}; there is nothing to waive")
        previous = notification.status
        notification.status = DeliveryStatus.WAIVED
        notification.waived_by, notification.waive_reason = actor, reason
        self.record("notification_waived", actor=actor, at=at, from_state=self.state,
                    to_state=self.state,
                    data={"kind": kind.value, "reason": reason, "previous": previous.value,
                          "last_error": notification.last_error,
                          "attempts": notification.attempts})
        self.close_if_done(at)

    def resend_notification(self, kind: NotificationKind, at: datetime, actor: str) -> None:
        """A person asks for a failed (or waived) message to be sent again."""
        notification = self._notification(kind)
        if notification.status not in {DeliveryStatus.FAILED, DeliveryStatus.WAIVED}:
            raise DomainError(f"case {self.id}: the '{kind.value}' message is "
                              f"{notification.status.value}; only a failed or waived one "
                              "is sent again")
        previous = notification.status
        notification.status = DeliveryStatus.PENDING
        notification.waived_by = notification.waive_reason = None
        self.record("notification_resend_requested", actor=actor, at=at,
                    from_state=self.state, to_state=self.state,
                    data={"kind": kind.value, "previous": previous.value,
                          "last_error": notification.last_error,
                          "attempts": notification.attempts})
        self._request_notify()

    # ---------------------------------------------------------------- SMS
    # An SMS goes beside the email of the same kind. Its record never keeps a case open
    # (email is the record): its status is PENDING while it is to be sent (also deferred or
    # in flight), SENT once the provider took it, FAILED when refused or given up on, WAIVED
    # when it is not sent at all (the number opted out).
    def sms(self, kind: NotificationKind) -> Notification | None:
        return next((n for n in self.notifications
                     if n.kind is kind and n.channel is Channel.SMS), None)

    def pending_sms(self) -> list[Notification]:
        return [n for n in self.notifications
                if n.channel is Channel.SMS and n.status is DeliveryStatus.PENDING]

    def add_sms(self, kind: NotificationKind) -> Notification:
        """The SMS of this kind, made (to be sent) if the case has none yet."""
        found = self.sms(kind)
        if found is None:
            found = Notification(kind, channel=Channel.SMS)
            self.notifications.append(found)
        return found

    def skip_sms(self, kind: NotificationKind, at: datetime, reason: str) -> None:
        """An SMS that will not be sent (the number opted out): the trail says why."""
        sms = self.add_sms(kind)
        if sms.status is not DeliveryStatus.PENDING:
            return
        sms.status, sms.waived_by, sms.waive_reason = DeliveryStatus.WAIVED, "system", reason
        sms.sending_since = sms.next_attempt_at = None
        sms.in_flight = False
        self.record("sms_skipped", actor="system", at=at, from_state=self.state,
                    to_state=self.state, data={"kind": kind.value, "reason": reason})

    def defer_sms(self, kind: NotificationKind, at: datetime, until: datetime,
                  reason: str) -> None:
        """Hold an SMS back until `until` (quiet hours, a provider's limit)."""
        self.record_sms(kind, at, state=DeliveryState.DEFERRED, error=reason,
                        next_attempt_at=until)

    def claim_sms(self, kind: NotificationKind, at: datetime) -> None:
        """Mark the SMS as being sent, attempt n (committed before the provider's call)."""
        sms = self.add_sms(kind)
        sms.attempts += 1
        sms.last_attempt_at = sms.sending_since = at
        sms.in_flight = True
        self.record("sms_sending", actor="system", at=at, from_state=self.state,
                    to_state=self.state, data={"kind": kind.value, "attempt": sms.attempts})

    def record_sms(self, kind: NotificationKind, at: datetime, *, state: DeliveryState,
                   provider_id: str | None = None, error: str | None = None,
                   next_attempt_at: datetime | None = None, found: bool = False) -> None:
        """What became of a send: taken (queued/sent/delivered), refused for good (failed),
        or held back (deferred, tried again from `next_attempt_at`)."""
        sms = self.sms(kind)
        if sms is None or sms.status is not DeliveryStatus.PENDING:
            return
        sms.sending_since, sms.in_flight = None, False
        sms.state, sms.last_error = state, error or None
        sms.provider_id = provider_id or sms.provider_id
        sms.next_attempt_at = next_attempt_at if state is DeliveryState.DEFERRED else None
        if state in SENT_STATES:
            sms.status = DeliveryStatus.SENT
        elif state is DeliveryState.FAILED:
            sms.status = DeliveryStatus.FAILED
        self.record(f"sms_{state.value}", actor="system", at=at, from_state=self.state,
                    to_state=self.state,
                    data={"kind": kind.value, "attempt": sms.attempts,
                          "provider_id": sms.provider_id, "message": error or None,
                          "found_after_crash": found,
                          "next_attempt_at": (next_attempt_at.isoformat()
                                              if next_attempt_at else None)})

    def sms_unsure(self, kind: NotificationKind, at: datetime, error: str) -> None:
        """The call failed in a way that may have sent it (a timeout, a 5xx): the next try
        asks the provider first (`sending_since` stays)."""
        sms = self.sms(kind)
        if sms is None or sms.status is not DeliveryStatus.PENDING:
            return
        sms.in_flight, sms.last_error = False, error
        self.record("sms_attempt_failed", actor="system", at=at, from_state=self.state,
                    to_state=self.state,
                    data={"kind": kind.value, "attempt": sms.attempts, "message": error})

    def sms_report(self, kind: NotificationKind, at: datetime, *, state: DeliveryState,
                   provider_id: str | None, error: str = "") -> bool:
        """A provider's later delivery report on a send: its state moves on (delivered, or
        failed on the carrier's side). False if there is no such send or nothing changes."""
        sms = self.sms(kind)
        if sms is None or sms.status is DeliveryStatus.WAIVED:
            return False
        if sms.state is state or sms.state is DeliveryState.DELIVERED:
            return False  # a repeated report, or one overtaken by the final word
        sms.state = state
        sms.provider_id = sms.provider_id or provider_id
        sms.sending_since = sms.next_attempt_at = None
        sms.in_flight = False
        if state in SENT_STATES:
            sms.status = DeliveryStatus.SENT
        elif state is DeliveryState.FAILED:
            sms.status, sms.last_error = DeliveryStatus.FAILED, error or "failed"
        self.record("sms_delivery_report", actor="provider", at=at, from_state=self.state,
                    to_state=self.state,
                    data={"kind": kind.value, "state": state.value,
                          "provider_id": sms.provider_id, "error": error or None})
        return True

    # ---------------------------------------------------------------- closing
    def close_if_done(self, at: datetime) -> bool:
        """Close once the money is confirmed, the ERP booked and the customer told (every
        message it is owed sent, or waived by a person); an exchange once its replacement is
        ordered too, and the money only if it leaves a difference to refund."""
        goods_done = not self.is_return or self.goods_received
        if (
            self.state in {CaseState.REFUNDED, CaseState.RECEIVED_GOODS, CaseState.REPLACED}
            and not self.refund_owed and goods_done and self.erp_booked
            and self.replacement_done and not self.undelivered_notifications()
        ):
            self._move(Transition.CLOSE, actor="system", at=at)
            return True
        return False

    # ---------------------------------------------------------------- progress
    def steps_needed(self) -> list[Step]:
        """The steps a worker must still run for this case in its current state: the one
        home of that rule, used when a step asks for the next, by a retry and by the
        reconciler when it finds the case idle."""
        steps: list[Step] = []
        if self.state in {CaseState.RECEIVED, CaseState.EVALUATING}:
            steps.append(Step.EVALUATE)
        if self.state is CaseState.REFUNDING:
            steps.append(Step.REFUND)
        if self.state is CaseState.REPLACING and not self.replacement_done:
            steps.append(Step.REPLACE)
        if self.stock_booking_due:
            steps.append(Step.STOCK)
        if self.pending_notifications():
            steps.append(Step.NOTIFY)
        if self.pending_write_backs():
            steps.append(Step.WRITE_BACK)
        return steps

    def revive(self, at: datetime, limit: int) -> list[Step]:
        """The reconciler found the case idle: queue what its state needs. After `limit`
        revivals without a change of state the case fails for a person instead. Polling a
        refund the provider left pending is waiting, not a lack of progress."""
        steps = self.steps_needed()
        if not steps:
            return []
        attempt = self.current_attempt
        polling = (self.state is CaseState.REFUNDING and attempt is not None
                   and attempt.status is RefundStatus.PENDING)
        if not polling:
            self.revivals += 1
            if self.revivals > limit and allows(self.state, Transition.FAIL):
                self.fail(steps[0], f"no progress after {limit} revivals by the reconciler",
                          at, "no_progress")
                return []
        self.record("revived", actor="reconciler", at=at, from_state=self.state,
                    to_state=self.state,
                    data={"steps": [step.value for step in steps], "revival": self.revivals})
        self.new_steps.extend(steps)
        return steps

    # ---------------------------------------------------------------- failure
    def fail(self, step: Step, message: str, at: datetime, code: str | None = None) -> None:
        if step is Step.STOCK and self.stock_booking is not None:
            self.stock_booking.held = False  # the ERP said no: a retry may claim it at once
        if step is Step.REPLACE and self.replacement is not None:
            self.replacement.held = False
        self.failure = Failure(step, message, self.state, code)
        self._move(Transition.FAIL, actor="system", at=at,
                   data={"step": step.value, "message": message, "code": code})

    def step_failed(self, step: Step, message: str, at: datetime,
                    code: str | None = None) -> None:
        """A step failed for a reason that retrying will not mend (or was given up on):
        show it on the case. A message or a write-back that cannot go out is marked failed
        and never fails the case; any other step fails it for a person, from any state that
        can fail. A case that has moved on meanwhile (closed, cancelled) keeps the fact in
        its trail."""
        if step is Step.NOTIFY and (self.pending_notifications() or self.pending_sms()):
            for sms in self.pending_sms():
                self.record_sms(sms.kind, at, state=DeliveryState.FAILED, error=message)
            self.record_notifications(
                [(n.kind, DeliveryStatus.FAILED, message) for n in self.pending_notifications()],
                at)
        elif step is Step.WRITE_BACK and self.pending_write_backs():
            self.record_write_backs([(outcome, message) for outcome in self.pending_write_backs()],
                                    at)
        elif step in {Step.EVALUATE, Step.REFUND, Step.STOCK, Step.REPLACE} and (
                allows(self.state, Transition.FAIL)):
            self.fail(step, message, at, code)
        else:
            self.record("step_failed", actor="system", at=at, from_state=self.state,
                        to_state=self.state,
                        data={"step": step.value, "message": message, "code": code})

    def retry(self, at: datetime, actor: str) -> None:
        failure = self.failure
        if failure is None:
            raise DomainError(f"case {self.id} has no failure to retry")
        self._move(Transition.RETRY, actor=actor, at=at, target=failure.resume_state,
                   data={"step": failure.step.value, "previous_error": failure.message})
        self.failure = None
        # What the state needs now, not only the step that failed: a booking or a refund may
        # have been recorded while the case was failed. With nothing left to do it closes.
        steps = self.steps_needed()
        self.new_steps.extend(steps)
        if not steps:
            self.close_if_done(at)

    def cancel(self, at: datetime, actor: str, reason: str) -> None:
        attempt = self.current_attempt
        if attempt is not None and attempt.status in {RefundStatus.SUCCEEDED,
                                                      RefundStatus.PENDING}:
            raise DomainError(f"case {self.id} has a refund in flight or paid; it cannot be "
                              "cancelled")
        if self.replacement is not None:
            raise DomainError(f"case {self.id} has a replacement ordered or being ordered; it "
                              "cannot be cancelled")
        self._move(Transition.CANCEL, actor=actor, at=at, data={"reason": reason})

