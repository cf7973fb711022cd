"""The review queue: what it shows and filters, claiming, deciding with a note, four eyes
(a second reviewer confirms, never the first), and who may do any of it. Real PostgreSQL,
Redis and SMTP; cases come in through the signed webhook; only Stripe and ERPNext are
faked (respx)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from redis import Redis
from sqlalchemy import Engine, text

from refundbridge.bootstrap import Container, bootstrap
from refundbridge.demo import Mailbox
from refundbridge.store.operators import SqlOperatorDirectory
from tests.conftest import drain, test_settings
from tests.console.conftest import CHEAP_HASHER, OTHER_SHOP, Session
from tests.factories import AUTH, SHOP, request_body, signed

FOUR_EYES_ABOVE = "2000"
# Above the shop's auto-approval limit (500 CNY: R20 sends it to a person), below four eyes.
ONE_REVIEWER = {"order.paid_total": "1200.00", "requested_amount": "1200.00",
                "lines.0.unit_price": "600.00"}
# Above the four-eyes limit too.
TWO_REVIEWERS = {"order.paid_total": "2400.00", "requested_amount": "2400.00",
                 "lines.0.unit_price": "1200.00"}
# Below the auto-approval limit: only R14 sends it to a person.
ADVERSE = {"kind": "return_and_refund", "reason.code": "defective",
           "reason.text": "扎针后手指一直出血，还起了红肿", "order.paid_total": "398.00",
           "requested_amount": "398.00", "lines.0.unit_price": "199.00"}


@pytest.fixture
def console_container(db: Engine, redis_conn: Redis, smtp_server: tuple[Controller, Mailbox],
                      database_url: str) -> Iterator[Container]:
    """As tests/console/conftest.py's, with a four-eyes limit in the shop's policy."""
    policy = {"refund_timing": "on_receipt", "auto_approve_limits": {"CNY": "500"},
              "four_eyes_above": {"CNY": FOUR_EYES_ABOVE}}
    settings = test_settings(database_url, smtp_server[0].port, policy=policy)
    shops = dict(settings.shops)
    shops[OTHER_SHOP] = shops[SHOP].model_copy()
    settings = settings.model_copy(update={"shops": shops})
    container = bootstrap(settings, redis=redis_conn, engine=db)
    container.operators = SqlOperatorDirectory(db, CHEAP_HASHER)
    yield container
    container.close()


@pytest.fixture
def api(console_app: Any) -> Iterator[TestClient]:
    with TestClient(console_app) as client:
        yield client


def open_request(api: TestClient, erp: Any, **overrides: Any) -> str:
    """As tests/conftest.py's `open_case`, with an invoice at the request's own prices."""
    body = request_body(**overrides)
    erp.add_invoice(body["order"]["id"], [(line["sku"], line["quantity"], line["unit_price"])
                                          for line in body["lines"]])
    raw, headers = signed(body)
    answer = api.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["case_id"])


def in_review(api: TestClient, container: Container, providers: Any,
              **overrides: Any) -> str:
    """A case the rules sent to a person."""
    case_id = open_request(api, providers[2], **{**ONE_REVIEWER, **overrides})
    drain(container)
    assert case(api, case_id)["state"] == "awaiting_review"
    return case_id


def case(api: TestClient, case_id: str) -> dict[str, Any]:
    answer = api.get(f"/v1/cases/{case_id}", headers=AUTH)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def events(api: TestClient, case_id: str) -> list[str]:
    return [e["name"] for e in case(api, case_id)["timeline"]]


def row_of(html: str, case_id: str) -> str:
    found = re.search(rf'<tr data-case="{case_id}">(.*?)</tr>', html, re.S)
    assert found, f"{case_id} is not in the queue"
    return found.group(1)


def queued(session: Session, **params: str) -> list[str]:
    page = session.client.get("/console/review", params=params)
    assert page.status_code == 200, page.text
    return re.findall(r'<tr data-case="([^"]+)">', page.text)


def decide(session: Session, case_id: str, decision: str = "approve",
           note: str = "收据已核对", message: str = "") -> Any:
    return session.post(f"/console/review/{case_id}/decide", {
        "decision": decision, "internal_note": note, "customer_message": message})


# ------------------------------------------------------------------ the queue


def test_the_queue_shows_the_case_with_the_rule_that_sent_it(
        login_as: Callable[..., Session], api: TestClient, console_container: Container,
        providers: Any) -> None:
    case_id = in_review(api, console_container, providers)
    page = login_as("li.na").client.get("/console/review")
    assert page.status_code == 200
    row = row_of(page.text, case_id)
    assert "R20" in row and "500" in row  # the auto-approval limit's message
    assert f'href="/console/cases/{case_id}"' in row
    assert "1,200.00" in row and SHOP in row
    assert "0 earlier, 0 refunded" in row
    assert "Claim" in row and "Unassigned" in row
    assert " style=" not in page.text and "<script>" not in page.text


def test_the_queue_puts_the_earliest_deadline_first_and_badges_it(
        login_as: Callable[..., Session], api: TestClient, console_container: Container,
        providers: Any) -> None:
    plain = in_review(api, console_container, providers)
    adverse = in_review(api, console_container, providers, **ADVERSE)
    session = login_as("li.na")
    assert queued(session) == [adverse, plain]  # a report is due; the other has no date
    row = row_of(session.client.get("/console/review").text, adverse)
    assert "adverse_event_report (R14)" in row and "Possible adverse event" in row
    assert 'class="badge ok"' in row  # due in about a week
    # Cases are ordered by deadline: moving the report's due date makes it breached.
    with console_container.engine.begin() as conn:
        conn.execute(text("UPDATE cases SET details = jsonb_set(details::jsonb, "
                          "'{obligations,0,due}', to_jsonb(CAST(:due AS text)))::json "
                          "WHERE id = :id"),
                     {"due": (date.today() - timedelta(days=3)).isoformat(), "id": adverse})
    row = row_of(session.client.get("/console/review").text, adverse)
    assert 'class="badge breached"' in row and "Breached" in row


def rule_options(session: Session) -> list[str]:
    page = session.client.get("/console/review")
    assert page.status_code == 200, page.text
    select_ = re.search(r'<select name="rule">(.*?)</select>', page.text, re.S)
    assert select_, "no rule filter"
    return re.findall(r'<option value="(R[^"]+)"', select_.group(1))


@pytest.mark.parametrize("chunk", [1000, 1])
def test_the_rule_filter_offers_the_rules_of_waiting_cases_only(
        chunk: int, monkeypatch: pytest.MonkeyPatch, login_as: Callable[..., Session],
        api: TestClient, console_container: Container, providers: Any) -> None:
    from refundbridge.store import review_queue
    monkeypatch.setattr(review_queue, "RULES_CHUNK", chunk)  # read a case at a time, too
    plain = in_review(api, console_container, providers)
    adverse = in_review(api, console_container, providers, **ADVERSE)
    session = login_as("li.na")
    options = rule_options(session)
    assert "R14" in options and "R20" in options and options == sorted(set(options))
    assert decide(session, plain, note="发票已核对").status_code == 303
    assert case(api, plain)["state"] != "awaiting_review"
    assert rule_options(session) == ["R14"]  # R20 spoke only on the case no longer waiting
    assert queued(session) == [adverse]


def test_the_queue_filters(login_as: Callable[..., Session], api: TestClient,
                           console_container: Container, providers: Any) -> None:
    plain = in_review(api, console_container, providers)
    adverse = in_review(api, console_container, providers, **ADVERSE)
    session = login_as("li.na")
    assert queued(session, rule="R14") == [adverse]
    assert queued(session, rule="R20") == [plain]
    assert queued(session, group="adverse_event") == [adverse]
    assert queued(session, group="no_reason") == [plain]
    assert queued(session, group="quality") == []  # a defect that hurt is an adverse event
    soon = (datetime.now(UTC).date() + timedelta(days=30)).isoformat()
    assert queued(session, due_before=soon) == [adverse]
    assert queued(session, due_before="2000-01-01") == []
    assert queued(session, shop=SHOP) == [adverse, plain]
    assert queued(session, assigned="me") == []
    assert queued(session, assigned="unassigned") == [adverse, plain]
    bad = session.client.get("/console/review", params={"shop": OTHER_SHOP,
                                                        "due_before": "soon"})
    assert bad.status_code == 422 and "shop, due_before" in bad.text


def test_the_customer_history_counts_earlier_cases_and_refunds(
        login_as: Callable[..., Session], api: TestClient, console_container: Container,
        providers: Any) -> None:
    customer = {"id": "cust-repeat", "type": "consumer", "email": "li.wei@example.com",
                "phone": "+8613800000000", "locale": "zh-CN"}
    first = open_request(api, providers[2], customer=customer)  # 398 CNY: approved, paid
    drain(console_container)
    assert case(api, first)["state"] == "closed"
    later = in_review(api, console_container, providers, customer=customer)
    row = row_of(login_as("li.na").client.get("/console/review").text, later)
    assert "1 earlier, 1 refunded" in row


# ------------------------------------------------------------------ claiming


def test_a_reviewer_claims_and_releases_a_case(login_as: Callable[..., Session],
                                               api: TestClient, console_container: Container,
                                               providers: Any) -> None:
    case_id = in_review(api, console_container, providers)
    li, wang = login_as("li.na"), login_as("wang")
    claimed = li.post(f"/console/review/{case_id}/claim")
    assert claimed.status_code == 303
    assert claimed.headers["location"] == f"/console/review?notice=claimed&case={case_id}"
    page = li.client.get(claimed.headers["location"])
    assert f"You claimed case {case_id}." in page.text
    assert "operator:li.na" in row_of(page.text, case_id)
    assert queued(li, assigned="me") == [case_id]
    assert queued(wang, assigned="me") == [] and queued(wang, assigned="unassigned") == []
    assert case(api, case_id)["assignee"] == "operator:li.na"

    refused = wang.post(f"/console/review/{case_id}/claim")
    assert refused.status_code == 409 and "Claimed by operator:li.na" in refused.text
    assert wang.post(f"/console/review/{case_id}/release").status_code == 409
    assert li.post(f"/console/review/{case_id}/release").status_code == 303
    assert case(api, case_id)["assignee"] is None
    assert wang.post(f"/console/review/{case_id}/claim").status_code == 303
    taken = li.post(f"/console/review/{case_id}/claim", {"take_over": "yes"})
    assert taken.status_code == 303
    assert case(api, case_id)["assignee"] == "operator:li.na"
    assert events(api, case_id).count("claimed") == 3
    assert "released" in events(api, case_id)


# ------------------------------------------------------------------ deciding


def test_an_approval_with_a_note_refunds_the_case(login_as: Callable[..., Session],
                                                  api: TestClient,
                                                  console_container: Container,
                                                  providers: Any) -> None:
    case_id = in_review(api, console_container, providers)
    session = login_as("li.na")
    form = session.client.get(f"/console/review/{case_id}")
    assert form.status_code == 200 and 'name="internal_note"' in form.text
    assert "Needs a second reviewer" not in form.text
    answer = decide(session, case_id, note="发票与收据已核对", message="款项将原路退回")
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/console/review?notice=approved&case={case_id}"
    assert case_id not in queued(session)
    drain(console_container)
    done = case(api, case_id)
    assert done["state"] == "closed", done["failure"]
    assert done["refunded"]["amount"] == "1200.00"
    last = done["decisions"][-1]
    assert last["decided_by"] == "operator:li.na" and last["outcome"] == "approve"
    assert last["internal_note"] == "发票与收据已核对"
    assert last["customer_message"] == "款项将原路退回"
    assert "proposed_by" not in last
    assert len(providers[1].posts) == 1  # paid once, through Stripe


def test_a_decision_without_a_note_names_the_field_and_changes_nothing(
        login_as: Callable[..., Session], api: TestClient, console_container: Container,
        providers: Any) -> None:
    case_id = in_review(api, console_container, providers)
    before = events(api, case_id)
    session = login_as("li.na")
    answer = decide(session, case_id, note="   ", message="kept in the form")
    assert answer.status_code == 422
    assert "Internal note: required" in answer.text
    assert re.search(r'name="internal_note" required[^>]*aria-invalid="true"', answer.text)
    assert "kept in the form" in answer.text
    no_choice = session.post(f"/console/review/{case_id}/decide", {"internal_note": "ok"})
    assert no_choice.status_code == 422 and "Decision: choose approve or deny" in no_choice.text
    assert case(api, case_id)["state"] == "awaiting_review"
    assert events(api, case_id) == before


def test_a_denial_is_recorded_with_its_note(login_as: Callable[..., Session], api: TestClient,
                                           console_container: Container,
                                           providers: Any) -> None:
    case_id = in_review(api, console_container, providers)
    answer = decide(login_as("li.na"), case_id, "deny", note="订单号与发票不符")
    assert answer.headers["location"] == f"/console/review?notice=denied&case={case_id}"
    assert case(api, case_id)["state"] == "denied"


# ------------------------------------------------------------------ four eyes


def test_above_the_limit_a_second_reviewer_must_confirm(login_as: Callable[..., Session],
                                                        api: TestClient,
                                                        console_container: Container,
                                                        providers: Any) -> None:
    case_id = in_review(api, console_container, providers, **TWO_REVIEWERS)
    li, wang = login_as("li.na"), login_as("wang")
    form = li.client.get(f"/console/review/{case_id}")
    assert "Needs a second reviewer" in form.text and "four-eyes limit" in form.text

    proposed = decide(li, case_id, note="大额，已电话核实", message="我们将退款")
    assert proposed.headers["location"] == f"/console/review?notice=proposed&case={case_id}"
    waiting = case(api, case_id)
    assert waiting["state"] == "awaiting_review"
    assert waiting["pending_review"]["proposed_by"] == "operator:li.na"
    assert waiting["pending_review"]["outcome"] == "approve"
    assert waiting["pending_review"]["reasons"] == ["amount"]
    assert "Proposed by operator:li.na" in row_of(li.client.get("/console/review").text,
                                                  case_id)

    # The proposer sees their proposal, not a confirm button, and cannot confirm it.
    own = li.client.get(f"/console/review/{case_id}")
    assert 'data-testid="own-proposal"' in own.text and 'data-testid="confirm"' not in own.text
    refused = li.post(f"/console/review/{case_id}/confirm", {"agree": "yes"})
    assert refused.status_code == 409 and "another reviewer must confirm" in refused.text
    assert case(api, case_id)["state"] == "awaiting_review"

    # Another reviewer sees it and confirms.
    other = wang.client.get(f"/console/review/{case_id}")
    assert 'data-testid="confirm"' in other.text and "大额，已电话核实" in other.text
    confirmed = wang.post(f"/console/review/{case_id}/confirm",
                          {"agree": "yes", "internal_note": "同意"})
    assert confirmed.headers["location"] == f"/console/review?notice=approved&case={case_id}"
    drain(console_container)
    done = case(api, case_id)
    assert done["state"] == "closed" and done["pending_review"] is None
    last = done["decisions"][-1]
    assert last["decided_by"] == "operator:wang" and last["proposed_by"] == "operator:li.na"
    assert last["internal_note"] == "大额，已电话核实" and last["confirm_note"] == "同意"
    assert last["customer_message"] == "我们将退款"
    names = events(api, case_id)
    assert names.index("review_proposed") < names.index("approve")
    assert api.get(f"/v1/cases/{case_id}/evidence", headers=AUTH).json()["verifies"]


def test_a_second_reviewer_sends_a_proposal_back_with_a_reason(
        login_as: Callable[..., Session], api: TestClient, console_container: Container,
        providers: Any) -> None:
    case_id = in_review(api, console_container, providers, **TWO_REVIEWERS)
    li, wang = login_as("li.na"), login_as("wang")
    decide(li, case_id, "deny", note="怀疑重复申请")
    silent = wang.post(f"/console/review/{case_id}/confirm", {"agree": "no"})
    assert silent.status_code == 422 and "Internal note: required" in silent.text
    assert case(api, case_id)["pending_review"] is not None
    back = wang.post(f"/console/review/{case_id}/confirm",
                     {"agree": "no", "internal_note": "不是重复申请，请重新审核"})
    assert back.headers["location"] == f"/console/review?notice=sent_back&case={case_id}"
    after = case(api, case_id)
    assert after["state"] == "awaiting_review" and after["pending_review"] is None
    assert "review_rejected" in events(api, case_id)
    # Sent back, a new proposal may come from anyone; it waits for a second person again.
    assert decide(wang, case_id).headers["location"].endswith(f"notice=proposed&case={case_id}")
    assert case(api, case_id)["pending_review"]["proposed_by"] == "operator:wang"


def test_a_possible_adverse_event_needs_four_eyes_at_any_amount(
        login_as: Callable[..., Session], api: TestClient, console_container: Container,
        providers: Any) -> None:
    case_id = in_review(api, console_container, providers, **ADVERSE)
    li, wang = login_as("li.na"), login_as("wang")
    assert "a possible adverse event" in li.client.get(f"/console/review/{case_id}").text
    decide(li, case_id, note="按不良事件上报；先退款")
    assert case(api, case_id)["pending_review"]["reasons"] == ["adverse_event"]
    wang.post(f"/console/review/{case_id}/confirm", {"agree": "yes"})
    assert case(api, case_id)["state"] == "awaiting_return"


def test_the_api_proposes_and_a_second_token_confirms(api: TestClient,
                                                      console_container: Container,
                                                      providers: Any) -> None:
    case_id = in_review(api, console_container, providers, **TWO_REVIEWERS)
    second = {"Authorization": "Bearer "
              + console_container.settings.operator_tokens[1].get_secret_value()}
    answer = api.post(f"/v1/cases/{case_id}/review", headers=AUTH,
                      json={"decision": "approve", "internal_note": "checked"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["state"] == "awaiting_review"
    assert answer.json()["pending_review"]["proposed_by"] == "token:operator_tokens.0"
    same = api.post(f"/v1/cases/{case_id}/review/confirm", headers=AUTH, json={"agree": True})
    assert same.status_code == 409 and "four eyes" in same.json()["detail"]
    assert api.post(f"/v1/cases/{case_id}/review", headers=second, json={
        "decision": "deny", "internal_note": "x"}).status_code == 409  # confirm it instead
    claimed = api.post(f"/v1/cases/{case_id}/claim", headers=second)
    assert claimed.status_code == 200 and claimed.json()["assignee"] == \
        "token:operator_tokens.1"
    assert api.post(f"/v1/cases/{case_id}/claim", headers=AUTH).status_code == 409
    assert api.post(f"/v1/cases/{case_id}/release", headers=second).json()["assignee"] is None
    done = api.post(f"/v1/cases/{case_id}/review/confirm", headers=second,
                    json={"agree": True, "internal_note": "agreed"})
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "refunding"
    assert done.json()["decisions"][-1]["proposed_by"] == "token:operator_tokens.0"


# ------------------------------------------------------------------ who may


@pytest.mark.parametrize("role", ["auditor", "warehouse"])
def test_roles_that_do_not_decide_are_forbidden(login_as: Callable[..., Session],
                                                api: TestClient,
                                                console_container: Container,
                                                providers: Any, role: str) -> None:
    case_id = in_review(api, console_container, providers)
    session = login_as("zhao", role)
    assert session.client.get("/console/review").status_code == 403
    assert session.client.get(f"/console/review/{case_id}").status_code == 403
    assert session.post(f"/console/review/{case_id}/claim").status_code == 403
    assert decide(session, case_id).status_code == 403
    assert case(api, case_id)["state"] == "awaiting_review"
    assert case(api, case_id)["assignee"] is None


def test_another_shops_case_is_not_found(login_as: Callable[..., Session], api: TestClient,
                                         console_container: Container,
                                         providers: Any) -> None:
    case_id = in_review(api, console_container, providers)
    outsider = login_as("chen", "reviewer", (OTHER_SHOP,))
    assert queued(outsider) == []
    assert outsider.client.get(f"/console/review/{case_id}").status_code == 404
    assert outsider.post(f"/console/review/{case_id}/claim").status_code == 404
    assert decide(outsider, case_id).status_code == 404
    assert outsider.client.get("/console/review/rc_nothing").status_code == 404
    assert case(api, case_id)["state"] == "awaiting_review"
    assert case(api, case_id)["assignee"] is None


def test_a_post_without_the_csrf_token_is_refused(login_as: Callable[..., Session],
                                                  api: TestClient,
                                                  console_container: Container,
                                                  providers: Any) -> None:
    case_id = in_review(api, console_container, providers)
    session = login_as("li.na")
    bare = session.client.post(f"/console/review/{case_id}/claim", follow_redirects=False)
    assert bare.status_code == 403
    forged = session.client.post(f"/console/review/{case_id}/decide", data={
        "csrf_token": "x" * 43, "decision": "approve", "internal_note": "note"},
        follow_redirects=False)
    assert forged.status_code == 403
    after = case(api, case_id)
    assert after["assignee"] is None and after["state"] == "awaiting_review"


def test_the_page_speaks_chinese(login_as: Callable[..., Session], api: TestClient,
                                 console_container: Container, providers: Any) -> None:
    case_id = in_review(api, console_container, providers)
    session = login_as("li.na")
    session.client.get("/console/language/zh-CN", follow_redirects=False)
    assert "认领" in session.client.get("/console/review").text
    page = session.client.get(f"/console/review/{case_id}")
    assert "内部备注" in page.text and "记录决定" in page.text


def test_every_text_of_the_pages_has_a_chinese_entry() -> None:
    import json
    from pathlib import Path

    from refundbridge.api.console import review
    from refundbridge.api.console.web import HERE, catalog

    texts = set()
    for name in ("review.html", "review_case.html"):
        source = (HERE / "templates" / name).read_text(encoding="utf-8")
        texts |= set(re.findall(r"""_\(["']([^"']+)["']""", source))
    for table in (review.GROUP_LABELS, review.ASSIGNED_LABELS, review.BADGE_LABELS,
                  review.REASON_LABELS, review.NOTICES, review.FIELD_LABELS):
        texts |= set(table.values())
    missing = sorted(t for t in texts if t not in catalog())
    assert missing == []
    assert json.loads(Path(HERE / "i18n" / "review.json").read_text(encoding="utf-8"))

