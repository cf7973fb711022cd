"""case_units: the devices each case is about, to find every case touching a lot or a unit

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_units",
        sa.Column("case_id", sa.String(length=40), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("shop_id", sa.String(length=64), nullable=False),
        sa.Column("sku", sa.String(length=128), nullable=False),
        sa.Column("gtin", sa.String(length=14), nullable=False),
        sa.Column("lot", sa.String(length=64), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("case_id", "line"),
    )
    op.create_index("ix_case_units_shop_lot", "case_units", ["shop_id", "lot"])
    op.create_index("ix_case_units_shop_gtin_serial", "case_units",
                    ["shop_id", "gtin", "serial"])


def downgrade() -> None:
    op.drop_index("ix_case_units_shop_gtin_serial", table_name="case_units")
    op.drop_index("ix_case_units_shop_lot", table_name="case_units")
    op.drop_table("case_units")
