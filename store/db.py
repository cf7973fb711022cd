"""Engines for PostgreSQL (psycopg 3) and SQLite, and schema migrations with Alembic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

from refundbridge.store.json_text import json_text

MIGRATIONS = Path(__file__).with_name("migrations")

# The store's errors, for callers that must not know the driver. "Unavailable" may pass on
# the next try (a dropped connection, a deadlock, a server restarting); any other database
# error (a value a column cannot hold, a broken constraint) will not.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (OperationalError, InterfaceError)
DATABASE_ERROR = SQLAlchemyError


def dialect_insert(conn: Connection | Engine) -> Any:
    """INSERT with ON CONFLICT support: both dialects have it, under their own construct."""
    return pg_insert if conn.dialect.name == "postgresql" else sqlite_insert


AUTOVACUUM_OFF = (
    "PostgreSQL runs with autovacuum off: nothing ANALYZEs the tables as they grow, so "
    "statements prepared while they were small keep plans made for small tables (a look-up "
    "by shop and order then reads every case of the shop). Turn autovacuum on, or run "
    "ANALYZE once the first cases are in and regularly after.")


def planner_warning(conn: Connection) -> str | None:
    """Why this server's query plans will go stale, if they will: PostgreSQL re-plans a
    connection's prepared statements when autovacuum's ANALYZE tells it a table grew;
    with autovacuum off they stay as they were planned on the first, empty tables."""
    if conn.dialect.name != "postgresql":
        return None
    setting = conn.execute(text("SELECT current_setting('autovacuum')")).scalar()
    return AUTOVACUUM_OFF if setting == "off" else None


def normalize_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 here."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               json_serializer=json_text)
        _sqlite_serializable(engine)
        return engine
    # No pre-ping: it costs a round trip per transaction. A connection the server dropped
    # fails its first statement instead; jobs are retried and the reconciler catches up.
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800,
                         json_serializer=json_text)


def _sqlite_serializable(engine: Engine) -> None:
    # pysqlite's own transaction handling defers locks to the first write, so two writers can
    # both read a case and then collide. BEGIN IMMEDIATE takes the write lock up front: the
    # SQLite equivalent of SELECT ... FOR UPDATE for our short transactions.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with make_engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
