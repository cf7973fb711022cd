"""outbox relay index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    undispatched = sa.text("dispatched_at IS NULL")
    op.create_index("ix_outbox_undispatched", "outbox", ["id"],
                    postgresql_where=undispatched, sqlite_where=undispatched)


def downgrade() -> None:
    op.drop_index("ix_outbox_undispatched", table_name="outbox")
