"""The KPIs page: a few cases in known states, opened by signed webhooks and worked by the
real worker; the figures asserted as the page and its read model give them; the charts
are SVG images that fetch and run nothing."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from refundbridge.bootstrap import Container
from refundbridge.core.model import Outcome
from refundbridge.core.money import Money
from refundbridge.core.services import review
from refundbridge.store.kpis import kpi_report, percentiles
from tests.conftest import drain
from tests.console.conftest import OTHER_SHOP, Session
from tests.console.kit import open_in
from tests.factories import SHOP

ADVERSE = {"kind": "return_and_refund", "reason.code": "defective",
           "reason.text": "扎针后手指一直出血，还起了红肿"}


@pytest.fixture
def known_cases(login_as: Callable[..., Session], console_container: Container,
                providers: Any) -> dict[str, Any]:
    """Five cases of the shop and one of the other shop:
    auto: refunded and closed by the rules alone;
    reviewed: sent to review (reason "other"), approved by a person, refunded;
    no_erp: approved by the rules and refunded, then its stock booking fails (the ERP does
      not know the order);
    adverse_soon: an adverse event asked about two days ago, in review, its report due in
      the coming days;
    adverse_late: the same asked about twelve days ago: its report is past due."""
    _, _, erp = providers
    session = login_as("li.na", "reviewer")
    client = session.client
    now = datetime.now(UTC)
    cases = {
        "auto": open_in(client, erp),
        "reviewed": open_in(client, erp, **{"reason.code": "other"}),
        "no_erp": open_in(client, None),
        "adverse_soon": open_in(client, erp, requested_at=(now - timedelta(days=2)).isoformat(),
                                **ADVERSE),
        "adverse_late": open_in(client, erp,
                                requested_at=(now - timedelta(days=12)).isoformat(), **ADVERSE),
        "theirs": open_in(client, erp, OTHER_SHOP),
    }
    drain(console_container)
    review(console_container.api_services, cases["reviewed"], Outcome.APPROVE,
           "operator:li.na", "customer called; refund")
    drain(console_container)
    return {"session": session, **cases}


def test_the_figures_of_the_period(known_cases: dict[str, Any],
                                   console_container: Container) -> None:
    today = datetime.now(UTC).date()
    report = kpi_report(console_container.engine, [SHOP], today - timedelta(days=29), today,
                        today)
    assert report.cases == 5
    assert report.by_state == {"closed": 2, "failed": 1, "awaiting_review": 2}
    assert (report.decided, report.auto_approved) == (3, 2)
    assert report.auto_approval_rate == Decimal("0.667")
    assert report.to_decision.count == 3 and report.to_refund.count == 3
    assert report.to_decision.p50 is not None and report.to_decision.p90 is not None
    assert report.to_refund.p90 >= report.to_refund.p50 >= timedelta(0)  # type: ignore[operator]
    assert report.refunds == {"CNY": {today: Money.parse("1194.00", "CNY")}}
    assert report.rules[("R14", "review")] == 2
    assert all(outcome in ("review", "deny") for _rule, outcome in report.rules)
    assert report.reasons == {"changed_mind": 2, "other": 1, "defective": 2}
    assert report.failed_steps == {(SHOP, "stock"): (1, 5)}
    assert [(d.case_id, d.kind, d.met_on) for d in report.breaches] == [
        (known_cases["adverse_late"], "adverse_event_report", None)]
    assert [(d.case_id, d.kind) for d in report.due_this_week] == [
        (known_cases["adverse_soon"], "adverse_event_report")]
    # Another period holds none of it; the other shop has its own case only.
    before = kpi_report(console_container.engine, [SHOP], today - timedelta(days=60),
                        today - timedelta(days=31), today)
    assert before.cases == 0 and before.refunds == {} and before.breaches == []
    assert kpi_report(console_container.engine, [OTHER_SHOP], today, today, today).cases == 1


def test_the_page_shows_them_as_tables(known_cases: dict[str, Any]) -> None:
    session: Session = known_cases["session"]
    page = session.client.get("/console/kpis")
    assert page.status_code == 200, page.text
    html = page.text
    assert '<tr data-state="closed"><td>Closed</td><td class="num">2</td></tr>' in html
    assert ('<tr data-state="awaiting_review"><td>Waiting for a reviewer</td>'
            '<td class="num">2</td>') in html
    assert "66.7 %" in html and "2 of 3 decided cases" in html
    assert 'data-testid="refund-total-CNY">CN¥1,194.00<' in html
    assert re.search(r'data-rule="R14-review">.*?<td class="num">2</td>', html)
    assert re.search(r'data-reason="changed_mind">.*?<td class="num">2</td>', html)
    failed = re.search(r'<tr data-failed="acme-medical-stock">(.*?)</tr>', html)
    assert failed and "erpnext" in failed.group(1) and "20.0 %" in failed.group(1)
    assert f'data-breach="{known_cases["adverse_late"]}-adverse_event_report"' in html
    assert f'data-due="{known_cases["adverse_soon"]}-adverse_event_report"' in html
    assert known_cases["theirs"] not in html
    assert '<img class="chart-img" src="/console/kpis/chart/states.svg?from=' in html
    # The other shop is not this reviewer's: asking for it is a 404, not its figures.
    assert session.client.get(f"/console/kpis?shop={OTHER_SHOP}").status_code == 404
    # In Chinese.
    session.client.get("/console/language/zh-CN", follow_redirects=False)
    assert "自动批准率" in session.client.get("/console/kpis").text


def test_each_chart_is_an_svg_that_fetches_and_runs_nothing(
        known_cases: dict[str, Any]) -> None:
    session: Session = known_cases["session"]
    for name in ("states", "refunds", "rules", "reasons", "failed"):
        answer = session.client.get(f"/console/kpis/chart/{name}.svg?currency=CNY")
        assert answer.status_code == 200, name
        assert answer.headers["content-type"].startswith("image/svg+xml")
        assert answer.headers["content-security-policy"].startswith("default-src 'none'")
        assert answer.headers["x-content-type-options"] == "nosniff"
        svg = answer.text
        assert svg.startswith("<svg") and "<script" not in svg.lower()
        assert set(re.findall(r"https?://[^\"'\s<>]+", svg)) == {"http://www.w3.org/2000/svg"}
        assert "href=" not in svg
        if name == "refunds":
            assert "1194" in svg
    # A bad period is named, and the default period used.
    page = session.client.get("/console/kpis?from=2026-13-01&to=whenever")
    assert page.status_code == 200 and "from, to" in page.text
    assert '<tr data-state="closed"><td>Closed</td><td class="num">2</td></tr>' in page.text
    backwards = session.client.get("/console/kpis?from=2026-02-01&to=2026-01-01")
    assert backwards.status_code == 200 and "not understood" in backwards.text


def test_charts_need_a_login_and_a_known_name(login_as: Callable[..., Session],
                                              console_app: Any) -> None:
    from fastapi.testclient import TestClient

    session = login_as("qa", "auditor")
    assert session.client.get("/console/kpis/chart/states.svg").status_code == 200
    assert session.client.get("/console/kpis/chart/nothing.svg").status_code == 404
    with TestClient(console_app) as anonymous:
        away = anonymous.get("/console/kpis/chart/states.svg", follow_redirects=False)
        assert away.status_code == 303


def test_percentiles_are_nearest_rank() -> None:
    minutes = [timedelta(minutes=m) for m in (5, 1, 4, 2, 3, 10, 9, 8, 7, 6)]
    result = percentiles(minutes)
    assert (result.count, result.p50, result.p90) == (
        10, timedelta(minutes=5), timedelta(minutes=9))
    assert percentiles([]).p50 is None
    assert percentiles([timedelta(hours=1)]).p90 == timedelta(hours=1)
