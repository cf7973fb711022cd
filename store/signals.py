"""Quality signals in SQL: the counting query over a shop's cases, the signals and their
trail, the quality contact's notice (claim-then-send), and the ERP's shipped units, cached.

Counting reads `cases` by shop and time (`ix_cases_shop_created`), keeping only cases whose
reason code may put them in a signal group or whose rules found a recall (R13) or a possible
adverse event (R14, through `case_rules`): the JSON paths are SQLAlchemy's, which both
PostgreSQL (`->>`) and SQLite (`json_extract`) answer. Which groups a case counts in is the
core's decision (`core.signals.signal_groups`), made on what this returns.

A signal is inserted with ON CONFLICT DO NOTHING on its derived id, with its first trail
event in the same transaction: two runs (or two racing workers) raise it once, and only the
one whose insert took it notifies anyone.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, case, exists, insert, or_, select, update

from refundbridge.core.audit import AuditEvent
from refundbridge.core.errors import ConcurrencyConflict, NotFound
from refundbridge.core.request import ReasonCode
from refundbridge.core.signals import (
    ADVERSE_EVENT_REASONS,
    CaseHit,
    NoticeState,
    QualitySignal,
    SignalCase,
    SignalGroup,
    SignalState,
    Threshold,
    ThresholdName,
    Window,
    shop_day,
    signal_groups,
)
from refundbridge.store import tables as t
from refundbridge.store.db import dialect_insert
from refundbridge.store.mapping import aware, event_from_row

_S = t.quality_signals.c
_C = t.cases.c
_R = t.case_rules.c
_Q = t.shipped_quantities.c


def _threshold_from_json(data: dict[str, Any]) -> Threshold:
    percent = data.get("rate_percent")
    return Threshold(ThresholdName(data["name"]), SignalGroup(data["group"]),
                     int(data["window_days"]), count=data.get("count"),
                     rate_percent=Decimal(percent) if percent is not None else None,
                     min_shipped=int(data.get("min_shipped", 0)),
                     shipped_days=int(data.get("shipped_days", 0)))


def signal_from_row(row: Any) -> QualitySignal:
    d = row.details
    acked = d.get("acknowledged_at")
    return QualitySignal(
        id=row.id, shop_id=row.shop_id, sku=row.sku, lot=row.lot,
        threshold=_threshold_from_json(d["threshold"]),
        window=Window(row.window_start, int(row.window_days)),
        raised_at=aware(row.raised_at), case_ids=tuple(row.case_ids),
        units=int(row.units), shipped=row.shipped_units,
        rate_percent=Decimal(row.rate) if row.rate is not None else None,
        state=SignalState(row.state), email_state=NoticeState(row.email_state),
        sms_state=NoticeState(row.sms_state), acknowledged_by=d.get("acknowledged_by"),
        acknowledged_at=datetime.fromisoformat(acked) if acked else None,
        note=d.get("note", ""), capa_id=d.get("capa_id"),
        audit_seq=int(row.audit_seq), audit_head=row.audit_head)


def signal_to_row(s: QualitySignal) -> dict[str, Any]:
    return {
        "id": s.id, "shop_id": s.shop_id, "sku": s.sku, "lot": s.lot,
        "reason_group": s.group.value, "threshold": s.threshold.name.value,
        "window_start": s.window.start, "window_end": s.window.last_day,
        "window_days": s.window.days, "raised_at": s.raised_at,
        "case_ids": list(s.case_ids), "case_count": s.count, "units": s.units,
        "shipped_units": s.shipped,
        "rate": str(s.rate_percent) if s.rate_percent is not None else None,
        "state": s.state.value,
        "details": {"threshold": s.threshold.as_json(), "note": s.note,
                    "acknowledged_by": s.acknowledged_by,
                    "acknowledged_at": s.acknowledged_at.isoformat()
                    if s.acknowledged_at else None, "capa_id": s.capa_id},
        "email_state": s.email_state.value, "sms_state": s.sms_state.value,
        "audit_seq": s.audit_seq, "audit_head": s.audit_head,
    }


def _event_row(signal_id: str, e: AuditEvent) -> dict[str, Any]:
    return {"signal_id": signal_id, "seq": e.seq, "at": e.at.isoformat(), "actor": e.actor,
            "name": e.name, "from_state": e.from_state, "to_state": e.to_state,
            "data": e.data, "prev_hash": e.prev_hash, "hash": e.hash}


class SqlSignalStore:
    """`core.services.signals.SignalStore` on one database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # ---------------------------------------------------------------- counting

    def case_hits(self, shop_id: str, since: datetime, until: datetime, zone: str,
                  quality_reasons: Collection[ReasonCode]) -> list[CaseHit]:
        """Each line of the shop's cases opened in [since, until) that may count in a
        signal group, with the groups its case counts in (cancelled cases do not count: a
        request withdrawn or entered by mistake says nothing of the lot)."""
        code = _C.request["reason"]["code"].as_string()
        codes = sorted({c.value for c in (*quality_reasons, *ADVERSE_EVENT_REASONS,
                                          ReasonCode.RECALL)})
        adverse = exists().where(_R.case_id == _C.id, _R.rule_id == "R14",
                                 _R.outcome != "pass")
        recall = exists().where(_R.case_id == _C.id, _R.rule_id == "R13",
                                _R.outcome == "approve")
        query = (select(_C.id, _C.created_at, code.label("code"), adverse.label("adverse"),
                        recall.label("recall"), _C.request["lines"].label("lines"))
                 .where(_C.shop_id == shop_id, _C.created_at >= since, _C.created_at < until,
                        _C.state != "cancelled", or_(code.in_(codes), adverse, recall))
                 .order_by(_C.created_at, _C.id))
        wanted = frozenset(quality_reasons)
        hits: list[CaseHit] = []
        with self._engine.connect() as conn:
            for row in conn.execute(query):
                try:
                    reason = ReasonCode(row.code)
                except ValueError:
                    reason = ReasonCode.OTHER
                groups = signal_groups(reason, quality_reasons=wanted,
                                       adverse_flagged=bool(row.adverse),
                                       recall_matched=bool(row.recall))
                if not groups:
                    continue
                opened = shop_day(aware(row.created_at), zone)
                for line in row.lines or ():
                    hits.append(CaseHit(row.id, str(line["sku"]), line.get("lot") or None,
                                        int(line.get("quantity") or 0), opened, groups))
        return hits

    # ---------------------------------------------------------------- signals

    def add(self, signal: QualitySignal) -> bool:
        """Insert the signal and its first trail event; False (nothing written) when a
        signal of that id exists already."""
        with self._engine.connect() as conn, conn.begin() as tx:
            row = signal_to_row(signal)
            row["version"] = 0
            inserted = conn.execute(dialect_insert(conn)(t.quality_signals)
                                    .on_conflict_do_nothing().returning(_S.id), row).first()
            if inserted is None:
                tx.rollback()
                return False
            if signal.new_events:
                conn.execute(insert(t.signal_events),
                             [_event_row(signal.id, e) for e in signal.new_events])
            tx.commit()
        signal.new_events.clear()
        return True

    def get(self, signal_id: str) -> QualitySignal:
        with self._engine.connect() as conn:
            row = conn.execute(select(t.quality_signals).where(_S.id == signal_id)).first()
        if row is None:
            raise NotFound(f"no quality signal {signal_id}")
        return signal_from_row(row)

    def save(self, signal: QualitySignal) -> None:
        """Write the signal's changes and new trail events; `ConcurrencyConflict` if another
        writer changed it since it was read (its trail head moved)."""
        with self._engine.connect() as conn, conn.begin():
            before = signal.audit_seq - len(signal.new_events)
            row = signal_to_row(signal)
            changed = conn.execute(
                update(t.quality_signals)
                .where(_S.id == signal.id, _S.audit_seq == before)
                .values({k: v for k, v in row.items() if k != "id"} | {
                    "version": _S.version + 1}))
            if changed.rowcount != 1:
                raise ConcurrencyConflict(f"signal {signal.id} was changed by another writer")
            if signal.new_events:
                conn.execute(insert(t.signal_events),
                             [_event_row(signal.id, e) for e in signal.new_events])
        signal.new_events.clear()

    def events(self, signal_id: str) -> list[AuditEvent]:
        e = t.signal_events.c
        with self._engine.connect() as conn:
            rows = conn.execute(select(t.signal_events).where(e.signal_id == signal_id)
                                .order_by(e.seq)).all()
        return [event_from_row(r) for r in rows]

    def for_shops(self, shops: Sequence[str] | None, *, state: SignalState | None = None,
                  limit: int = 200) -> list[QualitySignal]:
        """Signals of these shops (None: every shop), the newest first."""
        query = select(t.quality_signals).order_by(_S.raised_at.desc(), _S.id).limit(limit)
        if shops is not None:
            query = query.where(_S.shop_id.in_(list(shops)))
        if state is not None:
            query = query.where(_S.state == state.value)
        with self._engine.connect() as conn:
            return [signal_from_row(r) for r in conn.execute(query).all()]

    def for_lot(self, shop_id: str, lot: str) -> list[QualitySignal]:
        """The shop's signals on `lot` (compared without case), the oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(t.quality_signals).where(
                _S.shop_id == shop_id, _S.lot.is_not(None)).order_by(_S.raised_at)).all()
        wanted = lot.strip().casefold()
        return [signal_from_row(r) for r in rows if (r.lot or "").casefold() == wanted]

    def cases(self, case_ids: Sequence[str]) -> list[SignalCase]:
        """What a signal's page shows of each case behind it, the oldest first."""
        if not case_ids:
            return []
        code = _C.request["reason"]["code"].as_string()
        with self._engine.connect() as conn:
            rows = conn.execute(select(_C.id, _C.state, _C.created_at, _C.order_id,
                                       code.label("code"))
                                .where(_C.id.in_(list(case_ids)))
                                .order_by(_C.created_at, _C.id)).all()
        return [SignalCase(r.id, r.state, aware(r.created_at), r.order_id, r.code or "")
                for r in rows]

    # ---------------------------------------------------------------- the notice

    def unnotified(self, shop_ids: Sequence[str] | None = None) -> list[str]:
        """Signals with a channel still to send (pending), or claimed by a job that died."""
        query = select(_S.id).where(or_(_S.email_state.in_(_WAITING),
                                        _S.sms_state.in_(_WAITING))).order_by(_S.raised_at)
        if shop_ids is not None:
            query = query.where(_S.shop_id.in_(list(shop_ids)))
        with self._engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def claim_notice(self, signal_id: str, at: datetime, stale_before: datetime
                     ) -> tuple[QualitySignal | None, bool]:
        """Mark the signal's pending channels `sending` and commit, before anything is
        sent: (the signal, False) to the one caller that took them; (the signal, True)
        when its channels were left `sending` before `stale_before` (a dead job: settle,
        never simply send again); (None, False) when there is nothing to take."""
        pending, sending = NoticeState.PENDING.value, NoticeState.SENDING.value
        with self._engine.connect() as conn, conn.begin():
            took = conn.execute(
                update(t.quality_signals)
                .where(_S.id == signal_id,
                       or_(_S.email_state == pending, _S.sms_state == pending))
                .values(email_state=_when_pending(_S.email_state),
                        sms_state=_when_pending(_S.sms_state), claimed_at=at))
            stale = False
            if took.rowcount != 1:
                stale_rows = conn.execute(
                    update(t.quality_signals)
                    .where(_S.id == signal_id, _S.claimed_at < stale_before,
                           or_(_S.email_state == sending, _S.sms_state == sending))
                    .values(claimed_at=at))
                if stale_rows.rowcount != 1:
                    return None, False
                stale = True
            row = conn.execute(select(t.quality_signals).where(_S.id == signal_id)).first()
        assert row is not None
        return signal_from_row(row), stale

    def record_notice(self, signal: QualitySignal, at: datetime) -> None:
        """The channels' outcomes and their trail events (the row is ours: claimed)."""
        with self._engine.connect() as conn, conn.begin():
            conn.execute(update(t.quality_signals).where(_S.id == signal.id).values(
                email_state=signal.email_state.value, sms_state=signal.sms_state.value,
                notified_at=at, audit_seq=signal.audit_seq, audit_head=signal.audit_head,
                version=_S.version + 1))
            if signal.new_events:
                conn.execute(insert(t.signal_events),
                             [_event_row(signal.id, e) for e in signal.new_events])
        signal.new_events.clear()

    # ---------------------------------------------------------------- shipped units

    def cached_shipped(self, shop_id: str, sku: str, lot: str | None, since: date,
                       until: date, fresh_after: datetime) -> int | None:
        """The cached answer, if one is fresh: fetched after `fresh_after`, or fetched
        after the range had ended (a closed range's shipments do not change)."""
        with self._engine.connect() as conn:
            row = conn.execute(select(_Q.quantity, _Q.fetched_at).where(
                _Q.shop_id == shop_id, _Q.sku == sku, _Q.lot == (lot or ""),
                _Q.since == since, _Q.until == until)).first()
        if row is None:
            return None
        fetched = aware(row.fetched_at)
        closed = fetched.date() > until + timedelta(days=1)
        return int(row.quantity) if closed or fetched > fresh_after else None

    def remember_shipped(self, shop_id: str, sku: str, lot: str | None, since: date,
                         until: date, quantity: int, at: datetime) -> None:
        values = {"shop_id": shop_id, "sku": sku, "lot": lot or "", "since": since,
                  "until": until, "quantity": quantity, "fetched_at": at}
        with self._engine.connect() as conn, conn.begin():
            stmt = dialect_insert(conn)(t.shipped_quantities).values(values)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["shop_id", "sku", "lot", "since", "until"],
                set_={"quantity": quantity, "fetched_at": at}))


_WAITING = (NoticeState.PENDING.value, NoticeState.SENDING.value)


def _when_pending(column: Any) -> Any:
    return case((column == NoticeState.PENDING.value, NoticeState.SENDING.value),
                else_=column)





__all__ = ["SqlSignalStore", "signal_from_row", "signal_to_row"]
