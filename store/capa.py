"""CAPA records in SQL: the record's row, its hash-chained trail, its cases and lots, and
what the KPIs read (the cases' creation, the quality signals).

A save is one UPDATE under the record's version and the INSERT of its new events, in one
transaction: two operators changing a record at once never lose a step, and its trail
never forks (the second writer reads it again, `core.services.capa.change_capa`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, inspect, select, update

from refundbridge.core.audit import AuditEvent
from refundbridge.core.capa import CapaRecord, CapaState, LotRef
from refundbridge.core.errors import ConcurrencyConflict, NotFound
from refundbridge.store import tables as t
from refundbridge.store.db import dialect_insert
from refundbridge.store.mapping import aware, event_from_row

_R = t.capa_records.c
_E = t.capa_events.c
_K = t.capa_cases.c
_L = t.capa_lots.c
# The quality signals' table (migration 0014): read for recurrence.
SIGNALS_TABLE = "quality_signals"


def _maybe(value: datetime | None) -> datetime | None:
    return aware(value) if value is not None else None


def record_from_row(row: Any) -> CapaRecord:
    return CapaRecord.from_stored(
        id=row.id, shop_id=row.shop_id, state=row.state, signal_id=row.signal_id,
        opened_at=aware(row.opened_at), opened_by=row.opened_by,
        closed_at=_maybe(row.closed_at), updated_at=_maybe(row.updated_at),
        campaign_id=row.campaign_id, details=row.details, version=int(row.version),
        audit_seq=int(row.audit_seq), audit_head=row.audit_head)


def record_to_row(r: CapaRecord) -> dict[str, Any]:
    return {"id": r.id, "shop_id": r.shop_id, "state": r.state.value,
            "signal_id": r.signal_id, "opened_at": r.opened_at, "opened_by": r.opened_by,
            "updated_at": r.updated_at or r.opened_at, "closed_at": r.closed_at,
            "campaign_id": r.campaign_id, "details": r.details_json(),
            "version": r.version + 1, "audit_seq": r.audit_seq, "audit_head": r.audit_head}


def _event_row(capa_id: str, e: AuditEvent) -> dict[str, Any]:
    return {"capa_id": capa_id, "seq": e.seq, "at": e.at.isoformat(), "actor": e.actor,
            "name": e.name, "from_state": e.from_state, "to_state": e.to_state,
            "data": e.data, "prev_hash": e.prev_hash, "hash": e.hash}


class SqlCapaRepository:
    """`core.capa.CapaRepository` on one database, and the reads the pages and KPIs use."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # ---------------------------------------------------------------- the record

    def add(self, record: CapaRecord) -> bool:
        with self._engine.connect() as conn, conn.begin() as tx:
            row = record_to_row(record)
            row["version"] = 0
            inserted = conn.execute(dialect_insert(conn)(t.capa_records)
                                    .on_conflict_do_nothing().returning(_R.id), row).first()
            if inserted is None:
                tx.rollback()
                return False
            self._write_events(conn, record)
            if record.cases:
                conn.execute(insert(t.capa_cases), [
                    {"capa_id": record.id, "case_id": c, "shop_id": record.shop_id}
                    for c in record.cases])
            if record.lots:
                conn.execute(insert(t.capa_lots), [
                    {"capa_id": record.id, "line": i, "shop_id": record.shop_id,
                     "sku": ref.sku, "lot": ref.lot} for i, ref in enumerate(record.lots)])
        record.new_events.clear()
        return True

    def get(self, capa_id: str) -> CapaRecord:
        with self._engine.connect() as conn:
            row = conn.execute(select(t.capa_records).where(_R.id == capa_id)).first()
        if row is None:
            raise NotFound(f"no CAPA record {capa_id}")
        return record_from_row(row)

    def save(self, record: CapaRecord) -> None:
        row = record_to_row(record)
        with self._engine.connect() as conn, conn.begin():
            changed = conn.execute(
                update(t.capa_records)
                .where(_R.id == record.id, _R.version == record.version)
                .values({k: v for k, v in row.items() if k != "id"}))
            if changed.rowcount != 1:
                raise ConcurrencyConflict(f"CAPA {record.id} was changed by another writer")
            self._write_events(conn, record)
        record.version += 1
        record.new_events.clear()

    def _write_events(self, conn: Connection, record: CapaRecord) -> None:
        if record.new_events:
            conn.execute(insert(t.capa_events),
                         [_event_row(record.id, e) for e in record.new_events])

    def events(self, capa_id: str) -> list[AuditEvent]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(t.capa_events).where(_E.capa_id == capa_id)
                                .order_by(_E.seq)).all()
        return [event_from_row(r) for r in rows]

    # ---------------------------------------------------------------- lists

    def for_shops(self, shops: Sequence[str] | None, *, states: Sequence[CapaState] = (),
                  limit: int = 500) -> list[CapaRecord]:
        """The records of these shops (None: every shop), the newest first."""
        query = select(t.capa_records).order_by(_R.opened_at.desc(), _R.id).limit(limit)
        if shops is not None:
            query = query.where(_R.shop_id.in_(list(shops)))
        if states:
            query = query.where(_R.state.in_([s.value for s in states]))
        with self._engine.connect() as conn:
            return [record_from_row(r) for r in conn.execute(query).all()]

    def for_case(self, case_id: str) -> list[CapaRecord]:
        """The records that name the case, the oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(t.capa_records).join(t.capa_cases, _K.capa_id == _R.id)
                                .where(_K.case_id == case_id)
                                .order_by(_R.opened_at)).all()
        return [record_from_row(r) for r in rows]

    # ---------------------------------------------------------------- what opening reads

    def case_lots(self, shop_id: str, case_ids: Sequence[str]) -> dict[str, list[LotRef]]:
        """The shop's cases among `case_ids`, each with the products and lots its lines name
        (a case of another shop, or none, is left out)."""
        ids = list(dict.fromkeys(case_ids))
        if not ids:
            return {}
        c, u = t.cases.c, t.case_units.c
        with self._engine.connect() as conn:
            found = set(conn.execute(select(c.id).where(c.shop_id == shop_id, c.id.in_(ids)))
                        .scalars())
            units = conn.execute(select(u.case_id, u.sku, u.lot).where(
                u.case_id.in_(list(found))).order_by(u.case_id, u.line)).all() if found else []
        lots: dict[str, list[LotRef]] = {case_id: [] for case_id in found}
        for row in units:
            if row.sku:
                lots[row.case_id].append(LotRef(row.sku, row.lot or ""))
        return lots

    def _has_signals(self, conn: Connection) -> bool:
        return inspect(conn).has_table(SIGNALS_TABLE)

    # ---------------------------------------------------------------- KPIs

    def first_case_at(self, capa_ids: Sequence[str]) -> dict[str, datetime]:
        """Each record's earliest linked case's creation."""
        ids = list(capa_ids)
        if not ids:
            return {}
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(_K.capa_id, func.min(t.cases.c.created_at))
                .join(t.cases, t.cases.c.id == _K.case_id)
                .where(_K.capa_id.in_(ids)).group_by(_K.capa_id)).all()
        return {r[0]: aware(r[1]) for r in rows if r[1] is not None}

    def signals_by_sku(self, shops: Sequence[str] | None) -> list[tuple[str, datetime]]:
        """The shops' quality signals as (sku, raised at); none while there is no table."""
        with self._engine.connect() as conn:
            if not self._has_signals(conn):
                return []
            signals = _signals_table(conn)
            query = select(signals.c.sku, signals.c.raised_at)
            if shops is not None:
                query = query.where(signals.c.shop_id.in_(list(shops)))
            rows = conn.execute(query).all()
        return [(str(r.sku), _when(r.raised_at)) for r in rows if r.sku and r.raised_at]


def _when(value: datetime | str) -> datetime:
    return aware(datetime.fromisoformat(value) if isinstance(value, str) else value)


def _signals_table(conn: Connection) -> Any:
    """The signals table as the database has it, reflected: only its id, shop_id, sku, lot
    and raised_at columns are read, whatever else it holds."""
    from sqlalchemy import MetaData, Table

    return Table(SIGNALS_TABLE, MetaData(), autoload_with=conn)


__all__ = ["SqlCapaRepository", "record_from_row", "record_to_row"]
