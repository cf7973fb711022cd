"""The operator API for quality signals: what crossed a shop's thresholds, and why.

`GET /v1/signals?shop=` lists a shop's signals (or every shop the token may see), newest
first; `GET /v1/signals/{id}` is one signal with its evidence (the cases, counts, shipped
units, the threshold as it stood) and its hash-chained trail; `POST .../acknowledge` says a
person is on it (CAPA permission: the quality manager's).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from refundbridge.api.deps import AppDeps, Operator
from refundbridge.core.access import Permission, Principal
from refundbridge.core.audit import verify_chain
from refundbridge.core.errors import ConfigError, NotFound
from refundbridge.core.request import Text, check_text
from refundbridge.core.services.signals import acknowledge_signal
from refundbridge.core.signals import QualitySignal, SignalRepository, SignalState

router = APIRouter(prefix="/v1", tags=["quality signals"])

SIGNAL_ID = re.compile(r"sig_[0-9a-f]{24}")


class AcknowledgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Text = Field(default="", max_length=2000, description="What is being done about it")


def signal_json(signal: QualitySignal) -> dict[str, Any]:
    return {
        "id": signal.id, "shop": signal.shop_id, "sku": signal.sku, "lot": signal.lot,
        "reason_group": signal.group.value, "threshold": signal.threshold.as_json(),
        "window_start": signal.window.start.isoformat(),
        "window_end": signal.window.last_day.isoformat(),
        "raised_at": signal.raised_at.isoformat(), "state": signal.state.value,
        "case_ids": list(signal.case_ids), "count": signal.count, "units": signal.units,
        "shipped_units": signal.shipped,
        "rate_percent": None if signal.rate_percent is None else str(signal.rate_percent),
        "notice": {"email": signal.email_state.value, "sms": signal.sms_state.value},
        "acknowledged_by": signal.acknowledged_by,
        "acknowledged_at": (signal.acknowledged_at.isoformat()
                            if signal.acknowledged_at else None),
        "note": signal.note, "capa_id": signal.capa_id,
    }


def signal_store(deps: AppDeps) -> SignalRepository:
    store = deps.api_services.signals
    if store is None:
        raise ConfigError("signals", "this deployment keeps no quality signals")
    return store


def visible_signal(store: SignalRepository, principal: Principal,
                   signal_id: str) -> QualitySignal:
    """The signal, if one of the principal's shops' (else 404, as for none)."""
    if not SIGNAL_ID.fullmatch(signal_id):
        raise NotFound(f"no quality signal {signal_id[:40]}")
    signal = store.get(signal_id)
    principal.require_shop(signal.shop_id, f"quality signal {signal_id}")
    return signal


@router.get("/signals")
async def list_signals(deps: AppDeps, operator: Operator,
                       shop: str | None = Query(None, max_length=64),
                       state: SignalState | None = None,
                       limit: int = Query(100, ge=1, le=500)) -> dict[str, Any]:
    operator.require(Permission.READ)
    if shop is not None:
        operator.require_shop(shop, f"shop '{shop}'")
        deps.shop_policy(shop)
    shops = [shop] if shop is not None else (
        None if operator.shops is None else sorted(operator.shops))
    store = signal_store(deps)
    signals = await run_in_threadpool(lambda: store.for_shops(shops, state=state,
                                                              limit=limit))
    return {"signals": [signal_json(s) for s in signals]}


@router.get("/signals/{signal_id}")
async def get_signal(signal_id: str, deps: AppDeps, operator: Operator) -> dict[str, Any]:
    operator.require(Permission.READ)
    store = signal_store(deps)
    signal = await run_in_threadpool(visible_signal, store, operator, signal_id)
    events = await run_in_threadpool(store.events, signal.id)
    check = verify_chain(events)
    return {**signal_json(signal),
            "audit": {"events": len(events), "verifies": check.verifies,
                      "head": events[-1].hash if events else None,
                      "trail": [e.as_json() for e in events]}}


@router.post("/signals/{signal_id}/acknowledge")
async def acknowledge(signal_id: str, body: AcknowledgeIn, deps: AppDeps,
                      operator: Operator) -> dict[str, Any]:
    operator.require(Permission.CAPA)
    store = signal_store(deps)
    await run_in_threadpool(visible_signal, store, operator, signal_id)
    check_text(body.note, "note", multiline=True)
    signal = await run_in_threadpool(acknowledge_signal, store, signal_id, operator.actor,
                                     deps.api_services.clock(), body.note)
    return signal_json(signal)
