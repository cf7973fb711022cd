"""The signal run: every shop's thresholds against its cases, a signal raised once per lot
and window, the quality contact told once (core/signals.py says how signals are judged).

`run_signals` is idempotent: a signal's id is derived from what it is about, its insert
does nothing when the id exists, and only the run whose insert took it appends the
"raise" event. The notice is claim-then-send: a run marks the signal's channels `sending`
and commits before any call, so two runs never send it twice, and a run that died mid-send
leaves a record that says so (settled as `unconfirmed`, never sent again).

Shipped units come from the shop's ERP (`erp.shipped_quantity`) through a cache (the
`shipped_quantities` table): a run asks once per SKU, lot and range, and only for lots whose
returns could cross the rate at all (`_could_cross`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

from refundbridge.core.errors import (
    ConcurrencyConflict,
    DeliveryUncertain,
    PermanentProviderError,
    TransientProviderError,
)
from refundbridge.core.evidence import EXPORT_EVENT, CampaignRecord, Scope
from refundbridge.core.ports import Capability, ShippedQuantityLookup, ShippedQuantityQuery
from refundbridge.core.services.common import Services
from refundbridge.core.signals import (
    LotTally,
    NoticeState,
    QualityAlert,
    QualityAlertSender,
    QualityAlertTexter,
    QualitySignal,
    SignalPolicy,
    SignalRepository,
    Threshold,
    Window,
    alert_for,
    evaluate,
    rate_candidates,
    shipped_range,
    shop_day,
    tally,
    thresholds,
    windows_to_evaluate,
)

log = logging.getLogger("refundbridge.signals")

NOTICE_LEASE = timedelta(minutes=15)  # a claim older than this was left by a dead run


@dataclass
class SignalRunReport:
    raised: list[str] = field(default_factory=list)  # signal ids this run raised
    seen: list[str] = field(default_factory=list)  # crossings raised by an earlier run
    notified: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # an ERP that could not say, say

    def as_json(self) -> dict[str, list[str]]:
        return {"raised": self.raised, "seen": self.seen, "notified": self.notified,
                "problems": self.problems}


def shipped_lookup(svc: Services, shop_id: str) -> ShippedQuantityLookup | None:
    """The shop's ERP, if it declares `erp.shipped_quantity`."""
    erp = svc.gateways(shop_id).erp
    capabilities: frozenset[Capability] = getattr(type(erp), "capabilities", frozenset())
    if Capability.SHIPPED_QUANTITY in capabilities and hasattr(erp, "shipped_quantity"):
        return cast(ShippedQuantityLookup, erp)
    return None


def run_signals(svc: Services, store: SignalRepository, shop_ids: Sequence[str],
                now: datetime | None = None) -> SignalRunReport:
    """Evaluate every shop's thresholds over its current and previous windows, raise what
    is crossed, and tell the quality contact of every signal not yet told."""
    now = now or svc.clock()
    report = SignalRunReport()
    for shop_id in shop_ids:
        try:
            raise_shop_signals(svc, store, shop_id, now, report)
        except TransientProviderError as exc:  # the next run asks again
            report.problems.append(f"{shop_id}: {exc}")
        notify_signals(svc, store, shop_id, now, report)
    return report


def raise_shop_signals(svc: Services, store: SignalRepository, shop_id: str, now: datetime,
                       report: SignalRunReport) -> None:
    """Evaluate one shop and raise what is crossed (its notices are `notify_signals`')."""
    policy = svc.policy(shop_id)
    signals = policy.signals
    rules = thresholds(signals)
    if not rules:
        return
    today = shop_day(now, policy.timezone)
    windows = {t: windows_to_evaluate(today, t.window_days) for t in rules}
    first = min(w[0] for w in windows.values())
    last = max(w[1] for w in windows.values())
    since, _ = first.bounds(policy.timezone)
    _, until = last.bounds(policy.timezone)
    hits = store.case_hits(shop_id, since, until, policy.timezone, signals.quality_reasons)
    if not hits:
        return
    erp = shipped_lookup(svc, shop_id)
    for threshold, pair in windows.items():
        for window in pair:
            tallies = tally(hits, window)
            shipped: dict[tuple[str, str | None], int | None] = {}
            if threshold.rate_percent is not None:
                for t in rate_candidates(threshold, tallies):
                    if _could_cross(threshold, t):
                        shipped[(t.sku, t.lot)] = _shipped(
                            store, erp, shop_id, signals, threshold, window, t, now, report)
            for crossing in evaluate(shop_id, threshold, window, tallies, shipped):
                signal = QualitySignal.raise_for(crossing, now, email=signals.contact_email,
                                                 phone=signals.contact_phone)
                if store.add(signal):
                    log.warning("quality signal %s raised: %s %s %s", signal.id, shop_id,
                                signal.sku, threshold.name.value)
                    report.raised.append(signal.id)
                else:
                    report.seen.append(signal.id)


def _could_cross(threshold: Threshold, t: LotTally) -> bool:
    """Whether any shipped count at or above the floor lets these returns cross the rate:
    if not, the ERP need not be asked (1 return in a shop whose floor is 50 units and whose
    limit is 2 % never crosses)."""
    assert threshold.rate_percent is not None
    floor = max(threshold.min_shipped, 1)
    return t.units * 100 > threshold.rate_percent * floor


def _shipped(store: SignalRepository, erp: ShippedQuantityLookup | None, shop_id: str,
             policy: SignalPolicy, threshold: Threshold, window: Window, t: LotTally,
             now: datetime, report: SignalRunReport) -> int | None:
    if erp is None:
        return None
    since, until = shipped_range(threshold, window)
    fresh_after = now - timedelta(minutes=policy.shipped_cache_minutes)
    cached = store.cached_shipped(shop_id, t.sku, t.lot, since, until, fresh_after)
    if cached is not None:
        return cached
    try:
        quantity = erp.shipped_quantity(ShippedQuantityQuery(t.sku, since, until, t.lot))
    except PermanentProviderError as exc:
        report.problems.append(f"{shop_id} {t.sku} {t.lot or ''}: {exc}")
        return None
    store.remember_shipped(shop_id, t.sku, t.lot, since, until, quantity, now)
    return quantity


# ------------------------------------------------------------------ the notice


def notify_signals(svc: Services, store: SignalRepository, shop_id: str, now: datetime,
                   report: SignalRunReport) -> None:
    for signal_id in store.unnotified([shop_id]):
        if notify_signal(svc, store, signal_id, now):
            report.notified.append(signal_id)


def notify_signal(svc: Services, store: SignalRepository, signal_id: str,
                  now: datetime) -> bool:
    """Tell the quality contact of one signal, if this caller's claim takes it; True when
    this call settled it."""
    signal, stale = store.claim_notice(signal_id, now, stale_before=now - NOTICE_LEASE)
    if signal is None:
        return False
    if stale:
        # A run died between its claim and its record: the send may have gone out. Once
        # at most, as a recall notice: a person sees "unconfirmed" and checks.
        for channel in ("email", "sms"):
            if getattr(signal, f"{channel}_state") is NoticeState.SENDING:
                setattr(signal, f"{channel}_state", NoticeState.UNCONFIRMED)
                signal.notice_sent(channel, NoticeState.UNCONFIRMED, now,
                                   "the sending run stopped before it recorded the outcome")
        store.record_notice(signal, now)
        return True
    policy = svc.policy(signal.shop_id).signals
    alert = alert_for(signal, policy)
    gateways = svc.gateways(signal.shop_id)
    if signal.email_state is NoticeState.SENDING:
        state, detail = _send_email(gateways.notifier, alert)
        signal.email_state = state
        signal.notice_sent("email", state, svc.clock(), detail)
    if signal.sms_state is NoticeState.SENDING:
        state, detail = _send_sms(gateways.sms, alert)
        signal.sms_state = state
        signal.notice_sent("sms", state, svc.clock(), detail)
    store.record_notice(signal, svc.clock())
    return True


def _send_email(notifier: object, alert: QualityAlert) -> tuple[NoticeState, str]:
    if not isinstance(notifier, QualityAlertSender):
        return NoticeState.FAILED, "the shop's notifier cannot send a quality alert"
    try:
        notifier.send_quality_alert(alert)
    except DeliveryUncertain as exc:
        return NoticeState.UNCONFIRMED, exc.message
    except (PermanentProviderError, TransientProviderError) as exc:
        # A staff alert is not retried forever: the console shows the signal either way.
        return NoticeState.FAILED, str(exc)
    return NoticeState.SENT, alert.email or ""


def _send_sms(sms: object, alert: QualityAlert) -> tuple[NoticeState, str]:
    if sms is None or not isinstance(sms, QualityAlertTexter):
        return NoticeState.FAILED, "the shop has no SMS connector that sends our own words"
    try:
        provider_id = sms.send_quality_sms(alert)
    except DeliveryUncertain as exc:
        return NoticeState.UNCONFIRMED, exc.message
    except (PermanentProviderError, TransientProviderError) as exc:
        return NoticeState.FAILED, str(exc)
    return NoticeState.SENT, provider_id


# ------------------------------------------------------------------ a person's actions


def acknowledge_signal(store: SignalRepository, signal_id: str, actor: str, at: datetime,
                       note: str = "") -> QualitySignal:
    signal = store.get(signal_id)
    signal.acknowledge(actor, at, note.strip()[:2000])
    store.save(signal)
    return signal


def link_capa(store: SignalRepository, signal_id: str, capa_id: str, actor: str,
              at: datetime) -> QualitySignal:
    """For the CAPA record opened from the signal: the signal is answered by it."""
    signal = store.get(signal_id)
    signal.link_capa(capa_id, actor, at)
    store.save(signal)
    return signal


# ------------------------------------------------------------------ evidence


def lot_signals(svc: Services, scope: Scope, actor: str) -> list[CampaignRecord]:
    """The lot's quality signals for its evidence package, each with the export recorded
    on its own trail first (as every export is recorded on what it covers)."""
    store = svc.signals
    if scope.kind != "lot" or store is None or scope.shop_id is None or scope.lot is None:
        return []
    records = []
    for found in store.for_lot(scope.shop_id, scope.lot):
        for _ in range(5):
            signal = store.get(found.id)
            signal.record(EXPORT_EVENT, svc.clock(), actor, scope.as_json())
            try:
                store.save(signal)
            except ConcurrencyConflict:
                continue
            break
        else:
            raise ConcurrencyConflict(f"signal {found.id}: too many writers at once")
        detail = {**signal.evidence(), "shop": signal.shop_id, "state": signal.state.value,
                  "reason_group": signal.group.value,
                  "raised_at": signal.raised_at.isoformat(),
                  "notice": {"email": signal.email_state.value,
                             "sms": signal.sms_state.value},
                  "capa_id": signal.capa_id}
        records.append(CampaignRecord(signal.id, detail, store.events(signal.id)))
    return records
