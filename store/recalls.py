"""The recall register over SQLAlchemy Core: a shop's recall list (`core.recalls`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from refundbridge.core.recalls import Recall, RecallClass, RecallList
from refundbridge.store import tables as t
from refundbridge.store.db import dialect_insert


def recall_row(shop_id: str, recall: Recall, now: datetime) -> dict[str, Any]:
    # '' for "not given": the unique constraint has to see two blank lots as equal.
    return {
        "shop_id": shop_id, "gtin": recall.gtin or "", "sku": recall.sku or "",
        "lot": recall.lot or "", "serial": recall.serial or "",
        "reference": recall.reference, "recall_class": recall.recall_class.value,
        "notice_date": recall.notice_date, "created_at": now,
    }


def _recall(row: Any) -> Recall:
    return Recall(reference=row.reference, recall_class=RecallClass(row.recall_class),
                  notice_date=row.notice_date, gtin=row.gtin or None, sku=row.sku or None,
                  lot=row.lot or None, serial=row.serial or None)


def recalls_for_shop(conn: Connection, shop_id: str) -> RecallList:
    query = (select(t.recalls).where(t.recalls.c.shop_id == shop_id)
             .order_by(t.recalls.c.notice_date.desc(), t.recalls.c.id))
    return RecallList(_recall(row) for row in conn.execute(query))


class SqlRecallRegister:
    """Implements `core.recalls.RecallRegister`. Adding is idempotent: the table is unique
    on shop, product, lot, serial and reference, and known rows are skipped by the database
    (ON CONFLICT DO NOTHING), so concurrent imports of one file cannot double a recall."""

    def __init__(self, engine: Engine,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._clock = clock

    def for_shop(self, shop_id: str) -> RecallList:
        with self._engine.connect() as conn:
            return recalls_for_shop(conn, shop_id)

    def add(self, shop_id: str, recalls: Sequence[Recall]) -> int:
        if not recalls:
            return 0
        now = self._clock()
        rows = [recall_row(shop_id, recall, now) for recall in dict.fromkeys(recalls)]
        statement = (dialect_insert(self._engine)(t.recalls).on_conflict_do_nothing()
                     .returning(t.recalls.c.id))
        with self._engine.begin() as conn:
            return len(conn.execute(statement, rows).all())
