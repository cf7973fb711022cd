"""The partial indexes of migration 0013 name exactly what their queries ask for: were they to
drift apart, PostgreSQL would silently stop using them and read the whole history again."""

from __future__ import annotations

import re

from refundbridge.core.lifecycle import MOVING_STATES, Transition
from refundbridge.store import tables as t


def _predicate(table: object, name: str) -> str:
    index = next(i for i in table.indexes if i.name == name)  # type: ignore[attr-defined]
    return str(index.dialect_options["postgresql"]["where"])


def test_the_idle_scan_index_holds_exactly_the_moving_states() -> None:
    listed = set(re.findall(r"'([a-z_]+)'", _predicate(t.cases, "ix_cases_moving")))
    assert listed == {s.value for s in MOVING_STATES}


def test_the_outbox_indexes_hold_open_work_only() -> None:
    assert _predicate(t.outbox, "ix_outbox_open") == "done_at IS NULL"
    assert _predicate(t.outbox, "ix_outbox_open_case") == "done_at IS NULL"


def test_the_refund_index_holds_the_confirmations() -> None:
    assert re.findall(r"'([a-z_]+)'", _predicate(t.case_events, "ix_case_events_refunded")) \
        == [Transition.CONFIRM_REFUND.value]
