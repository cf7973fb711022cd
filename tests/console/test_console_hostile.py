"""Every console route against hostile input: an answer for a person (a page, never a 500
or a stack trace), and nothing already accepted lost or changed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from refundbridge.bootstrap import Container
from tests.conftest import drain
from tests.console.conftest import Session
from tests.console.test_review import ONE_REVIEWER, open_request

LONG = "x" * 100_000  # in a form body
LONG_QUERY = "x" * 6_000  # a URL carries less
NUL = "bad\x00value"
CASE = "{case}"  # the test's case id, filled in

# (method, path, form or query) — each with a hostile value in one field.
ROWS: list[tuple[str, str, str, dict[str, str]]] = [
    ("cases-state", "GET", "/console/cases", {"state": "nope"}),
    ("cases-shop-nul", "GET", "/console/cases", {"shop": NUL}),
    ("cases-cursor-huge", "GET", "/console/cases", {"cursor": "9" * 40}),
    ("cases-cursor-text", "GET", "/console/cases", {"cursor": "abc"}),
    ("cases-date", "GET", "/console/cases", {"created_from": "2026-13-45"}),
    ("cases-limit", "GET", "/console/cases", {"limit": "-1"}),
    ("cases-search-long", "GET", "/console/cases", {"q": LONG_QUERY}),
    ("case-id-long", "GET", "/console/cases/" + "r" * 5000, {}),
    ("case-id-odd", "GET", "/console/cases/%3Cscript%3E", {}),
    ("review-filter-date", "GET", "/console/review", {"due_before": "yesterday"}),
    ("review-filter-rule", "GET", "/console/review", {"rule": LONG_QUERY}),
    ("decide-no-decision", "POST", f"/console/review/{CASE}/decide",
     {"internal_note": "ok"}),
    ("decide-bad-decision", "POST", f"/console/review/{CASE}/decide",
     {"decision": "maybe", "internal_note": "ok"}),
    ("decide-note-nul", "POST", f"/console/review/{CASE}/decide",
     {"decision": "approve", "internal_note": NUL}),
    ("decide-note-long", "POST", f"/console/review/{CASE}/decide",
     {"decision": "approve", "internal_note": LONG}),
    ("decide-message-long", "POST", f"/console/review/{CASE}/decide",
     {"decision": "deny", "internal_note": "ok", "customer_message": LONG}),
    ("confirm-nothing", "POST", f"/console/review/{CASE}/confirm", {"agree": "yes"}),
    ("cancel-no-reason", "POST", f"/console/cases/{CASE}/cancel", {"reason": ""}),
    ("cancel-reason-nul", "POST", f"/console/cases/{CASE}/cancel", {"reason": NUL}),
    ("resend-kind", "POST", f"/console/cases/{CASE}/notifications/bogus/resend", {}),
    ("retry-not-failed", "POST", f"/console/cases/{CASE}/retry", {}),
    ("receive-search-long", "POST", "/console/receive", {"q": LONG}),
    ("receive-search-nul", "POST", "/console/receive", {"q": NUL}),
    ("receive-form-not-a-return", "POST", f"/console/receive/{CASE}",
     {"line-0-seal": "yes"}),
    ("lot-export-no-lot", "POST", "/console/evidence/lot", {"shop": "acme-medical"}),
    ("lot-export-foreign-shop", "POST", "/console/evidence/lot",
     {"shop": "elsewhere", "lot": "L1"}),
    ("jobs-requeue-unknown", "POST", "/console/jobs/requeue", {"job_id": "nope"}),
    ("jobs-cancel-long", "POST", "/console/jobs/cancel", {"job_id": LONG}),
    ("kpis-dates", "GET", "/console/kpis", {"since": "0000-00-00", "until": NUL}),
    ("chart-unknown", "GET", "/console/kpis/chart/nothing.svg", {}),
    ("language-unknown", "GET", "/console/language/xx", {"next": "https://evil.example/"}),
    ("login-next-evil", "GET", "/console/login", {"next": "//evil.example"}),
]


@pytest.fixture
def admin_with_a_case(login_as: Callable[..., Session], console_container: Container,
                      console_app: Any, providers: Any) -> tuple[Session, str]:
    from fastapi.testclient import TestClient

    with TestClient(console_app) as client:
        case_id = open_request(client, providers[2], **ONE_REVIEWER)
    drain(console_container)
    return login_as("root", "admin", ()), case_id


def _trail(container: Container, case_id: str) -> tuple[str, int]:
    with container.engine.connect() as conn:
        state = conn.execute(text("SELECT state FROM cases WHERE id = :id"),
                             {"id": case_id}).scalar_one()
        events = conn.execute(text("SELECT count(*) FROM case_events WHERE case_id = :id"),
                              {"id": case_id}).scalar_one()
    return str(state), int(events)


@pytest.mark.parametrize(("method", "path", "values"), [r[1:] for r in ROWS],
                         ids=[r[0] for r in ROWS])
def test_hostile_input_gets_a_page_and_changes_nothing(
        admin_with_a_case: tuple[Session, str], console_container: Container,
        method: str, path: str, values: dict[str, str]) -> None:
    session, case_id = admin_with_a_case
    before = _trail(console_container, case_id)
    url = path.replace(CASE, case_id)
    if method == "GET":
        answer = session.client.get(url, params=values, follow_redirects=False)
    else:
        answer = session.post(url, values)
    assert answer.status_code < 500, answer.text[:500]
    if answer.status_code >= 400:
        assert "text/html" in answer.headers["content-type"]
        assert "Traceback" not in answer.text
    if answer.status_code in (301, 302, 303, 307):
        assert answer.headers["location"].startswith("/console"), answer.headers["location"]
    assert _trail(console_container, case_id) == before
