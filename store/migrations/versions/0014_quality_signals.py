"""quality signals: returns that point at a bad lot

quality_signals (one row per signal, its id derived from shop, SKU, lot, threshold and
window), signal_events (its hash-chained trail) and shipped_quantities (the ERP's answers,
cached) (core/signals.py).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quality_signals",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("shop_id", sa.String(length=64), nullable=False),
        sa.Column("sku", sa.String(length=128), nullable=False),
        sa.Column("lot", sa.String(length=64)),
        sa.Column("reason_group", sa.String(length=16), nullable=False),
        sa.Column("threshold", sa.String(length=32), nullable=False),
        sa.Column("window_start", sa.Date(), nullable=False),
        sa.Column("window_end", sa.Date(), nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("case_ids", sa.JSON(), nullable=False),
        sa.Column("case_count", sa.Integer(), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("shipped_units", sa.Integer()),
        sa.Column("rate", sa.String(length=16)),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("email_state", sa.String(length=16), nullable=False),
        sa.Column("sms_state", sa.String(length=16), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True)),
        sa.Column("notified_at", sa.DateTime(timezone=True)),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("audit_seq", sa.Integer(), nullable=False),
        sa.Column("audit_head", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_quality_signals_shop_raised", "quality_signals",
                    ["shop_id", "raised_at"])
    op.create_index("ix_quality_signals_shop_sku_lot", "quality_signals",
                    ["shop_id", "sku", "lot"])
    op.create_table(
        "signal_events",
        sa.Column("signal_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("from_state", sa.String(length=32)),
        sa.Column("to_state", sa.String(length=32)),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("signal_id", "seq"),
    )
    op.create_table(
        "shipped_quantities",
        sa.Column("shop_id", sa.String(length=64), nullable=False),
        sa.Column("sku", sa.String(length=128), nullable=False),
        sa.Column("lot", sa.String(length=64), nullable=False),
        sa.Column("since", sa.Date(), nullable=False),
        sa.Column("until", sa.Date(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shop_id", "sku", "lot", "since", "until"),
    )


def downgrade() -> None:
    op.drop_table("shipped_quantities")
    op.drop_table("signal_events")
    op.drop_index("ix_quality_signals_shop_sku_lot", table_name="quality_signals")
    op.drop_index("ix_quality_signals_shop_raised", table_name="quality_signals")
    op.drop_table("quality_signals")
