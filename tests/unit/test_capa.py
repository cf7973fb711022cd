"""The CAPA record's state machine, its validation and its hash-chained trail."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from refundbridge.core.audit import verify_chain
from refundbridge.core.capa import (
    CAPA_ID,
    CAPA_TRANSITIONS,
    ActionKind,
    CapaOpening,
    CapaRecord,
    CapaState,
    CapaTransition,
    CheckResult,
    LotRef,
    capa_id_for,
    capa_kpis,
)
from refundbridge.core.errors import IllegalTransition, InvalidRequest

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
QA = "operator:zhou.qa"


def opened(**overrides: object) -> CapaRecord:
    values: dict[str, object] = {
        "problem": "Three meters of lot L2401 read 20 % high",
        "cases": ("case_a", "case_b"), "lots": (LotRef("GLU-METER-01", "L2401"),)}
    values.update(overrides)
    return CapaRecord.open("acme-medical", CapaOpening(**values),  # type: ignore[arg-type]
                           key="k1", actor=QA, at=T0)


def walked_to(state: CapaState) -> CapaRecord:
    """A record taken through its steps as far as `state`."""
    r = opened()
    at = T0
    steps = [
        (CapaState.INVESTIGATING, lambda: r.start_investigation(QA, at)),
        (CapaState.ACTIONS_PLANNED, lambda: r.record_root_cause(
            "The strips' calibration code was printed for the wrong lot", QA, at)),
        (CapaState.ACTIONS_DONE, lambda: (
            r.add_action(ActionKind.CORRECTIVE, "Quarantine the lot", "wang.wh",
                         date(2026, 11, 5), QA, at),
            r.add_action(ActionKind.PREVENTIVE, "Check codes at receipt", "li.qa",
                         date(2026, 11, 20), QA, at),
            r.complete_action(1, QA, at), r.complete_action(2, QA, at, "done"))),
        (CapaState.EFFECTIVENESS_CHECK, lambda: r.plan_effectiveness_check(
            "No quality return of the meter for 60 days", date(2027, 1, 10), QA, at)),
        (CapaState.EFFECTIVE, lambda: r.record_effectiveness(
            CheckResult.EFFECTIVE, "None in 60 days", QA, at)),
        (CapaState.CLOSED, lambda: r.close("Effective; closed", QA, at)),
    ]
    for reached, step in steps:
        if r.state is state:
            break
        at += timedelta(hours=1)
        step()
        assert r.state is reached
    return r


def test_a_record_goes_through_every_step_and_its_trail_verifies() -> None:
    r = walked_to(CapaState.CLOSED)
    names = [e.name for e in r.new_events]
    assert names == ["open", "start_investigation", "record_root_cause", "add_action",
                     "add_action", "complete_action", "complete_action", "actions_done",
                     "plan_effectiveness_check", "check_effective", "close"]
    assert all(e.actor == QA for e in r.new_events)
    assert [e.seq for e in r.new_events] == list(range(1, 12))
    assert r.new_events[-1].at > r.new_events[0].at
    check = verify_chain(r.new_events)
    assert check.verifies and check.events == 11
    assert r.actions[1].done_note == "done" and r.actions[1].done_by == QA
    assert r.closed_at is not None and not r.is_open


def test_tampering_with_any_event_breaks_the_chain_there() -> None:
    events = walked_to(CapaState.CLOSED).new_events
    edited = list(events)
    edited[4] = replace(edited[4], data={**edited[4].data, "owner": "somebody else"})
    check = verify_chain(edited)
    assert not check.verifies and check.first_broken_seq == 5
    dropped = events[:3] + events[4:]
    assert verify_chain(dropped).first_broken_seq == 5
    rehashed = list(events)
    forged = replace(events[2], actor="operator:mallory")
    rehashed[2] = replace(forged, hash=forged.computed_hash())
    assert verify_chain(rehashed).first_broken_seq == 4  # the next one's prev_hash


@pytest.mark.parametrize(("state", "transition"), [
    (s, t) for t, (sources, _target) in CAPA_TRANSITIONS.items() for s in CapaState
    if s not in sources])
def test_every_transition_from_a_state_it_does_not_leave_raises(
        state: CapaState, transition: CapaTransition) -> None:
    r = opened()
    r.state = state
    with pytest.raises(IllegalTransition):
        r._move(transition, T0, QA, {})


def test_the_steps_in_the_wrong_state_raise_the_typed_error() -> None:
    r = opened()
    with pytest.raises(IllegalTransition):
        r.record_root_cause("too early", QA, T0)
    with pytest.raises(IllegalTransition):
        r.add_action("corrective", "x", "y", date(2026, 12, 1), QA, T0)
    with pytest.raises(IllegalTransition):
        r.close("no", QA, T0)
    closed = walked_to(CapaState.CLOSED)
    for step in (lambda: closed.cancel("late", QA, T0),
                 lambda: closed.start_investigation(QA, T0),
                 lambda: closed.request_escalation("RC-1", "II", ["return"], None,
                                                   date(2026, 12, 1), QA, T0)):
        with pytest.raises(IllegalTransition):
            step()
    assert len(opened().new_events) == 1


def test_an_action_completed_twice_or_unknown_is_refused() -> None:
    r = walked_to(CapaState.ACTIONS_PLANNED)
    r.add_action("corrective", "Quarantine", "wang", date(2026, 11, 5), QA, T0)
    r.add_action("preventive", "Inspect", "li", date(2026, 11, 5), QA, T0)
    r.complete_action(1, QA, T0)
    with pytest.raises(IllegalTransition):
        r.complete_action(1, QA, T0)
    with pytest.raises(InvalidRequest) as caught:
        r.complete_action(9, QA, T0)
    assert caught.value.field == "action"
    assert r.state is CapaState.ACTIONS_PLANNED  # one is left


def test_preventive_actions_alone_do_not_finish_the_actions() -> None:
    r = walked_to(CapaState.ACTIONS_PLANNED)
    r.add_action("preventive", "Inspect", "li", date(2026, 11, 5), QA, T0)
    r.complete_action(1, QA, T0)
    assert r.state is CapaState.ACTIONS_PLANNED
    r.add_action("corrective", "Quarantine", "wang", date(2026, 11, 5), QA, T0)
    r.complete_action(2, QA, T0)
    assert r.state is CapaState.ACTIONS_DONE


def test_a_check_not_effective_reopens_the_actions() -> None:
    r = walked_to(CapaState.EFFECTIVE)
    r = walked_to(CapaState.EFFECTIVENESS_CHECK)
    r.record_effectiveness("not_effective", "Two more returns in January", QA, T0)
    assert r.state is CapaState.ACTIONS_PLANNED
    assert r.checks[0].result is CheckResult.NOT_EFFECTIVE
    with pytest.raises(IllegalTransition):
        r.close("no", QA, T0)
    r.add_action("corrective", "Replace the printer", "wang", date(2027, 2, 1), QA, T0)
    r.complete_action(3, QA, T0)
    assert r.state is CapaState.ACTIONS_DONE
    r.plan_effectiveness_check("No return in 90 days", date(2027, 5, 1), QA, T0)
    assert [c.number for c in r.checks] == [1, 2]
    assert verify_chain(r.new_events).verifies


def test_the_root_cause_may_be_revised_while_the_actions_run() -> None:
    r = walked_to(CapaState.ACTIONS_PLANNED)
    r.record_root_cause("A second look: the label printer", QA, T0)
    assert r.state is CapaState.ACTIONS_PLANNED
    assert r.new_events[-1].data["revision"] is True


def test_validation_names_every_bad_field() -> None:
    with pytest.raises(InvalidRequest) as caught:
        opened(problem=" ", cases=("x" * 41, "ok\nno"), lots=(LotRef("", "L1"),))
    fields = [name for name, _message in caught.value.errors]
    assert fields == ["problem", "cases[0]", "cases[1]", "lots[0].sku"]
    with pytest.raises(InvalidRequest) as caught:
        opened(cases=(), lots=())
    assert caught.value.field == "cases"
    with pytest.raises(InvalidRequest) as caught:
        opened(problem="p" * 4001)
    assert caught.value.field == "problem"
    r = walked_to(CapaState.INVESTIGATING)
    with pytest.raises(InvalidRequest) as caught:
        r.add_action("sideways", "", "a\x00b", "tomorrow", QA, T0)
    assert [n for n, _m in caught.value.errors] == ["kind", "description", "owner", "due"]
    with pytest.raises(InvalidRequest) as caught:
        walked_to(CapaState.EFFECTIVENESS_CHECK).record_effectiveness("maybe", "", QA, T0)
    assert [n for n, _m in caught.value.errors] == ["result", "note"]


def test_the_id_is_derived_from_the_shop_and_the_opening_key() -> None:
    assert capa_id_for("acme", "signal\x1fs1") == capa_id_for("acme", "signal\x1fs1")
    assert capa_id_for("acme", "s1") != capa_id_for("beta", "s1")
    assert CAPA_ID.fullmatch(opened().id)


def test_escalation_is_claimed_once_with_the_records_lots() -> None:
    r = walked_to(CapaState.INVESTIGATING)
    first = r.request_escalation("RC-9", "II", ["stop_use"], None, date(2026, 12, 1), QA, T0)
    assert (first.sku, first.lots) == ("GLU-METER-01", ("L2401",))
    again = r.request_escalation("RC-OTHER", "I", ["return"], None, date(2026, 12, 1), QA, T0)
    assert again is first
    assert r.campaign_opened("rcp_1", True, QA, T0)
    assert not r.campaign_opened("rcp_2", True, QA, T0)
    assert r.campaign_id == "rcp_1"
    assert [e.name for e in r.new_events][-2:] == ["escalate", "campaign_opened"]


def test_escalation_asks_which_product_when_the_record_names_several() -> None:
    r = opened(lots=(LotRef("A", "1"), LotRef("B", ""), LotRef("A", "2")))
    with pytest.raises(InvalidRequest) as caught:
        r.request_escalation("RC-1", "II", ["return"], None, date(2026, 12, 1), QA, T0)
    assert caught.value.field == "sku"
    assert r.request_escalation("RC-1", "II", ["return"], "A", date(2026, 12, 1), QA,
                                T0).lots == ("1", "2")
    every_lot = opened(lots=(LotRef("B", ""),))
    assert every_lot.request_escalation("RC-2", "II", ["return"], None, date(2026, 12, 1),
                                        QA, T0).lots == ()


def test_the_kpis_count_age_closing_overdue_recurrence_and_response() -> None:
    now = T0 + timedelta(days=100)
    young = replace(opened(), id="young", opened_at=now - timedelta(days=3))
    middle = replace(opened(), id="middle", opened_at=now - timedelta(days=30))
    old = replace(walked_to(CapaState.ACTIONS_PLANNED), id="old",
                  opened_at=now - timedelta(days=91))
    old.add_action("corrective", "late", "wang", now.date() - timedelta(days=1), QA, now)
    old.add_action("corrective", "due today", "wang", now.date(), QA, now)
    closed = walked_to(CapaState.CLOSED)  # opened T0, closed 6 hours later (a step an hour)
    cancelled = replace(opened(), id="gone", state=CapaState.CANCELLED)
    assert closed.closed_at is not None
    signals = [("GLU-METER-01", closed.closed_at + timedelta(days=5)),
               ("OTHER", closed.closed_at + timedelta(days=5))]
    kpis = capa_kpis([young, middle, old, closed, cancelled],
                     {"young": young.opened_at - timedelta(hours=6),
                      "middle": middle.opened_at - timedelta(hours=18)}, signals, now)
    assert kpis.open_by_age == {"0-7 days": 1, "8-30 days": 1, "31-90 days": 0,
                                "over 90 days": 1}
    assert kpis.open_total == 3 and kpis.closed == 1
    assert kpis.mean_days_to_close == round(6 / 24, 1)
    assert (kpis.actions_done, kpis.actions_total) == (2, 4)
    assert kpis.overdue_actions == 1
    assert kpis.recurrences == 1 and kpis.recurrence_skus == ["GLU-METER-01"]
    assert kpis.mean_response_hours == 12.0
    before = capa_kpis([closed], {}, [("GLU-METER-01", closed.closed_at)], now)
    assert before.recurrences == 0  # a signal at (or before) the closing is not a recurrence
