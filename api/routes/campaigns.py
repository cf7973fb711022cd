"""The operator API for recall campaigns: open one from a notice, follow it, close it."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from refundbridge.api.deps import AppDeps, Operator
from refundbridge.core.access import Permission
from refundbridge.core.audit import verify_chain
from refundbridge.core.campaigns import (
    INSTRUCTIONS_MAX,
    MAX_SCOPE_ITEMS,
    CheckLevel,
    ConsigneeRecord,
    RecallAction,
    RecallCampaign,
    RecallNotice,
)
from refundbridge.core.errors import InvalidRequest, NotFound
from refundbridge.core.recalls import LOT_MAX, REFERENCE_MAX, SERIAL_MAX, SKU_MAX, RecallClass
from refundbridge.core.request import Line, Text, check_text
from refundbridge.core.services.campaigns import close_campaign, open_campaign

router = APIRouter(prefix="/v1", tags=["recall campaigns"])


class CampaignIn(BaseModel):
    """A recall notice to pass on to every consignee of the product, lots or serials."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    shop: Line = Field(max_length=64)
    reference: Line = Field(max_length=REFERENCE_MAX, examples=["NMPA-2026-0042"])
    recall_class: RecallClass = Field(alias="class", examples=["II"])
    notice_date: date
    sku: Line | None = Field(default=None, max_length=SKU_MAX)
    gtin: Line | None = Field(default=None, max_length=64)
    lots: list[Line] = Field(default_factory=list, max_length=MAX_SCOPE_ITEMS)
    serials: list[Line] = Field(default_factory=list, max_length=MAX_SCOPE_ITEMS)
    actions: list[RecallAction] = Field(
        default_factory=lambda: [RecallAction.STOP_USE, RecallAction.RETURN], min_length=1,
        max_length=len(RecallAction))
    instructions: Text = Field(default="", max_length=INSTRUCTIONS_MAX,
                               description="The manufacturer's instructions, as sent")
    check_level: CheckLevel = CheckLevel.A
    check_percent: int | None = Field(default=None, ge=0, le=100,
                                      description="Level B only: the share checked")


class CloseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Text = Field(min_length=1, max_length=2000,
                       description="The effectiveness check's result: why it may close")


def _notice(body: CampaignIn) -> RecallNotice:
    for index, lot in enumerate(body.lots):
        if len(lot) > LOT_MAX:
            raise InvalidRequest(f"lots.{index}", f"is longer than {LOT_MAX} characters")
    for index, serial in enumerate(body.serials):
        if len(serial) > SERIAL_MAX:
            raise InvalidRequest(f"serials.{index}", f"is longer than {SERIAL_MAX} characters")
    check_text(body.instructions, "instructions", multiline=True)
    return RecallNotice(
        reference=body.reference, recall_class=body.recall_class,
        notice_date=body.notice_date, sku=body.sku, gtin=body.gtin, lots=tuple(body.lots),
        serials=tuple(body.serials), actions=tuple(body.actions),
        instructions=body.instructions, check_level=body.check_level,
        check_percent=body.check_percent)


def campaign_json(campaign: RecallCampaign, counts: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": campaign.id, "shop": campaign.shop_id, "state": campaign.state.value,
        "notice": campaign.notice.as_json(),
        "notice_due": campaign.notice.notice_due.isoformat(),
        "opened_at": campaign.opened_at.isoformat(), "opened_by": campaign.opened_by,
        "pages_read": campaign.pages_read,
        "identified_at": campaign.identified_at.isoformat() if campaign.identified_at else None,
        "quarantine": {"document": campaign.quarantine_document,
                       "units": campaign.quarantined_units,
                       "at": (campaign.quarantined_at.isoformat()
                              if campaign.quarantined_at else None)},
        "all_notified_at": (campaign.all_notified_at.isoformat()
                            if campaign.all_notified_at else None),
        "closed_at": campaign.closed_at.isoformat() if campaign.closed_at else None,
        "closed_by": campaign.closed_by, "close_note": campaign.close_note,
        "walk_failed": campaign.walk_failed, "capa_id": campaign.capa_id,
    }
    if counts is not None:
        data["counts"] = counts
    return data


def consignee_json(record: ConsigneeRecord) -> dict[str, Any]:
    ack = record.acknowledgement
    return {
        "id": record.id, "key": record.key, "name": record.name, "email": record.email,
        "phone": record.phone, "locale": record.locale, "quantity": record.quantity,
        "units": [{"line_id": u.line_id, "document": u.document, "sku": u.sku,
                   "quantity": u.quantity, "lot": u.lot, "serial": u.serial,
                   "order_id": u.order_id,
                   "shipped_on": u.shipped_on.isoformat() if u.shipped_on else None}
                  for u in record.units],
        "email_state": record.email_state.value, "sms_state": record.sms_state.value,
        "notified_at": record.notified_at.isoformat() if record.notified_at else None,
        "attempts": record.attempts, "last_error": record.last_error,
        "reminders": record.reminders, "delivery": record.delivery,
        "acknowledged_at": (record.acknowledged_at.isoformat()
                            if record.acknowledged_at else None),
        "acknowledgement": None if ack is None else {
            "stopped_use": ack.stopped_use, "quantity_held": ack.quantity_held,
            "wants_return": ack.wants_return, "passed_on": ack.passed_on, "note": ack.note},
        "case_id": record.case_id, "case_problem": record.case_problem,
    }


def _visible(deps: AppDeps, operator: Operator, campaign_id: str) -> RecallCampaign:
    try:
        campaign = deps.campaigns.get(campaign_id)
    except NotFound:
        raise NotFound(f"no recall campaign {campaign_id}") from None
    operator.require_shop(campaign.shop_id, f"recall campaign {campaign_id}")
    return campaign


@router.post("/recall-campaigns", status_code=201)
async def open_recall_campaign(body: CampaignIn, deps: AppDeps,
                               operator: Operator) -> dict[str, Any]:
    """Open the shop's campaign for a recall notice: the ERP is walked for every consignee,
    the stock on hand goes to quarantine, and every consignee is told. Opening the same
    reference again changes nothing and answers the existing campaign (`created` false)."""
    operator.require_shop(body.shop, f"shop '{body.shop}'")
    operator.require(Permission.RECALL)
    deps.shop_policy(body.shop)
    notice = _notice(body)
    opened = await run_in_threadpool(open_campaign, deps.api_services, body.shop, notice,
                                     operator.actor)
    campaign = await run_in_threadpool(deps.campaigns.get, opened.campaign_id)
    return {"created": opened.created, **campaign_json(campaign)}


@router.get("/recall-campaigns")
async def list_recall_campaigns(deps: AppDeps, operator: Operator,
                                shop: str | None = None) -> dict[str, Any]:
    operator.require(Permission.READ)
    if shop is not None:
        operator.require_shop(shop, f"shop '{shop}'")
        deps.shop_policy(shop)
    shops = [shop] if shop is not None else (
        None if operator.shops is None else sorted(operator.shops))
    campaigns = await run_in_threadpool(deps.campaigns.for_shops, shops)
    return {"campaigns": [campaign_json(c) for c in campaigns]}


@router.get("/recall-campaigns/{campaign_id}")
async def get_recall_campaign(campaign_id: str, deps: AppDeps,
                              operator: Operator) -> dict[str, Any]:
    operator.require(Permission.READ)
    campaign = await run_in_threadpool(_visible, deps, operator, campaign_id)
    counts = await run_in_threadpool(deps.campaigns.counts, campaign_id)
    events = await run_in_threadpool(deps.campaigns.events, campaign_id)
    check = verify_chain(events)
    return {**campaign_json(campaign, counts.as_json()),
            "audit": {"events": len(events), "verifies": check.verifies,
                      "head": events[-1].hash if events else None,
                      "trail": [e.as_json() for e in events[-200:]]}}


@router.get("/recall-campaigns/{campaign_id}/consignees")
async def list_consignees(campaign_id: str, deps: AppDeps, operator: Operator,
                          after: int = Query(0, ge=0, le=2**62),
                          limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    """A page of the campaign's consignees by id; pass the last `id` as `after` for the
    next page."""
    operator.require(Permission.READ)
    await run_in_threadpool(_visible, deps, operator, campaign_id)
    records = await run_in_threadpool(
        lambda: deps.campaigns.consignees(campaign_id, after=after, limit=limit))
    return {"consignees": [consignee_json(r) for r in records],
            "next_after": records[-1].id if len(records) == limit else None}


@router.post("/recall-campaigns/{campaign_id}/close")
async def close_recall_campaign(campaign_id: str, body: CloseIn, deps: AppDeps,
                                operator: Operator) -> dict[str, Any]:
    """Close the campaign once every consignee is told; the note is the effectiveness
    check's result, and the totals go into the audit trail with it."""
    operator.require(Permission.RECALL)
    await run_in_threadpool(_visible, deps, operator, campaign_id)
    check_text(body.note, "note", multiline=True)
    campaign = await run_in_threadpool(close_campaign, deps.api_services, campaign_id,
                                       operator.actor, body.note)
    return campaign_json(campaign)
