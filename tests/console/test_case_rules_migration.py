"""Migration 0009 fills `case_rules` from the decisions of cases stored before it, and the
unit of work keeps it in step with every later decision."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import Engine, text

from refundbridge.bootstrap import Container
from refundbridge.core.model import Outcome
from refundbridge.core.services import review
from refundbridge.store.db import alembic_config, make_engine, upgrade
from tests.conftest import drain
from tests.console.kit import open_in

DECISIONS = {"decisions": [
    {"rules": [{"id": "R06", "outcome": "review"}, {"id": "R02", "outcome": "pass"}]},
    {"rules": [{"id": "R06", "outcome": "review"}, {"id": "G01", "outcome": "deny"}]}]}


def _rules(engine: Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        return sorted((r.case_id, r.rule_id, r.outcome) for r in conn.execute(
            text("SELECT case_id, rule_id, outcome FROM case_rules")))


def test_the_migration_fills_case_rules_from_stored_decisions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0008")
    engine = make_engine(url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for case_id, details in (("rc_old", DECISIONS), ("rc_new", {"decisions": []})):
            conn.execute(text(
                "INSERT INTO cases (id, shop_id, source, external_id, order_id, kind, state,"
                " currency, requested_minor, refunded_minor, refund_timing, request, details,"
                " version, audit_seq, audit_head, created_at, updated_at) VALUES (:id, 's',"
                " 'generic', :id, 'o', 'refund_only', 'closed', 'CNY', 1, 0, 'on_receipt',"
                " '{}', :details, 1, 1, 'x', :now, :now)"),
                {"id": case_id, "details": json.dumps(details), "now": now})
    engine.dispose()
    upgrade(url)
    engine = make_engine(url)
    assert _rules(engine) == [("rc_old", "G01", "deny"), ("rc_old", "R06", "review")]
    engine.dispose()
    command.downgrade(alembic_config(url), "0008")


def test_each_decision_rewrites_the_rules_of_its_case(login_as: Any,
                                                     console_container: Container,
                                                     providers: Any) -> None:
    _, _, erp = providers
    session = login_as("li.na", "reviewer")
    passed = open_in(session.client, erp)
    reviewed = open_in(session.client, erp, **{"reason.code": "other"})
    drain(console_container)
    spoke = _rules(console_container.engine)
    assert spoke and {case for case, _rule, _outcome in spoke} == {reviewed}
    assert all(outcome == "review" for _case, _rule, outcome in spoke)
    assert passed not in {case for case, _r, _o in spoke}  # every rule passed
    review(console_container.api_services, reviewed, Outcome.APPROVE, "operator:li.na",
           "checked with the customer")
    assert _rules(console_container.engine) == spoke  # the person's decision names no rule
