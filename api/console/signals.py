"""Quality signals `/console/signals`: what crossed the operator's shops' thresholds, with the
cases behind each (core/signals.py decides; this only shows).

1. `/console/signals`: the signals, newest first: the product and lot, the threshold and
   what crossed it (a count, or a rate with the units shipped), the window, the state, and
   whether the quality contact was told.
2. `/console/signals/{id}`: the same, the cases behind it (links to their pages), the
   threshold as it stood when the signal was raised, its hash-chained trail with its check,
   the link that opens a CAPA record from it (the CAPA page takes the signal, product, lot
   and cases from the query), and the acknowledge form (CAPA permission).

Another shop's signal is a 404, as for one that does not exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from refundbridge.api.console.recalls import trail
from refundbridge.api.console.web import (
    PREFIX,
    ConsoleContext,
    ConsoleUser,
    ConsoleWriter,
    redirect,
    render,
)
from refundbridge.api.deps import ApiDeps, AppDeps
from refundbridge.api.routes.signals import signal_store, visible_signal
from refundbridge.core.access import Permission
from refundbridge.core.audit import AuditEvent, verify_chain
from refundbridge.core.services.signals import acknowledge_signal
from refundbridge.core.signals import (
    QualitySignal,
    SignalCase,
    SignalState,
    ThresholdName,
)

router = APIRouter(prefix=PREFIX, include_in_schema=False)

HOME = f"{PREFIX}/signals"
NOTE_MAX = 2000
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

# What the pages call the codes (English; zh-CN in i18n/signals.json).
STATES: dict[str, tuple[str, str]] = {
    SignalState.OPEN.value: ("New", "bad"),
    SignalState.ACKNOWLEDGED.value: ("Acknowledged", "warn"),
    SignalState.LINKED.value: ("CAPA opened", "ok"),
}
THRESHOLDS: dict[str, str] = {
    ThresholdName.QUALITY_COUNT.value: "Quality returns of one lot",
    ThresholdName.QUALITY_RATE.value: "Quality-return rate",
    ThresholdName.ADVERSE_EVENT_COUNT.value: "Adverse events on one lot",
    ThresholdName.RECALL_COUNT.value: "Recall returns",
}
NOTICES: dict[str, tuple[str, str]] = {
    "sent": ("sent", "ok"), "pending": ("waiting", "info"), "sending": ("sending", "info"),
    "failed": ("failed", "bad"), "unconfirmed": ("unconfirmed", "warn"),
    "none": ("no address", "info"),
}
DONE = {"acknowledged": "Signal acknowledged."}
EVENTS: dict[str, str] = {"raise": "Signal raised", "notify": "Quality contact notified",
                          "acknowledge": "Acknowledged", "link_capa": "CAPA opened"}


def signal_row(signal: QualitySignal) -> dict[str, Any]:
    t = signal.threshold
    if t.rate_percent is not None:
        limit = f"> {t.rate_percent} %"
        measured = f"{signal.rate_percent} %" if signal.rate_percent is not None else "—"
    else:
        limit = f"≥ {t.count}"
        measured = str(signal.count)
    return {
        "id": signal.id, "shop": signal.shop_id, "sku": signal.sku, "lot": signal.lot,
        "threshold": signal.threshold.name.value,
        "threshold_label": THRESHOLDS.get(t.name.value, t.name.value),
        "group": signal.group.value, "limit": limit, "measured": measured,
        "count": signal.count, "units": signal.units, "shipped": signal.shipped,
        "rate": signal.rate_percent, "window_days": signal.window.days,
        "window_start": signal.window.start.isoformat(),
        "window_end": signal.window.last_day.isoformat(),
        "raised_at": signal.raised_at.strftime("%Y-%m-%d %H:%M"),
        "state": STATES.get(signal.state.value, (signal.state.value, "info")),
        "email": NOTICES.get(signal.email_state.value, (signal.email_state.value, "info")),
        "sms": NOTICES.get(signal.sms_state.value, (signal.sms_state.value, "info")),
        "capa_url": capa_link(signal), "capa_id": signal.capa_id,
        "acknowledged_by": (signal.acknowledged_by.partition(":")[2] or signal.acknowledged_by
                            if signal.acknowledged_by else None), "note": signal.note,
    }


def capa_link(signal: QualitySignal) -> str:
    """The CAPA form, filled from the signal: its id, product, lot and cases."""
    query: list[tuple[str, str]] = [("signal", signal.id), ("sku", signal.sku)]
    if signal.lot:
        query.append(("lot", signal.lot))
    query.extend(("case", case_id) for case_id in signal.case_ids)
    return f"{PREFIX}/capa/new?{urlencode(query)}"


def _list(deps: ApiDeps, user: ConsoleContext) -> list[dict[str, Any]]:
    shops = user.principal.visible(deps.shop_ids)
    return [signal_row(s) for s in signal_store(deps).for_shops(shops)]


@router.get("/signals")
async def signals_list(request: Request, user: ConsoleUser, deps: AppDeps) -> Response:
    user.principal.require(Permission.READ)
    rows = await run_in_threadpool(_list, deps, user)
    return render(request, "signals.html", user, rows=rows)


@dataclass
class SignalView:
    signal: QualitySignal
    cases: list[SignalCase]
    events: list[AuditEvent]


def _view(deps: ApiDeps, user: ConsoleContext, signal_id: str) -> SignalView:
    store = signal_store(deps)
    signal = visible_signal(store, user.principal, signal_id)
    return SignalView(signal, store.cases(signal.case_ids), store.events(signal.id))


def _page(request: Request, user: ConsoleContext, view: SignalView, *, done: str = "",
          error: str = "", note: str = "", status: int = 200) -> Response:
    check = verify_chain(view.events)
    signal = view.signal
    return render(
        request, "signal.html", user, status=status, row=signal_row(signal),
        threshold=signal.threshold.as_json(),
        cases=[{"id": c.id, "state": c.state, "order_id": c.order_id, "reason": c.reason,
                "opened": c.opened_at.strftime("%Y-%m-%d %H:%M")} for c in view.cases],
        trail=[{**e, "title": EVENTS.get(e["name"], e["title"])} for e in trail(view.events)],
        chain=check,
        head=view.events[-1].hash if view.events else "", states={},
        can_capa=user.may(Permission.CAPA),
        can_acknowledge=user.may(Permission.CAPA) and signal.state is SignalState.OPEN,
        notice=DONE.get(done, ""), error=error, note=note, note_max=NOTE_MAX)


@router.get("/signals/{signal_id}")
async def signal_page(signal_id: str, request: Request, user: ConsoleUser, deps: AppDeps,
                      done: Annotated[str, Query(max_length=16)] = "") -> Response:
    user.principal.require(Permission.READ)
    view = await run_in_threadpool(_view, deps, user, signal_id)
    return _page(request, user, view, done=done)


@router.post("/signals/{signal_id}/acknowledge")
async def acknowledge(signal_id: str, request: Request, user: ConsoleWriter,
                      deps: AppDeps) -> Response:
    view = await run_in_threadpool(_view, deps, user, signal_id)
    user.principal.require(Permission.CAPA)
    form = await request.form()
    raw = form.get("note")
    note = raw if isinstance(raw, str) else ""
    error = ""
    if len(note) > NOTE_MAX:
        error = "The note is longer than 2000 characters."
    elif _CONTROL.search(note):
        error = "The note contains control characters."
    elif view.signal.state is not SignalState.OPEN:
        error = "This signal was acknowledged already."
    if error:
        return _page(request, user, view, error=error,
                     note=_CONTROL.sub("", note[:NOTE_MAX]), status=422)
    store = signal_store(deps)
    await run_in_threadpool(acknowledge_signal, store, view.signal.id, user.principal.actor,
                            deps.api_services.clock(), note)
    return redirect(f"{HOME}/{view.signal.id}?done=acknowledged")
