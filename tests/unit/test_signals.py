"""Quality signals, judged purely: the thresholds' exact edges, rates not counts, and the
fixed windows a signal's id is derived from (core/signals.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from refundbridge.core.audit import verify_chain
from refundbridge.core.errors import IllegalTransition
from refundbridge.core.request import ReasonCode
from refundbridge.core.signals import (
    DEFAULT_SIGNAL_QUALITY_REASONS,
    WINDOW_EPOCH,
    CaseHit,
    QualitySignal,
    SignalGroup,
    SignalPolicy,
    SignalState,
    ThresholdName,
    Window,
    alert_for,
    evaluate,
    signal_groups,
    signal_id,
    tally,
    thresholds,
    window_containing,
    windows_to_evaluate,
)

Q = frozenset({SignalGroup.QUALITY})
AE = frozenset({SignalGroup.ADVERSE_EVENT})
POLICY = SignalPolicy()
RULES = {t.name: t for t in thresholds(POLICY)}
W30 = window_containing(date(2026, 11, 20), 30)


def hits(n: int, *, day: date | None = None, sku: str = "GM-100", lot: str | None = "L1",
         units: int = 1, groups: frozenset[SignalGroup] = Q, prefix: str = "rc") -> list[CaseHit]:
    return [CaseHit(f"{prefix}_{i}", sku, lot, units, day or W30.start, groups)
            for i in range(n)]


def crossings(name: ThresholdName, case_hits: list[CaseHit], window: Window = W30,
              shipped: dict[tuple[str, str | None], int | None] | None = None) -> list[str]:
    found = evaluate("shop", RULES[name], window, tally(case_hits, window), shipped)
    return [c.id for c in found]


# ------------------------------------------------------------------ counts


def test_two_quality_returns_of_a_lot_raise_nothing_and_three_raise_one_signal() -> None:
    assert crossings(ThresholdName.QUALITY_COUNT, hits(2)) == []
    found = evaluate("shop", RULES[ThresholdName.QUALITY_COUNT], W30, tally(hits(3), W30))
    assert len(found) == 1
    assert found[0].count == 3 and found[0].case_ids == ("rc_0", "rc_1", "rc_2")
    assert found[0].lot == "L1" and found[0].window == W30


def test_a_case_is_counted_once_however_many_of_its_lines_name_the_lot() -> None:
    one_case = [CaseHit("rc_1", "GM-100", "L1", 1, W30.start, Q) for _ in range(3)]
    assert crossings(ThresholdName.QUALITY_COUNT, one_case) == []
    assert tally(one_case, W30)[0].units == 3


def test_returns_of_other_lots_or_skus_do_not_add_up() -> None:
    mixed = hits(2, lot="L1") + hits(2, lot="L2", prefix="b") + hits(2, sku="X", prefix="c")
    assert crossings(ThresholdName.QUALITY_COUNT, mixed) == []


def test_returns_without_a_lot_count_per_sku_with_no_lot() -> None:
    found = evaluate("shop", RULES[ThresholdName.QUALITY_COUNT], W30,
                     tally(hits(3, lot=None), W30))
    assert [c.lot for c in found] == [None]


def test_a_second_adverse_event_on_one_lot_raises_and_the_first_does_not() -> None:
    window = window_containing(W30.start, 90)
    assert crossings(ThresholdName.ADVERSE_EVENT_COUNT, hits(1, groups=AE), window) == []
    assert len(crossings(ThresholdName.ADVERSE_EVENT_COUNT, hits(2, groups=AE), window)) == 1
    # quality returns are not adverse events
    assert crossings(ThresholdName.ADVERSE_EVENT_COUNT, hits(5), window) == []


def test_any_recall_return_raises() -> None:
    recall = frozenset({SignalGroup.RECALL})
    assert len(crossings(ThresholdName.RECALL_COUNT, hits(1, groups=recall))) == 1


# ------------------------------------------------------------------ the window's edges


def test_day_30_of_a_window_is_in_it_and_day_31_is_the_next_window() -> None:
    day_30 = W30.start + timedelta(days=29)
    day_31 = W30.start + timedelta(days=30)
    assert W30.contains(day_30) and not W30.contains(day_31)
    two_then_one_on_day_30 = hits(2) + hits(1, day=day_30, prefix="late")
    assert len(crossings(ThresholdName.QUALITY_COUNT, two_then_one_on_day_30)) == 1
    two_then_one_on_day_31 = hits(2) + hits(1, day=day_31, prefix="late")
    assert crossings(ThresholdName.QUALITY_COUNT, two_then_one_on_day_31) == []
    assert window_containing(day_31, 30) == Window(day_31, 30)


def test_windows_are_fixed_buckets_so_every_day_in_one_gives_the_same_id() -> None:
    ids = {signal_id("shop", "GM-100", "L1", ThresholdName.QUALITY_COUNT,
                     window_containing(W30.start + timedelta(days=d), 30)) for d in range(30)}
    assert len(ids) == 1
    assert (W30.start - WINDOW_EPOCH).days % 30 == 0
    following = window_containing(W30.end, 30)
    assert signal_id("shop", "GM-100", "L1", ThresholdName.QUALITY_COUNT, following) not in ids


def test_the_id_names_shop_sku_lot_threshold_and_window() -> None:
    base = signal_id("shop", "GM-100", "L1", ThresholdName.QUALITY_COUNT, W30)
    assert base == signal_id("shop", "GM-100", "L1", ThresholdName.QUALITY_COUNT, W30)
    others = {signal_id("other", "GM-100", "L1", ThresholdName.QUALITY_COUNT, W30),
              signal_id("shop", "GM-200", "L1", ThresholdName.QUALITY_COUNT, W30),
              signal_id("shop", "GM-100", "L2", ThresholdName.QUALITY_COUNT, W30),
              signal_id("shop", "GM-100", None, ThresholdName.QUALITY_COUNT, W30),
              signal_id("shop", "GM-100", "L1", ThresholdName.QUALITY_RATE, W30),
              signal_id("shop", "GM-100", "L1", ThresholdName.QUALITY_COUNT, W30.previous())}
    assert base not in others and len(others) == 6


def test_a_run_looks_at_todays_window_and_the_one_before() -> None:
    previous, current = windows_to_evaluate(W30.start, 30)
    assert current == W30 and previous.end == W30.start


def test_window_bounds_are_the_shops_midnights() -> None:
    start, end = Window(date(2026, 12, 1), 1).bounds("Asia/Shanghai")
    assert start == datetime(2026, 11, 30, 16, tzinfo=UTC)
    assert end - start == timedelta(days=1)


# ------------------------------------------------------------------ rates


def test_the_rate_is_returned_units_over_shipped_and_two_percent_exactly_is_not_above() -> None:
    rate = ThresholdName.QUALITY_RATE
    case_hits = hits(4, units=50)  # 200 units returned
    assert crossings(rate, case_hits, shipped={("GM-100", "L1"): 10_000}) == []  # 2.00 %
    three_hits = hits(3, units=67)  # 201 units: 2.01 %
    found = evaluate("shop", RULES[rate], W30, tally(three_hits, W30),
                     {("GM-100", "L1"): 10_000})
    assert len(found) == 1
    assert found[0].rate_percent == Decimal("2.0100") and found[0].shipped == 10_000


def test_a_rate_not_a_count_two_returns_of_a_small_lot_cross_and_of_a_big_one_do_not() -> None:
    rate = ThresholdName.QUALITY_RATE
    two = hits(2)
    assert len(crossings(rate, two, shipped={("GM-100", "L1"): 60})) == 1  # 3.3 %
    assert crossings(rate, two, shipped={("GM-100", "L1"): 5000}) == []  # 0.04 %
    assert crossings(ThresholdName.QUALITY_COUNT, two) == []  # a count alone says nothing


def test_below_the_shipped_floor_no_rate_is_judged() -> None:
    rate = ThresholdName.QUALITY_RATE
    assert POLICY.rate_min_shipped == 50
    assert crossings(rate, hits(1), shipped={("GM-100", "L1"): 10}) == []  # 10 %, 10 units
    assert crossings(rate, hits(2), shipped={("GM-100", "L1"): 49}) == []
    assert len(crossings(rate, hits(2), shipped={("GM-100", "L1"): 50})) == 1


def test_an_unknown_shipped_count_judges_no_rate() -> None:
    assert crossings(ThresholdName.QUALITY_RATE, hits(30), shipped={}) == []
    assert crossings(ThresholdName.QUALITY_RATE, hits(30),
                     shipped={("GM-100", "L1"): None}) == []
    assert crossings(ThresholdName.QUALITY_RATE, hits(30), shipped={("GM-100", "L1"): 0}) == []


# ------------------------------------------------------------------ groups and policy


def test_reason_groups() -> None:
    def groups(code: ReasonCode, adverse: bool = False, recall: bool = False) -> set[str]:
        return {g.value for g in signal_groups(code, quality_reasons=DEFAULT_SIGNAL_QUALITY_REASONS,
                                               adverse_flagged=adverse, recall_matched=recall)}

    assert groups(ReasonCode.DEFECTIVE) == {"quality"}
    assert groups(ReasonCode.NOT_AS_DESCRIBED) == {"quality"}
    assert groups(ReasonCode.DAMAGED_ON_ARRIVAL) == {"quality"}
    assert groups(ReasonCode.WRONG_ITEM) == set()  # the warehouse's mistake, not the lot's
    assert groups(ReasonCode.MALFUNCTION_HARM) == {"quality", "adverse_event"}
    assert groups(ReasonCode.INJURY) == {"adverse_event"}
    assert groups(ReasonCode.DEFECTIVE, adverse=True) == {"quality", "adverse_event"}
    assert groups(ReasonCode.RECALL) == {"recall"}
    assert groups(ReasonCode.CHANGED_MIND, recall=True) == {"recall"}
    assert groups(ReasonCode.CHANGED_MIND) == set()


def test_a_threshold_set_to_zero_is_off_and_a_disabled_policy_has_none() -> None:
    assert {t.name for t in thresholds(SignalPolicy(quality_rate_percent=Decimal(0)))} == {
        ThresholdName.QUALITY_COUNT, ThresholdName.ADVERSE_EVENT_COUNT,
        ThresholdName.RECALL_COUNT}
    assert thresholds(SignalPolicy(enabled=False)) == ()


def test_a_shops_own_count_is_used() -> None:
    strict = {t.name: t for t in thresholds(SignalPolicy(quality_count=2))}
    found = evaluate("shop", strict[ThresholdName.QUALITY_COUNT], W30, tally(hits(2), W30))
    assert len(found) == 1


# ------------------------------------------------------------------ the signal


def test_a_signal_keeps_its_own_chained_trail_and_moves_only_forward() -> None:
    crossing = evaluate("shop", RULES[ThresholdName.QUALITY_COUNT], W30, tally(hits(3), W30))[0]
    at = datetime(2026, 11, 21, tzinfo=UTC)
    signal = QualitySignal.raise_for(crossing, at, email="qa@example.com", phone=None)
    assert signal.id == crossing.id and signal.state is SignalState.OPEN
    assert signal.new_events[0].data["case_ids"] == ["rc_0", "rc_1", "rc_2"]
    signal.acknowledge("operator:wu", at, "looking")
    signal.link_capa("capa_1", "operator:wu", at)
    with pytest.raises(IllegalTransition):
        signal.acknowledge("operator:wu", at)
    assert [e.name for e in signal.new_events] == ["raise", "acknowledge", "link_capa"]
    assert verify_chain(signal.new_events).verifies


def test_the_quality_contacts_alert_says_what_crossed_in_their_language() -> None:
    crossing = evaluate("shop", RULES[ThresholdName.QUALITY_COUNT], W30, tally(hits(3), W30))[0]
    signal = QualitySignal.raise_for(crossing, datetime(2026, 11, 21, tzinfo=UTC),
                                     email="qa@example.com", phone="+8613800138000")
    en = alert_for(signal, SignalPolicy(contact_email="qa@example.com"))
    assert "3 quality returns of lot L1 of GM-100 in 30 days" in en.subject
    assert "rc_0, rc_1, rc_2" in en.body and signal.id in en.sms_text
    zh = alert_for(signal, SignalPolicy(contact_locale="zh-CN"))
    assert "质量退货 3 件次" in zh.subject
