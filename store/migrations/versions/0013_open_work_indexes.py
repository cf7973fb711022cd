"""outbox, cases, case_events: indexes over the open work only, so the tables that only grow
(done outbox rows, settled cases, audit events) stop costing the hot paths

- outbox: every query the code runs reads rows not done (the relay, the reconciler, a
  case's open step, the metrics). The two full indexes (`ix_outbox_case_step`,
  `ix_outbox_pending`) held every done row too; the partial ones hold only the open work,
  so they stay a few pages whatever the table's size, and a done row leaves them.
- cases: the reconciler's idle scan reads the cases still moving (`store/outbox.py`
  `idle_cases`); `ix_cases_shop_state` could only be read whole for it (state is its
  second column).
- case_events: the KPIs' refunds of a period (`store/kpis.py`) read confirmations by time.
  And the planner is told that a case has a handful of events: sampling 30,000 of
  millions of rows whose ids are random, ANALYZE guesses ten times too few distinct cases,
  and then reads the whole trail table for a few thousand cases' trails.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

OPEN = sa.text("done_at IS NULL")
# core/lifecycle.py MOVING_STATES
MOVING = sa.text("state IN ('evaluating', 'received', 'received_goods', 'refunded', "
                 "'refunding')")
REFUNDED = sa.text("name = 'confirm_refund'")


def upgrade() -> None:
    op.create_index("ix_outbox_open", "outbox", ["id"],
                    postgresql_where=OPEN, sqlite_where=OPEN)
    op.create_index("ix_outbox_open_case", "outbox", ["case_id", "step"],
                    postgresql_where=OPEN, sqlite_where=OPEN)
    op.drop_index("ix_outbox_pending", table_name="outbox")
    op.drop_index("ix_outbox_case_step", table_name="outbox")
    op.create_index("ix_cases_moving", "cases", ["state", "updated_at"],
                    postgresql_where=MOVING, sqlite_where=MOVING)
    op.create_index("ix_case_events_refunded", "case_events", ["at"],
                    postgresql_where=REFUNDED, sqlite_where=REFUNDED)
    if op.get_bind().dialect.name == "postgresql":
        # Negative: a share of the rows, so it holds as the table grows (about 1 in 11 here).
        op.execute("ALTER TABLE case_events ALTER COLUMN case_id SET (n_distinct = -0.05)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE case_events ALTER COLUMN case_id RESET (n_distinct)")
    op.drop_index("ix_case_events_refunded", table_name="case_events")
    op.drop_index("ix_cases_moving", table_name="cases")
    op.create_index("ix_outbox_case_step", "outbox", ["case_id", "step"])
    op.create_index("ix_outbox_pending", "outbox", ["done_at", "created_at"])
    op.drop_index("ix_outbox_open_case", table_name="outbox")
    op.drop_index("ix_outbox_open", table_name="outbox")
