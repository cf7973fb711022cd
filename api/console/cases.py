"""Cases `/console/cases`: every case of the operator's shops, newest first, with filters
(state, shop, rule, created between, failed, overdue, a search by case, order or external
id) and keyset paging (`after` / `before` a case's `seq`; never OFFSET), so the list stays
fast at a million cases (bench/console_list.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from refundbridge.api.console.formatting import due_badge, money_text
from refundbridge.api.console.web import PREFIX, ConsoleUser, render
from refundbridge.api.deps import AppDeps
from refundbridge.core.access import Permission
from refundbridge.core.lifecycle import CaseState
from refundbridge.store.console_reads import (
    PAGE_SIZES,
    SETTLED_STATES,
    CaseFilter,
    ConsoleReads,
)

router = APIRouter(prefix=PREFIX, include_in_schema=False)

# The rules of the medical-device rule set and the guards before it (core/compliance.py,
# core/rules.py): the rule filter's suggestions. Any id may be typed.
KNOWN_RULES = ("A00", "G01", "G02", "G03", *(f"R{n:02d}" for n in range(1, 21) if n != 18))
SEARCH_MAX = 255


def _date(value: str | None, errors: list[str], label: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors.append(label)
        return None


def _int(value: str | None) -> int | None:
    if value is None or not value.isdigit() or len(value) > 18:
        return None
    return int(value)


@router.get("/cases")
async def cases_list(
    request: Request, user: ConsoleUser, deps: AppDeps,
    state: Annotated[str, Query(max_length=32)] = "",
    shop: Annotated[str, Query(max_length=64)] = "",
    rule: Annotated[str, Query(max_length=64)] = "",
    created_from: Annotated[str, Query(alias="from", max_length=10)] = "",
    created_to: Annotated[str, Query(alias="to", max_length=10)] = "",
    failed: Annotated[str, Query(max_length=3)] = "",
    overdue: Annotated[str, Query(max_length=3)] = "",
    q: Annotated[str, Query(max_length=SEARCH_MAX)] = "",
    after: Annotated[str, Query(max_length=20)] = "",
    before: Annotated[str, Query(max_length=20)] = "",
    limit: Annotated[str, Query(max_length=4)] = "",
) -> Response:
    user.principal.require(Permission.READ)
    errors: list[str] = []
    states = [s.value for s in CaseState]
    shops = user.principal.visible(deps.shop_ids)
    chosen_state = state if state in states else ""
    chosen_shop = shop if shop in shops else ""
    if shop and not chosen_shop:
        errors.append("shop")
    day_from = _date(created_from, errors, "from")
    day_to = _date(created_to, errors, "to")
    size = int(limit) if limit.isdigit() and int(limit) in PAGE_SIZES else 50
    today = datetime.now(UTC).date()
    wanted = CaseFilter(
        shops=user.principal.shops, shop=chosen_shop or None, state=chosen_state or None,
        rule=rule.strip().upper() or None, created_from=day_from, created_to=day_to,
        failed=failed == "1", overdue=overdue == "1", search=q.strip() or None)
    reads = ConsoleReads(deps.reads.engine)
    if shop and not chosen_shop:
        page_rows: list[Any] = []
        next_after = previous_before = None
    else:
        page = await run_in_threadpool(reads.list_page, wanted, limit=size,
                                       after=_int(after), before=_int(before), today=today)
        page_rows, next_after, previous_before = page.rows, page.next_after, page.previous_before
    # The links keep every filter and change only the cursor.
    kept = {key: value for key, value in (
        ("state", chosen_state), ("shop", chosen_shop), ("rule", wanted.rule or ""),
        ("from", created_from if day_from else ""), ("to", created_to if day_to else ""),
        ("failed", "1" if wanted.failed else ""), ("overdue", "1" if wanted.overdue else ""),
        ("q", wanted.search or ""), ("limit", str(size) if size != 50 else ""))
        if value}
    base = f"{PREFIX}/cases"
    next_url = f"{base}?{urlencode({**kept, 'after': next_after})}" if next_after else None
    previous_url = (f"{base}?{urlencode({**kept, 'before': previous_before})}"
                    if previous_before else None)
    rows = []
    for row in page_rows:
        badge, badge_label = due_badge(row.due_on, today,
                                       CaseState(row.state) in SETTLED_STATES)
        rows.append({"id": row.id, "shop": row.shop_id, "state": row.state,
                     "failed": row.state == CaseState.FAILED.value,
                     "amount": money_text(row.amount, user.locale),
                     "created": row.created_at.strftime("%Y-%m-%d %H:%M"),
                     "due_on": row.due_on.isoformat() if row.due_on else "",
                     "due_class": badge, "due_label": badge_label,
                     "assignee": row.assignee or ""})
    return render(request, "cases.html", user, rows=rows, states=states, shops=shops,
                  rules=KNOWN_RULES, errors=errors, filters={
                      "state": chosen_state, "shop": chosen_shop, "rule": wanted.rule or "",
                      "from": created_from if day_from else "",
                      "to": created_to if day_to else "", "failed": wanted.failed,
                      "overdue": wanted.overdue, "q": wanted.search or "", "limit": size},
                  page_sizes=PAGE_SIZES, next_url=next_url, previous_url=previous_url,
                  first_url=f"{base}?{urlencode(kept)}" if (after or before) else None)
