"""CAPA records `/console/capa`: the list with its KPIs, the form that opens one, and one
record's page with a form per step.

1. `/console/capa`: the records of the operator's shops, filtered by shop and state, newest
   first; above them the KPIs the seed article asks for (open records by age, mean time to
   close, overdue actions, recurrence, response time from the first case).
2. `/console/capa/new` (CAPA permission): the form. The quality signals page and the case
   page link to it with `signal`, `sku`, `lot` and `case` (repeatable) in the query, which
   fill it in; the cases' own products and lots are taken when no lot is typed. A one-time
   key in the form makes a double submit open one record.
3. `/console/capa/{id}`: the problem, cases and lots, root cause, actions, effectiveness
   checks, closure, the recall campaign it escalated into, and its hash-chained trail with
   its check. A quality manager (or admin) sees the form of each step its state allows;
   everyone else reads. A bad field is named beside the form (422, what was typed kept);
   a step its state no longer allows (a colleague was quicker) is the 409 error page.

Another shop's record is a 404, as for one that does not exist.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from starlette.datastructures import FormData

from refundbridge.api.console.web import (
    PREFIX,
    ConsoleContext,
    ConsoleUser,
    ConsoleWriter,
    redirect,
    render,
)
from refundbridge.api.deps import ApiDeps, AppDeps
from refundbridge.api.routes.capa import visible_capa
from refundbridge.core.access import Permission
from refundbridge.core.audit import AuditEvent, verify_chain
from refundbridge.core.campaigns import RecallAction
from refundbridge.core.capa import (
    AGE_BUCKETS,
    CASE_ID_MAX,
    KEY_MAX,
    MAX_CASES,
    OWNER_MAX,
    PROBLEM_MAX,
    REASON_MAX,
    SIGNAL_ID_MAX,
    TEXT_MAX,
    ActionKind,
    CapaKpis,
    CapaOpening,
    CapaRecord,
    CapaRepository,
    CapaState,
    CheckResult,
    LotRef,
    capa_kpis,
    new_opening_key,
)
from refundbridge.core.errors import ConfigError, InvalidRequest, NotFound
from refundbridge.core.recalls import LOT_MAX, REFERENCE_MAX, SKU_MAX, RecallClass
from refundbridge.core.services.capa import capa_repo, change_capa, escalate_capa, open_capa

router = APIRouter(prefix=PREFIX, include_in_schema=False)

HOME = f"{PREFIX}/capa"
LOT_ROWS = 3  # empty product/lot rows the form offers beside the prefilled ones
PREFILL_MAX = 20  # cases (or lots) a link may prefill

# What the pages call the record's codes (English; zh-CN in i18n/capa.json).
STATES: dict[str, str] = {
    CapaState.OPEN.value: "Open",
    CapaState.INVESTIGATING.value: "Investigating",
    CapaState.ACTIONS_PLANNED.value: "Actions under way",
    CapaState.ACTIONS_DONE.value: "Actions done",
    CapaState.EFFECTIVENESS_CHECK.value: "Effectiveness check",
    CapaState.EFFECTIVE.value: "Effective",
    CapaState.CLOSED.value: "Closed",
    CapaState.CANCELLED.value: "Cancelled",
}
STATE_BADGES: dict[str, str] = {
    "open": "warn", "investigating": "warn", "actions_planned": "info",
    "actions_done": "info", "effectiveness_check": "info", "effective": "ok",
    "closed": "ok", "cancelled": "muted",
}
KINDS: dict[str, str] = {ActionKind.CORRECTIVE.value: "Corrective",
                         ActionKind.PREVENTIVE.value: "Preventive"}
RESULTS: dict[str, str] = {CheckResult.EFFECTIVE.value: "Effective",
                           CheckResult.NOT_EFFECTIVE.value: "Not effective: reopen the actions"}
CLASSES: dict[str, str] = {
    RecallClass.I.value: "Class I (most severe): notify within 1 day",
    RecallClass.II.value: "Class II: notify within 3 days",
    RecallClass.III.value: "Class III: notify within 7 days",
}
RECALL_ACTIONS: dict[str, str] = {
    RecallAction.STOP_USE.value: "Stop using the product",
    RecallAction.RETURN.value: "Return it",
    RecallAction.DESTROY.value: "Destroy it",
    RecallAction.AWAIT_CORRECTION.value: "Wait for a correction",
}
EVENTS: dict[str, str] = {
    "open": "CAPA opened",
    "start_investigation": "Investigation started",
    "record_root_cause": "Root cause recorded",
    "add_action": "Action added",
    "complete_action": "Action completed",
    "actions_done": "Every action done",
    "plan_effectiveness_check": "Effectiveness check planned",
    "check_effective": "Effectiveness check: effective",
    "check_not_effective": "Effectiveness check: not effective",
    "close": "CAPA closed",
    "cancel": "CAPA cancelled",
    "escalate": "Escalation to a recall campaign",
    "campaign_opened": "Recall campaign opened",
}
AGES: dict[str, str] = {name: name for name, _most in AGE_BUCKETS}
# Every field a form may name, with its label.
FIELDS: dict[str, str] = {
    "shop": "Shop", "problem": "Problem statement", "cases": "Linked cases",
    "lots": "Products and lots", "signal": "Quality signal", "note": "Note",
    "root_cause": "Root cause", "kind": "Kind", "description": "Action",
    "owner": "Owner", "due": "Due date", "action": "Action", "measure": "What is measured",
    "result": "Result", "reason": "Reason for cancelling", "reference": "Recall reference",
    "class": "Recall class", "actions": "Required actions", "sku": "Product",
    "request_id": "Form", "notice_date": "Notice date",
}
NOTICES: dict[str, str] = {
    "opened": "CAPA opened.",
    "exists": "This CAPA was opened already: here it is.",
    "saved": "Saved; it is in the audit trail.",
    "escalated": "The recall campaign is open; the workers now find the consignees.",
    "linked": "This CAPA escalated already: its campaign is below.",
}
# Every text above goes through the page's translation (a test checks each has its zh-CN).
TEXTS: tuple[str, ...] = (
    *STATES.values(), *KINDS.values(), *RESULTS.values(), *CLASSES.values(),
    *RECALL_ACTIONS.values(), *EVENTS.values(), *AGES.values(), *FIELDS.values(),
    *NOTICES.values())


def _repo(deps: ApiDeps) -> CapaRepository:
    return capa_repo(deps.api_services)


def _minute(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if at else ""


def _who(actor: str | None) -> str:
    if not actor:
        return ""
    _kind, _, name = actor.partition(":")
    return name or actor


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


# ---- the list ---------------------------------------------------------------------------

def _state_filter(value: str) -> CapaState | None:
    try:
        return CapaState(value)
    except ValueError:
        return None


@dataclass
class ListView:
    records: list[CapaRecord]
    kpis: CapaKpis
    shops: list[str]


def _list(deps: ApiDeps, user: ConsoleContext, shop: str, state: CapaState | None,
          ) -> ListView:
    shops = user.principal.visible(deps.shop_ids)
    chosen = [shop] if shop in shops else shops
    repo = _repo(deps)
    records = repo.for_shops(chosen, limit=100_000)
    kpis = capa_kpis(records, repo.first_case_at([r.id for r in records]),
                     repo.signals_by_sku(chosen), datetime.now(UTC))
    shown = [r for r in records if state is None or r.state is state][:500]
    return ListView(shown, kpis, shops)


@router.get("/capa")
async def capa_list(request: Request, user: ConsoleUser, deps: AppDeps,
                    shop: Annotated[str, Query(max_length=64)] = "",
                    state: Annotated[str, Query(max_length=32)] = "") -> Response:
    user.principal.require(Permission.READ)
    chosen_state = _state_filter(state)
    view = await run_in_threadpool(_list, deps, user, shop, chosen_state)
    today = datetime.now(UTC).date()
    rows = [{"id": r.id, "shop": r.shop_id, "problem": r.problem, "state": r.state.value,
             "lots": ", ".join(f"{x.sku} {x.lot}".strip() for x in r.lots[:3])
             + (f" (+{len(r.lots) - 3})" if len(r.lots) > 3 else ""),
             "cases": len(r.cases), "opened": _minute(r.opened_at),
             "actions_done": sum(a.is_done for a in r.actions), "actions": len(r.actions),
             "overdue": len(r.overdue_actions(today)), "campaign_id": r.campaign_id}
            for r in view.records]
    return render(request, "capas.html", user, rows=rows, kpis=view.kpis, ages=AGES,
                  states=STATES, state_badges=STATE_BADGES, shops=view.shops,
                  shop=shop if shop in view.shops else "",
                  state=chosen_state.value if chosen_state else "",
                  can_open=user.may(Permission.CAPA))


# ---- opening ----------------------------------------------------------------------------

@dataclass(frozen=True)
class FieldError:
    field: str  # a key of FIELDS
    message: str


def _problems(exc: InvalidRequest) -> list[FieldError]:
    found = []
    for name, message in exc.errors:
        base = name.split("[")[0].split(".")[0]
        where = name[len(base):]
        found.append(FieldError(base if base in FIELDS else "problem",
                                f"{where.strip('.')}: {message}" if where else message))
    return found


def _form_values(shop: str, problem: str, cases: Sequence[str], lots: Sequence[LotRef],
                 signal: str, key: str) -> dict[str, Any]:
    rows = [{"sku": x.sku, "lot": x.lot} for x in lots]
    rows += [{"sku": "", "lot": ""} for _ in range(LOT_ROWS)]
    return {"shop": shop, "problem": problem, "cases": "\n".join(cases), "lots": rows,
            "signal": signal, "key": key}


def _new_page(request: Request, user: ConsoleContext, deps: ApiDeps, values: Mapping[str, Any],
              errors: list[FieldError], *, status: int = 200, problem: str = "") -> Response:
    by_field: dict[str, list[FieldError]] = {}
    for error in errors:
        by_field.setdefault(error.field, []).append(error)
    return render(request, "capa_new.html", user, status=status, values=values, errors=errors,
                  by_field=by_field, fields=FIELDS, shops=user.principal.visible(deps.shop_ids),
                  problem=problem,
                  limits={"problem": PROBLEM_MAX, "sku": SKU_MAX, "lot": LOT_MAX,
                          "signal": SIGNAL_ID_MAX})


@router.get("/capa/new")
async def new_capa_form(request: Request, user: ConsoleUser, deps: AppDeps,
                        signal: Annotated[str, Query(max_length=SIGNAL_ID_MAX)] = "",
                        sku: Annotated[str, Query(max_length=SKU_MAX)] = "",
                        lot: Annotated[str, Query(max_length=LOT_MAX)] = "",
                        case: Annotated[list[str] | None,
                                        Query(max_length=PREFILL_MAX)] = None,
                        shop: Annotated[str, Query(max_length=64)] = "") -> Response:
    """The form, filled in from the link that led here (a signal, a case)."""
    user.principal.require(Permission.CAPA)
    shops = user.principal.visible(deps.shop_ids)
    cases = [c.strip() for c in (case or []) if c.strip() and len(c) <= CASE_ID_MAX]
    chosen = shop if shop in shops else (shops[0] if len(shops) == 1 else "")
    if not chosen and cases:
        # The case names its shop: the operator need not choose it again.
        found = await run_in_threadpool(deps.reads.case_shop, cases[0])
        chosen = found if found in shops else ""
    lots = [LotRef(sku.strip(), lot.strip())] if sku.strip() else []
    values = _form_values(chosen, "", cases, lots, signal.strip(), new_opening_key())
    return _new_page(request, user, deps, values, [])


def read_opening(form: FormData, shops: Sequence[str]
                 ) -> tuple[str, CapaOpening | None, str, list[FieldError], dict[str, Any]]:
    """The form's shop, opening and key, or every bad field; what was typed."""
    errors: list[FieldError] = []
    shop = _text(form, "shop")
    if shop not in shops:
        errors.append(FieldError("shop", "choose one of your shops"))
    cases = [line.strip() for line in _text(form, "cases").splitlines() if line.strip()]
    if len(cases) > MAX_CASES:
        errors.append(FieldError("cases", f"names more than {MAX_CASES} cases"))
    skus = [s for s in form.getlist("lot_sku") if isinstance(s, str)]
    lot_values = [s for s in form.getlist("lot_lot") if isinstance(s, str)]
    lots = []
    for index, sku in enumerate(skus[:200]):
        lot = lot_values[index] if index < len(lot_values) else ""
        if sku.strip() or lot.strip():
            lots.append(LotRef(sku, lot))
    signal = _text(form, "signal").strip()
    key = _text(form, "key").strip()
    if not key or len(key) > KEY_MAX:
        key = new_opening_key()
    values = _form_values(shop, _text(form, "problem"), cases, lots, signal, key)
    opening = CapaOpening(problem=_text(form, "problem"), cases=tuple(cases), lots=tuple(lots),
                          signal_id=signal or None)
    try:
        opening = opening.checked()
    except InvalidRequest as exc:
        errors += _problems(exc)
    return shop, (None if errors else opening), key, errors, values


@router.post("/capa")
async def open_from_form(request: Request, user: ConsoleWriter, deps: AppDeps) -> Response:
    user.principal.require(Permission.CAPA)
    form = await request.form()
    shops = user.principal.visible(deps.shop_ids)
    shop, opening, key, errors, values = read_opening(form, shops)
    if opening is None:
        return _new_page(request, user, deps, values, errors, status=422)
    try:
        opened = await run_in_threadpool(open_capa, deps.api_services, shop, opening,
                                         user.principal.actor, key)
    except InvalidRequest as exc:
        return _new_page(request, user, deps, values, _problems(exc), status=422)
    done = "opened" if opened.created else "exists"
    return redirect(f"{HOME}/{quote(opened.capa_id, safe='')}?done={done}")


# ---- one record -------------------------------------------------------------------------

# Said by the event itself (its time and actor): not repeated among its facts.
_SAID = frozenset({"requested_at", "requested_by"})


def _facts(data: Mapping[str, Any]) -> list[tuple[str, str]]:
    facts = []
    for key, value in data.items():
        if value is None or value == "" or value == [] or key in _SAID:
            continue
        if isinstance(value, list):
            text = ", ".join(" ".join(str(v) for v in item.values()).strip()
                             if isinstance(item, dict) else str(item) for item in value)
        elif isinstance(value, dict):
            continue
        elif isinstance(value, bool):
            text = "yes" if value else "no"
        else:
            text = str(value)
        facts.append((key, text))
    return facts


def trail(events: Iterable[AuditEvent]) -> list[dict[str, Any]]:
    return [{"seq": e.seq, "at": e.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
             "iso": e.at.isoformat(), "name": e.name,
             "title": EVENTS.get(e.name, e.name.replace("_", " ").capitalize()),
             "who": _who(e.actor), "who_kind": e.actor.partition(":")[0],
             "from_state": e.from_state, "to_state": e.to_state, "facts": _facts(e.data),
             "hash": e.hash} for e in events]


@dataclass
class RecordView:
    record: CapaRecord
    events: list[AuditEvent]


def _view(deps: ApiDeps, user: ConsoleContext, capa_id: str) -> RecordView:
    repo = _repo(deps)
    record = visible_capa(repo, user.principal, capa_id)
    return RecordView(record, repo.events(record.id))


def _record_page(request: Request, user: ConsoleContext, view: RecordView, *,
                 notice: str = "", errors: Sequence[FieldError] = (), form_name: str = "",
                 typed: Mapping[str, Any] | None = None, status: int = 200) -> Response:
    record = view.record
    check = verify_chain(view.events)
    today = datetime.now(UTC).date()
    steps = set(record.next_steps()) if user.may(Permission.CAPA) else set()
    if not user.may(Permission.RECALL):
        steps.discard("escalate")
    return render(
        request, "capa.html", user, status=status, record=record, states=STATES,
        state_badges=STATE_BADGES, kinds=KINDS, results=RESULTS, classes=CLASSES,
        recall_actions=RECALL_ACTIONS, fields=FIELDS, steps=steps, today=today,
        trail=trail(view.events), chain=check,
        head=view.events[-1].hash if view.events else "", minute=_minute, who=_who,
        notice=NOTICES.get(notice, ""), errors=list(errors), form_name=form_name,
        typed=dict(typed or {}), today_iso=today.isoformat(),
        limits={"text": TEXT_MAX, "owner": OWNER_MAX, "reason": REASON_MAX,
                "reference": REFERENCE_MAX, "sku": SKU_MAX})


@router.get("/capa/{capa_id}")
async def capa_page(capa_id: str, request: Request, user: ConsoleUser, deps: AppDeps,
                    done: Annotated[str, Query(max_length=16)] = "") -> Response:
    user.principal.require(Permission.READ)
    view = await run_in_threadpool(_view, deps, user, capa_id[:64])
    return _record_page(request, user, view, notice=done)


def _due(text: str) -> date | str:
    """A form's date, or the text as typed (the core names it: "must be a date")."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return text


Change = Callable[[CapaRecord, str, datetime], object]


def _change_for(step: str, form: FormData, number: int | None) -> Change | None:
    note = _text(form, "note")
    match step:
        case "investigation":
            return lambda r, actor, at: r.start_investigation(actor, at, note)
        case "root-cause":
            return lambda r, actor, at: r.record_root_cause(_text(form, "root_cause"), actor,
                                                            at)
        case "actions":
            return lambda r, actor, at: r.add_action(
                _text(form, "kind"), _text(form, "description"), _text(form, "owner"),
                _due(_text(form, "due")), actor, at)
        case "complete" if number is not None:
            return lambda r, actor, at: r.complete_action(number, actor, at, note)
        case "effectiveness-check":
            return lambda r, actor, at: r.plan_effectiveness_check(
                _text(form, "measure"), _due(_text(form, "due")), actor, at)
        case "effectiveness-result":
            return lambda r, actor, at: r.record_effectiveness(_text(form, "result"), note,
                                                               actor, at)
        case "close":
            return lambda r, actor, at: r.close(note, actor, at)
        case "cancel":
            return lambda r, actor, at: r.cancel(_text(form, "reason"), actor, at)
    return None


async def _apply(request: Request, user: ConsoleContext, deps: ApiDeps, capa_id: str,
                 step: str, number: int | None = None) -> Response:
    user.principal.require(Permission.CAPA)
    view = await run_in_threadpool(_view, deps, user, capa_id[:64])
    form = await request.form()
    change = _change_for(step, form, number)
    if change is None:
        raise NotFound(f"no step {step[:40]}")
    svc = deps.api_services
    try:
        await run_in_threadpool(lambda: change_capa(
            svc, view.record.id, lambda r: change(r, user.principal.actor, svc.clock())))
    except InvalidRequest as exc:
        fresh = await run_in_threadpool(_view, deps, user, view.record.id)
        typed = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
        return _record_page(request, user, fresh, errors=_problems(exc),
                            form_name=f"{step}-{number}" if number else step, typed=typed,
                            status=422)
    return redirect(f"{HOME}/{view.record.id}?done=saved")


@router.post("/capa/{capa_id}/actions/{number}/complete")
async def complete_step(capa_id: str, number: int, request: Request, user: ConsoleWriter,
                        deps: AppDeps) -> Response:
    return await _apply(request, user, deps, capa_id, "complete", number)


@router.post("/capa/{capa_id}/escalate")
async def escalate_step(capa_id: str, request: Request, user: ConsoleWriter,
                        deps: AppDeps) -> Response:
    user.principal.require(Permission.CAPA)
    user.principal.require(Permission.RECALL)
    view = await run_in_threadpool(_view, deps, user, capa_id[:64])
    form = await request.form()
    actions = [a for a in form.getlist("actions") if isinstance(a, str)]
    svc = deps.api_services
    problem = ""
    try:
        escalated = await run_in_threadpool(lambda: escalate_capa(
            svc, view.record.id, reference=_text(form, "reference"),
            recall_class=_text(form, "class"), actions=actions,
            actor=user.principal.actor, sku=_text(form, "sku") or None))
    except InvalidRequest as exc:
        errors = _problems(exc)
    except ConfigError as exc:
        errors, problem = [FieldError("reference", str(exc))], str(exc)
    else:
        done = "escalated" if escalated.created else "linked"
        return redirect(f"{HOME}/{view.record.id}?done={done}")
    fresh = await run_in_threadpool(_view, deps, user, view.record.id)
    typed: dict[str, Any] = {k: v for k, v in form.items()
                             if isinstance(v, str) and k != "csrf_token"}
    typed["actions"] = actions
    return _record_page(request, user, fresh, errors=errors, form_name="escalate",
                        typed=typed, status=503 if problem else 422)


@router.post("/capa/{capa_id}/{step}")
async def step_form(capa_id: str, step: str, request: Request, user: ConsoleWriter,
                    deps: AppDeps) -> Response:
    return await _apply(request, user, deps, capa_id, step[:40])


# ---- the case page's link ---------------------------------------------------------------

def case_capas(deps: ApiDeps, case_id: str) -> list[dict[str, Any]]:
    """The CAPA records naming a case, for its page."""
    return [{"id": r.id, "problem": r.problem, "state": r.state.value,
             "state_label": STATES.get(r.state.value, r.state.value),
             "badge": STATE_BADGES.get(r.state.value, "info")}
            for r in _repo(deps).for_case(case_id)]
