"""A server whose plans will go stale says so when RefundBridge starts (store/db.py)."""

from __future__ import annotations

import logging

import psycopg
import pytest
from sqlalchemy import Engine, create_engine

from refundbridge.bootstrap import check_database
from refundbridge.store.db import AUTOVACUUM_OFF, planner_warning


def server_autovacuum(database_url: str) -> str:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SHOW autovacuum").fetchone()
    assert row is not None
    return str(row[0])


def test_the_warning_follows_the_servers_autovacuum(engine: Engine, database_url: str) -> None:
    expected = AUTOVACUUM_OFF if server_autovacuum(database_url) == "off" else None
    with engine.connect() as conn:
        assert planner_warning(conn) == expected


def test_starting_up_logs_it(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="refundbridge.store"):
        check_database(database_url)
    logged = [r.getMessage() for r in caplog.records if r.name == "refundbridge.store"]
    if server_autovacuum(database_url) == "off":
        assert logged == [AUTOVACUUM_OFF]
    else:
        assert AUTOVACUUM_OFF not in logged


def test_sqlite_has_no_such_setting() -> None:
    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        assert planner_warning(conn) is None
    engine.dispose()
