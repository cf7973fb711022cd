"""The case list: filters, keyset paging, only the operator's shops, and who may read it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from refundbridge.bootstrap import Container
from tests.conftest import drain
from tests.console.conftest import OTHER_SHOP, Session
from tests.console.kit import listed, open_in
from tests.factories import SHOP


def _page(session: Session, query: str = "") -> Any:
    answer = session.client.get(f"/console/cases{query}")
    assert answer.status_code == 200, answer.text
    return answer


def test_the_list_shows_the_operators_shops_newest_first(
        login_as: Callable[..., Session], console_container: Container) -> None:
    session = login_as("li.na", "reviewer")
    mine = [open_in(session.client, None) for _ in range(3)]
    theirs = open_in(session.client, None, OTHER_SHOP)
    page = _page(session)
    assert listed(page.text) == mine[::-1]
    assert theirs not in page.text
    assert f'href="/console/cases/{mine[0]}"' in page.text
    assert "¥398.00" in page.text and SHOP in page.text
    # Asking for the other shop by name shows nothing of it either.
    assert listed(_page(session, f"?shop={OTHER_SHOP}").text) == []
    assert listed(_page(session, f"?q={theirs}").text) == []
    # An admin sees both shops; a reviewer of both shops too.
    admin = login_as("root", "admin", ())
    assert set(listed(_page(admin).text)) == {*mine, theirs}
    assert listed(_page(admin, f"?shop={OTHER_SHOP}").text) == [theirs]


def test_keyset_pages_go_forward_and_back_without_gaps(
        login_as: Callable[..., Session]) -> None:
    session = login_as("li.na", "reviewer")
    ids = [open_in(session.client, None) for _ in range(30)][::-1]  # newest first
    first = _page(session, "?limit=25")
    assert listed(first.text) == ids[:25]
    assert 'rel="prev"' not in first.text
    older = _link(first.text, "next")
    assert "after=" in older and "limit=25" in older and "offset" not in older
    second = _page(session, older.removeprefix("/console/cases"))
    assert listed(second.text) == ids[25:]
    assert 'rel="next"' not in second.text
    back = _page(session, _link(second.text, "prev").removeprefix("/console/cases"))
    assert listed(back.text) == ids[:25]
    assert 'rel="prev"' not in back.text and 'rel="next"' in back.text


def _link(html: str, rel: str) -> str:
    import html as markup
    import re

    found = re.search(rf'href="([^"]+)" rel="{rel}"', html)
    assert found, f"no {rel} link"
    return markup.unescape(found.group(1))


def test_filters_state_rule_failed_search_and_dates(
        login_as: Callable[..., Session], console_container: Container,
        providers: Any) -> None:
    _, _, erp = providers
    session = login_as("li.na", "reviewer")
    plain = open_in(session.client, erp)
    review = open_in(session.client, erp, **{"reason.code": "other"})
    adverse = open_in(session.client, erp, kind="return_and_refund",
                      **{"reason.code": "defective",
                         "reason.text": "扎针后手指一直出血，还起了红肿"})
    failing = open_in(session.client, None)  # the ERP does not know the order: stock fails
    drain(console_container)

    states = {case: _state(console_container, case) for case in (plain, review, adverse, failing)}
    assert states == {plain: "closed", review: "awaiting_review", adverse: "awaiting_review",
                      failing: "failed"}
    assert listed(_page(session, "?state=awaiting_review").text) == [adverse, review]
    assert listed(_page(session, "?failed=1").text) == [failing]
    assert listed(_page(session, "?rule=R14").text) == [adverse]
    assert listed(_page(session, "?rule=r14").text) == [adverse]  # ids are upper case
    assert listed(_page(session, "?rule=R14&state=closed").text) == []
    assert listed(_page(session, "?rule=R99").text) == []
    with console_container.engine.connect() as conn:
        order, external = conn.execute(text(
            "SELECT order_id, external_id FROM cases WHERE id = :id"), {"id": review}).one()
    for term in (review, order, external):
        assert listed(_page(session, f"?q={term}").text) == [review]
    today = datetime.now(UTC).date()
    everything = [failing, adverse, review, plain]
    assert listed(_page(session, f"?from={today}&to={today}").text) == everything
    assert listed(_page(session, f"?to={today - timedelta(days=1)}").text) == []
    assert listed(_page(session, f"?from={today + timedelta(days=1)}").text) == []
    # A date that is not one is named and ignored, not a 500.
    bad = _page(session, "?from=yesterday")
    assert listed(bad.text) == everything and "from" in bad.text
    # The filters survive paging: the next link carries them.
    one = _page(session, "?state=awaiting_review&limit=25")
    assert 'value="awaiting_review" selected' in one.text


def _state(container: Container, case_id: str) -> str:
    with container.engine.connect() as conn:
        return str(conn.execute(text("SELECT state FROM cases WHERE id = :id"),
                                {"id": case_id}).scalar_one())


def test_overdue_lists_open_cases_past_their_earliest_deadline(
        login_as: Callable[..., Session], console_container: Container,
        providers: Any) -> None:
    _, _, erp = providers
    session = login_as("li.na", "reviewer")
    late, on_time, settled = (open_in(session.client, erp, kind="return_and_refund")
                              for _ in range(3))
    drain(console_container)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    with console_container.engine.begin() as conn:
        for case, due, state in ((late, yesterday, None),
                                 (on_time, yesterday + timedelta(days=30), None),
                                 (settled, yesterday, "closed")):
            conn.execute(text("UPDATE cases SET due_on = :due, state = coalesce(:state, state)"
                              " WHERE id = :id"), {"due": due, "state": state, "id": case})
    page = _page(session, "?overdue=1")
    assert listed(page.text) == [late]
    assert "Overdue" in page.text
    everything = _page(session)
    assert "Due soon" not in everything.text and "On time" in everything.text
    assert "Settled" in everything.text


def test_a_warehouse_inspector_and_an_auditor_may_read_it(
        login_as: Callable[..., Session]) -> None:
    for name, role in (("zhao", "warehouse"), ("qa", "auditor")):
        session = login_as(name, role)
        case = open_in(session.client, None)
        assert case in listed(_page(session).text)


def test_the_list_speaks_chinese(login_as: Callable[..., Session]) -> None:
    session = login_as("li.na", "reviewer")
    open_in(session.client, None)
    session.client.get("/console/language/zh-CN", follow_redirects=False)
    page = _page(session)
    assert "刚收到" in page.text and "筛选案件" in page.text


def test_the_list_needs_a_login(console_app: Any) -> None:
    from fastapi.testclient import TestClient

    with TestClient(console_app) as client:
        away = client.get("/console/cases?state=failed", follow_redirects=False)
        assert away.status_code == 303 and "/console/login" in away.headers["location"]
