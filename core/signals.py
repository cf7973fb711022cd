"""Quality signals: returns that point at a bad lot, raised before anyone asks.

Pure: the store counts the cases (store/signals.py), the ERP says how many units were shipped
(the `erp.shipped_quantity` capability), and this module decides which of the shop's
thresholds (`SignalPolicy`, in its policy) are crossed.

Reason groups. A case counts in every group it belongs to (a defect that hurt someone is a
quality return *and* an adverse event):

- quality: the reason codes in `SignalPolicy.quality_reasons`; by default defective,
  damaged_on_arrival, not_as_described and malfunction_harm (a malfunction is a quality
  failure whoever it hurt). Not wrong_item: a picking mistake points at the warehouse, not
  at the lot; a shop that wants it counts it by listing it.
- adverse_event: an adverse-event code (injury, malfunction_harm), or the case's rules found
  a possible adverse event (R14 spoke up: the free text names an injury), or a report
  obligation was set.
- recall: the recall reason, or the unit is on the shop's recall list (R13 approved it).

Windows are fixed buckets of `days` shop-calendar days, aligned on `WINDOW_EPOCH`: a signal's
id is derived from the shop, SKU, lot, threshold and its window's start, so the same crossing
seen by any number of runs (or two racing workers) is one signal, raised once per lot and
window. A run evaluates the current window and the one before it, so returns counted just
before a boundary are still seen by a run just after it. The price of fixed buckets: a
cluster that straddles a boundary is split (two returns at the end of one window and one at
the start of the next cross nothing); a shop that wants to see such clusters sooner sets a
lower count.

A rate is the returned units of the group over the units of the SKU and lot shipped in the
`rate_shipped_days` days up to the window's end (by default a year: a lot's returns come
long after most of it shipped). Below `rate_min_shipped` shipped units no rate is judged (1
return of 10 units is 10 %, and says little); the count thresholds still are. The rate is
compared exactly (returned × 100 > percent × shipped), never in floating point.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from refundbridge.core.audit import GENESIS, AuditEvent, chain_event
from refundbridge.core.errors import DomainError, IllegalTransition
from refundbridge.core.request import ReasonCode

WINDOW_EPOCH = date(2024, 1, 1)  # a Monday; every window starts a multiple of its days on

DEFAULT_SIGNAL_QUALITY_REASONS = frozenset(
    {ReasonCode.DEFECTIVE, ReasonCode.DAMAGED_ON_ARRIVAL, ReasonCode.NOT_AS_DESCRIBED,
     ReasonCode.MALFUNCTION_HARM})
ADVERSE_EVENT_REASONS = frozenset({ReasonCode.INJURY, ReasonCode.MALFUNCTION_HARM})


class SignalGroup(StrEnum):
    QUALITY = "quality"
    ADVERSE_EVENT = "adverse_event"
    RECALL = "recall"


class ThresholdName(StrEnum):
    QUALITY_COUNT = "quality_count"  # this many quality returns of one lot in the window
    QUALITY_RATE = "quality_rate"  # quality-returned units above a share of units shipped
    ADVERSE_EVENT_COUNT = "adverse_event_count"  # a second adverse event on one lot
    RECALL_COUNT = "recall_count"  # any return for a recall


@dataclass(frozen=True, slots=True)
class SignalPolicy:
    """A shop's signal thresholds (`[shops.<id>.policy.signals]`) and who hears of them."""

    enabled: bool = True
    quality_reasons: frozenset[ReasonCode] = DEFAULT_SIGNAL_QUALITY_REASONS
    quality_count: int = 3
    quality_window_days: int = 30
    quality_rate_percent: Decimal = Decimal("2")  # crossed when strictly above
    rate_min_shipped: int = 50  # below this many units shipped no rate is judged
    rate_shipped_days: int = 365  # shipped units counted over this many days to window end
    adverse_event_count: int = 2
    adverse_event_window_days: int = 90
    recall_count: int = 1
    recall_window_days: int = 30
    shipped_cache_minutes: int = 360  # how long an ERP's answer for an open range is kept
    contact_name: str = ""
    contact_email: str | None = None
    contact_phone: str | None = None
    contact_locale: str = "en"


@dataclass(frozen=True, slots=True)
class Threshold:
    name: ThresholdName
    group: SignalGroup
    window_days: int
    count: int | None = None  # crossed at this many cases or more
    rate_percent: Decimal | None = None  # crossed above this share of units shipped
    min_shipped: int = 0
    shipped_days: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name.value, "group": self.group.value,
                "window_days": self.window_days, "count": self.count,
                "rate_percent": None if self.rate_percent is None else str(self.rate_percent),
                "min_shipped": self.min_shipped, "shipped_days": self.shipped_days}


def thresholds(policy: SignalPolicy) -> tuple[Threshold, ...]:
    """The shop's thresholds; a count or percent of 0 turns that one off."""
    if not policy.enabled:
        return ()
    found: list[Threshold] = []
    if policy.quality_count > 0:
        found.append(Threshold(ThresholdName.QUALITY_COUNT, SignalGroup.QUALITY,
                               policy.quality_window_days, count=policy.quality_count))
    if policy.quality_rate_percent > 0:
        found.append(Threshold(ThresholdName.QUALITY_RATE, SignalGroup.QUALITY,
                               policy.quality_window_days,
                               rate_percent=policy.quality_rate_percent,
                               min_shipped=policy.rate_min_shipped,
                               shipped_days=policy.rate_shipped_days))
    if policy.adverse_event_count > 0:
        found.append(Threshold(ThresholdName.ADVERSE_EVENT_COUNT, SignalGroup.ADVERSE_EVENT,
                               policy.adverse_event_window_days,
                               count=policy.adverse_event_count))
    if policy.recall_count > 0:
        found.append(Threshold(ThresholdName.RECALL_COUNT, SignalGroup.RECALL,
                               policy.recall_window_days, count=policy.recall_count))
    return tuple(found)


def signal_groups(code: ReasonCode, *, quality_reasons: frozenset[ReasonCode],
                  adverse_flagged: bool, recall_matched: bool) -> frozenset[SignalGroup]:
    """The groups one case counts in. `adverse_flagged`: R14 spoke up or a report is due;
    `recall_matched`: R13 found the unit on the recall list."""
    groups: set[SignalGroup] = set()
    if code in quality_reasons:
        groups.add(SignalGroup.QUALITY)
    if code in ADVERSE_EVENT_REASONS or adverse_flagged:
        groups.add(SignalGroup.ADVERSE_EVENT)
    if code is ReasonCode.RECALL or recall_matched:
        groups.add(SignalGroup.RECALL)
    return frozenset(groups)


# ------------------------------------------------------------------ windows


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """`days` shop-calendar days from `start`: `start` in, `start + days` out."""

    start: date
    days: int

    @property
    def end(self) -> date:
        """The first day after the window."""
        return self.start + timedelta(days=self.days)

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    def contains(self, day: date) -> bool:
        return self.start <= day < self.end

    def bounds(self, zone: str) -> tuple[datetime, datetime]:
        """The window as UTC instants: from its first midnight, shop time, to (not
        including) the midnight after its last day."""
        tz = ZoneInfo(zone)
        return (datetime.combine(self.start, time(), tzinfo=tz).astimezone(UTC),
                datetime.combine(self.end, time(), tzinfo=tz).astimezone(UTC))

    def previous(self) -> Window:
        return Window(self.start - timedelta(days=self.days), self.days)


def window_containing(day: date, days: int) -> Window:
    if days <= 0:
        raise DomainError(f"a signal window must be at least one day, not {days}")
    offset = (day - WINDOW_EPOCH).days // days * days
    return Window(WINDOW_EPOCH + timedelta(days=offset), days)


def windows_to_evaluate(today: date, days: int) -> tuple[Window, Window]:
    """The window before today's and today's, in that order."""
    current = window_containing(today, days)
    return current.previous(), current


def shop_day(at: datetime, zone: str) -> date:
    return at.astimezone(ZoneInfo(zone)).date()


# ------------------------------------------------------------------ counting and crossing


@dataclass(frozen=True, slots=True)
class CaseHit:
    """One case's units of one SKU and lot, as the store counts them."""

    case_id: str
    sku: str
    lot: str | None
    units: int
    opened_on: date  # the shop-calendar day the case was opened
    groups: frozenset[SignalGroup]


@dataclass(frozen=True, slots=True)
class LotTally:
    """The cases of one group about one SKU and lot in one window."""

    sku: str
    lot: str | None
    group: SignalGroup
    case_ids: tuple[str, ...]
    units: int

    @property
    def count(self) -> int:
        return len(self.case_ids)


def tally(hits: Iterable[CaseHit], window: Window) -> list[LotTally]:
    """Group the hits opened in `window` by (SKU, lot, group); a case is counted once per
    SKU, lot and group however many of its lines name them, its units added up."""
    cases: dict[tuple[str, str | None, SignalGroup], dict[str, int]] = {}
    for hit in hits:
        if not window.contains(hit.opened_on):
            continue
        for group in hit.groups:
            per_case = cases.setdefault((hit.sku, hit.lot, group), {})
            per_case[hit.case_id] = per_case.get(hit.case_id, 0) + hit.units
    return [LotTally(sku, lot, group, tuple(sorted(units)), sum(units.values()))
            for (sku, lot, group), units in sorted(
                cases.items(), key=lambda kv: (kv[0][0], kv[0][1] or "", kv[0][2].value))]


def shipped_range(threshold: Threshold, window: Window) -> tuple[date, date]:
    """The days whose shipments a rate is judged against: `shipped_days` up to the
    window's last day, both included."""
    return window.end - timedelta(days=threshold.shipped_days), window.last_day


def signal_id(shop_id: str, sku: str, lot: str | None, threshold: ThresholdName,
              window: Window) -> str:
    key = "\x1f".join((shop_id, sku, lot or "", threshold.value, window.start.isoformat(),
                       str(window.days)))
    return "sig_" + hashlib.sha256(key.encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Crossing:
    """A threshold crossed by one SKU and lot in one window: what a signal is raised for."""

    shop_id: str
    sku: str
    lot: str | None
    threshold: Threshold
    window: Window
    case_ids: tuple[str, ...]
    units: int
    shipped: int | None  # None: not asked (a count) or the ERP cannot say
    rate_percent: Decimal | None  # the group's returned units over shipped, in percent

    @property
    def id(self) -> str:
        return signal_id(self.shop_id, self.sku, self.lot, self.threshold.name, self.window)

    @property
    def count(self) -> int:
        return len(self.case_ids)


def rate_percent(units: int, shipped: int) -> Decimal:
    """Returned over shipped, in percent, to four places (for showing; judging is exact)."""
    return (Decimal(units) * 100 / Decimal(shipped)).quantize(Decimal("0.0001"))


def crossed(threshold: Threshold, lot_tally: LotTally, shipped: int | None) -> bool:
    """Whether one tally crosses one threshold (`shipped`: units shipped, for a rate)."""
    if lot_tally.group is not threshold.group:
        return False
    if threshold.count is not None:
        return lot_tally.count >= threshold.count
    if threshold.rate_percent is None or shipped is None or shipped <= 0:
        return False
    if shipped < threshold.min_shipped:
        return False
    # Exact: units / shipped > percent / 100, without dividing.
    return Decimal(lot_tally.units) * 100 > threshold.rate_percent * shipped


def evaluate(shop_id: str, threshold: Threshold, window: Window,
             tallies: Sequence[LotTally],
             shipped: Mapping[tuple[str, str | None], int | None] | None = None
             ) -> list[Crossing]:
    """The crossings of one threshold in one window. `shipped` maps (SKU, lot) to the
    units shipped over `shipped_range` (rate thresholds only; a missing entry: unknown)."""
    shipped = shipped or {}
    found: list[Crossing] = []
    for t in tallies:
        units_shipped = shipped.get((t.sku, t.lot)) if threshold.rate_percent else None
        if not crossed(threshold, t, units_shipped):
            continue
        rate = (rate_percent(t.units, units_shipped) if units_shipped else None)
        found.append(Crossing(shop_id, t.sku, t.lot, threshold, window, t.case_ids, t.units,
                              units_shipped, rate))
    return found


def rate_candidates(threshold: Threshold, tallies: Sequence[LotTally]) -> list[LotTally]:
    """The tallies worth asking the ERP about for a rate: of the threshold's group, with a
    return at all. (Asking only for these keeps a run to a few ERP calls per window.)"""
    return [t for t in tallies if t.group is threshold.group and t.units > 0]


# ------------------------------------------------------------------ the signal


class SignalState(StrEnum):
    OPEN = "open"  # raised; nobody has looked yet
    ACKNOWLEDGED = "acknowledged"  # a person has seen it and is on it
    LINKED = "linked"  # a CAPA record answers it


class NoticeState(StrEnum):
    """The quality contact's notice on one channel: claimed, then sent, once."""

    NONE = "none"  # no address for this channel
    PENDING = "pending"
    SENDING = "sending"  # claimed and committed before the call
    SENT = "sent"
    FAILED = "failed"
    UNCONFIRMED = "unconfirmed"  # a send whose outcome is unknown; never sent again


SIGNAL_TRANSITIONS: Mapping[str, tuple[frozenset[SignalState], SignalState]] = {
    "acknowledge": (frozenset({SignalState.OPEN}), SignalState.ACKNOWLEDGED),
    "link_capa": (frozenset({SignalState.OPEN, SignalState.ACKNOWLEDGED}), SignalState.LINKED),
}


@dataclass(slots=True)
class QualitySignal:
    """A raised signal with its own hash-chained trail. Change it only through its
    methods: each appends an event to `new_events`."""

    id: str
    shop_id: str
    sku: str
    lot: str | None
    threshold: Threshold
    window: Window
    raised_at: datetime
    case_ids: tuple[str, ...]
    units: int
    shipped: int | None
    rate_percent: Decimal | None
    state: SignalState = SignalState.OPEN
    email_state: NoticeState = NoticeState.NONE
    sms_state: NoticeState = NoticeState.NONE
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    note: str = ""
    capa_id: str | None = None
    audit_seq: int = 0
    audit_head: str = GENESIS
    new_events: list[AuditEvent] = field(default_factory=list)

    @classmethod
    def raise_for(cls, crossing: Crossing, at: datetime, *, email: str | None,
                  phone: str | None) -> QualitySignal:
        signal = cls(crossing.id, crossing.shop_id, crossing.sku, crossing.lot,
                     crossing.threshold, crossing.window, at, crossing.case_ids,
                     crossing.units, crossing.shipped, crossing.rate_percent,
                     email_state=NoticeState.PENDING if email else NoticeState.NONE,
                     sms_state=NoticeState.PENDING if phone else NoticeState.NONE)
        signal._append(at, "system", "raise", None, SignalState.OPEN, signal.evidence())
        return signal

    @property
    def count(self) -> int:
        return len(self.case_ids)

    @property
    def group(self) -> SignalGroup:
        return self.threshold.group

    def evidence(self) -> dict[str, Any]:
        """What the signal rests on: the threshold, the window, the cases and the counts."""
        return {"signal_id": self.id, "shop_id": self.shop_id, "sku": self.sku,
                "lot": self.lot, "threshold": self.threshold.as_json(),
                "window_start": self.window.start.isoformat(),
                "window_end": self.window.last_day.isoformat(),
                "case_ids": list(self.case_ids), "count": self.count, "units": self.units,
                "shipped_units": self.shipped,
                "rate_percent": None if self.rate_percent is None else str(self.rate_percent)}

    def _append(self, at: datetime, actor: str, name: str, from_state: SignalState | None,
                to_state: SignalState | None, data: dict[str, Any]) -> None:
        event = chain_event(self.audit_seq, self.audit_head, at=at, actor=actor, name=name,
                            from_state=from_state.value if from_state else None,
                            to_state=to_state.value if to_state else None, data=data)
        self.audit_seq, self.audit_head = event.seq, event.hash
        self.new_events.append(event)

    def _move(self, transition: str, at: datetime, actor: str, data: dict[str, Any]) -> None:
        sources, target = SIGNAL_TRANSITIONS[transition]
        if self.state not in sources:
            raise IllegalTransition(self.id, self.state.value, transition)
        before, self.state = self.state, target
        self._append(at, actor, transition, before, target, data)

    def acknowledge(self, actor: str, at: datetime, note: str = "") -> None:
        self._move("acknowledge", at, actor, {"note": note})
        self.acknowledged_by, self.acknowledged_at, self.note = actor, at, note

    def link_capa(self, capa_id: str, actor: str, at: datetime) -> None:
        self._move("link_capa", at, actor, {"capa_id": capa_id})
        self.capa_id = capa_id

    def record(self, name: str, at: datetime, actor: str, data: dict[str, Any]) -> None:
        """A fact that changes no state (an evidence export)."""
        self._append(at, actor, name, self.state, self.state, data)

    def notice_sent(self, channel: str, state: NoticeState, at: datetime,
                    detail: str = "") -> None:
        """The quality contact's notice on one channel ended so (sent, failed, unknown)."""
        self._append(at, "system", "notify", self.state, self.state,
                     {"channel": channel, "outcome": state.value, "detail": detail[:500]})


# ------------------------------------------------------------------ the quality contact


@dataclass(frozen=True, slots=True)
class QualityAlert:
    """The quality contact's notice of a raised signal: staff, not a customer, so plain
    words of our own (`alert_for`), sent by a notifier that can (`QualityAlertSender`)."""

    signal_id: str
    shop_id: str
    locale: str
    email: str | None
    phone: str | None
    message_id: str  # stable per signal and channel: a resend can be recognised
    subject: str
    body: str
    sms_text: str


@runtime_checkable
class QualityAlertSender(Protocol):
    """An email notifier that can send a `QualityAlert` (smtp, sandbox_notifier)."""

    def send_quality_alert(self, alert: QualityAlert) -> None: ...


@runtime_checkable
class QualityAlertTexter(Protocol):
    """An SMS connector that can send our own words (sandbox_sms, twilio). Providers that
    send only approved templates (Aliyun, Tencent) cannot: the email carries the notice."""

    def send_quality_sms(self, alert: QualityAlert) -> str:
        """Send `alert.sms_text` to `alert.phone`; the provider's id of the send."""
        ...


_ALERT_TEXT = {
    "en": {
        ThresholdName.QUALITY_COUNT: "{count} quality returns of {product} in {days} days",
        ThresholdName.QUALITY_RATE: "quality returns of {product} at {rate}% of {shipped} "
                                    "units shipped (above {limit}%)",
        ThresholdName.ADVERSE_EVENT_COUNT: "{count} possible adverse events on {product} in "
                                           "{days} days",
        ThresholdName.RECALL_COUNT: "{count} recall returns of {product} in {days} days",
        "subject": "Quality signal: {what}",
        "product": "lot {lot} of {sku}",
        "product_no_lot": "{sku} (no lot given)",
        "body": "A quality signal was raised for shop {shop}: {what}.\n\nWindow: {start} to "
                "{end}\nCases: {cases}\nReturned units: {units}\nSignal: {signal}\n\nOpen the "
                "console's Signals page to see the cases and open a CAPA.",
        "sms": "[RefundBridge] Quality signal {signal}: {what}. See the console.",
    },
    "zh-CN": {
        ThresholdName.QUALITY_COUNT: "{product} {days} 天内质量退货 {count} 件次",
        ThresholdName.QUALITY_RATE: "{product} 质量退货率 {rate}%（已发货 {shipped} 件，"
                                    "超过 {limit}%）",
        ThresholdName.ADVERSE_EVENT_COUNT: "{product} {days} 天内可能的不良事件 {count} 起",
        ThresholdName.RECALL_COUNT: "{product} {days} 天内召回退货 {count} 件次",
        "subject": "质量信号：{what}",
        "product": "{sku} 批次 {lot}",
        "product_no_lot": "{sku}（未注明批次）",
        "body": "店铺 {shop} 触发质量信号：{what}。\n\n时间窗：{start} 至 {end}\n案件：{cases}\n"
                "退回数量：{units}\n信号编号：{signal}\n\n"
                "请在控制台“质量信号”页查看案件并发起 CAPA。",
        "sms": "【RefundBridge】质量信号 {signal}：{what}。请登录控制台查看。",
    },
}


def describe(signal: QualitySignal, locale: str) -> str:
    """One line saying what crossed which threshold, in `locale` (en or zh-CN)."""
    words = _ALERT_TEXT.get(locale, _ALERT_TEXT["en"])
    product = (words["product"].format(lot=signal.lot, sku=signal.sku) if signal.lot
               else words["product_no_lot"].format(sku=signal.sku))
    return words[signal.threshold.name].format(
        count=signal.count, product=product, days=signal.window.days,
        rate=signal.rate_percent if signal.rate_percent is not None else "?",
        shipped=signal.shipped, limit=signal.threshold.rate_percent)


def alert_for(signal: QualitySignal, policy: SignalPolicy) -> QualityAlert:
    locale = policy.contact_locale if policy.contact_locale in _ALERT_TEXT else "en"
    words = _ALERT_TEXT[locale]
    what = describe(signal, locale)
    body = words["body"].format(shop=signal.shop_id, what=what,
                                start=signal.window.start.isoformat(),
                                end=signal.window.last_day.isoformat(),
                                cases=", ".join(signal.case_ids), units=signal.units,
                                signal=signal.id)
    return QualityAlert(signal.id, signal.shop_id, locale, policy.contact_email,
                        policy.contact_phone, f"{signal.id}.quality-alert",
                        words["subject"].format(what=what), body,
                        words["sms"].format(signal=signal.id, what=what))


@dataclass(frozen=True, slots=True)
class SignalCase:
    """A case behind a signal, as its page lists it."""

    id: str
    state: str
    opened_at: datetime
    order_id: str
    reason: str


class SignalRepository(Protocol):
    """Where signals live (store/signals.py)."""

    def case_hits(self, shop_id: str, since: datetime, until: datetime, zone: str,
                  quality_reasons: Collection[ReasonCode]) -> list[CaseHit]: ...

    def add(self, signal: QualitySignal) -> bool:
        """False, writing nothing, when a signal of that id exists."""
        ...

    def get(self, signal_id: str) -> QualitySignal: ...

    def save(self, signal: QualitySignal) -> None: ...

    def events(self, signal_id: str) -> list[AuditEvent]: ...

    def for_shops(self, shops: Sequence[str] | None, *, state: SignalState | None = None,
                  limit: int = 200) -> list[QualitySignal]: ...

    def for_lot(self, shop_id: str, lot: str) -> list[QualitySignal]: ...

    def cases(self, case_ids: Sequence[str]) -> list[SignalCase]: ...

    def unnotified(self, shop_ids: Sequence[str] | None = None) -> list[str]: ...

    def claim_notice(self, signal_id: str, at: datetime, stale_before: datetime
                     ) -> tuple[QualitySignal | None, bool]: ...

    def record_notice(self, signal: QualitySignal, at: datetime) -> None: ...

    def cached_shipped(self, shop_id: str, sku: str, lot: str | None, since: date,
                       until: date, fresh_after: datetime) -> int | None: ...

    def remember_shipped(self, shop_id: str, sku: str, lot: str | None, since: date,
                         until: date, quantity: int, at: datetime) -> None: ...
