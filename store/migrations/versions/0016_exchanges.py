"""exchanges: a replacement instead of a refund

An exchange's replacement lives on its case's `details` JSON, as the stock booking does (it
is always read and written with the case). What changes is the reconciler's index of the
cases still moving (core/lifecycle.py MOVING_STATES): an exchange is also moving while its
replacement is ordered (`replacing`) and once it is (`replaced`), and a partial index whose
predicate lacks them is not used by the idle scan's query.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# core/lifecycle.py MOVING_STATES, before and after exchanges.
MOVING_BEFORE = sa.text("state IN ('evaluating', 'received', 'received_goods', 'refunded', "
                        "'refunding')")
MOVING = sa.text("state IN ('evaluating', 'received', 'received_goods', 'refunded', "
                 "'refunding', 'replaced', 'replacing')")


def upgrade() -> None:
    op.drop_index("ix_cases_moving", table_name="cases")
    op.create_index("ix_cases_moving", "cases", ["state", "updated_at"],
                    postgresql_where=MOVING, sqlite_where=MOVING)


def downgrade() -> None:
    op.drop_index("ix_cases_moving", table_name="cases")
    op.create_index("ix_cases_moving", "cases", ["state", "updated_at"],
                    postgresql_where=MOVING_BEFORE, sqlite_where=MOVING_BEFORE)
