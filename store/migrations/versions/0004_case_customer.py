"""case customer, for the frequent-refund rule (R19)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("customer_id", sa.String(length=128), nullable=True))
    cases = sa.table("cases", sa.column("id", sa.String), sa.column("request", sa.JSON),
                     sa.column("customer_id", sa.String))
    conn = op.get_bind()
    for row in conn.execute(sa.select(cases.c.id, cases.c.request)).all():
        customer = (row.request or {}).get("customer") or {}
        conn.execute(cases.update().where(cases.c.id == row.id)
                     .values(customer_id=customer.get("id")))
    op.create_index("ix_cases_shop_customer", "cases", ["shop_id", "customer_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_cases_shop_customer", table_name="cases")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("customer_id")
