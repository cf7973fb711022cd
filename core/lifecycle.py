"""The refund lifecycle: one explicit state machine.

Every change of a case's state goes through `next_state`; an edge missing from `TRANSITIONS`
raises `IllegalTransition`. Which path a case takes is decided by its kind and the shop's
`refund_timing` policy:

    refund_only:                      received → evaluating → approved → refunding
                                        → refunded → closed
    return, refund "on_receipt":      … approved → awaiting_return → received_goods → refunding
                                        → refunded → closed
    return, refund "on_approval":     … approved → refunding → refunded → awaiting_return
                                        → received_goods → closed
    exchange, replacement "on_receipt": … approved → awaiting_return → received_goods
                                        → replacing → replaced [→ refunding → refunded]
                                        → closed
    exchange, replacement "on_approval": … approved → replacing → replaced → awaiting_return
                                        → received_goods [→ refunding → refunded] → closed
      (the bracketed part only when the exchange leaves a price difference to refund; it
       always waits for the returned unit)
    evaluating → awaiting_review → approved | denied   (a person decides)
    a step's permanent error → failed → (operator retry) → the state it failed in
    refunded | closed → failed when the provider reports that a refund later failed
"""

from __future__ import annotations

from enum import StrEnum

from refundbridge.core.errors import IllegalTransition


class CaseState(StrEnum):
    RECEIVED = "received"
    EVALUATING = "evaluating"
    AWAITING_REVIEW = "awaiting_review"
    APPROVED = "approved"
    DENIED = "denied"
    AWAITING_RETURN = "awaiting_return"
    RECEIVED_GOODS = "received_goods"
    REFUNDING = "refunding"
    REFUNDED = "refunded"
    REPLACING = "replacing"  # an exchange's replacement is being ordered in the ERP
    REPLACED = "replaced"  # the ERP has the replacement's order (and maybe its delivery)
    CLOSED = "closed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({CaseState.CLOSED, CaseState.DENIED, CaseState.CANCELLED})


class Transition(StrEnum):
    START_EVALUATION = "start_evaluation"
    APPROVE = "approve"
    SEND_TO_REVIEW = "send_to_review"
    DENY = "deny"
    AWAIT_RETURN = "await_return"
    RECEIVE_GOODS = "receive_goods"
    START_REFUND = "start_refund"
    CONFIRM_REFUND = "confirm_refund"
    START_REPLACEMENT = "start_replacement"
    CONFIRM_REPLACEMENT = "confirm_replacement"
    CLOSE = "close"
    FAIL = "fail"
    REFUND_REVERSED = "refund_reversed"
    RETRY = "retry"
    CANCEL = "cancel"


S = CaseState
# transition -> (states it may start from, the state it leads to; None = decided by the caller)
TRANSITIONS: dict[Transition, tuple[frozenset[CaseState], CaseState | None]] = {
    Transition.START_EVALUATION: (frozenset({S.RECEIVED}), S.EVALUATING),
    Transition.APPROVE: (frozenset({S.EVALUATING, S.AWAITING_REVIEW}), S.APPROVED),
    Transition.SEND_TO_REVIEW: (frozenset({S.EVALUATING}), S.AWAITING_REVIEW),
    Transition.DENY: (frozenset({S.EVALUATING, S.AWAITING_REVIEW}), S.DENIED),
    Transition.AWAIT_RETURN: (frozenset({S.APPROVED, S.REFUNDED, S.REPLACED}),
                              S.AWAITING_RETURN),
    Transition.RECEIVE_GOODS: (frozenset({S.AWAITING_RETURN}), S.RECEIVED_GOODS),
    Transition.START_REFUND: (frozenset({S.APPROVED, S.RECEIVED_GOODS, S.REPLACED}),
                              S.REFUNDING),
    Transition.CONFIRM_REFUND: (frozenset({S.REFUNDING}), S.REFUNDED),
    Transition.START_REPLACEMENT: (frozenset({S.APPROVED, S.RECEIVED_GOODS}), S.REPLACING),
    Transition.CONFIRM_REPLACEMENT: (frozenset({S.REPLACING}), S.REPLACED),
    Transition.CLOSE: (frozenset({S.REFUNDED, S.RECEIVED_GOODS, S.REPLACED}), S.CLOSED),
    # Evaluation can fail before its first transition commits, hence `received`.
    Transition.FAIL: (
        frozenset({S.RECEIVED, S.EVALUATING, S.REFUNDING, S.REFUNDED, S.RECEIVED_GOODS,
                   S.AWAITING_RETURN, S.REPLACING, S.REPLACED}),
        S.FAILED,
    ),
    Transition.REFUND_REVERSED: (
        frozenset({S.REFUNDED, S.AWAITING_RETURN, S.RECEIVED_GOODS, S.CLOSED}),
        S.FAILED,
    ),
    # A retry returns the case to the state whose step failed; the case remembers which.
    Transition.RETRY: (frozenset({S.FAILED}), None),
    Transition.CANCEL: (
        frozenset({S.RECEIVED, S.AWAITING_REVIEW, S.APPROVED, S.AWAITING_RETURN, S.FAILED}),
        S.CANCELLED,
    ),
}

# The states an operator's retry may lead back to.
RETRY_TARGETS = frozenset(
    {S.RECEIVED, S.EVALUATING, S.REFUNDING, S.REFUNDED, S.RECEIVED_GOODS, S.AWAITING_RETURN,
     S.REPLACING, S.REPLACED}
)

# States in which a worker, not a person or the customer, must move the case on. Which step
# each needs is decided in one place, `RefundCase.steps_needed`; the reconciler revives an
# idle case in one of these states with it.
MOVING_STATES = frozenset(
    {S.RECEIVED, S.EVALUATING, S.REFUNDING, S.REFUNDED, S.RECEIVED_GOODS, S.REPLACING,
     S.REPLACED}
)


def allows(current: CaseState, transition: Transition) -> bool:
    """Whether `transition` may start from `current`."""
    return current in TRANSITIONS[transition][0]


def next_state(
    case_id: str, current: CaseState, transition: Transition, target: CaseState | None = None
) -> CaseState:
    """The state `transition` leads to from `current`, or raise `IllegalTransition`."""
    sources, fixed_target = TRANSITIONS[transition]
    if current not in sources:
        raise IllegalTransition(case_id, current, transition)
    if fixed_target is not None:
        return fixed_target
    if target is None or target not in RETRY_TARGETS:
        raise IllegalTransition(case_id, current, transition)
    return target
