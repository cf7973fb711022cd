"""SMS bookkeeping beside the cases: numbers that opted out of a shop's SMS, and which
case's message a provider's id of a send names (for delivery reports that carry only it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from refundbridge.core.model import NotificationKind
from refundbridge.store import tables as t
from refundbridge.store.db import dialect_insert

if TYPE_CHECKING:
    from refundbridge.store.uow import SqlUnitOfWork


class SqlSmsOptOuts:
    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    def add(self, shop_id: str, phone: str, at: datetime, source: str, text: str) -> bool:
        o = t.sms_opt_outs.c
        statement = dialect_insert(self._uow.conn)(t.sms_opt_outs).on_conflict_do_nothing(
            index_elements=[o.shop_id, o.phone]).returning(o.phone)
        inserted = self._uow.conn.execute(statement, {
            "shop_id": shop_id, "phone": phone[:32], "source": source[:64],
            "text": text[:160], "created_at": at}).first()
        return inserted is not None

    def has(self, shop_id: str, phone: str) -> bool:
        o = t.sms_opt_outs.c
        return self._uow.conn.execute(
            select(o.phone).where(o.shop_id == shop_id, o.phone == phone)).first() is not None


class SqlSmsSends:
    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    def remember(self, shop_id: str, provider_id: str, case_id: str,
                 kind: NotificationKind) -> None:
        s = t.sms_sends.c
        statement = dialect_insert(self._uow.conn)(t.sms_sends).on_conflict_do_nothing(
            index_elements=[s.shop_id, s.provider_id])
        self._uow.conn.execute(statement, {
            "shop_id": shop_id, "provider_id": provider_id[:128], "case_id": case_id,
            "kind": kind.value, "created_at": datetime.now(UTC)})

    def find(self, shop_id: str, provider_id: str) -> tuple[str, NotificationKind] | None:
        s = t.sms_sends.c
        row = self._uow.conn.execute(
            select(s.case_id, s.kind).where(s.shop_id == shop_id,
                                            s.provider_id == provider_id)).first()
        return None if row is None else (row.case_id, NotificationKind(row.kind))
