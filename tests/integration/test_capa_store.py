"""The CAPA store on SQLite (the demo's database), migrated as production migrates it: a
record saved step by step reads back the same, its trail verifies, a stale writer is
refused, and a case's records and the cases' lots are found."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from refundbridge.core.audit import verify_chain
from refundbridge.core.capa import CapaOpening, CapaRecord, CapaState, LotRef
from refundbridge.core.errors import ConcurrencyConflict, NotFound
from refundbridge.store.capa import SqlCapaRepository
from refundbridge.store.db import make_engine, upgrade

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
QA = "operator:zhou.qa"


def test_a_record_round_trips_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'capa.db'}"
    upgrade(url)
    engine = make_engine(url)
    repo = SqlCapaRepository(engine)
    record = CapaRecord.open("acme", CapaOpening(
        "Meters read high", cases=("case_1",), lots=(LotRef("GLU", "L1"), LotRef("GLU", ""))),
        key="k", actor=QA, at=T0)
    assert repo.add(record) and not repo.add(CapaRecord.open(
        "acme", CapaOpening("again", lots=(LotRef("X", ""),)), key="k", actor=QA, at=T0))
    stored = repo.get(record.id)
    stored.start_investigation(QA, T0 + timedelta(hours=1))
    stored.record_root_cause("printer", QA, T0 + timedelta(hours=2))
    stored.add_action("corrective", "fix", "wang", date(2026, 12, 1), QA, T0)
    repo.save(stored)
    stale = repo.get(record.id)
    fresh = repo.get(record.id)
    fresh.complete_action(1, QA, T0 + timedelta(hours=3), "done")
    repo.save(fresh)
    stale.cancel("late", QA, T0)
    with pytest.raises(ConcurrencyConflict):
        repo.save(stale)
    back = repo.get(record.id)
    assert back.state is CapaState.ACTIONS_DONE
    assert back.lots == (LotRef("GLU", "L1"), LotRef("GLU", ""))
    assert back.actions[0].done_note == "done" and back.actions[0].due == date(2026, 12, 1)
    assert back.root_cause == "printer" and back.investigator == QA
    assert back.opened_at == T0 and back.updated_at == T0 + timedelta(hours=3)
    events = repo.events(record.id)
    assert verify_chain(events).verifies and len(events) == 6
    assert [r.id for r in repo.for_case("case_1")] == [record.id]
    assert [r.id for r in repo.for_shops(["acme"], states=[CapaState.ACTIONS_DONE])] == [
        record.id]
    assert repo.for_shops(["beta"]) == []
    assert repo.case_lots("acme", ["case_1"]) == {}  # no such case in the shop
    assert repo.first_case_at([record.id]) == {}
    assert repo.signals_by_sku(None) == []
    with pytest.raises(NotFound):
        repo.get("capa_" + "0" * 20)
    engine.dispose()
