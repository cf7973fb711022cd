"""Saving one case a worker's step changed: one statement on PostgreSQL.

Most of a case's commits after intake change one existing case: its row (under the version
check), its new audit events, the outbox rows of the step that finished, and the work it
asks for next. `SqlUnitOfWork.commit` writes those with three to five statements; on
PostgreSQL this module writes them with one, whose data-modifying CTEs do the same (the rows
are the ones `store/mapping.py` makes). Every CTE after the case's update runs only if the
update found the version it expected, so a lost race writes nothing and raises
`ConcurrencyConflict` as before. When the unit of work read nothing first (a chained step
reuses the case its previous step committed), the statement runs in autocommit: it is then
the whole transaction, without a BEGIN and a COMMIT round trip of its own.

A notify row is not added while one is still open (one notify sends every message due), as
the step-by-step path does; that path checks after marking this step's rows done, so here a
notify this statement completes does not count as open.

Commits this does not cover (a new case, a second decision, which rewrites `case_rules`,
postponed work, inbox keys, several cases) keep the step-by-step statements.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from refundbridge.core.errors import ConcurrencyConflict
from refundbridge.core.model import RefundCase, Step
from refundbridge.store import tables as t
from refundbridge.store.intake import EVENT_COLUMNS, JSON_CASE_COLUMNS, _pg_type, _recordset
from refundbridge.store.json_text import pg_json
from refundbridge.store.mapping import case_to_row, event_to_row, rules_to_rows
from refundbridge.store.outbox import Work

# Written once when the case opens; leaving them out of updates saves re-sending the request.
IMMUTABLE_COLUMNS = frozenset({"id", "shop_id", "source", "external_id", "order_id", "kind",
                               "currency", "requested_minor", "refund_timing", "request",
                               "created_at"})
UPDATED_COLUMNS = [c.name for c in t.cases.columns
                   if c.name not in IMMUTABLE_COLUMNS and c.name != "seq"]


def _save_case_sql() -> str:
    assignments = ", ".join(f"{n} = %(c_{n})s::{_pg_type(t.cases.c[n])}"
                            for n in UPDATED_COLUMNS)
    return f"""
WITH saved AS (
    UPDATE cases SET {assignments}
    WHERE id = %(case_id)s AND version = %(version)s
    RETURNING id
), events AS (
    INSERT INTO case_events (case_id, {", ".join(EVENT_COLUMNS)})
    SELECT saved.id, {", ".join(f"x.{n}" for n in EVENT_COLUMNS)}
    FROM saved, {_recordset(t.case_events, EVENT_COLUMNS, "events")}
), done AS (
    UPDATE outbox SET done_at = %(now)s::timestamptz
    WHERE case_id = %(case_id)s AND step = ANY(%(done_steps)s::text[]) AND done_at IS NULL
      AND EXISTS (SELECT FROM saved)
), rules AS (
    INSERT INTO case_rules (case_id, rule_id, outcome)
    SELECT saved.id, x.rule_id, x.outcome
    FROM saved, json_to_recordset(%(rules)s::json) AS x(rule_id text, outcome text)
    ON CONFLICT DO NOTHING
), work AS (
    INSERT INTO outbox (case_id, step, created_at, dispatched_at, dispatch_count)
    SELECT saved.id, x.step, %(now)s::timestamptz, %(dispatched_at)s::timestamptz, 1
    FROM saved, unnest(%(steps)s::text[]) WITH ORDINALITY AS x(step, n)
    WHERE x.step <> 'notify' OR 'notify' = ANY(%(done_steps)s::text[]) OR NOT EXISTS (
        SELECT FROM outbox AS open
        WHERE open.case_id = %(case_id)s AND open.step = 'notify' AND open.done_at IS NULL)
    ORDER BY x.n
    RETURNING id, step
)
SELECT EXISTS (SELECT FROM saved) AS saved,
       (SELECT array_agg(id ORDER BY id) FROM work) AS work_ids,
       (SELECT array_agg(step ORDER BY id) FROM work) AS work_steps
"""


SAVE_CASE = _save_case_sql()


def save_case_params(case: RefundCase, done_steps: list[str], now: datetime,
                     dispatched_at: datetime | None, decided: bool) -> dict[str, Any]:
    """`SAVE_CASE`'s parameters for `case`'s changes. `decided`: its new events hold its
    first decision, whose rules go in too."""
    row = case_to_row(case, now)
    return {
        **{f"c_{n}": pg_json(row[n]) if n in JSON_CASE_COLUMNS else row[n]
           for n in UPDATED_COLUMNS},
        "case_id": case.id, "version": case.version, "now": now,
        "dispatched_at": dispatched_at, "done_steps": done_steps,
        "events": pg_json([{n: e[n] for n in EVENT_COLUMNS}
                        for e in (event_to_row(case.id, ev) for ev in case.new_events)]),
        "steps": [step.value for step in dict.fromkeys(case.new_steps)],
        # A first decision's rules (the console's filter); a later one rewrites them
        # step by step.
        "rules": pg_json([{"rule_id": r["rule_id"], "outcome": r["outcome"]}
                       for r in rules_to_rows(case)] if decided else []),
    }


def saved_work(case: RefundCase, row: tuple[Any, ...] | None) -> list[Work]:
    """The work `SAVE_CASE` stored, from its row; `ConcurrencyConflict` if another writer
    changed the case first (then nothing was written)."""
    assert row is not None  # the SELECT makes one row
    saved, work_ids, work_steps = row
    if not saved:
        raise ConcurrencyConflict(f"case {case.id} was changed by another writer")
    return [Work(int(i), case.id, Step(s))
            for i, s in zip(work_ids or (), work_steps or (), strict=True)]
