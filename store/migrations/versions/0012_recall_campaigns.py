"""recall_campaigns, campaign_events, campaign_consignees: a recall notice passed on to every
consignee of the lot (core/campaigns.py)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

Serial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "recall_campaigns",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("shop_id", sa.String(length=64), nullable=False),
        sa.Column("reference", sa.String(length=128), nullable=False),
        sa.Column("recall_class", sa.String(length=3), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("notice", sa.JSON(), nullable=False),
        sa.Column("notice_due", sa.Date(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_by", sa.String(length=128), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("audit_seq", sa.Integer(), nullable=False),
        sa.Column("audit_head", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("shop_id", "reference", name="uq_recall_campaigns_shop_reference"),
    )
    op.create_table(
        "campaign_events",
        sa.Column("campaign_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("from_state", sa.String(length=32)),
        sa.Column("to_state", sa.String(length=32)),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "seq"),
    )
    op.create_table(
        "campaign_consignees",
        sa.Column("id", Serial, autoincrement=True, nullable=False),
        sa.Column("campaign_id", sa.String(length=40), nullable=False),
        sa.Column("consignee_key", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=320)),
        sa.Column("phone", sa.String(length=32)),
        sa.Column("locale", sa.String(length=16)),
        sa.Column("units", sa.JSON(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("email_state", sa.String(length=16), nullable=False),
        sa.Column("sms_state", sa.String(length=16), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True)),
        sa.Column("notified_at", sa.DateTime(timezone=True)),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=500)),
        sa.Column("reminders", sa.Integer(), nullable=False),
        sa.Column("next_reminder_at", sa.DateTime(timezone=True)),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True)),
        sa.Column("acknowledgement", sa.JSON()),
        sa.Column("case_id", sa.String(length=40)),
        sa.Column("case_problem", sa.String(length=500)),
        sa.Column("delivery", sa.String(length=16)),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "consignee_key", name="uq_campaign_consignees_key"),
    )
    op.create_index("ix_campaign_consignees_notice", "campaign_consignees",
                    ["campaign_id", "email_state", "sms_state"])
    op.create_index("ix_campaign_consignees_reminder", "campaign_consignees",
                    ["campaign_id", "next_reminder_at"])


def downgrade() -> None:
    op.drop_index("ix_campaign_consignees_reminder", table_name="campaign_consignees")
    op.drop_index("ix_campaign_consignees_notice", table_name="campaign_consignees")
    op.drop_table("campaign_consignees")
    op.drop_table("campaign_events")
    op.drop_table("recall_campaigns")
