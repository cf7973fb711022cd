"""The operator API for CAPA records: open one from cases or a quality signal, read and list
them, take one through its steps (one endpoint each), escalate it into a recall campaign.

Everyone with a token reads; only a role with the CAPA permission (quality, admin) changes a
record, and escalating needs the RECALL permission too. Another shop's record is a 404, as
for one that does not exist; a step the record's state does not allow is a 409.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from fastapi import APIRouter, Path, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from refundbridge.api.deps import AppDeps, Operator
from refundbridge.core.access import Permission, Principal
from refundbridge.core.audit import verify_chain
from refundbridge.core.campaigns import RecallAction
from refundbridge.core.capa import (
    CAPA_ID,
    CASE_ID_MAX,
    KEY_MAX,
    MAX_ACTIONS,
    MAX_CASES,
    MAX_LOTS,
    OWNER_MAX,
    PROBLEM_MAX,
    REASON_MAX,
    SIGNAL_ID_MAX,
    TEXT_MAX,
    ActionKind,
    CapaAction,
    CapaOpening,
    CapaRecord,
    CapaRepository,
    CapaState,
    CheckResult,
    EffectivenessCheck,
    LotRef,
    capa_kpis,
)
from refundbridge.core.errors import InvalidRequest, NotFound
from refundbridge.core.recalls import LOT_MAX, REFERENCE_MAX, SKU_MAX, RecallClass
from refundbridge.core.request import Line, Text
from refundbridge.core.services import Services
from refundbridge.core.services.capa import capa_repo, change_capa, escalate_capa, open_capa

router = APIRouter(prefix="/v1", tags=["CAPA records"])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class LotIn(_Strict):
    sku: Line = Field(min_length=1, max_length=SKU_MAX)
    lot: Line = Field(default="", max_length=LOT_MAX, description="Empty: every lot")


class CapaIn(_Strict):
    """A CAPA record to open: from cases, from a quality signal, or both. Without `lots`
    the cases' and the signal's products and lots are taken."""

    shop: Line = Field(max_length=64)
    problem: Text = Field(min_length=1, max_length=PROBLEM_MAX,
                          examples=["Three meters of lot L2401 read 20 % high"])
    cases: list[Line] = Field(default_factory=list, max_length=MAX_CASES)
    lots: list[LotIn] = Field(default_factory=list, max_length=MAX_LOTS)
    signal: Line | None = Field(default=None, max_length=SIGNAL_ID_MAX,
                                description="The quality signal's id: one CAPA per signal")
    request_id: Line | None = Field(
        default=None, min_length=1, max_length=KEY_MAX,
        description="Sent again with the same request, it answers the same record")


class NoteIn(_Strict):
    note: Text = Field(default="", max_length=TEXT_MAX)


class RootCauseIn(_Strict):
    root_cause: Text = Field(min_length=1, max_length=TEXT_MAX)


class ActionIn(_Strict):
    kind: ActionKind
    description: Text = Field(min_length=1, max_length=TEXT_MAX)
    owner: Line = Field(min_length=1, max_length=OWNER_MAX)
    due: date


class CheckIn(_Strict):
    measure: Text = Field(min_length=1, max_length=TEXT_MAX,
                          description="What will be measured to see the actions worked")
    due: date


class ResultIn(_Strict):
    result: CheckResult
    note: Text = Field(min_length=1, max_length=TEXT_MAX)


class CloseIn(_Strict):
    note: Text = Field(min_length=1, max_length=TEXT_MAX)


class CancelIn(_Strict):
    reason: Text = Field(min_length=1, max_length=REASON_MAX)


class EscalateIn(_Strict):
    """Only what the CAPA does not know: the product and lots are the CAPA's."""

    reference: Line = Field(min_length=1, max_length=REFERENCE_MAX)
    recall_class: RecallClass = Field(alias="class")
    actions: list[RecallAction] = Field(min_length=1, max_length=len(RecallAction))
    sku: Line | None = Field(default=None, max_length=SKU_MAX,
                             description="Which of the CAPA's products, when it names several")
    notice_date: date | None = None


CapaIdPath = Path(max_length=64)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def action_json(a: CapaAction, today: date) -> dict[str, Any]:
    return {**a.as_json(), "overdue": a.overdue(today)}


def check_json(c: EffectivenessCheck) -> dict[str, Any]:
    return c.as_json()


def capa_json(r: CapaRecord) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    return {
        "id": r.id, "shop": r.shop_id, "state": r.state.value, "problem": r.problem,
        "cases": list(r.cases), "lots": [ref.as_json() for ref in r.lots],
        "signal": r.signal_id, "opened_at": r.opened_at.isoformat(),
        "opened_by": r.opened_by, "investigator": r.investigator,
        "investigation_started_at": _iso(r.investigation_started_at),
        "root_cause": r.root_cause or None, "root_cause_at": _iso(r.root_cause_at),
        "root_cause_by": r.root_cause_by,
        "actions": [action_json(a, today) for a in r.actions],
        "effectiveness_checks": [check_json(c) for c in r.checks],
        "closed_at": _iso(r.closed_at), "closed_by": r.closed_by,
        "closure_note": r.closure_note or None, "cancelled_at": _iso(r.cancelled_at),
        "cancelled_by": r.cancelled_by, "cancel_reason": r.cancel_reason or None,
        "campaign_id": r.campaign_id,
        "escalation": r.escalation.as_json() if r.escalation else None,
        "next_steps": r.next_steps(), "updated_at": _iso(r.updated_at),
    }


def visible_capa(repo: CapaRepository, principal: Principal, capa_id: str) -> CapaRecord:
    """The record, if it is one of the caller's shops' (else 404, as for none)."""
    if not CAPA_ID.fullmatch(capa_id):
        raise NotFound(f"no CAPA record {capa_id[:64]}")
    try:
        record = repo.get(capa_id)
    except NotFound:
        raise NotFound(f"no CAPA record {capa_id}") from None
    principal.require_shop(record.shop_id, f"CAPA record {capa_id}")
    return record


def _trail(repo: CapaRepository, capa_id: str) -> dict[str, Any]:
    events = repo.events(capa_id)
    check = verify_chain(events)
    return {"events": len(events), "verifies": check.verifies,
            "first_broken_seq": check.first_broken_seq,
            "head": events[-1].hash if events else None,
            "trail": [e.as_json() for e in events]}


async def _step(deps: AppDeps, operator: Operator, capa_id: str,
                change: Callable[[CapaRecord, str, datetime], object]) -> dict[str, Any]:
    """One step by the caller: the CAPA permission, the record in their shops, the change
    under the version check."""
    operator.require(Permission.CAPA)
    svc: Services = deps.api_services
    repo = capa_repo(svc)
    await run_in_threadpool(visible_capa, repo, operator, capa_id)

    def apply() -> CapaRecord:
        record, _ = change_capa(svc, capa_id,
                                lambda r: change(r, operator.actor, svc.clock()))
        return record

    return capa_json(await run_in_threadpool(apply))


@router.post("/capa-records", status_code=201)
async def open_capa_record(body: CapaIn, deps: AppDeps, operator: Operator
                           ) -> dict[str, Any]:
    """Open a CAPA record. From a signal, a second open answers the same record (`created`
    false); otherwise send `request_id` to make a retry safe."""
    operator.require_shop(body.shop, f"shop '{body.shop}'")
    operator.require(Permission.CAPA)
    deps.shop_policy(body.shop)
    for index, case_id in enumerate(body.cases):
        if len(case_id) > CASE_ID_MAX:
            raise InvalidRequest(f"cases.{index}", f"is longer than {CASE_ID_MAX} characters")
    opening = CapaOpening(problem=body.problem, cases=tuple(body.cases),
                          lots=tuple(LotRef(x.sku, x.lot) for x in body.lots),
                          signal_id=body.signal)
    svc = deps.api_services
    opened = await run_in_threadpool(open_capa, svc, body.shop, opening, operator.actor,
                                     body.request_id)
    record = await run_in_threadpool(capa_repo(svc).get, opened.capa_id)
    return {"created": opened.created, **capa_json(record)}


@router.get("/capa-records")
async def list_capa_records(deps: AppDeps, operator: Operator,
                            shop: str | None = Query(None, max_length=64),
                            state: CapaState | None = None) -> dict[str, Any]:
    operator.require(Permission.READ)
    if shop is not None:
        operator.require_shop(shop, f"shop '{shop}'")
        deps.shop_policy(shop)
    shops = [shop] if shop is not None else (
        None if operator.shops is None else sorted(operator.shops))
    repo = capa_repo(deps.api_services)
    records = await run_in_threadpool(
        lambda: repo.for_shops(shops, states=[state] if state else []))
    return {"capa_records": [capa_json(r) for r in records]}


@router.get("/capa-records/kpis")
async def capa_record_kpis(deps: AppDeps, operator: Operator,
                           shop: str | None = Query(None, max_length=64)) -> dict[str, Any]:
    """Open records by age, mean days to close, overdue actions, recurrences (a new quality
    signal on a product whose CAPA closed) and the mean hours from the first linked case to
    the record's opening."""
    operator.require(Permission.READ)
    if shop is not None:
        operator.require_shop(shop, f"shop '{shop}'")
        deps.shop_policy(shop)
    shops = [shop] if shop is not None else (
        None if operator.shops is None else sorted(operator.shops))
    repo = capa_repo(deps.api_services)

    def figures() -> dict[str, Any]:
        records = repo.for_shops(shops, limit=100_000)
        return capa_kpis(records, repo.first_case_at([r.id for r in records]),
                         repo.signals_by_sku(shops), datetime.now(UTC)).as_json()

    return await run_in_threadpool(figures)


@router.get("/capa-records/{capa_id}")
async def get_capa_record(deps: AppDeps, operator: Operator,
                          capa_id: str = CapaIdPath) -> dict[str, Any]:
    operator.require(Permission.READ)
    repo = capa_repo(deps.api_services)
    record = await run_in_threadpool(visible_capa, repo, operator, capa_id)
    return {**capa_json(record), "audit": await run_in_threadpool(_trail, repo, capa_id)}


@router.post("/capa-records/{capa_id}/investigation")
async def start_investigation(body: NoteIn, deps: AppDeps, operator: Operator,
                              capa_id: str = CapaIdPath) -> dict[str, Any]:
    """The caller starts the investigation (and is named its investigator)."""
    return await _step(deps, operator, capa_id,
                       lambda r, actor, at: r.start_investigation(actor, at, body.note))


@router.post("/capa-records/{capa_id}/root-cause")
async def record_root_cause(body: RootCauseIn, deps: AppDeps, operator: Operator,
                            capa_id: str = CapaIdPath) -> dict[str, Any]:
    """The investigation's root cause; sent again while the actions run, it revises it."""
    return await _step(deps, operator, capa_id,
                       lambda r, actor, at: r.record_root_cause(body.root_cause, actor, at))


@router.post("/capa-records/{capa_id}/actions")
async def add_action(body: ActionIn, deps: AppDeps, operator: Operator,
                     capa_id: str = CapaIdPath) -> dict[str, Any]:
    return await _step(deps, operator, capa_id, lambda r, actor, at: r.add_action(
        body.kind, body.description, body.owner, body.due, actor, at))


@router.post("/capa-records/{capa_id}/actions/{number}/complete")
async def complete_action(body: NoteIn, deps: AppDeps, operator: Operator,
                          capa_id: str = CapaIdPath,
                          number: int = Path(ge=1, le=MAX_ACTIONS)) -> dict[str, Any]:
    """The action is done; the last one done moves the record on to its check."""
    return await _step(deps, operator, capa_id,
                       lambda r, actor, at: r.complete_action(number, actor, at, body.note))


@router.post("/capa-records/{capa_id}/effectiveness-check")
async def plan_effectiveness_check(body: CheckIn, deps: AppDeps, operator: Operator,
                                   capa_id: str = CapaIdPath) -> dict[str, Any]:
    return await _step(deps, operator, capa_id, lambda r, actor, at:
                       r.plan_effectiveness_check(body.measure, body.due, actor, at))


@router.post("/capa-records/{capa_id}/effectiveness-result")
async def record_effectiveness(body: ResultIn, deps: AppDeps, operator: Operator,
                               capa_id: str = CapaIdPath) -> dict[str, Any]:
    """Effective: the record may close. Not effective: its actions reopen."""
    return await _step(deps, operator, capa_id, lambda r, actor, at:
                       r.record_effectiveness(body.result, body.note, actor, at))


@router.post("/capa-records/{capa_id}/close")
async def close_capa_record(body: CloseIn, deps: AppDeps, operator: Operator,
                            capa_id: str = CapaIdPath) -> dict[str, Any]:
    return await _step(deps, operator, capa_id,
                       lambda r, actor, at: r.close(body.note, actor, at))


@router.post("/capa-records/{capa_id}/cancel")
async def cancel_capa_record(body: CancelIn, deps: AppDeps, operator: Operator,
                             capa_id: str = CapaIdPath) -> dict[str, Any]:
    return await _step(deps, operator, capa_id,
                       lambda r, actor, at: r.cancel(body.reason, actor, at))


@router.post("/capa-records/{capa_id}/escalate")
async def escalate_capa_record(body: EscalateIn, deps: AppDeps, operator: Operator,
                               capa_id: str = CapaIdPath) -> dict[str, Any]:
    """Open the recall campaign of the CAPA's lots. A second escalation changes nothing and
    answers the campaign the first opened (`created` false)."""
    operator.require(Permission.CAPA)
    operator.require(Permission.RECALL)
    svc = deps.api_services
    repo = capa_repo(svc)
    await run_in_threadpool(visible_capa, repo, operator, capa_id)
    escalated = await run_in_threadpool(lambda: escalate_capa(
        svc, capa_id, reference=body.reference, recall_class=body.recall_class.value,
        actions=[a.value for a in body.actions], actor=operator.actor, sku=body.sku,
        notice_date=body.notice_date))
    record = await run_in_threadpool(repo.get, capa_id)
    return {"created": escalated.created, "campaign_id": escalated.campaign_id,
            **capa_json(record)}
