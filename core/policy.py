"""A shop's policy: the thresholds and per-SKU facts the compliance rules read.

Every number a shop may want to change lives here, so changing a threshold is a config edit,
never a code change. `config/settings.py` validates the TOML into these objects and refuses
an invalid policy at start-up, naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo

from refundbridge.core.request import ReasonCode
from refundbridge.core.signals import SignalPolicy

RefundTiming = Literal["on_approval", "on_receipt"]


class Jurisdiction(StrEnum):
    """Whose reporting deadlines apply (compliance.md, "Deadlines and retention")."""

    CN = "CN"
    US = "US"
    EU = "EU"


NO_REASON_CODES = frozenset(
    {ReasonCode.CHANGED_MIND, ReasonCode.NO_LONGER_NEEDED, ReasonCode.ORDERED_BY_MISTAKE}
)
QUALITY_CODES = frozenset(
    {ReasonCode.DEFECTIVE, ReasonCode.DAMAGED_ON_ARRIVAL, ReasonCode.WRONG_ITEM,
     ReasonCode.NOT_AS_DESCRIBED}
)
ADVERSE_EVENT_CODES = frozenset({ReasonCode.INJURY, ReasonCode.MALFUNCTION_HARM})

# Quality claims a person need not look at by default: shipping mistakes, not the device
# failing. A defect or "not as described" may hide a malfunction, so it goes to a person
# (compliance.md R06) unless the shop lists it.
DEFAULT_AUTO_APPROVE_REASONS = NO_REASON_CODES | {ReasonCode.DAMAGED_ON_ARRIVAL,
                                                  ReasonCode.WRONG_ITEM}


@dataclass(frozen=True, slots=True)
class SkuFlags:
    """What a shop knows about one SKU. A flag set here or on the request line counts."""

    no_reason_excluded: bool = False  # excluded from no-reason return (R04)
    sterile: bool = False
    cold_chain: bool = False
    custom_made: bool = False
    implantable: bool = False
    single_use: bool = False
    shelf_life: bool = False  # has an expiry date, so an unknown expiry means scrap (R09)
    professional_only: bool = False  # not for consumer self-use (R15)
    gtin: str | None = None  # the SKU's GTIN, to check scans against (R16)
    # R12: may a unit whose outer box was opened go back on the shelf as new? None: as the
    # shop's `open_box_resale` says.
    open_box_resale: bool | None = None


NO_FLAGS = SkuFlags()


@dataclass(frozen=True, slots=True)
class ShopPolicy:
    refund_timing: RefundTiming = "on_receipt"
    # An exchange's replacement: ordered once the returned unit is back ("on_receipt"), or
    # at once on approval ("on_approval", an advance replacement).
    replacement_timing: RefundTiming = "on_receipt"
    # currency -> largest amount the rules may approve without a person (R20)
    auto_approve_limits: Mapping[str, Decimal] = field(default_factory=dict)
    auto_approve_reasons: frozenset[ReasonCode] = DEFAULT_AUTO_APPROVE_REASONS
    no_reason_window_days: int = 7  # R02, counted from the day after delivery
    near_expiry_days: int = 30  # R09: expiring within this many days → review
    frequent_refund_count: int = 3  # R19: this many earlier requests …
    frequent_refund_days: int = 30  # … within this many days → review
    jurisdiction: Jurisdiction = Jurisdiction.CN
    timezone: str = "Asia/Shanghai"  # the shop's calendar: which day a timestamp falls on
    refund_deadline_days: int = 7  # R07: refund within this many days of receipt
    sku_flags: Mapping[str, SkuFlags] = field(default_factory=dict)
    # R12: a returned device whose outer box was opened is not sold as new (compliance.md:
    # "default: no open-box resale of devices"); it waits in quarantine for a person.
    open_box_resale: bool = False
    # R14: the shop's own words for an injury, on top of core/injury.py's; each one found in
    # a reason's text makes the request a possible adverse event. A shop can only add words.
    injury_terms: tuple[str, ...] = ()
    # Four eyes: currency -> amount above which a reviewer's decision waits for a second
    # reviewer. A currency not listed (the default: none) never needs one by amount; a
    # possible adverse event always does.
    four_eyes_above: Mapping[str, Decimal] = field(default_factory=dict)
    # How many days a customer's status link works (the page offers a fresh one after).
    status_link_days: int = 90
    # Where returned goods go, as the customer's status page shows it ("": not configured).
    return_address: str = ""
    # The default region for customers' phone numbers (ISO 3166 alpha-2); None: from the
    # jurisdiction (CN, US), and for the EU none, so numbers must be given as +…
    country: str | None = None
    # Non-urgent SMS wait for the end of these hours, shop time: (start, end), may wrap
    # midnight ("21:00-08:00"); None: no quiet hours.
    sms_quiet_hours: tuple[time, time] | None = None
    # Quality signals (core/signals.py): the thresholds a lot's returns are judged by, and
    # the quality contact who is told when one is crossed.
    signals: SignalPolicy = field(default_factory=SignalPolicy)

    @property
    def phone_region(self) -> str | None:
        if self.country:
            return self.country
        return {Jurisdiction.CN: "CN", Jurisdiction.US: "US"}.get(self.jurisdiction)

    def quiet_until(self, at: datetime) -> datetime | None:
        """When the SMS quiet hours around `at` end, or None if `at` is not in them."""
        if self.sms_quiet_hours is None:
            return None
        start, end = self.sms_quiet_hours
        local = at.astimezone(ZoneInfo(self.timezone))
        now = local.time().replace(tzinfo=None)
        wraps = start > end
        inside = (now >= start or now < end) if wraps else (start <= now < end)
        if not inside or start == end:
            return None
        day = local.date()
        if wraps and now >= start:
            day = day + timedelta(days=1)
        return datetime.combine(day, end, tzinfo=ZoneInfo(self.timezone))

    def four_eyes_for(self, amount: Decimal, currency: str) -> bool:
        """Whether a reviewer's decision on this amount needs a second reviewer."""
        limit = self.four_eyes_above.get(currency)
        return limit is not None and amount > limit

    def flags(self, sku: str) -> SkuFlags:
        return self.sku_flags.get(sku, NO_FLAGS)

    def open_box_resale_for(self, sku: str) -> bool:
        override = self.flags(sku).open_box_resale
        return self.open_box_resale if override is None else override


def at_noon(day: date, zone: str) -> datetime:
    """'Today' fixed to a date: noon in the shop's calendar, far from either midnight."""
    return datetime.combine(day, time(12), tzinfo=ZoneInfo(zone))
