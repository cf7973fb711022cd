"""Recall campaigns `/console/recalls`: every campaign of the operator's shops, one campaign's
page, and the form that opens one.

1. `/console/recalls`: the campaigns, newest first: reference, class, product and lots, state,
   the notice deadline (overdue while not everyone is told by then) and the progress figures.
2. `/console/recalls/new` (RECALL permission): the recall notice as a form. Posting it builds
   a `RecallNotice` (whose constructor names every bad field: each is shown beside its field,
   422, what was typed kept) and opens the campaign under the operator's name; the same
   reference again leads to the campaign already open.
3. `/console/recalls/{id}`: the notice and its instructions, the notice deadline as an
   obligation, the quarantine, a chart over time (`chart.svg`, drawn on the server like the
   KPIs'), the effectiveness check against its level's target, the consignees (keyset pages),
   the campaign's hash-chained trail with its check, and, once every consignee is told, the
   form that closes it with the effectiveness check's result (RECALL permission).

Another shop's campaign is a 404, as for one that does not exist.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import quote

import pygal
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from starlette.datastructures import FormData

from refundbridge.api.console.formatting import AT_RISK_DAYS, money_text
from refundbridge.api.console.kpis import CHART_CSP, STYLE, _svg
from refundbridge.api.console.web import (
    PREFIX,
    ConsoleContext,
    ConsoleUser,
    ConsoleWriter,
    redirect,
    render,
    translator,
)
from refundbridge.api.deps import ApiDeps, AppDeps
from refundbridge.core.access import Permission
from refundbridge.core.audit import AuditEvent, verify_chain
from refundbridge.core.campaigns import (
    INSTRUCTIONS_MAX,
    CampaignCounts,
    CampaignState,
    CheckLevel,
    ConsigneeRecord,
    RecallAction,
    RecallCampaign,
    RecallNotice,
)
from refundbridge.core.errors import ConfigError, InvalidRequest, NotFound
from refundbridge.core.money import Money
from refundbridge.core.recalls import LOT_MAX, REFERENCE_MAX, SERIAL_MAX, SKU_MAX, RecallClass
from refundbridge.core.services.campaigns import close_campaign, open_campaign

router = APIRouter(prefix=PREFIX, include_in_schema=False)

HOME = f"{PREFIX}/recalls"
# `core.campaigns.campaign_id_for`: a prefix and hex digits (the length is the core's).
CAMPAIGN_ID = re.compile(r"rcp_[0-9a-f]{8,64}")
PAGE_SIZE = 50  # consignees per page of the campaign's table
NOTE_MAX = 2000  # as core.services.campaigns.close_campaign
GTIN_MAX = 20  # 14 digits, and room for what an operator pastes (spaces, dashes)
# Control characters other than tab and line breaks: never part of a notice, and a NUL is
# refused by PostgreSQL's text and JSON columns.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# What the page calls the campaign's codes (English; zh-CN in i18n/recalls.json).
STATES: dict[str, str] = {
    CampaignState.IDENTIFYING.value: "Finding consignees",
    CampaignState.NOTIFYING.value: "Sending notices",
    CampaignState.MONITORING.value: "Monitoring",
    CampaignState.CLOSED.value: "Closed",
}
STATE_BADGES: dict[str, str] = {
    CampaignState.IDENTIFYING.value: "warn", CampaignState.NOTIFYING.value: "warn",
    CampaignState.MONITORING.value: "info", CampaignState.CLOSED.value: "ok",
}
CLASSES: dict[str, str] = {
    RecallClass.I.value: "Class I (most severe): notify within 1 day",
    RecallClass.II.value: "Class II: notify within 3 days",
    RecallClass.III.value: "Class III: notify within 7 days",
}
CLASS_SHORT: dict[str, str] = {RecallClass.I.value: "Class I", RecallClass.II.value: "Class II",
                               RecallClass.III.value: "Class III"}
ACTIONS: dict[str, str] = {
    RecallAction.STOP_USE.value: "Stop using the product",
    RecallAction.RETURN.value: "Return it",
    RecallAction.DESTROY.value: "Destroy it",
    RecallAction.AWAIT_CORRECTION.value: "Wait for a correction",
}
LEVELS: dict[str, str] = {
    CheckLevel.A.value: "A: every consignee",
    CheckLevel.B.value: "B: a share between C and A",
    CheckLevel.C.value: "C: 10 % of consignees",
    CheckLevel.D.value: "D: 2 % of consignees",
    CheckLevel.E.value: "E: no effectiveness check",
}
CHANNEL_STATES: dict[str, tuple[str, str]] = {
    "pending": ("waiting", "info"), "sending": ("being sent", "info"),
    "sent": ("sent", "ok"), "failed": ("failed", "bad"),
    "unconfirmed": ("unconfirmed", "warn"), "none": ("no address", "muted"),
}
EVENTS: dict[str, str] = {
    "open": "Campaign opened",
    "consignees_page": "A page of consignees read from the ERP",
    "consignees_identified": "Every consignee found",
    "consignees_unavailable": "The ERP cannot list consignees",
    "stock_quarantined": "Stock on hand quarantined",
    "notices_sent": "Notices sent",
    "all_notified": "Every consignee told",
    "reminders_sent": "Reminders sent",
    "acknowledged": "A consignee acknowledged",
    "recall_case_opened": "Recall case opened",
    "recall_case_by_hand": "Refund to arrange by hand",
    "step_failed": "Step failed",
    "close": "Campaign closed",
    "from_capa": "Escalated from a CAPA record",
}
# The form's fields, in its order, with their labels.
FIELDS: dict[str, str] = {
    "shop": "Shop", "reference": "Reference", "class": "Recall class",
    "notice_date": "Notice date", "sku": "SKU", "gtin": "GTIN", "lots": "Lots",
    "serials": "Serials", "actions": "Required actions", "instructions": "Instructions",
    "check_level": "Effectiveness check", "check_percent": "Share checked (level B)",
    "note": "Effectiveness check result",
}
NOTICES: dict[str, str] = {
    "opened": "Campaign opened. The workers now look for the consignees in the ERP.",
    "exists": "A campaign for this reference is already open: here it is.",
    "closed": "Campaign closed.",
}
# The series of the chart, in its order.
SERIES: tuple[str, ...] = ("Consignees identified", "Notified", "Acknowledged",
                           "Units recovered", "Refunds paid")
# Every text above goes through the page's translation (a test checks each has its zh-CN).
TEXTS: tuple[str, ...] = (
    *STATES.values(), *CLASSES.values(), *CLASS_SHORT.values(), *ACTIONS.values(), *LEVELS.values(),
    *(text for text, _badge in CHANNEL_STATES.values()), *EVENTS.values(), *FIELDS.values(),
    *NOTICES.values(), *SERIES,
)


# ---- reading ------------------------------------------------------------------------------

def _campaign(deps: ApiDeps, user: ConsoleContext, campaign_id: str) -> RecallCampaign:
    """The campaign, if it is one of the operator's shops' (else 404, as for none)."""
    if not CAMPAIGN_ID.fullmatch(campaign_id):
        raise NotFound(f"no recall campaign {campaign_id[:40]}")
    campaign = deps.campaigns.get(campaign_id)
    user.principal.require_shop(campaign.shop_id, f"recall campaign {campaign_id}")
    return campaign


def notice_obligation(campaign: RecallCampaign, counts: CampaignCounts, today: date
                      ) -> tuple[str, str]:
    """(css class, English label) of the notice deadline: met once everyone is told (on
    time or late), else overdue after the due day while anyone is still untold."""
    due = campaign.notice.notice_due
    told = campaign.all_notified_at
    if told is not None:
        return ("ok", "Met") if told.date() <= due else ("breached", "Everyone told, late")
    if campaign.state is CampaignState.CLOSED or (
            counts.consignees and counts.notified >= counts.consignees
            and campaign.state is not CampaignState.IDENTIFYING):
        return ("ok", "Met")
    if today > due:
        return ("breached", "Overdue")
    if due <= today + timedelta(days=AT_RISK_DAYS):
        return ("at-risk", "Due soon")
    return ("ok", "On time")


def _percent(part: int, whole: int) -> Decimal | None:
    if not whole:
        return None
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"))


def effectiveness(campaign: RecallCampaign, counts: CampaignCounts) -> dict[str, Any]:
    """The check's level, its target share of consignees and where the acknowledgements
    stand against it."""
    target = campaign.notice.check_percent or 0
    share = _percent(counts.acknowledged, counts.consignees)
    if campaign.notice.check_level is CheckLevel.E:
        verdict, badge = "No check required at level E", "muted"
    elif share is not None and share >= target:
        verdict, badge = "Target reached", "ok"
    else:
        verdict, badge = "Below the target", "warn"
    return {"level": campaign.notice.check_level.value, "target": target,
            "share": "—" if share is None else f"{share} %", "verdict": verdict,
            "badge": badge, "acknowledged": counts.acknowledged,
            "consignees": counts.consignees}


def _money(refunded: Mapping[str, str], locale: str) -> str:
    if not refunded:
        return "—"
    return ", ".join(money_text(Money.parse(amount, currency), locale)
                     for currency, amount in refunded.items())


def _scope_text(values: Sequence[str], most: int = 3) -> str:
    shown = ", ".join(values[:most])
    return shown + (f" (+{len(values) - most})" if len(values) > most else "")


def _row(campaign: RecallCampaign, counts: CampaignCounts, today: date) -> dict[str, Any]:
    badge, badge_label = notice_obligation(campaign, counts, today)
    notice = campaign.notice
    return {"id": campaign.id, "shop": campaign.shop_id, "reference": notice.reference,
            "class": notice.recall_class.value, "sku": notice.sku or "",
            "gtin": notice.gtin or "", "lots": _scope_text(notice.lots),
            "serials": _scope_text(notice.serials), "state": campaign.state.value,
            "due": notice.notice_due.isoformat(), "due_class": badge,
            "due_label": badge_label, "counts": counts,
            "opened": campaign.opened_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M")}


def _list(deps: ApiDeps, user: ConsoleContext, today: date) -> list[dict[str, Any]]:
    shops = user.principal.visible(deps.shop_ids)
    # One count per campaign: a shop runs a handful of campaigns a year, not thousands.
    return [_row(c, deps.campaigns.counts(c.id), today)
            for c in deps.campaigns.for_shops(shops)]


@router.get("/recalls")
async def recalls_list(request: Request, user: ConsoleUser, deps: AppDeps,
                       done: Annotated[str, Query(max_length=16)] = "") -> Response:
    user.principal.require(Permission.READ)
    today = datetime.now(UTC).date()
    rows = await run_in_threadpool(_list, deps, user, today)
    return render(request, "recalls.html", user, rows=rows, states=STATES, classes=CLASS_SHORT,
                  state_badges=STATE_BADGES, can_open=user.may(Permission.RECALL),
                  notice=NOTICES.get(done, ""))


# ---- one campaign -------------------------------------------------------------------------

def _who(actor: str) -> tuple[str, str]:
    kind, _, name = actor.partition(":")
    return (name, kind) if name else (actor, actor)


def _facts(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """An event's plain facts (its nested ones, the notice and the totals, are on the page
    already)."""
    facts = []
    for key, value in data.items():
        if isinstance(value, (dict, list)) or value is None or value == "":
            continue
        text = ("yes" if value else "no") if isinstance(value, bool) else str(value)
        facts.append((key, text))
    return facts


def trail(events: Iterable[AuditEvent]) -> list[dict[str, Any]]:
    rows = []
    for e in events:
        display, kind = _who(e.actor)
        rows.append({"seq": e.seq, "at": e.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                     "iso": e.at.isoformat(), "name": e.name,
                     "title": EVENTS.get(e.name, e.name.replace("_", " ").capitalize()),
                     "who": display, "who_kind": kind, "from_state": e.from_state,
                     "to_state": e.to_state, "facts": _facts(e.data),
                     "prev_hash": e.prev_hash, "hash": e.hash})
    return rows


def consignee_row(record: ConsigneeRecord) -> dict[str, Any]:
    ack = record.acknowledgement
    return {
        "id": record.id, "key": record.key, "name": record.name, "email": record.email,
        "phone": record.phone,
        "units": [{"sku": u.sku, "quantity": u.quantity, "lot": u.lot, "serial": u.serial,
                   "document": u.document, "order_id": u.order_id} for u in record.units],
        "quantity": record.quantity,
        "email_state": CHANNEL_STATES.get(record.email_state.value,
                                          (record.email_state.value, "info")),
        "sms_state": CHANNEL_STATES.get(record.sms_state.value,
                                        (record.sms_state.value, "info")),
        "delivery": record.delivery, "last_error": record.last_error,
        "notified_at": _minute(record.notified_at), "reminders": record.reminders,
        "next_reminder_at": _minute(record.next_reminder_at),
        "acknowledged_at": _minute(record.acknowledged_at),
        "ack": None if ack is None else {
            "stopped_use": ack.stopped_use, "quantity_held": ack.quantity_held,
            "wants_return": ack.wants_return, "passed_on": ack.passed_on, "note": ack.note},
        "case_id": record.case_id, "case_problem": record.case_problem,
    }


def _minute(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if at else ""


@dataclass
class CampaignView:
    campaign: RecallCampaign
    counts: CampaignCounts
    events: list[AuditEvent]
    consignees: list[ConsigneeRecord]
    more: bool


def _view(deps: ApiDeps, user: ConsoleContext, campaign_id: str, after: int) -> CampaignView:
    campaign = _campaign(deps, user, campaign_id)
    repo = deps.campaigns
    page = repo.consignees(campaign.id, after=after, limit=PAGE_SIZE + 1)
    return CampaignView(campaign, repo.counts(campaign.id), repo.events(campaign.id),
                        page[:PAGE_SIZE], len(page) > PAGE_SIZE)


def _after(value: str) -> int:
    return int(value) if value.isdigit() and len(value) <= 18 else 0


def _campaign_page(request: Request, user: ConsoleContext, view: CampaignView, *,
                   after: int = 0, notice: str = "", error: str = "", note: str = "",
                   status: int = 200) -> Response:
    campaign, counts = view.campaign, view.counts
    today = datetime.now(UTC).date()
    badge, badge_label = notice_obligation(campaign, counts, today)
    check = verify_chain(view.events)
    base = f"{HOME}/{campaign.id}"
    next_url = (f"{base}?after={view.consignees[-1].id}#consignees"
                if view.more and view.consignees else None)
    return render(
        request, "recall.html", user, status=status, campaign=campaign,
        recall_notice=campaign.notice, counts=counts, states=STATES, state_badges=STATE_BADGES,
        classes=CLASSES, actions=ACTIONS, levels=LEVELS,
        due=campaign.notice.notice_due.isoformat(), due_class=badge, due_label=badge_label,
        check=effectiveness(campaign, counts), refunded=_money(counts.refunded, user.locale),
        consignees=[consignee_row(r) for r in view.consignees], next_url=next_url,
        first_url=f"{base}#consignees" if after else None, trail=trail(view.events),
        chain=check, head=view.events[-1].hash if view.events else "",
        chart=f"{base}/chart.svg", minute=_minute,
        can_close=user.may(Permission.RECALL)
        and campaign.state is CampaignState.MONITORING,
        notice=NOTICES.get(notice, ""), error=error, note=note, note_max=NOTE_MAX)


@router.get("/recalls/new")
async def new_campaign_form(request: Request, user: ConsoleUser, deps: AppDeps) -> Response:
    user.principal.require(Permission.RECALL)
    shops = user.principal.visible(deps.shop_ids)
    values: dict[str, Any] = {
        "shop": shops[0] if len(shops) == 1 else "", "reference": "", "class": "",
        "notice_date": datetime.now(UTC).date().isoformat(), "sku": "", "gtin": "",
        "lots": "", "serials": "", "actions": [RecallAction.STOP_USE.value,
                                               RecallAction.RETURN.value],
        "instructions": "", "check_level": CheckLevel.A.value, "check_percent": ""}
    return _form_page(request, user, deps, values, [])


@router.get("/recalls/{campaign_id}")
async def campaign_page(campaign_id: str, request: Request, user: ConsoleUser, deps: AppDeps,
                        after: Annotated[str, Query(max_length=20)] = "",
                        done: Annotated[str, Query(max_length=16)] = "") -> Response:
    user.principal.require(Permission.READ)
    start = _after(after)
    view = await run_in_threadpool(_view, deps, user, campaign_id, start)
    return _campaign_page(request, user, view, after=start, notice=done)


@router.post("/recalls/{campaign_id}/close")
async def close(campaign_id: str, request: Request, user: ConsoleWriter,
                deps: AppDeps) -> Response:
    campaign = await run_in_threadpool(_campaign, deps, user, campaign_id)
    user.principal.require(Permission.RECALL)
    form = await request.form()
    raw = form.get("note")
    note = raw if isinstance(raw, str) else ""
    error = ""
    if not note.strip():
        error = "Write the effectiveness check's result: it closes the campaign."
    elif len(note) > NOTE_MAX:
        error = "The note is longer than 2000 characters."
    elif _CONTROL.search(note):
        error = "The note contains control characters."
    if error:
        view = await run_in_threadpool(_view, deps, user, campaign.id, 0)
        return _campaign_page(request, user, view, error=error,
                              note=_CONTROL.sub("", note[:NOTE_MAX]), status=422)
    await run_in_threadpool(close_campaign, deps.api_services, campaign.id,
                            user.principal.actor, note)
    return redirect(f"{HOME}/{campaign.id}?done=closed")


# ---- the chart ----------------------------------------------------------------------------

def _cumulative(times: Iterable[tuple[datetime, int]], start: datetime, end: datetime
                ) -> list[tuple[datetime, int]]:
    """Steps: the count holds until the moment it changes, then jumps."""
    points = [(start, 0)]
    total = 0
    for at, added in sorted(times):
        at = max(at, start)
        points.append((at, total))
        total += added
        points.append((at, total))
    points.append((max(end, points[-1][0]), total))
    return points


def draw(campaign: RecallCampaign, events: Sequence[AuditEvent],
         progress: Mapping[str, Sequence[datetime]],
         recovery: Mapping[str, Sequence[tuple[datetime, int]]], locale: str,
         now: datetime) -> str:
    _ = translator(locale)
    start = campaign.opened_at
    end = max(campaign.closed_at or now, start + timedelta(minutes=1))
    identified = [(e.at, int(e.data.get("new_consignees", 0))) for e in events
                  if e.name == "consignees_page"]
    series = {
        "Consignees identified": identified,
        "Notified": [(at, 1) for at in progress.get("notified", [])],
        "Acknowledged": [(at, 1) for at in progress.get("acknowledged", [])],
        "Units recovered": list(recovery.get("returned", [])),
        "Refunds paid": list(recovery.get("refunded", [])),
    }
    top = max([1, *(sum(n for _at, n in values) for values in series.values())])
    step = max(1, -(-top // 10))
    chart = pygal.DateTimeLine(
        js=[], style=STYLE, title=_("Progress over time"), disable_xml_declaration=True,
        show_legend=True, legend_at_bottom=True, legend_at_bottom_columns=3, width=720,
        height=400, print_values=False, show_dots=False, fill=False, x_label_rotation=30,
        range=(0, top), y_labels=list(range(0, top + step, step)),
        x_value_formatter=lambda at: at.astimezone(UTC).strftime("%m-%d %H:%M"))
    for name in SERIES:
        chart.add(_(name), _cumulative(series[name], start, end))
    return _svg(chart)


def _chart(deps: ApiDeps, user: ConsoleContext, campaign_id: str) -> str:
    campaign = _campaign(deps, user, campaign_id)
    repo = deps.campaigns
    return draw(campaign, repo.events(campaign.id), repo.progress(campaign.id),
                repo.recovery(campaign.id), user.locale, datetime.now(UTC))


@router.get("/recalls/{campaign_id}/chart.svg")
async def campaign_chart(campaign_id: str, user: ConsoleUser, deps: AppDeps) -> Response:
    user.principal.require(Permission.READ)
    svg = await run_in_threadpool(_chart, deps, user, campaign_id)
    return Response(svg, media_type="image/svg+xml",
                    headers={"Content-Security-Policy": CHART_CSP})


# ---- opening ------------------------------------------------------------------------------

@dataclass(frozen=True)
class FieldError:
    field: str  # a key of FIELDS
    message: str  # the core's words (English), or ours
    line: int | None = None  # for lots and serials: the line of the text area


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _problems(exc: InvalidRequest) -> list[FieldError]:
    found = []
    for name, message in exc.errors:
        base, _, rest = name.partition("[")
        line = int(rest.rstrip("]")) + 1 if rest.rstrip("]").isdigit() else None
        found.append(FieldError(base if base in FIELDS else "reference", message, line))
    return found


def read_notice(form: FormData, shops: Sequence[str]
                ) -> tuple[str, RecallNotice | None, list[FieldError], dict[str, Any]]:
    """The form's shop and notice, or every bad field (and no notice); what was typed."""
    values: dict[str, Any] = {name: _text(form, name) for name in FIELDS
                              if name not in {"actions", "note"}}
    values["actions"] = [a for a in form.getlist("actions") if isinstance(a, str)]
    errors: list[FieldError] = []
    for name, value in values.items():
        texts = value if isinstance(value, list) else [value]
        if any(_CONTROL.search(text) for text in texts):
            errors.append(FieldError(name, "contains control characters"))
            values[name] = [_CONTROL.sub("", t) for t in value] if isinstance(value, list) \
                else _CONTROL.sub("", value)
    shop = values["shop"]
    if shop not in shops:
        errors.append(FieldError("shop", "choose one of your shops"))
    try:
        notice_date = date.fromisoformat(values["notice_date"].strip())
    except ValueError:
        errors.append(FieldError("notice_date", "must be a date (YYYY-MM-DD)"))
        notice_date = datetime.now(UTC).date()
    try:
        recall_class = RecallClass(values["class"])
    except ValueError:
        errors.append(FieldError("class", "choose one" if not values["class"]
                                 else "must be I, II or III"))
        recall_class = RecallClass.I
    actions: list[RecallAction] = []
    for action in values["actions"]:
        try:
            actions.append(RecallAction(action))
        except ValueError:
            errors.append(FieldError("actions", "must be one of the choices shown"))
    try:
        level = CheckLevel(values["check_level"])
    except ValueError:
        errors.append(FieldError("check_level", "must be A, B, C, D or E"))
        level = CheckLevel.A
    percent_text = values["check_percent"].strip().rstrip("%").strip()
    percent: int | None = None
    if percent_text:
        if percent_text.isdigit() and len(percent_text) <= 3:
            percent = int(percent_text)
        else:
            errors.append(FieldError("check_percent", "a whole number of percent"))
    if level is not CheckLevel.B:
        percent = None  # only level B takes a share of its own; the others have theirs
    if len(values["gtin"]) > GTIN_MAX:
        errors.append(FieldError("gtin", f"is longer than {GTIN_MAX} characters"))
    notice: RecallNotice | None = None
    try:
        notice = RecallNotice(
            reference=values["reference"], recall_class=recall_class,
            notice_date=notice_date, sku=values["sku"] or None,
            gtin=values["gtin"][:GTIN_MAX] or None, lots=tuple(_lines(values["lots"])),
            serials=tuple(_lines(values["serials"])), actions=tuple(actions),
            instructions=values["instructions"], check_level=level, check_percent=percent)
    except InvalidRequest as exc:
        # One message per field is enough beside it; ours (the form's) come first.
        seen = {(e.field, e.line) for e in errors}
        errors += [e for e in _problems(exc) if (e.field, e.line) not in seen]
    return shop, (None if errors else notice), errors, values


def _form_page(request: Request, user: ConsoleContext, deps: ApiDeps,
               values: Mapping[str, Any], errors: list[FieldError], *, problem: str = "",
               status: int = 200) -> Response:
    by_field: dict[str, list[FieldError]] = {}
    for error in errors:
        by_field.setdefault(error.field, []).append(error)
    return render(request, "recall_new.html", user, status=status, values=values,
                  errors=errors, by_field=by_field, fields=FIELDS, classes=CLASSES,
                  actions=ACTIONS, levels=LEVELS, problem=problem,
                  shops=user.principal.visible(deps.shop_ids),
                  limits={"reference": REFERENCE_MAX, "sku": SKU_MAX, "gtin": GTIN_MAX,
                          "lot": LOT_MAX, "serial": SERIAL_MAX,
                          "instructions": INSTRUCTIONS_MAX})


@router.post("/recalls")
async def open_from_form(request: Request, user: ConsoleWriter, deps: AppDeps) -> Response:
    user.principal.require(Permission.RECALL)
    form = await request.form()
    shops = user.principal.visible(deps.shop_ids)
    shop, notice, errors, values = read_notice(form, shops)
    if notice is None:
        return _form_page(request, user, deps, values, errors, status=422)
    try:
        opened = await run_in_threadpool(open_campaign, deps.api_services, shop, notice,
                                         user.principal.actor)
    except ConfigError as exc:
        # The installation cannot run campaigns (no key for the acknowledgement links):
        # nothing was opened, and what was typed stays for when it can.
        return _form_page(request, user, deps, values, [], problem=str(exc), status=503)
    done = "opened" if opened.created else "exists"
    return redirect(f"{HOME}/{quote(opened.campaign_id, safe='')}?done={done}")
