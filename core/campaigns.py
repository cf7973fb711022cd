"""Recall campaigns: from a recall notice to every buyer of the lot, told, answered, counted.

A `RecallCampaign` is one recall notice a shop passes on ([RECALL] Arts 16-17; 21 CFR 7.49).
It walks the ERP for everyone who received a covered unit (`Consignee`s, merged page by page),
stops the stock on hand (quarantine, once), tells every consignee by email and SMS with a
link where they acknowledge, and reminds those who have not, on a schedule by class. Its
life is one explicit state machine:

    identifying --consignees_identified--> notifying --all_notified--> monitoring
        --close--> closed

`identifying` already notifies the consignees found so far (a class I recall must not wait
for the end of a 50,000-customer walk). Each transition, each page read, each batch of
notices, each acknowledgement and each case it opens appends to the campaign's own
hash-chained audit trail (`core.audit`), as a case's do.

Part of the pure core: the standard library, `core.audit`, `core.recalls` and `core.ports`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from refundbridge.core.audit import GENESIS, AuditEvent, chain_event
from refundbridge.core.errors import IllegalTransition, InvalidRequest
from refundbridge.core.ports import Consignee, ConsigneeUnits, RecallScope
from refundbridge.core.recalls import (
    LOT_MAX,
    REFERENCE_MAX,
    SERIAL_MAX,
    SKU_MAX,
    Recall,
    RecallClass,
    normalize_gtin,
)

MAX_SCOPE_ITEMS = 500  # lots or serials named in one notice
INSTRUCTIONS_MAX = 4000
PAGE_SIZE = 200  # shipment rows asked of the ERP per identify job
NOTICE_BATCH = 100  # consignees one notify job tells before handing the rest on
ACK_NOTE_MAX = 2000  # a consignee's note with their acknowledgement


class CampaignState(StrEnum):
    IDENTIFYING = "identifying"  # walking the ERP (the consignees found are told already)
    NOTIFYING = "notifying"  # every consignee found; notices still going out
    MONITORING = "monitoring"  # everyone told: acknowledgements, reminders, returns
    CLOSED = "closed"  # a person closed it after the effectiveness check


class CampaignTransition(StrEnum):
    OPEN = "open"
    CONSIGNEES_IDENTIFIED = "consignees_identified"
    ALL_NOTIFIED = "all_notified"
    CLOSE = "close"


_S = CampaignState
CAMPAIGN_TRANSITIONS: dict[CampaignTransition, tuple[frozenset[CampaignState | None],
                                                     CampaignState]] = {
    CampaignTransition.OPEN: (frozenset({None}), _S.IDENTIFYING),
    CampaignTransition.CONSIGNEES_IDENTIFIED: (frozenset({_S.IDENTIFYING}), _S.NOTIFYING),
    CampaignTransition.ALL_NOTIFIED: (frozenset({_S.NOTIFYING}), _S.MONITORING),
    CampaignTransition.CLOSE: (frozenset({_S.MONITORING}), _S.CLOSED),
}


class CampaignStep(StrEnum):
    """A campaign's work, one job each, through the same outbox as a case's steps."""

    IDENTIFY = "rc_identify"  # read the next page of consignees from the ERP
    QUARANTINE = "rc_quarantine"  # move the stock on hand to quarantine, once
    NOTIFY = "rc_notify"  # tell the next batch of consignees
    REMIND = "rc_remind"  # remind those whose reminder is due
    OPEN_CASES = "rc_cases"  # open the recall cases of those who asked to return units


class RecallAction(StrEnum):
    """What the manufacturer's notice tells a consignee to do (21 CFR 7.49(c))."""

    STOP_USE = "stop_use"
    RETURN = "return"
    DESTROY = "destroy"
    AWAIT_CORRECTION = "await_correction"


class CheckLevel(StrEnum):
    """FDA's effectiveness check levels: A every consignee, B a share between C and A, C 10 %,
    D 2 %, E none. China's implementation report asks for the check's result too."""

    A = "A"
    B = "B"
    C = "C"
    D = "D"
    E = "E"


_LEVEL_PERCENT = {CheckLevel.A: 100, CheckLevel.C: 10, CheckLevel.D: 2, CheckLevel.E: 0}

# Reminders to consignees who have not acknowledged: (first after, then every, at most),
# class I first and most often. Our decision; the notice deadlines are the regulation's.
REMINDERS: dict[RecallClass, tuple[timedelta, int]] = {
    RecallClass.I: (timedelta(days=1), 5),
    RecallClass.II: (timedelta(days=3), 3),
    RecallClass.III: (timedelta(days=7), 2),
}


def campaign_id_for(shop_id: str, reference: str) -> str:
    """The campaign's id, derived from the shop and the notice's reference: opening the same
    recall twice names the same campaign, whoever does it and however often."""
    digest = hashlib.sha256(f"{shop_id}\x1f{reference.strip().casefold()}".encode())
    # 80 bits: unique among a deployment's campaigns, and short, for the links in an SMS.
    return "rcp_" + digest.hexdigest()[:20]


def _texts(values: Sequence[object], name: str, limit: int,
           problems: list[tuple[str, str]]) -> tuple[str, ...]:
    found: list[str] = []
    if len(values) > MAX_SCOPE_ITEMS:
        problems.append((name, f"names more than {MAX_SCOPE_ITEMS}; open one campaign per "
                               "notice part"))
        return ()
    for index, value in enumerate(values):
        if not isinstance(value, str) or not value.strip():
            problems.append((f"{name}[{index}]", "must be non-empty text"))
        elif len(value.strip()) > limit:
            problems.append((f"{name}[{index}]", f"is longer than {limit} characters"))
        else:
            found.append(value.strip())
    return tuple(dict.fromkeys(found))


@dataclass(frozen=True, slots=True)
class RecallNotice:
    """What an operator opens a campaign with. Construction validates; `InvalidRequest`
    names every bad field."""

    reference: str
    recall_class: RecallClass
    notice_date: date
    sku: str | None = None
    gtin: str | None = None
    lots: tuple[str, ...] = ()
    serials: tuple[str, ...] = ()
    actions: tuple[RecallAction, ...] = (RecallAction.STOP_USE, RecallAction.RETURN)
    instructions: str = ""
    check_level: CheckLevel = CheckLevel.A
    check_percent: int | None = None  # level B only: the share of consignees checked

    def __post_init__(self) -> None:
        problems: list[tuple[str, str]] = []
        reference = self.reference.strip() if isinstance(self.reference, str) else ""
        if not reference:
            problems.append(("reference", "is required: the recall notice's reference"))
        elif len(reference) > REFERENCE_MAX:
            problems.append(("reference", f"is longer than {REFERENCE_MAX} characters"))
        sku = self.sku.strip() if isinstance(self.sku, str) and self.sku.strip() else None
        if sku is not None and len(sku) > SKU_MAX:
            problems.append(("sku", f"is longer than {SKU_MAX} characters"))
        gtin = None
        if isinstance(self.gtin, str) and self.gtin.strip():
            try:
                gtin = normalize_gtin(self.gtin)
            except InvalidRequest as exc:
                problems.append(("gtin", exc.message))
        elif sku is None:
            problems.append(("sku", "a sku or a gtin names the recalled product"))
        lots = _texts(self.lots, "lots", LOT_MAX, problems)
        serials = _texts(self.serials, "serials", SERIAL_MAX, problems)
        try:
            recall_class = RecallClass(self.recall_class)
        except ValueError:
            problems.append(("class", "must be I, II or III"))
            recall_class = RecallClass.I
        if not isinstance(self.notice_date, date) or isinstance(self.notice_date, datetime):
            problems.append(("notice_date", "must be a date"))
        actions: list[RecallAction] = []
        for index, action in enumerate(self.actions):
            try:
                actions.append(RecallAction(action))
            except ValueError:
                problems.append((f"actions[{index}]", "must be one of "
                                 + ", ".join(a.value for a in RecallAction)))
        if not self.actions:
            problems.append(("actions", "name at least one: what consignees must do"))
        if len(self.instructions) > INSTRUCTIONS_MAX:
            problems.append(("instructions", f"is longer than {INSTRUCTIONS_MAX} characters"))
        try:
            level = CheckLevel(self.check_level)
        except ValueError:
            problems.append(("check_level", "must be A, B, C, D or E"))
            level = CheckLevel.A
        percent = self.check_percent
        if level is CheckLevel.B:
            if percent is None or not 10 < percent < 100:
                problems.append(("check_percent", "level B checks more than 10 % and less "
                                                  "than 100 % of consignees"))
        elif percent is not None and percent != _LEVEL_PERCENT[level]:
            problems.append(("check_percent", f"level {level.value} checks "
                                              f"{_LEVEL_PERCENT[level]} %"))
        if problems:
            raise InvalidRequest(problems[0][0], problems[0][1], problems)
        for name, value in (("reference", reference), ("sku", sku), ("gtin", gtin),
                            ("lots", lots), ("serials", serials),
                            ("recall_class", recall_class), ("actions", tuple(actions)),
                            ("instructions", self.instructions.strip()),
                            ("check_level", level),
                            ("check_percent", percent if level is CheckLevel.B
                             else _LEVEL_PERCENT[level])):
            object.__setattr__(self, name, value)

    @property
    def scope(self) -> RecallScope:
        return RecallScope(sku=self.sku, gtin=self.gtin, lots=self.lots, serials=self.serials)

    @property
    def notice_due(self) -> date:
        """When every consignee must have been told: class I 1, II 3, III 7 days from the
        notice ([RECALL] Art 16, read second-hand)."""
        return self.notice_date + timedelta(days=self.recall_class.notice_days)

    def recalls(self) -> list[Recall]:
        """The notice as recall-list entries, so rule R13 decides incoming requests of the
        lot the same way (refund whatever the window, never restock)."""
        def entry(lot: str | None = None, serial: str | None = None) -> Recall:
            return Recall(reference=self.reference, recall_class=self.recall_class,
                          notice_date=self.notice_date, gtin=self.gtin, sku=self.sku,
                          lot=lot, serial=serial)

        if self.serials:
            return [entry(serial=serial) for serial in self.serials]
        if self.lots:
            return [entry(lot=lot) for lot in self.lots]
        return [entry()]

    def as_json(self) -> dict[str, Any]:
        return {"reference": self.reference, "class": self.recall_class.value,
                "notice_date": self.notice_date.isoformat(), "sku": self.sku,
                "gtin": self.gtin, "lots": list(self.lots), "serials": list(self.serials),
                "actions": [a.value for a in self.actions], "instructions": self.instructions,
                "check_level": self.check_level.value, "check_percent": self.check_percent}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RecallNotice:
        return cls(reference=data["reference"], recall_class=RecallClass(data["class"]),
                   notice_date=date.fromisoformat(data["notice_date"]), sku=data.get("sku"),
                   gtin=data.get("gtin"), lots=tuple(data.get("lots") or ()),
                   serials=tuple(data.get("serials") or ()),
                   actions=tuple(RecallAction(a) for a in data.get("actions") or ()),
                   instructions=data.get("instructions") or "",
                   check_level=CheckLevel(data.get("check_level") or "A"),
                   check_percent=data.get("check_percent"))


@dataclass(slots=True)
class RecallCampaign:
    """The aggregate. Change it only through its methods: each moves the state machine or
    records a fact, and appends an event to `new_events`."""

    id: str
    shop_id: str
    notice: RecallNotice
    state: CampaignState
    opened_at: datetime
    opened_by: str
    cursor: str | None = None  # where the ERP walk goes on from
    pages_read: int = 0
    identified_at: datetime | None = None
    quarantine_document: str | None = None  # None: not yet; "": nothing was on hand
    quarantined_at: datetime | None = None
    quarantined_units: int = 0
    # Set and saved before the ERP is asked to move stock: a second job finds it and leaves
    # the move to the first (or, after the lease, asks the ERP by the key).
    quarantine_claimed_at: datetime | None = None
    all_notified_at: datetime | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None
    close_note: str = ""
    capa_id: str | None = None  # the CAPA record it came from, if any
    walk_failed: str | None = None  # the ERP walk was given up on: a person must look
    version: int = 0
    audit_seq: int = 0
    audit_head: str = GENESIS
    new_events: list[AuditEvent] = field(default_factory=list)
    new_steps: list[CampaignStep] = field(default_factory=list)

    @classmethod
    def open(cls, shop_id: str, notice: RecallNotice, *, actor: str, at: datetime,
             can_quarantine: bool) -> RecallCampaign:
        campaign = cls(campaign_id_for(shop_id, notice.reference), shop_id, notice,
                       CampaignState.IDENTIFYING, at, actor)
        campaign._append(at, actor, CampaignTransition.OPEN.value, None,
                         CampaignState.IDENTIFYING, {"notice": notice.as_json(),
                                                     "notice_due": notice.notice_due.isoformat()})
        campaign.new_steps.append(CampaignStep.IDENTIFY)
        if can_quarantine:
            campaign.new_steps.append(CampaignStep.QUARANTINE)
        return campaign

    # ---------------------------------------------------------------- the trail

    def _append(self, at: datetime, actor: str, name: str, from_state: CampaignState | None,
                to_state: CampaignState | None, data: dict[str, Any]) -> None:
        event = chain_event(self.audit_seq, self.audit_head, at=at, actor=actor, name=name,
                            from_state=from_state.value if from_state else None,
                            to_state=to_state.value if to_state else None, data=data)
        self.audit_seq, self.audit_head = event.seq, event.hash
        self.new_events.append(event)

    def _move(self, transition: CampaignTransition, at: datetime, actor: str,
              data: dict[str, Any]) -> None:
        sources, target = CAMPAIGN_TRANSITIONS[transition]
        if self.state not in sources:
            raise IllegalTransition(self.id, self.state.value, transition.value)
        before, self.state = self.state, target
        self._append(at, actor, transition.value, before, target, data)

    def record(self, name: str, at: datetime, actor: str, data: dict[str, Any]) -> None:
        """A fact that changes no state (a batch of notices, an acknowledgement)."""
        self._append(at, actor, name, self.state, self.state, data)

    # ---------------------------------------------------------------- the steps

    @property
    def is_open(self) -> bool:
        return self.state is not CampaignState.CLOSED

    def page_read(self, cursor: str | None, found: int, new: int, at: datetime) -> None:
        """One page of the ERP walk merged; the last one (`cursor` None) ends the walk."""
        if self.state is not CampaignState.IDENTIFYING:
            raise IllegalTransition(self.id, self.state.value, "page_read")
        self.pages_read += 1
        self.cursor = cursor
        self.record("consignees_page", at, "system", {"page": self.pages_read,
                                                      "rows": found, "new_consignees": new})
        if new:
            self.new_steps.append(CampaignStep.NOTIFY)
        if cursor is None:
            self.identified_at = at
            self._move(CampaignTransition.CONSIGNEES_IDENTIFIED, at, "system",
                       {"pages": self.pages_read})
            self.new_steps.append(CampaignStep.NOTIFY)
        else:
            self.new_steps.append(CampaignStep.IDENTIFY)

    def walk_given_up(self, reason: str, at: datetime) -> None:
        """The ERP walk failed for good: the consignees found so far are still told, the
        campaign goes on to its end, and the page says the list may be incomplete."""
        self.walk_failed = reason[:500]
        if self.state is CampaignState.IDENTIFYING:
            self.identified_at = at
            self._move(CampaignTransition.CONSIGNEES_IDENTIFIED, at, "system",
                       {"pages": self.pages_read, "walk_failed": self.walk_failed})
            self.new_steps.append(CampaignStep.NOTIFY)

    def stock_quarantined(self, document: str, units: int, detail: list[dict[str, Any]],
                          at: datetime) -> None:
        if self.quarantine_document is not None:
            return  # recorded by an earlier run; the ERP's move was found, not made again
        self.quarantine_document, self.quarantined_at = document, at
        self.quarantined_units = units
        self.record("stock_quarantined", at, "system",
                    {"document": document, "units": units, "moved": detail})

    def notices_sent(self, summary: dict[str, int], at: datetime, *, more: bool,
                     remaining: int) -> None:
        """A batch of notices went out. `more`: another batch waits; `remaining`: consignees
        found and not yet told (0 and the walk done: everyone is)."""
        if any(summary.values()):
            self.record("notices_sent", at, "system", summary)
        if more:
            self.new_steps.append(CampaignStep.NOTIFY)
        elif remaining == 0 and self.state is CampaignState.NOTIFYING:
            self.all_notified_at = at
            self._move(CampaignTransition.ALL_NOTIFIED, at, "system", {})

    def reminders_sent(self, summary: dict[str, int], at: datetime, *, more: bool) -> None:
        if any(summary.values()):
            self.record("reminders_sent", at, "system", summary)
        if more:
            self.new_steps.append(CampaignStep.REMIND)

    def remind(self) -> None:
        self.new_steps.append(CampaignStep.REMIND)

    def close(self, actor: str, note: str, at: datetime, summary: dict[str, Any]) -> None:
        self.closed_at, self.closed_by, self.close_note = at, actor, note
        self._move(CampaignTransition.CLOSE, at, actor, {"note": note, **summary})


# ------------------------------------------------------------------ consignees


class NoticeState(StrEnum):
    """One channel's notice to one consignee."""

    PENDING = "pending"
    CLAIMED = "claimed"  # taken by a notify job's batch (committed), not yet being sent
    SENDING = "sending"  # this consignee's call is about to start (committed before it)
    SENT = "sent"
    FAILED = "failed"  # refused for good (a bad address); a person follows up
    # A job died during the call: it may or may not have gone out. Never sent again (a
    # recall notice is not sent twice); the reminders and the console's follow-up cover it.
    UNCONFIRMED = "unconfirmed"
    NONE = "none"  # no address for this channel, or the number opted out


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """What a consignee answers on their link (21 CFR 7.49 effectiveness check)."""

    stopped_use: bool
    quantity_held: int  # units they still have
    wants_return: bool  # return them for a refund (the recall case)
    passed_on: bool = False  # they passed the notice on to whoever they supplied
    note: str = ""


@dataclass(slots=True)
class ConsigneeRecord:
    """One consignee of one campaign, as stored."""

    id: int
    campaign_id: str
    key: str
    name: str
    email: str | None
    phone: str | None
    locale: str | None
    units: list[ConsigneeUnits]
    email_state: NoticeState = NoticeState.PENDING
    sms_state: NoticeState = NoticeState.PENDING
    notified_at: datetime | None = None
    attempts: int = 0
    last_error: str | None = None
    reminders: int = 0
    next_reminder_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledgement: Acknowledgement | None = None
    case_id: str | None = None
    case_problem: str | None = None  # why no recall case could be opened (a person does)
    delivery: str | None = None  # the SMS provider's latest word

    @property
    def quantity(self) -> int:
        return sum(u.quantity for u in self.units)

    @property
    def ack_code(self) -> str:
        """Its id within the campaign, as its link carries it."""
        return str(self.id)


def merge_units(known: Sequence[ConsigneeUnits],
                found: Sequence[ConsigneeUnits]) -> list[ConsigneeUnits]:
    """The consignee's units with a page's added: one per ERP line, a line read twice once."""
    merged = {u.line_id: u for u in known}
    for unit in found:
        merged.setdefault(unit.line_id, unit)
    return sorted(merged.values(), key=lambda u: u.line_id)


def merge_page(consignees: Sequence[Consignee]) -> dict[str, Consignee]:
    """A page's consignees by key, their rows merged (a page may list one twice)."""
    merged: dict[str, Consignee] = {}
    for consignee in consignees:
        known = merged.get(consignee.key)
        if known is None:
            merged[consignee.key] = consignee
        else:
            merged[consignee.key] = Consignee(
                known.key, known.name, tuple(merge_units(known.units, consignee.units)),
                known.email or consignee.email, known.phone or consignee.phone,
                known.locale or consignee.locale)
    return merged


def reminder_due(recall_class: RecallClass, notified_at: datetime, reminders: int
                 ) -> datetime | None:
    """When the next reminder is due after `reminders` of them; None when none is left."""
    every, most = REMINDERS[recall_class]
    if reminders >= most:
        return None
    return notified_at + every * (reminders + 1)


@dataclass(frozen=True, slots=True)
class CampaignCounts:
    """The campaign's progress, as the console and the report show it."""

    consignees: int = 0
    notified: int = 0  # at least one channel sent (or unconfirmed)
    delivered: int = 0  # an email accepted, or an SMS the carrier delivered
    failed: int = 0  # every channel failed or none was there: a person follows up
    acknowledged: int = 0
    units_shipped: int = 0
    units_held: int = 0  # as acknowledged
    units_to_return: int = 0
    units_returned: int = 0  # received by the warehouse on the recall cases
    cases: int = 0
    refunds_paid: int = 0
    refunded: dict[str, str] = field(default_factory=dict)  # currency → amount

    def as_json(self) -> dict[str, Any]:
        return {"consignees": self.consignees, "notified": self.notified,
                "delivered": self.delivered, "failed": self.failed,
                "acknowledged": self.acknowledged, "units_shipped": self.units_shipped,
                "units_held": self.units_held, "units_to_return": self.units_to_return,
                "units_returned": self.units_returned, "cases": self.cases,
                "refunds_paid": self.refunds_paid, "refunded": dict(self.refunded)}


class CampaignRepository(Protocol):
    """Where campaigns and their consignees are kept (store/campaigns.py). Every method is
    its own transaction unless it takes a campaign to save with."""

    def add(self, campaign: RecallCampaign) -> bool:
        """Store a new campaign with its first events and work; False (and nothing written)
        when the shop has one for that reference already."""
        ...

    def get(self, campaign_id: str, *, lock: bool = False) -> RecallCampaign:
        """Raises `NotFound`."""
        ...

    def save(self, campaign: RecallCampaign, *, done: CampaignStep | None = None) -> None:
        """Write the campaign, its new events and new work, and mark `done`'s open work
        done; raises `ConcurrencyConflict` if anyone wrote it since it was read."""
        ...

    def merge_consignees(self, campaign_id: str, consignees: Sequence[Consignee],
                         phones: dict[str, str | None]) -> int:
        """Upsert a page's consignees (`phones`: key → E.164 or None); returns how many
        were new."""
        ...

    def claim_notices(self, campaign_id: str, limit: int, at: datetime,
                      stale_before: datetime
                      ) -> tuple[list[ConsigneeRecord], list[ConsigneeRecord]]:
        """Consignees to tell, claimed (their channels set `sending`, committed) so no other
        job takes them; and those a dead job left `sending`, to be settled first."""
        ...

    def record_notice(self, record: ConsigneeRecord) -> None: ...

    def record_notices(self, records: Sequence[ConsigneeRecord]) -> None:
        """Write these records' notice states in one transaction."""
        ...

    def unnotified(self, campaign_id: str) -> int:
        """Consignees not yet told on any channel (pending or being sent)."""
        ...

    def claim_reminders(self, campaign_id: str, now: datetime, limit: int
                        ) -> list[ConsigneeRecord]:
        """Unacknowledged consignees whose reminder is due, their next one moved on."""
        ...

    def consignee(self, campaign_id: str, consignee_id: int) -> ConsigneeRecord:
        """Raises `NotFound`."""
        ...

    def acknowledge(self, campaign: RecallCampaign, record: ConsigneeRecord) -> bool:
        """Save the consignee's acknowledgement with the campaign's event, in one
        transaction; False (nothing written) when they had acknowledged already."""
        ...

    def link_case(self, campaign_id: str, consignee_id: int, case_id: str | None,
                  problem: str | None) -> None: ...

    def set_delivery(self, campaign_id: str, consignee_id: int, state: str) -> None:
        """The SMS provider's latest word on the consignee's message."""
        ...

    def counts(self, campaign_id: str) -> CampaignCounts: ...

    def events(self, campaign_id: str) -> list[AuditEvent]: ...

    def for_lot(self, shop_id: str, lot: str) -> list[RecallCampaign]:
        """The shop's campaigns whose notice names the lot."""
        ...

    def open_campaigns(self) -> list[tuple[str, str]]:
        """(shop, campaign id) of every campaign not closed."""
        ...

    def due_reminders(self, campaign_id: str, now: datetime) -> bool: ...

    def awaiting_cases(self, campaign_id: str, limit: int) -> list[ConsigneeRecord]:
        """Consignees who asked to return units, with no case yet and no reason why not."""
        ...
