"""The schema. Alembic migrations in `store/migrations` create it; this mirrors them.

A case's small collections (decisions, refund attempts, notifications, inspections, stock
moves) live as JSON on its row: they are always read and written with the case. The audit
trail is its own append-only table, and refund keys are columns so they can be looked up.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    text,
)

metadata = MetaData()

Serial = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only

cases = Table(
    "cases",
    metadata,
    Column("seq", Serial, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("shop_id", String(64), nullable=False),
    Column("source", String(64), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("order_id", String(128), nullable=False),
    Column("customer_id", String(128)),
    Column("kind", String(32), nullable=False),
    Column("state", String(32), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("requested_minor", BigInteger, nullable=False),
    Column("approved_minor", BigInteger),
    Column("refunded_minor", BigInteger, nullable=False, default=0),
    Column("refund_timing", String(16), nullable=False),
    Column("refund_key", String(80)),
    Column("refund_ref", String(255)),
    Column("erp_reference", String(255)),
    Column("request", JSON, nullable=False),
    Column("details", JSON, nullable=False),
    Column("version", Integer, nullable=False, default=0),
    Column("audit_seq", Integer, nullable=False, default=0),
    Column("audit_head", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("assignee", String(64)),  # the operator who claimed it
    Column("due_on", Date),  # its earliest dated obligation: the review queue's order
    Index("ix_cases_shop_state", "shop_id", "state"),
    Index("ix_cases_shop_state_due", "shop_id", "state", "due_on"),
    Index("ix_cases_shop_order", "shop_id", "order_id"),
    Index("ix_cases_shop_external", "shop_id", "external_id"),  # the console's search
    Index("ix_cases_shop_created", "shop_id", "created_at"),  # its filter by date
    Index("ix_cases_shop_customer", "shop_id", "customer_id", "created_at"),
    Index("ix_cases_refund_ref", "refund_ref"),
    Index("ix_cases_refund_key", "refund_key"),
)

def _audit_trail(name: str, owner: str) -> Table:
    """A hash-chained audit trail (core/audit.py), one row per event of its owner."""
    return Table(
        name,
        metadata,
        Column(owner, String(40), primary_key=True),
        Column("seq", Integer, primary_key=True),
        Column("at", String(40), nullable=False),  # ISO text: hashed as written
        Column("actor", String(128), nullable=False),
        Column("name", String(64), nullable=False),
        Column("from_state", String(32)),
        Column("to_state", String(32)),
        Column("data", JSON, nullable=False),
        Column("prev_hash", String(64), nullable=False),
        Column("hash", String(64), nullable=False),
    )


case_events = _audit_trail("case_events", "case_id")

inbox = Table(
    "inbox",
    metadata,
    Column("shop_id", String(64), primary_key=True),
    Column("connector", String(64), primary_key=True),
    Column("external_id", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("case_id", String(40), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("case_id", String(40), nullable=False),
    Column("step", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("dispatched_at", DateTime(timezone=True)),
    Column("dispatch_count", Integer, nullable=False, default=1),
    Column("done_at", DateTime(timezone=True)),
)
# The Overdue filter walks only open cases with a deadline (migration 0011).
_OPEN_WITH_DEADLINE = text("due_on IS NOT NULL AND state NOT IN "
                           "('cancelled', 'closed', 'denied', 'refunded')")
Index("ix_cases_open_due", cases.c.seq,
      postgresql_where=_OPEN_WITH_DEADLINE, sqlite_where=_OPEN_WITH_DEADLINE)

# What the relay polls for: rows the API committed and nobody has enqueued yet.
Index("ix_outbox_undispatched", outbox.c.id,
      postgresql_where=outbox.c.dispatched_at.is_(None),
      sqlite_where=outbox.c.dispatched_at.is_(None))

# The table only grows (a done row is the record that its step ran), but every query reads
# open rows only: indexes over those alone stay small at any size (migration 0013).
_OPEN_WORK = text("done_at IS NULL")
Index("ix_outbox_open", outbox.c.id, postgresql_where=_OPEN_WORK, sqlite_where=_OPEN_WORK)
Index("ix_outbox_open_case", outbox.c.case_id, outbox.c.step,
      postgresql_where=_OPEN_WORK, sqlite_where=_OPEN_WORK)

# The reconciler's idle scan: the cases still moving (core/lifecycle.py MOVING_STATES).
_MOVING = text("state IN ('evaluating', 'received', 'received_goods', 'refunded', "
               "'refunding', 'replaced', 'replacing')")  # exchanges' two since 0016
Index("ix_cases_moving", cases.c.state, cases.c.updated_at,
      postgresql_where=_MOVING, sqlite_where=_MOVING)

# The KPIs' refunds of a period, read by time from the audit trail.
_REFUNDED = text("name = 'confirm_refund'")
Index("ix_case_events_refunded", case_events.c.at,
      postgresql_where=_REFUNDED, sqlite_where=_REFUNDED)

orders = Table(
    "orders",
    metadata,
    Column("shop_id", String(64), primary_key=True),
    Column("order_id", String(128), primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("paid_minor", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# A shop's recall list (core/recalls.py). Blank lot/serial/gtin/sku are stored as '' rather
# than NULL: both PostgreSQL and SQLite let NULLs repeat in a unique constraint, and importing
# the same recall twice must change nothing.
recalls = Table(
    "recalls",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("shop_id", String(64), nullable=False),
    Column("gtin", String(14), nullable=False),  # GTIN-14, or '' for a recall by SKU
    Column("sku", String(128), nullable=False),
    Column("lot", String(64), nullable=False),  # '': every lot
    Column("serial", String(64), nullable=False),  # '': every serial
    Column("reference", String(128), nullable=False),
    Column("recall_class", String(3), nullable=False),
    Column("notice_date", Date, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("shop_id", "gtin", "sku", "lot", "serial", "reference",
                     name="uq_recalls_scope"),
)

# Refunds made outside RefundBridge (in a storefront's admin): they count against the order.
external_refunds = Table(
    "external_refunds",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("shop_id", String(64), nullable=False),
    Column("order_id", String(128), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("note", String(500), nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("shop_id", "external_id", name="uq_external_refunds_shop_external"),
    Index("ix_external_refunds_shop_order", "shop_id", "order_id"),
)

# The devices a case is about, one row per request line ('' where the line names none):
# to find every case touching a lot (evidence per lot, recalls) or a scanned unit.
case_units = Table(
    "case_units",
    metadata,
    Column("case_id", String(40), primary_key=True),
    Column("line", Integer, primary_key=True),
    Column("shop_id", String(64), nullable=False),
    Column("sku", String(128), nullable=False),
    Column("gtin", String(14), nullable=False),
    Column("lot", String(64), nullable=False),
    Column("serial", String(64), nullable=False),
    Index("ix_case_units_shop_lot", "shop_id", "lot"),
    Index("ix_case_units_shop_gtin_serial", "shop_id", "gtin", "serial"),
)

# The rules that spoke up on a case: each decision's results other than "pass", one row per
# rule and outcome, rewritten when the case's decisions change (store/uow.py). The console's
# case list filters by rule through it (store/console_reads.py).
case_rules = Table(
    "case_rules",
    metadata,
    Column("case_id", String(40), primary_key=True),
    Column("rule_id", String(64), primary_key=True),
    Column("outcome", String(16), primary_key=True),
    Index("ix_case_rules_rule_case", "rule_id", "case_id"),
)

# Console operators (core/access.py). `shops` is a JSON list; an admin's is empty.
operators = Table(
    "operators",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("shops", JSON, nullable=False),
    Column("password_hash", String(255), nullable=False),  # argon2id, with its parameters
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("password_changed_at", DateTime(timezone=True), nullable=False),
    Column("disabled_at", DateTime(timezone=True)),
)

# A console login. Only the SHA-256 of the cookie's value is stored: a copy of this table
# opens no session.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("operator", String(64), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_console_sessions_operator", "operator"),
)

# Numbers that replied STOP / 退订 to a shop's SMS: no more SMS to them from that shop.
sms_opt_outs = Table(
    "sms_opt_outs",
    metadata,
    Column("shop_id", String(64), primary_key=True),
    Column("phone", String(32), primary_key=True),
    Column("source", String(64), nullable=False),
    Column("text", String(160), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# A provider's id of a send → the case and kind of the message, for delivery reports that
# carry only that id (Twilio's MessageSid).
sms_sends = Table(
    "sms_sends",
    metadata,
    Column("shop_id", String(64), primary_key=True),
    Column("provider_id", String(128), primary_key=True),
    Column("case_id", String(40), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Recall campaigns (core/campaigns.py). The notice is JSON (it is read and written whole);
# what the console filters or counts by is a column.
recall_campaigns = Table(
    "recall_campaigns",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("shop_id", String(64), nullable=False),
    Column("reference", String(128), nullable=False),
    Column("recall_class", String(3), nullable=False),
    Column("state", String(16), nullable=False),
    Column("notice", JSON, nullable=False),
    Column("notice_due", Date, nullable=False),
    Column("details", JSON, nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("opened_by", String(128), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
    Column("version", Integer, nullable=False, default=0),
    Column("audit_seq", Integer, nullable=False, default=0),
    Column("audit_head", String(64), nullable=False),
    UniqueConstraint("shop_id", "reference", name="uq_recall_campaigns_shop_reference"),
)

campaign_events = _audit_trail("campaign_events", "campaign_id")

# One consignee of one campaign: who, their units (JSON, merged per ERP line), and how
# telling them went. `email_state`/`sms_state` are `core.campaigns.NoticeState`.
campaign_consignees = Table(
    "campaign_consignees",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("campaign_id", String(40), nullable=False),
    Column("consignee_key", String(128), nullable=False),
    Column("name", String(255), nullable=False),
    Column("email", String(320)),
    Column("phone", String(32)),
    Column("locale", String(16)),
    Column("units", JSON, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("email_state", String(16), nullable=False),
    Column("sms_state", String(16), nullable=False),
    Column("claimed_at", DateTime(timezone=True)),
    Column("notified_at", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", String(500)),
    Column("reminders", Integer, nullable=False, default=0),
    Column("next_reminder_at", DateTime(timezone=True)),
    Column("acknowledged_at", DateTime(timezone=True)),
    Column("acknowledgement", JSON),
    Column("case_id", String(40)),
    Column("case_problem", String(500)),
    Column("delivery", String(16)),
    UniqueConstraint("campaign_id", "consignee_key", name="uq_campaign_consignees_key"),
    Index("ix_campaign_consignees_notice", "campaign_id", "email_state", "sms_state"),
    Index("ix_campaign_consignees_reminder", "campaign_id", "next_reminder_at"),
)

# ---- CAPA records (core/capa.py) ----------------------------------------------------------
# The record's steps (actions, checks, escalation) are JSON on its row: always read and
# written with it. Its cases and lots are rows too, to find a case's CAPAs and a product's.
capa_records = Table(
    "capa_records",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("shop_id", String(64), nullable=False),
    Column("state", String(24), nullable=False),
    Column("signal_id", String(64)),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("opened_by", String(128), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
    Column("campaign_id", String(40)),
    Column("details", JSON, nullable=False),
    Column("version", Integer, nullable=False, default=0),
    Column("audit_seq", Integer, nullable=False, default=0),
    Column("audit_head", String(64), nullable=False),
    Index("ix_capa_records_shop_state", "shop_id", "state"),
    Index("ix_capa_records_shop_opened", "shop_id", "opened_at"),
)

capa_events = _audit_trail("capa_events", "capa_id")

capa_cases = Table(
    "capa_cases",
    metadata,
    Column("capa_id", String(40), primary_key=True),
    Column("case_id", String(40), primary_key=True),
    Column("shop_id", String(64), nullable=False),
    Index("ix_capa_cases_case", "case_id"),
)

capa_lots = Table(
    "capa_lots",
    metadata,
    Column("capa_id", String(40), primary_key=True),
    Column("line", Integer, primary_key=True),
    Column("shop_id", String(64), nullable=False),
    Column("sku", String(128), nullable=False),
    Column("lot", String(64), nullable=False),  # '': every lot of the product
    Index("ix_capa_lots_shop_sku", "shop_id", "sku"),
)

# ---- quality signals (core/signals.py) -----------------------------------------------------
# One row per raised signal: its id is derived from shop, SKU, lot, threshold and window, so
# inserting it twice (two runs, two racing workers) leaves one row. `window_end` is the
# window's last day (included). `lot` is NULL for returns that named no lot. The quality
# contact's notice is claimed on the row (`email_state`/`sms_state`, core.signals.NoticeState)
# before it is sent.
quality_signals = Table(
    "quality_signals",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("shop_id", String(64), nullable=False),
    Column("sku", String(128), nullable=False),
    Column("lot", String(64)),
    Column("reason_group", String(16), nullable=False),
    Column("threshold", String(32), nullable=False),
    Column("window_start", Date, nullable=False),
    Column("window_end", Date, nullable=False),
    Column("window_days", Integer, nullable=False),
    Column("raised_at", DateTime(timezone=True), nullable=False),
    Column("case_ids", JSON, nullable=False),
    Column("case_count", Integer, nullable=False),
    Column("units", Integer, nullable=False),
    Column("shipped_units", Integer),
    Column("rate", String(16)),  # percent, as exact decimal text ("2.0100")
    Column("state", String(16), nullable=False),
    Column("details", JSON, nullable=False),  # the threshold as it stood, the note, the CAPA
    Column("email_state", String(16), nullable=False),
    Column("sms_state", String(16), nullable=False),
    Column("claimed_at", DateTime(timezone=True)),
    Column("notified_at", DateTime(timezone=True)),
    Column("version", Integer, nullable=False, default=0),
    Column("audit_seq", Integer, nullable=False, default=0),
    Column("audit_head", String(64), nullable=False),
    Index("ix_quality_signals_shop_raised", "shop_id", "raised_at"),
    Index("ix_quality_signals_shop_sku_lot", "shop_id", "sku", "lot"),
)

signal_events = _audit_trail("signal_events", "signal_id")

# The ERP's answers to "how many units of this SKU and lot shipped from … to …", so a signal
# run asks once per lot and range, not once per case. `lot` '' : every lot. A range that
# ended before the answer was fetched never changes and is kept; an open one is asked again
# after the shop's `shipped_cache_minutes`.
shipped_quantities = Table(
    "shipped_quantities",
    metadata,
    Column("shop_id", String(64), primary_key=True),
    Column("sku", String(128), primary_key=True),
    Column("lot", String(64), primary_key=True),
    Column("since", Date, primary_key=True),
    Column("until", Date, primary_key=True),
    Column("quantity", BigInteger, nullable=False),
    Column("fetched_at", DateTime(timezone=True), nullable=False),
)

__all__ = ["campaign_consignees", "campaign_events", "case_events", "case_rules", "case_units",
           "cases", "console_sessions", "external_refunds", "inbox", "metadata", "operators",
           "orders", "outbox", "recall_campaigns", "recalls", "sms_opt_outs", "sms_sends"]
