"""Opening a case from a new request (`IntakeWriter`): the webhook's hot path.

On PostgreSQL it is one statement in autocommit: one round trip, no BEGIN or COMMIT of its
own, and atomic as every single statement is. Its data-modifying CTEs check the order's
currency, insert the inbox key (`ON CONFLICT DO NOTHING`: the key decides between
concurrent copies) and, only if that row went in, the case, its units, its audit events and
its work. It returns what the caller needs, including the known inbox entry of a replay.
The rows are the ones `SqlUnitOfWork.commit` writes (`store/mapping.py`, the same values).

Elsewhere (SQLite) the unit of work's own statements do it, one after another. The API on
PostgreSQL awaits the same statement on an event loop (`AsyncPgIntakeWriter`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import TupleRow
from sqlalchemy import JSON, BigInteger, Date, DateTime, Engine, Integer, String, Table
from sqlalchemy.exc import DBAPIError

from refundbridge.core.errors import DuplicateDelivery
from refundbridge.core.model import RefundCase, Step
from refundbridge.core.ports import (
    CaseOpened,
    CurrencyConflict,
    InboxEntry,
    IntakeOutcome,
    KnownDelivery,
)
from refundbridge.store import tables as t
from refundbridge.store.json_text import pg_json
from refundbridge.store.mapping import case_to_row, event_to_row, units_to_rows
from refundbridge.store.outbox import Work

if TYPE_CHECKING:
    from refundbridge.store.uow import SqlUnitOfWork

log = logging.getLogger("refundbridge.store")


def _pg_type(column: Any) -> str:
    """The type a parameter is cast to. Lengths are left to the column: an explicit cast
    to varchar(n) would cut a long value where the insert refuses it."""
    kind = column.type
    for sql_type, name in ((BigInteger, "bigint"), (Integer, "integer"), (String, "text"),
                           (JSON, "json"), (Date, "date")):
        if isinstance(kind, sql_type):
            return name
    if isinstance(kind, DateTime):
        return "timestamptz" if kind.timezone else "timestamp"
    raise TypeError(f"no cast for {column}")  # pragma: no cover - a new column type


def _columns(table: Table, skip: frozenset[str] = frozenset()) -> list[Any]:
    return [c for c in table.columns if c.name not in skip]


CASE_COLUMNS = [c.name for c in _columns(t.cases, frozenset({"seq"}))]
UNIT_COLUMNS = [c.name for c in _columns(t.case_units, frozenset({"case_id"}))]
EVENT_COLUMNS = [c.name for c in _columns(t.case_events, frozenset({"case_id"}))]
JSON_CASE_COLUMNS = frozenset(c.name for c in t.cases.columns if isinstance(c.type, JSON))


def _recordset(table: Table, names: list[str], param: str) -> str:
    # One JSON document for all the rows (`pg_json`, in C) instead of an array per column.
    # A `json` column keeps the text of its part of the document, as `store/json_text.py`
    # wrote it: the text SQLAlchemy sends for the same value.
    columns = ", ".join(f"{n} {_pg_type(table.c[n])}" for n in names)
    return f"json_to_recordset(%({param})s::json) AS x({columns})"


def _open_case_sql() -> str:
    case_values = ", ".join(f"%(c_{n})s::{_pg_type(t.cases.c[n])}" for n in CASE_COLUMNS)
    return f"""
WITH known AS (
    SELECT currency FROM cases
    WHERE shop_id = %(shop_id)s AND order_id = %(order_id)s LIMIT 1
), entry AS (
    INSERT INTO inbox (shop_id, connector, external_id, fingerprint, case_id, received_at)
    SELECT %(shop_id)s, %(connector)s, %(external_id)s, %(fingerprint)s, %(case_id)s,
           %(now)s::timestamptz
    WHERE NOT EXISTS (SELECT FROM known WHERE currency <> %(currency)s)
    ON CONFLICT DO NOTHING
    RETURNING case_id
), new_case AS (
    INSERT INTO cases ({", ".join(CASE_COLUMNS)})
    SELECT {case_values} FROM entry
), units AS (
    INSERT INTO case_units (case_id, {", ".join(UNIT_COLUMNS)})
    SELECT entry.case_id, {", ".join(f"x.{n}" for n in UNIT_COLUMNS)}
    FROM entry, {_recordset(t.case_units, UNIT_COLUMNS, "units")}
), events AS (
    INSERT INTO case_events (case_id, {", ".join(EVENT_COLUMNS)})
    SELECT entry.case_id, {", ".join(f"x.{n}" for n in EVENT_COLUMNS)}
    FROM entry, {_recordset(t.case_events, EVENT_COLUMNS, "events")}
), work AS (
    INSERT INTO outbox (case_id, step, created_at, dispatched_at, dispatch_count)
    SELECT entry.case_id, x.step, %(now)s::timestamptz, %(dispatched_at)s::timestamptz, 1
    FROM entry, unnest(%(steps)s::text[]) WITH ORDINALITY AS x(step, n)
    ORDER BY x.n
    RETURNING id, step
)
SELECT (SELECT currency FROM known) AS known_currency,
       EXISTS (SELECT FROM entry) AS opened,
       (SELECT array_agg(id ORDER BY id) FROM work) AS work_ids,
       (SELECT array_agg(step ORDER BY id) FROM work) AS work_steps,
       i.case_id AS known_case_id, i.fingerprint AS known_fingerprint
FROM (SELECT) AS one
LEFT JOIN inbox AS i ON i.shop_id = %(shop_id)s AND i.connector = %(connector)s
                    AND i.external_id = %(external_id)s
"""


# Built once: the text never changes, so psycopg prepares it on each connection after a few
# uses and PostgreSQL plans it once per connection.
OPEN_CASE = _open_case_sql()
# The same key read again in a statement of its own: a copy that committed while the first
# statement waited on its key is outside that statement's snapshot.
FIND_ENTRY = ("SELECT case_id, fingerprint FROM inbox "
              "WHERE shop_id = %(shop_id)s AND connector = %(connector)s "
              "AND external_id = %(external_id)s")


def _open_cases_sql() -> str:
    keys = ("n integer, shop_id text, order_id text, currency text, connector text, "
            "external_id text, fingerprint text, case_id text")
    return f"""
WITH input AS (
    SELECT * FROM json_to_recordset(%(keys)s::json) AS k({keys})
), known AS (
    -- The order's stored currency, else that of the batch's first request on the order:
    -- two requests in one batch cannot open an order in two currencies.
    SELECT input.n, coalesce(
        (SELECT c.currency FROM cases AS c
         WHERE c.shop_id = input.shop_id AND c.order_id = input.order_id LIMIT 1),
        (SELECT f.currency FROM input AS f
         WHERE f.shop_id = input.shop_id AND f.order_id = input.order_id
         ORDER BY f.n LIMIT 1)) AS currency
    FROM input
), entry AS (
    INSERT INTO inbox (shop_id, connector, external_id, fingerprint, case_id, received_at)
    SELECT i.shop_id, i.connector, i.external_id, i.fingerprint, i.case_id,
           %(now)s::timestamptz
    FROM input AS i JOIN known AS k ON k.n = i.n
    WHERE k.currency IS NULL OR k.currency = i.currency
    ORDER BY i.shop_id, i.connector, i.external_id
    ON CONFLICT DO NOTHING
    RETURNING case_id
), new_case AS (
    INSERT INTO cases ({", ".join(CASE_COLUMNS)})
    SELECT {", ".join(f"x.{n}" for n in CASE_COLUMNS)}
    FROM {_recordset(t.cases, CASE_COLUMNS, "cases")} JOIN entry ON entry.case_id = x.id
), units AS (
    INSERT INTO case_units (case_id, {", ".join(UNIT_COLUMNS)})
    SELECT x.case_id, {", ".join(f"x.{n}" for n in UNIT_COLUMNS)}
    FROM {_recordset(t.case_units, ["case_id", *UNIT_COLUMNS], "units")}
    JOIN entry ON entry.case_id = x.case_id
), events AS (
    INSERT INTO case_events (case_id, {", ".join(EVENT_COLUMNS)})
    SELECT x.case_id, {", ".join(f"x.{n}" for n in EVENT_COLUMNS)}
    FROM {_recordset(t.case_events, ["case_id", *EVENT_COLUMNS], "events")}
    JOIN entry ON entry.case_id = x.case_id
), work AS (
    INSERT INTO outbox (case_id, step, created_at, dispatched_at, dispatch_count)
    SELECT x.case_id, x.step, %(now)s::timestamptz, NULL, 1
    FROM json_to_recordset(%(steps)s::json) AS x(n integer, case_id text, step text)
    JOIN entry ON entry.case_id = x.case_id
    ORDER BY x.n
    RETURNING id, case_id, step
)
SELECT i.n, k.currency AS known_currency,
       EXISTS (SELECT FROM entry WHERE entry.case_id = i.case_id) AS opened,
       (SELECT array_agg(w.id ORDER BY w.id) FROM work AS w
        WHERE w.case_id = i.case_id) AS work_ids,
       (SELECT array_agg(w.step ORDER BY w.id) FROM work AS w
        WHERE w.case_id = i.case_id) AS work_steps,
       b.case_id AS known_case_id, b.fingerprint AS known_fingerprint
FROM input AS i JOIN known AS k ON k.n = i.n
LEFT JOIN inbox AS b ON b.shop_id = i.shop_id AND b.connector = i.connector
                    AND b.external_id = i.external_id
ORDER BY i.n
"""


# `OPEN_CASE` for many requests at once: each row of `keys` is one request (`n` its place),
# and the rows of `cases`, `units`, `events` and `steps` name their case. One row comes back
# per request, in order, with `OPEN_CASE`'s columns after `n`. Inbox keys go in in key order,
# so two batches that share keys take their locks in the same order.
OPEN_CASES = _open_cases_sql()


def open_case_params(case: RefundCase, connector: str, external_id: str, fingerprint: str,
                     now: datetime, dispatched_at: datetime | None) -> dict[str, Any]:
    """The statement's parameters: the rows `SqlUnitOfWork.commit` would write."""
    row = case_to_row(case, now)
    units = units_to_rows(case)
    events = [event_to_row(case.id, e) for e in case.new_events]
    return {
        "shop_id": case.shop_id, "order_id": case.request.order.id, "currency": case.currency,
        "connector": connector, "external_id": external_id, "fingerprint": fingerprint,
        "case_id": case.id, "now": now, "dispatched_at": dispatched_at,
        # As SQLAlchemy binds a JSON column on psycopg (`store/db.py`'s `json_serializer`).
        **{f"c_{n}": pg_json(v) if n in JSON_CASE_COLUMNS else v for n, v in row.items()},
        "units": pg_json([{n: u[n] for n in UNIT_COLUMNS} for u in units]),
        "events": pg_json([{n: e[n] for n in EVENT_COLUMNS} for e in events]),
        "steps": [step.value for step in dict.fromkeys(case.new_steps)],
    }


@dataclass(frozen=True, slots=True)
class PendingCase:
    """A request waiting for the next statement that stores requests (`open_cases_params`)."""

    case: RefundCase
    connector: str
    external_id: str
    fingerprint: str


# The case columns that JSON has no type for: sent as ISO text, cast by the column list.
TIME_CASE_COLUMNS = tuple(c.name for c in t.cases.columns if isinstance(c.type, DateTime | Date))


def _case_document(case: RefundCase, now: datetime) -> dict[str, Any]:
    row = case_to_row(case, now)
    for name in TIME_CASE_COLUMNS:
        if row[name] is not None:
            row[name] = row[name].isoformat()
    return row


def open_cases_params(batch: Sequence[PendingCase], now: datetime) -> dict[str, Any]:
    """`OPEN_CASES`' parameters: for each request the rows `open_case_params` gives it."""
    keys: list[dict[str, Any]] = []
    cases: list[dict[str, Any]] = []
    units: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    for n, item in enumerate(batch):
        case = item.case
        keys.append({"n": n, "shop_id": case.shop_id, "order_id": case.request.order.id,
                     "currency": case.currency, "connector": item.connector,
                     "external_id": item.external_id, "fingerprint": item.fingerprint,
                     "case_id": case.id})
        cases.append(_case_document(case, now))
        units += units_to_rows(case)
        events += [event_to_row(case.id, e) for e in case.new_events]
        steps += [{"n": len(steps) + i, "case_id": case.id, "step": step.value}
                  for i, step in enumerate(dict.fromkeys(case.new_steps))]
    return {"keys": pg_json(keys), "cases": pg_json(cases), "units": pg_json(units),
            "events": pg_json(events), "steps": pg_json(steps), "now": now}


def execute_autocommit(engine: Engine, statement: str,
                       params: dict[str, Any]) -> tuple[Any, ...] | None:
    """Run one statement on a pooled connection in autocommit and return its first row.

    psycopg directly: no SQLAlchemy execution on the hot path. Its errors are raised as
    SQLAlchemy's (the API answers `OperationalError` with a 503), and the connection that
    saw one is discarded rather than handed back in autocommit or in an unknown state."""
    try:
        pooled = engine.raw_connection()
    except psycopg.Error as exc:  # as `engine.connect()` raises it
        raise DBAPIError.instance(None, None, exc, psycopg.Error,
                                  dialect=engine.dialect) from exc
    try:
        driver = pooled.dbapi_connection
        assert isinstance(driver, psycopg.Connection)
        try:
            driver.autocommit = True  # client side only: no round trip
            row: tuple[Any, ...] | None = driver.execute(statement, params).fetchone()
            driver.autocommit = False
        except BaseException as exc:
            pooled.invalidate(exc if isinstance(exc, Exception) else None)
            if isinstance(exc, psycopg.Error):
                raise DBAPIError.instance(statement, params, exc, psycopg.Error,
                                          connection_invalidated=True,
                                          dialect=engine.dialect) from exc
            raise
        return row
    finally:
        pooled.close()


def read_outcome(case: RefundCase, row: tuple[Any, ...] | None
                 ) -> tuple[IntakeOutcome | None, list[Work]]:
    """What `OPEN_CASE` did, from its row, and the work it stored; None for a key that a
    copy committed while the statement waited on it (read it with `FIND_ENTRY`)."""
    assert row is not None  # the statement's SELECT makes one row
    known_currency, opened, work_ids, work_steps, known_case_id, known_fingerprint = row
    if known_currency is not None and known_currency != case.currency:
        return CurrencyConflict(str(known_currency)), []
    if opened:
        case.version += 1  # as `SqlUnitOfWork.commit` leaves a case it wrote
        case.new_events.clear()
        case.new_steps.clear()
        return CaseOpened(), [Work(int(i), case.id, Step(s))
                              for i, s in zip(work_ids or (), work_steps or (), strict=True)]
    if known_case_id is None:
        return None, []
    return KnownDelivery(InboxEntry(known_case_id, known_fingerprint)), []


def known_entry(row: tuple[Any, ...] | None) -> KnownDelivery:
    if row is None:  # pragma: no cover - the unique key said it exists
        raise DuplicateDelivery("unknown", same_body=False)
    return KnownDelivery(InboxEntry(row[0], row[1]))


class SqlIntakeWriter:
    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    def open_case(self, case: RefundCase, connector: str, external_id: str,
                  fingerprint: str) -> IntakeOutcome:
        if self._uow.engine.dialect.name == "postgresql":
            return self._in_one_statement(case, connector, external_id, fingerprint)
        return self._step_by_step(case, connector, external_id, fingerprint)

    def _in_one_statement(self, case: RefundCase, connector: str, external_id: str,
                          fingerprint: str) -> IntakeOutcome:
        # A connection of its own from the pool: the unit of work has not opened one (it
        # connects on first use), so this is still one connection per request.
        uow = self._uow
        now = datetime.now(UTC)
        params = open_case_params(case, connector, external_id, fingerprint, now,
                                  now if uow.dispatch is not None else None)
        # Committed durably (synchronous_commit) before it answers: its own transaction.
        outcome, work = read_outcome(case, execute_autocommit(uow.engine, OPEN_CASE, params))
        if work and uow.dispatch is not None:
            uow.dispatch(work)
        if outcome is None:
            # A copy committed while this statement waited on its key, after the
            # statement's snapshot was taken: a statement of its own sees it.
            return known_entry(execute_autocommit(uow.engine, FIND_ENTRY, params))
        return outcome

    def _step_by_step(self, case: RefundCase, connector: str, external_id: str,
                      fingerprint: str) -> IntakeOutcome:
        uow = self._uow
        known = uow.orders.known_currency(case.shop_id, case.request.order.id)
        if known is not None and known != case.currency:
            return CurrencyConflict(known)
        uow.cases.add(case)
        uow.inbox.add(case.shop_id, connector, external_id, InboxEntry(case.id, fingerprint))
        try:
            uow.commit()
        except DuplicateDelivery:
            pass  # known already: a replay, or a concurrent copy that committed first
        else:
            return CaseOpened()
        uow.begin_again()  # read as a new unit of work would
        entry = uow.inbox.find(case.shop_id, connector, external_id)
        if entry is None:  # pragma: no cover - the unique key said it exists
            raise DuplicateDelivery("unknown", same_body=False)
        return KnownDelivery(entry)


class AsyncPgIntakeWriter:
    """`OPEN_CASE` on an event loop, for the API on PostgreSQL: the webhook's handler awaits
    the statement instead of taking a thread, so threads stop handing the GIL to one
    another around it. Connections of its own (autocommit, at most `size`, made as needed
    on the loop that runs the app); the work waits in the outbox for the relay.

    Group commit: requests that arrive while the connections are busy wait together, and
    the next free connection stores all of them (up to `batch`) in one statement
    (`OPEN_CASES`), committed before any of them is answered. One statement, one commit
    and one round trip for many webhooks is what a burst needs; a lone request still goes
    at once, alone. Should a batch fail, each of its requests is tried again on its own, so
    one bad row costs the others nothing."""

    def __init__(self, engine: Engine, size: int, batch: int = 64) -> None:
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False)
        self._dialect = engine.dialect
        self._idle: list[psycopg.AsyncConnection[TupleRow]] = []
        self._slots = asyncio.Semaphore(size)
        self._size = size
        self._batch = batch
        self._waiting: list[tuple[PendingCase, asyncio.Future[tuple[Any, ...] | None]]] = []
        self._storers: set[asyncio.Task[None]] = set()  # referenced until they finish
        self._running = 0  # storers that will still look at `_waiting`
        self.statements = 0  # for the tests and the benchmark: how the requests went

    async def open_case(self, case: RefundCase, connector: str, external_id: str,
                        fingerprint: str) -> IntakeOutcome:
        answer: asyncio.Future[tuple[Any, ...] | None] = (
            asyncio.get_running_loop().create_future())
        self._waiting.append((PendingCase(case, connector, external_id, fingerprint),
                              answer))
        if self._running < self._size:
            self._running += 1
            storer = asyncio.create_task(self._store_waiting())
            self._storers.add(storer)
            storer.add_done_callback(self._storers.discard)
        outcome, _ = read_outcome(case, await answer)
        if outcome is None:  # see SqlIntakeWriter
            return known_entry(await self._execute(FIND_ENTRY, {
                "shop_id": case.shop_id, "connector": connector,
                "external_id": external_id}))
        return outcome

    async def _store_waiting(self) -> None:
        """Take a connection, then store whatever is waiting by then, batch after batch."""
        counted = True
        try:
            async with self._slots:
                while self._waiting:
                    batch = [(item, answer) for item, answer in self._waiting[:self._batch]
                             if not answer.done()]  # a caller who left is not stored
                    del self._waiting[:self._batch]
                    try:
                        await self._store(batch)
                    except BaseException as exc:  # cancelled (the app stops)
                        for _, answer in batch:
                            if not answer.done():
                                answer.set_exception(
                                    exc if isinstance(exc, Exception) else
                                    RuntimeError("the intake writer stopped"))
                        raise
                # In the same step as the empty `_waiting` above (no await between): a
                # request that comes after it sees one storer fewer and starts its own.
                self._running -= 1
                counted = False
        finally:
            if counted:
                self._running -= 1

    async def _store(self, batch: list[tuple[PendingCase,
                                             asyncio.Future[tuple[Any, ...] | None]]]
                     ) -> None:
        now = datetime.now(UTC)
        if len(batch) > 1:
            try:
                rows = await self._fetch_all(OPEN_CASES,
                                             open_cases_params([i for i, _ in batch], now))
            except Exception as exc:
                # Not swallowed: each request is tried alone below and fails alone.
                log.warning("storing %d requests in one statement failed (%s); storing "
                            "each on its own", len(batch), type(exc).__name__)
            else:
                for (_, answer), row in zip(batch, rows, strict=True):
                    if not answer.done():
                        answer.set_result(row[1:])
                return
        for item, answer in batch:
            try:
                one = await self._fetch_one(OPEN_CASE, open_case_params(
                    item.case, item.connector, item.external_id, item.fingerprint, now,
                    None))
            except Exception as exc:  # the caller's to raise: it is answered with it
                if not answer.done():
                    answer.set_exception(exc)
            else:
                if not answer.done():
                    answer.set_result(one)

    async def _execute(self, statement: str,
                       params: dict[str, Any]) -> tuple[Any, ...] | None:
        async with self._slots:
            return await self._fetch_one(statement, params)

    async def _fetch_one(self, statement: str,
                         params: dict[str, Any]) -> tuple[Any, ...] | None:
        rows = await self._fetch_all(statement, params)
        return rows[0] if rows else None

    async def _fetch_all(self, statement: str,
                         params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The statement's rows, on a connection of the pool (the caller holds a slot)."""
        conn = self._idle.pop() if self._idle else await self._connect()
        try:
            rows = await (await conn.execute(statement, params)).fetchall()
        except BaseException as exc:
            # Broken, or left mid-statement by a cancelled task: never used again.
            with contextlib.suppress(Exception):
                await conn.close()
            if isinstance(exc, psycopg.Error):
                raise DBAPIError.instance(statement, params, exc, psycopg.Error,
                                          connection_invalidated=True,
                                          dialect=self._dialect) from exc
            raise
        self.statements += 1
        self._idle.append(conn)
        return rows

    async def _connect(self) -> psycopg.AsyncConnection[TupleRow]:
        try:
            return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        except psycopg.Error as exc:  # as `engine.connect()` raises it
            raise DBAPIError.instance(None, None, exc, psycopg.Error,
                                      dialect=self._dialect) from exc

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.close()
