"""`store/tables.py` mirrors the Alembic migrations: the tables, columns and indexes the code
queries are the ones production's `refundbridge db upgrade` creates."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine

from refundbridge.store.tables import metadata


def test_the_migrated_database_matches_the_tables_the_code_uses(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    # alembic_version is the migrations' own bookkeeping.
    differences = [d for d in differences
                   if not (d[0] == "remove_table" and d[1].name == "alembic_version")]
    assert differences == [], differences
