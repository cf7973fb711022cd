"""KPIs `/console/kpis`: per shop (of the operator's) and period (default the last 30 days)
the figures of store/kpis.py, each as a table and, drawn on the server with pygal, as an
SVG chart at `/console/kpis/chart/<name>.svg` shown with `<img>` (nothing is fetched from
the internet: no script, no external link, its own narrow Content-Security-Policy).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode

import pygal
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pygal.style import Style

from refundbridge.api.console.formatting import money_text
from refundbridge.api.console.labels import label
from refundbridge.api.console.web import PREFIX, ConsoleContext, ConsoleUser, render, translator
from refundbridge.api.deps import AppDeps
from refundbridge.core.access import Permission
from refundbridge.core.errors import NotFound
from refundbridge.core.lifecycle import CaseState
from refundbridge.core.model import Step
from refundbridge.core.money import Money
from refundbridge.store.kpis import KpiReport, kpi_report

router = APIRouter(prefix=PREFIX, include_in_schema=False)

DEFAULT_DAYS = 30
MAX_DAYS = 366
# The connector role whose calls a step makes (evaluate asks the ERP what was shipped).
STEP_ROLE = {Step.EVALUATE.value: "erp", Step.REFUND.value: "payment", Step.STOCK.value: "erp",
             Step.NOTIFY.value: "notifier", Step.WRITE_BACK.value: "storefront",
             Step.REPLACE.value: "erp"}
CHARTS = ("states", "refunds", "rules", "reasons", "failed")
CHART_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
STYLE = Style(background="white", plot_background="white", foreground="#1d2327",
              foreground_strong="#1d2327", foreground_subtle="#5b6770",
              colors=("#0b6e4f", "#0a5ea8", "#9a5b00", "#a4262c", "#5b6770", "#6b3fa0"),
              font_family="system-ui, sans-serif")
SCRIPT = re.compile(r"<script\b.*?</script>", re.DOTALL | re.IGNORECASE)
COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


def _period(start: str, end: str, today: date) -> tuple[date, date, list[str]]:
    """The period asked (both days included), else the last 30 days; the names of the
    fields that were not understood."""
    errors = []
    parsed: dict[str, date | None] = {}
    for field, value in (("from", start), ("to", end)):
        try:
            parsed[field] = date.fromisoformat(value) if value else None
        except ValueError:
            errors.append(field)
            parsed[field] = None
    last = parsed["to"] or today
    first = parsed["from"] or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last or (last - first).days >= MAX_DAYS:
        errors.append("from")
        first = last - timedelta(days=DEFAULT_DAYS - 1)
    return first, last, errors


def _shops(user: ConsoleContext, deps: AppDeps, shop: str) -> list[str]:
    mine = user.principal.visible(deps.shop_ids)
    if not shop:
        return mine
    user.principal.require_shop(shop, f"shop {shop}")
    if shop not in mine:
        raise NotFound(f"no shop {shop}")
    return [shop]


def _report(user: ConsoleContext, deps: AppDeps, shop: str, start: str, end: str
            ) -> tuple[KpiReport, list[str]]:
    today = datetime.now(UTC).date()
    first, last, errors = _period(start, end, today)
    return kpi_report(deps.reads.engine, _shops(user, deps, shop), first, last, today), errors


def _hours(value: timedelta | None) -> str:
    if value is None:
        return "—"
    minutes = int(value.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours = Decimal(minutes) / 60
    if hours < 48:
        return f"{hours.quantize(Decimal('0.1'))} h"
    return f"{(hours / 24).quantize(Decimal('0.1'))} d"


def _percent(part: int, whole: int) -> str:
    if not whole:
        return "—"
    return f"{(Decimal(part) * 100 / Decimal(whole)).quantize(Decimal('0.1'))} %"


def _connector(deps: AppDeps, shop: str, step: str) -> str:
    settings = deps.settings.shops.get(shop)
    role = STEP_ROLE.get(step, "")
    return settings.connectors_by_role().get(role, "") if settings else ""


@router.get("/kpis")
async def kpis_page(request: Request, user: ConsoleUser, deps: AppDeps,
                    shop: Annotated[str, Query(max_length=64)] = "",
                    start: Annotated[str, Query(alias="from", max_length=10)] = "",
                    end: Annotated[str, Query(alias="to", max_length=10)] = "") -> Response:
    user.principal.require(Permission.READ)
    report, errors = await run_in_threadpool(_report, user, deps, shop, start, end)
    locale = user.locale
    params = {"shop": shop, "from": report.start.isoformat(), "to": report.end.isoformat()}
    query = urlencode({k: v for k, v in params.items() if v})
    rate = report.auto_approval_rate
    refunds = [
        {"currency": currency,
         "days": [(day.isoformat(), money_text(amount, locale)) for day, amount in days.items()],
         "total": money_text(sum(days.values(), start=Money.zero(currency)), locale),
         "chart": f"{PREFIX}/kpis/chart/refunds.svg?{query}&currency={currency}"}
        for currency, days in report.refunds.items()]
    failed = [
        {"shop": shop_id, "step": step, "connector": _connector(deps, shop_id, step),
         "failed": count, "cases": total, "rate": _percent(count, total)}
        for (shop_id, step), (count, total) in sorted(report.failed_steps.items())]
    return render(
        request, "kpis.html", user, report=report, errors=errors,
        shops=user.principal.visible(deps.shop_ids), chosen_shop=shop,
        states=[(s.value, report.by_state.get(s.value, 0)) for s in CaseState
                if report.by_state.get(s.value)],
        rate=_percent(report.auto_approved, report.decided) if rate is not None else "—",
        to_decision=(report.to_decision.count, _hours(report.to_decision.p50),
                     _hours(report.to_decision.p90)),
        to_refund=(report.to_refund.count, _hours(report.to_refund.p50),
                   _hours(report.to_refund.p90)),
        refunds=refunds, failed=failed,
        rules=[(rule, outcome, count) for (rule, outcome), count in report.rules.items()],
        reasons=sorted(report.reasons.items(), key=lambda item: (-item[1], item[0])),
        charts={name: f"{PREFIX}/kpis/chart/{name}.svg?{query}" for name in CHARTS})


def _svg(chart: Any) -> str:
    """The chart's SVG without pygal's script (its tooltips' config) and comments (links
    to pygal's site): an image, fetched by nothing and running nothing."""
    svg = str(chart.render(is_unicode=True))
    return COMMENT.sub("", SCRIPT.sub("", svg))


def _chart(kind: type[Any], title: str, **options: Any) -> Any:
    return kind(js=[], style=STYLE, title=title, disable_xml_declaration=True,
                show_legend=options.pop("show_legend", False), width=720, height=360,
                print_values=False, **options)


def _whole_numbers(counts: list[int]) -> dict[str, Any]:
    """Axis ticks for a count: whole numbers only, about ten of them."""
    top = max([*counts, 1])
    step = max(1, -(-top // 10))
    return {"range": (0, top), "y_labels": list(range(0, top + step, step))}


def draw(name: str, report: KpiReport, locale: str, currency: str) -> str:
    _ = translator(locale)
    if name == "states":
        chart = _chart(pygal.Bar, _("Cases by state"),
                       **_whole_numbers(list(report.by_state.values())))
        chart.x_labels = [_(label("state", state))
                          for state, _count in sorted(report.by_state.items())]
        chart.add(_("Cases"), [count for _state, count in sorted(report.by_state.items())])
    elif name == "refunds":
        days = report.refunds.get(currency, {})
        chart = _chart(pygal.Line, _("Refunded per day") + f" ({currency})",
                       x_label_rotation=30)
        chart.x_labels = [day.isoformat() for day in days]
        chart.add(currency, [amount.amount for amount in days.values()])
    elif name == "rules":
        chart = _chart(pygal.HorizontalBar, _("Rules that sent cases to review or denied them"),
                       show_legend=True, **_whole_numbers(list(report.rules.values())))
        rules = sorted({rule for rule, _kind in report.rules})
        chart.x_labels = rules
        for outcome in ("review", "deny"):
            chart.add(_(outcome), [report.rules.get((rule, outcome), 0) for rule in rules])
    elif name == "reasons":
        chart = _chart(pygal.Bar, _("Reasons"), **_whole_numbers(list(report.reasons.values())))
        ordered = sorted(report.reasons.items(), key=lambda item: (-item[1], item[0]))
        chart.x_labels = [reason or "—" for reason, _count in ordered]
        chart.add(_("Cases"), [count for _reason, count in ordered])
    elif name == "failed":
        chart = _chart(pygal.Bar, _("Failed steps, % of the period's cases"))
        rows = sorted(report.failed_steps.items())
        chart.x_labels = [f"{shop} {step}" for (shop, step), _v in rows]
        chart.add("%", [(Decimal(n) * 100 / Decimal(total)).quantize(Decimal("0.1"))
                        if total else 0 for _k, (n, total) in rows])
    else:
        raise NotFound(f"no chart {name}")
    return _svg(chart)


@router.get("/kpis/chart/{name}.svg")
async def kpi_chart(name: str, user: ConsoleUser, deps: AppDeps,
                    shop: Annotated[str, Query(max_length=64)] = "",
                    start: Annotated[str, Query(alias="from", max_length=10)] = "",
                    end: Annotated[str, Query(alias="to", max_length=10)] = "",
                    currency: Annotated[str, Query(max_length=3)] = "") -> Response:
    user.principal.require(Permission.READ)
    if name not in CHARTS:
        raise NotFound(f"no chart {name}")
    report, _errors = await run_in_threadpool(_report, user, deps, shop, start, end)
    svg = await run_in_threadpool(draw, name, report, user.locale, currency.upper())
    return Response(svg, media_type="image/svg+xml",
                    headers={"Content-Security-Policy": CHART_CSP})
