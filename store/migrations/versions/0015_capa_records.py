"""CAPA records: corrective and preventive actions tied to cases and lots

capa_records, capa_events (its hash-chained trail), capa_cases and capa_lots
(core/capa.py).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "capa_records",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("shop_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("signal_id", sa.String(length=64)),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_by", sa.String(length=128), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("campaign_id", sa.String(length=40)),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("audit_seq", sa.Integer(), nullable=False),
        sa.Column("audit_head", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_capa_records_shop_state", "capa_records", ["shop_id", "state"])
    op.create_index("ix_capa_records_shop_opened", "capa_records", ["shop_id", "opened_at"])
    op.create_table(
        "capa_events",
        sa.Column("capa_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("from_state", sa.String(length=32)),
        sa.Column("to_state", sa.String(length=32)),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("capa_id", "seq"),
    )
    op.create_table(
        "capa_cases",
        sa.Column("capa_id", sa.String(length=40), nullable=False),
        sa.Column("case_id", sa.String(length=40), nullable=False),
        sa.Column("shop_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("capa_id", "case_id"),
    )
    op.create_index("ix_capa_cases_case", "capa_cases", ["case_id"])
    op.create_table(
        "capa_lots",
        sa.Column("capa_id", sa.String(length=40), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("shop_id", sa.String(length=64), nullable=False),
        sa.Column("sku", sa.String(length=128), nullable=False),
        sa.Column("lot", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("capa_id", "line"),
    )
    op.create_index("ix_capa_lots_shop_sku", "capa_lots", ["shop_id", "sku"])


def downgrade() -> None:
    op.drop_index("ix_capa_lots_shop_sku", table_name="capa_lots")
    op.drop_table("capa_lots")
    op.drop_index("ix_capa_cases_case", table_name="capa_cases")
    op.drop_table("capa_cases")
    op.drop_table("capa_events")
    op.drop_index("ix_capa_records_shop_opened", table_name="capa_records")
    op.drop_index("ix_capa_records_shop_state", table_name="capa_records")
    op.drop_table("capa_records")
