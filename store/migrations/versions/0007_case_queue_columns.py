"""cases: who works a case, and its earliest deadline (the review queue's order)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("assignee", sa.String(length=64)))
        batch.add_column(sa.Column("due_on", sa.Date()))
    op.create_index("ix_cases_shop_state_due", "cases", ["shop_id", "state", "due_on"])


def downgrade() -> None:
    op.drop_index("ix_cases_shop_state_due", table_name="cases")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("due_on")
        batch.drop_column("assignee")
