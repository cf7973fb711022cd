"""The state machine: every (state, transition) pair of the two enums.

Checked twice: against a hand-written copy of the designed lifecycle (so an edit of the table
must be deliberate) and against TRANSITIONS itself (so `next_state` obeys its table).
"""

from __future__ import annotations

import itertools

import pytest

from refundbridge.core.errors import IllegalTransition
from refundbridge.core.lifecycle import (
    FINAL_STATES,
    RETRY_TARGETS,
    TRANSITIONS,
    CaseState,
    Transition,
    next_state,
)

S, T = CaseState, Transition

# The lifecycle as designed (core/lifecycle.py's docstring), written out by hand so that a
# change to TRANSITIONS must be made here too, on purpose.
EXPECTED: dict[Transition, tuple[set[CaseState], CaseState | None]] = {
    T.START_EVALUATION: ({S.RECEIVED}, S.EVALUATING),
    T.APPROVE: ({S.EVALUATING, S.AWAITING_REVIEW}, S.APPROVED),
    T.SEND_TO_REVIEW: ({S.EVALUATING}, S.AWAITING_REVIEW),
    T.DENY: ({S.EVALUATING, S.AWAITING_REVIEW}, S.DENIED),
    T.AWAIT_RETURN: ({S.APPROVED, S.REFUNDED, S.REPLACED}, S.AWAITING_RETURN),
    T.RECEIVE_GOODS: ({S.AWAITING_RETURN}, S.RECEIVED_GOODS),
    T.START_REFUND: ({S.APPROVED, S.RECEIVED_GOODS, S.REPLACED}, S.REFUNDING),
    T.CONFIRM_REFUND: ({S.REFUNDING}, S.REFUNDED),
    T.START_REPLACEMENT: ({S.APPROVED, S.RECEIVED_GOODS}, S.REPLACING),
    T.CONFIRM_REPLACEMENT: ({S.REPLACING}, S.REPLACED),
    T.CLOSE: ({S.REFUNDED, S.RECEIVED_GOODS, S.REPLACED}, S.CLOSED),
    T.FAIL: ({S.RECEIVED, S.EVALUATING, S.REFUNDING, S.REFUNDED, S.RECEIVED_GOODS,
              S.AWAITING_RETURN, S.REPLACING, S.REPLACED}, S.FAILED),
    T.REFUND_REVERSED: ({S.REFUNDED, S.AWAITING_RETURN, S.RECEIVED_GOODS, S.CLOSED}, S.FAILED),
    T.RETRY: ({S.FAILED}, None),
    T.CANCEL: ({S.RECEIVED, S.AWAITING_REVIEW, S.APPROVED, S.AWAITING_RETURN, S.FAILED},
               S.CANCELLED),
}
EXPECTED_RETRY_TARGETS = {S.RECEIVED, S.EVALUATING, S.REFUNDING, S.REFUNDED, S.RECEIVED_GOODS,
                          S.AWAITING_RETURN, S.REPLACING, S.REPLACED}

PAIRS = list(itertools.product(CaseState, Transition))
FIXED = [(s, t) for s, t in PAIRS if TRANSITIONS[t][1] is not None]
ALLOWED_FIXED = [(s, t) for s, t in FIXED if s in TRANSITIONS[t][0]]
REFUSED = [(s, t) for s, t in PAIRS if s not in TRANSITIONS[t][0]]


def _id(pair: tuple[CaseState, Transition]) -> str:
    return f"{pair[0].value}-{pair[1].value}"


def test_every_transition_has_a_table_entry() -> None:
    assert set(TRANSITIONS) == set(Transition)


def test_the_table_is_the_designed_lifecycle() -> None:
    actual = {t: (set(sources), target) for t, (sources, target) in TRANSITIONS.items()}
    assert actual == EXPECTED
    assert set(RETRY_TARGETS) == EXPECTED_RETRY_TARGETS


@pytest.mark.parametrize("pair", PAIRS, ids=_id)
def test_every_state_and_transition_pair_behaves_as_designed(
    pair: tuple[CaseState, Transition],
) -> None:
    state, transition = pair
    sources, target = EXPECTED[transition]
    if state in sources and target is not None:
        assert next_state("rc_1", state, transition) is target
    elif state in sources:  # retry: the caller names where to go back to
        for back in CaseState:
            if back in EXPECTED_RETRY_TARGETS:
                assert next_state("rc_1", state, transition, back) is back
            else:
                with pytest.raises(IllegalTransition):
                    next_state("rc_1", state, transition, back)
    else:
        with pytest.raises(IllegalTransition):
            next_state("rc_1", state, transition, target=S.REFUNDING)


@pytest.mark.parametrize("pair", ALLOWED_FIXED, ids=_id)
def test_allowed_transitions_lead_to_the_tables_target(
    pair: tuple[CaseState, Transition],
) -> None:
    state, transition = pair
    assert next_state("rc_1", state, transition) is TRANSITIONS[transition][1]


@pytest.mark.parametrize("pair", REFUSED, ids=_id)
def test_all_other_pairs_raise_illegal_transition(pair: tuple[CaseState, Transition]) -> None:
    state, transition = pair
    with pytest.raises(IllegalTransition) as caught:
        next_state("rc_1", state, transition, target=CaseState.REFUNDING)
    assert (caught.value.case_id, caught.value.state, caught.value.transition) == (
        "rc_1", state, transition)
    assert "rc_1" in str(caught.value)


@pytest.mark.parametrize("target", sorted(RETRY_TARGETS), ids=str)
def test_retry_from_failed_leads_to_any_retry_target(target: CaseState) -> None:
    assert next_state("rc_1", CaseState.FAILED, Transition.RETRY, target) is target


@pytest.mark.parametrize(
    "target", [None, *sorted(set(CaseState) - RETRY_TARGETS)], ids=lambda t: str(t)
)
def test_retry_needs_a_target_in_retry_targets(target: CaseState | None) -> None:
    with pytest.raises(IllegalTransition):
        next_state("rc_1", CaseState.FAILED, Transition.RETRY, target)


def test_a_fixed_target_ignores_the_callers_target() -> None:
    assert next_state("rc_1", CaseState.RECEIVED, Transition.START_EVALUATION,
                      target=CaseState.CLOSED) is CaseState.EVALUATING


@pytest.mark.parametrize("state", sorted(FINAL_STATES), ids=str)
def test_final_states_have_no_way_out_but_a_refund_reversal(state: CaseState) -> None:
    exits = {t for t, (sources, _) in TRANSITIONS.items() if state in sources}
    assert exits <= {Transition.REFUND_REVERSED}


def test_every_state_a_step_can_fail_in_can_be_retried() -> None:
    fail_sources, _ = TRANSITIONS[Transition.FAIL]
    assert fail_sources <= RETRY_TARGETS
