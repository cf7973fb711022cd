"""The read side of evidence exports: which cases touch a lot, and a case's audit trail."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import Engine, select

from refundbridge.core.audit import AuditEvent
from refundbridge.core.errors import NotFound
from refundbridge.store import tables as t
from refundbridge.store.mapping import event_from_row
from refundbridge.store.queries import case_detail


class EvidenceReads:
    """Bound to one database; satisfies `core.services.EvidenceSource`."""

    def __init__(self, engine: Engine, *, stale_after: float | None = None,
                 max_dispatches: int | None = None) -> None:
        self._engine = engine
        self._stale_after = stale_after
        self._max_dispatches = max_dispatches

    def case_detail(self, case_id: str) -> dict[str, Any]:
        return case_detail(self._engine, case_id, stale_after=self._stale_after,
                           max_dispatches=self._max_dispatches)

    def case_events(self, case_id: str) -> list[AuditEvent]:
        e = t.case_events.c
        with self._engine.connect() as conn:
            if conn.execute(select(t.cases.c.id).where(t.cases.c.id == case_id)).first() is None:
                raise NotFound(f"no case {case_id}")
            rows = conn.execute(select(t.case_events).where(e.case_id == case_id)
                                .order_by(e.seq)).all()
        return [event_from_row(r) for r in rows]

    def cases_for_lot(self, shop_id: str, lot: str,
                      visible: Collection[str] | None = None) -> list[str]:
        """Every case of `shop_id` with a unit of `lot` (the lot as the request named it),
        oldest first. `visible`: the shops the caller may see (None: all); another shop's
        lot is no case at all."""
        if visible is not None and shop_id not in visible:
            return []
        u, c = t.case_units.c, t.cases.c
        query = (select(c.id).where(c.id.in_(
                     select(u.case_id).where(u.shop_id == shop_id, u.lot == lot)))
                 .order_by(c.seq))
        with self._engine.connect() as conn:
            return [str(row.id) for row in conn.execute(query)]
