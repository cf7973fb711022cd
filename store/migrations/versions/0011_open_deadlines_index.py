"""cases: an index of the open cases that have a deadline, newest first (the Overdue filter)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# The states whose deadlines no longer run (store/console_reads.py SETTLED_STATES).
OPEN = sa.text("due_on IS NOT NULL AND state NOT IN "
               "('cancelled', 'closed', 'denied', 'refunded')")


def upgrade() -> None:
    op.create_index("ix_cases_open_due", "cases", ["seq"],
                    postgresql_where=OPEN, sqlite_where=OPEN)


def downgrade() -> None:
    op.drop_index("ix_cases_open_due", table_name="cases")
