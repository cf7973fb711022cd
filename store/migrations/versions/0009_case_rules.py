"""case_rules: the rules that spoke up on each case, for the console's filter by rule; cases
indexed by (shop_id, external_id) for its search and by (shop_id, created_at) for its dates

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Cases decided before this table existed: their decisions' results other than "pass",
# read from the JSON each case row keeps (`details.decisions[].rules[]`).
BACKFILL = {
    "postgresql": """
        INSERT INTO case_rules (case_id, rule_id, outcome)
        SELECT DISTINCT c.id, r.value ->> 'id', r.value ->> 'outcome'
        FROM cases c
        CROSS JOIN LATERAL json_array_elements(c.details -> 'decisions') AS d(value)
        CROSS JOIN LATERAL json_array_elements(d.value -> 'rules') AS r(value)
        WHERE r.value ->> 'outcome' <> 'pass'
    """,
    "sqlite": """
        INSERT INTO case_rules (case_id, rule_id, outcome)
        SELECT DISTINCT c.id, json_extract(r.value, '$.id'), json_extract(r.value, '$.outcome')
        FROM cases c, json_each(c.details, '$.decisions') AS d, json_each(d.value, '$.rules') AS r
        WHERE json_extract(r.value, '$.outcome') <> 'pass'
    """,
}


def upgrade() -> None:
    op.create_table(
        "case_rules",
        sa.Column("case_id", sa.String(length=40), nullable=False),
        sa.Column("rule_id", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("case_id", "rule_id", "outcome"),
    )
    op.create_index("ix_case_rules_rule_case", "case_rules", ["rule_id", "case_id"])
    op.create_index("ix_cases_shop_external", "cases", ["shop_id", "external_id"])
    op.create_index("ix_cases_shop_created", "cases", ["shop_id", "created_at"])
    backfill = BACKFILL.get(op.get_bind().dialect.name)
    if backfill:
        op.execute(backfill)


def downgrade() -> None:
    op.drop_index("ix_cases_shop_created", table_name="cases")
    op.drop_index("ix_cases_shop_external", table_name="cases")
    op.drop_index("ix_case_rules_rule_case", table_name="case_rules")
    op.drop_table("case_rules")
