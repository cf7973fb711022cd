"""The console's case list: filters and keyset paging that stay fast at a million cases.

Pages are cut by `cases.seq` (newest first), never by OFFSET: a page's query reads its
rows and one more, from the primary key (or an index on the filtered column) at the
cursor, so the hundredth page costs what the first does. Only the list's columns are read,
never a case's request or details JSON. The rule filter goes through `case_rules`, the
search through the unique id and the (shop, order) and (shop, external id) indexes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Engine, Select, select

from refundbridge.core.lifecycle import FINAL_STATES, CaseState
from refundbridge.core.money import Money
from refundbridge.store import tables as t
from refundbridge.store.mapping import aware

# A case whose money went back or that is over owes nothing more that we track by date.
SETTLED_STATES = frozenset({*FINAL_STATES, CaseState.REFUNDED})
PAGE_SIZES = (25, 50, 100, 200)


@dataclass(frozen=True, slots=True)
class CaseFilter:
    """What the list shows. `shops`: the shops the operator may see (None: every shop);
    `shop`: one of them chosen on the page."""

    shops: frozenset[str] | None
    shop: str | None = None
    state: str | None = None
    rule: str | None = None
    created_from: date | None = None
    created_to: date | None = None  # inclusive
    failed: bool = False
    overdue: bool = False
    search: str | None = None


@dataclass(frozen=True, slots=True)
class CaseRow:
    seq: int
    id: str
    shop_id: str
    state: str
    amount: Money
    created_at: datetime
    due_on: date | None
    assignee: str | None


@dataclass(frozen=True, slots=True)
class CasePage:
    rows: list[CaseRow]
    # The cursors for the next (older) and previous (newer) page; None at either end.
    next_after: int | None
    previous_before: int | None


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _filtered(query: Select[Any], f: CaseFilter, today: date) -> Select[Any] | None:
    """`query` narrowed to the filter; None when nothing can match (a shop not the
    operator's)."""
    c = t.cases.c
    if f.shop:
        if f.shops is not None and f.shop not in f.shops:
            return None
        query = query.where(c.shop_id == f.shop)
    elif f.shops is not None:
        if not f.shops:
            return None
        query = query.where(c.shop_id.in_(sorted(f.shops)))
    if f.state:
        query = query.where(c.state == f.state)
    if f.failed:
        query = query.where(c.state == CaseState.FAILED.value)
    if f.overdue:
        query = query.where(c.due_on < today,
                            c.state.not_in(sorted(s.value for s in SETTLED_STATES)))
    if f.created_from:
        query = query.where(c.created_at >= _day_start(f.created_from))
    if f.created_to:
        query = query.where(c.created_at < _day_start(f.created_to + timedelta(days=1)))
    if f.rule:
        query = query.where(c.id.in_(select(t.case_rules.c.case_id)
                                     .where(t.case_rules.c.rule_id == f.rule)))
    if f.search:
        term = f.search.strip()
        query = query.where((c.id == term) | (c.order_id == term) | (c.external_id == term))
    return query


LIST_COLUMNS = (t.cases.c.seq, t.cases.c.id, t.cases.c.shop_id, t.cases.c.state,
                t.cases.c.currency, t.cases.c.requested_minor, t.cases.c.approved_minor,
                t.cases.c.created_at, t.cases.c.due_on, t.cases.c.assignee)


def _row(row: Any) -> CaseRow:
    minor = row.approved_minor if row.approved_minor is not None else row.requested_minor
    return CaseRow(int(row.seq), row.id, row.shop_id, row.state,
                   Money.from_minor(int(minor), row.currency), aware(row.created_at),
                   row.due_on, row.assignee)


def list_page(engine: Engine, f: CaseFilter, *, limit: int = 50, after: int | None = None,
              before: int | None = None, today: date | None = None) -> CasePage:
    """One page, newest first: the `limit` cases just older than `after` (the first page
    without it), or, going back, the `limit` cases just newer than `before`."""
    today = today or datetime.now(UTC).date()
    c = t.cases.c
    query = _filtered(select(*LIST_COLUMNS), f, today)
    if query is None:
        return CasePage([], None, None)
    # Ordered by the primary key, a page reads the key backwards from the cursor until it
    # has its rows. A range that ends before today would be read the same way, the planner
    # expecting its rows spread over the table, while they sit together (seq grows with
    # time), maybe far behind the newest: `seq + 0` makes it take the (shop, created_at)
    # index and sort the range's rows instead, which costs what the range holds. A range
    # open towards today starts at the newest rows: the key is right for it.
    ends_early = f.created_to is not None and f.created_to < today
    key = c.seq + 0 if ends_early else c.seq
    backwards = before is not None and after is None
    if backwards:
        query = query.where(c.seq > before).order_by(key.asc())
    else:
        if after is not None:
            query = query.where(c.seq < after)
        query = query.order_by(key.desc())
    with engine.connect() as conn:
        found = conn.execute(query.limit(limit + 1)).all()
    more = len(found) > limit
    rows = [_row(r) for r in found[:limit]]
    if backwards:
        rows.reverse()
        # Going back, "more" means newer ones remain; older ones exist (we came from them).
        return CasePage(rows, rows[-1].seq if rows else None,
                        rows[0].seq if rows and more else None)
    return CasePage(rows, rows[-1].seq if rows and more else None,
                    rows[0].seq if rows and after is not None else None)


class ConsoleReads:
    """The console's list reads, bound to one database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def list_page(self, f: CaseFilter, *, limit: int = 50, after: int | None = None,
                  before: int | None = None, today: date | None = None) -> CasePage:
        return list_page(self._engine, f, limit=limit, after=after, before=before, today=today)

    def case_shops(self, case_ids: list[str]) -> dict[str, str]:
        """The shop of each of these cases that exists."""
        if not case_ids:
            return {}
        c = t.cases.c
        with self._engine.connect() as conn:
            rows = conn.execute(select(c.id, c.shop_id).where(c.id.in_(sorted(set(case_ids)))))
            return {row.id: row.shop_id for row in rows}
