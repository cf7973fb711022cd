"""CAPA records: a quality problem tied to its cases and lots, from discovery to closure.

A `CapaRecord` is one corrective and preventive action record (ISO 13485 8.5.2-8.5.3; the
seed article on complaints, 纠正与预防措施): the problem as found (from a quality signal or
from any case), the cases and lots it concerns, the investigation's root cause, the actions
with their owners and due dates, the check that they worked, and its closure. Its life is
one explicit state machine:

    open --start_investigation--> investigating --record_root_cause--> actions_planned
        --actions_done (the last action completed)--> actions_done
        --plan_effectiveness_check--> effectiveness_check
        --check_effective--> effective --close--> closed
    effectiveness_check --check_not_effective--> actions_planned   (the actions reopen)
    any state before closed --cancel--> cancelled

Facts that change no state (an action added or completed, a root cause revised, the
escalation into a recall campaign) are recorded too. Every step appends an event, stamped
with when and who, to the record's own hash-chained trail (`core.audit`), as a case's and a
campaign's do; `core.audit.verify_chain` checks it.

Part of the pure core: the standard library, `core.audit`, `core.errors`, `core.recalls`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Protocol

from refundbridge.core.audit import GENESIS, AuditEvent, chain_event
from refundbridge.core.errors import IllegalTransition, InvalidRequest
from refundbridge.core.recalls import LOT_MAX, SKU_MAX

PROBLEM_MAX = 4000
TEXT_MAX = 4000  # a root cause, an action, a measure, a result, a closing note
OWNER_MAX = 128
REASON_MAX = 2000
CASE_ID_MAX = 40
SIGNAL_ID_MAX = 64
KEY_MAX = 64  # an opening key (a form's token, a client's request id)
MAX_CASES = 200
MAX_LOTS = 100
MAX_ACTIONS = 100
# Control characters other than tab and line breaks: never part of a record, and a NUL is
# refused by PostgreSQL's text and JSON columns.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ONE_LINE = re.compile(r"[\x00-\x1f\x7f]")
CAPA_ID = re.compile(r"capa_[0-9a-f]{20}")


class CapaState(StrEnum):
    OPEN = "open"  # opened: nobody investigates yet
    INVESTIGATING = "investigating"  # someone looks for the root cause
    ACTIONS_PLANNED = "actions_planned"  # the root cause is known; actions are under way
    ACTIONS_DONE = "actions_done"  # every action done: the check is to be planned
    EFFECTIVENESS_CHECK = "effectiveness_check"  # the check is planned, its result awaited
    EFFECTIVE = "effective"  # the check found the actions effective: it may close
    CLOSED = "closed"
    CANCELLED = "cancelled"


class CapaTransition(StrEnum):
    OPEN = "open"
    START_INVESTIGATION = "start_investigation"
    RECORD_ROOT_CAUSE = "record_root_cause"
    ACTIONS_DONE = "actions_done"
    PLAN_EFFECTIVENESS_CHECK = "plan_effectiveness_check"
    CHECK_EFFECTIVE = "check_effective"
    CHECK_NOT_EFFECTIVE = "check_not_effective"
    CLOSE = "close"
    CANCEL = "cancel"


_S = CapaState
TERMINAL = frozenset({_S.CLOSED, _S.CANCELLED})
_LIVE = frozenset(set(CapaState) - TERMINAL)
CAPA_TRANSITIONS: dict[CapaTransition, tuple[frozenset[CapaState | None], CapaState]] = {
    CapaTransition.OPEN: (frozenset({None}), _S.OPEN),
    CapaTransition.START_INVESTIGATION: (frozenset({_S.OPEN}), _S.INVESTIGATING),
    # Recorded again while the actions run, it revises the root cause (the state stays).
    CapaTransition.RECORD_ROOT_CAUSE: (frozenset({_S.INVESTIGATING, _S.ACTIONS_PLANNED}),
                                       _S.ACTIONS_PLANNED),
    CapaTransition.ACTIONS_DONE: (frozenset({_S.ACTIONS_PLANNED}), _S.ACTIONS_DONE),
    CapaTransition.PLAN_EFFECTIVENESS_CHECK: (frozenset({_S.ACTIONS_DONE}),
                                              _S.EFFECTIVENESS_CHECK),
    CapaTransition.CHECK_EFFECTIVE: (frozenset({_S.EFFECTIVENESS_CHECK}), _S.EFFECTIVE),
    CapaTransition.CHECK_NOT_EFFECTIVE: (frozenset({_S.EFFECTIVENESS_CHECK}),
                                         _S.ACTIONS_PLANNED),
    CapaTransition.CLOSE: (frozenset({_S.EFFECTIVE}), _S.CLOSED),
    CapaTransition.CANCEL: (frozenset(_LIVE), _S.CANCELLED),
}
# Where the facts may be recorded.
ADD_ACTION_STATES = frozenset({_S.INVESTIGATING, _S.ACTIONS_PLANNED})  # containment may
COMPLETE_ACTION_STATES = frozenset({_S.INVESTIGATING, _S.ACTIONS_PLANNED})  # start early
ESCALATE_STATES = _LIVE


def allows(state: CapaState, transition: CapaTransition) -> bool:
    return state in CAPA_TRANSITIONS[transition][0]


class ActionKind(StrEnum):
    CORRECTIVE = "corrective"  # removes the cause of the problem found
    PREVENTIVE = "preventive"  # keeps it (or its like) from happening elsewhere


class CheckResult(StrEnum):
    EFFECTIVE = "effective"
    NOT_EFFECTIVE = "not_effective"


def capa_id_for(shop_id: str, key: str) -> str:
    """The record's id, derived from the shop and an opening key: the quality signal's id
    when it comes from a signal (one CAPA per signal, however often it is opened), else the
    form's one-time token or the client's request id (a double submit opens one)."""
    digest = hashlib.sha256(f"{shop_id}\x1fcapa\x1f{key}".encode())
    return "capa_" + digest.hexdigest()[:20]


def new_opening_key() -> str:
    """A one-time opening key, for a form or a client that sent none."""
    return secrets.token_hex(16)


# ------------------------------------------------------------------ validation


class _Problems:
    """Every bad field of one request, raised together as one `InvalidRequest`."""

    def __init__(self) -> None:
        self.found: list[tuple[str, str]] = []

    def add(self, name: str, message: str) -> None:
        self.found.append((name, message))

    def text(self, value: object, name: str, limit: int, *, required: bool = True,
             multiline: bool = True) -> str:
        if value is None:
            value = ""
        if not isinstance(value, str):
            self.add(name, "must be text")
            return ""
        stripped = value.strip()
        if required and not stripped:
            self.add(name, "is required")
        elif len(stripped) > limit:
            self.add(name, f"is longer than {limit} characters")
        elif (_CONTROL if multiline else _ONE_LINE).search(stripped):
            self.add(name, "contains control characters" if multiline
                     else "must be one line, without control characters")
        return stripped

    def raise_any(self) -> None:
        if self.found:
            raise InvalidRequest(self.found[0][0], self.found[0][1], self.found)


@dataclass(frozen=True, slots=True)
class LotRef:
    """A product and lot the problem concerns; `lot` "" is every lot of the product."""

    sku: str
    lot: str = ""

    def as_json(self) -> dict[str, str]:
        return {"sku": self.sku, "lot": self.lot}


@dataclass(frozen=True, slots=True)
class CapaOpening:
    """What a CAPA is opened with. `checked` validates it and names every bad field."""

    problem: str
    cases: tuple[str, ...] = ()
    lots: tuple[LotRef, ...] = ()
    signal_id: str | None = None

    def checked(self) -> CapaOpening:
        p = _Problems()
        problem = p.text(self.problem, "problem", PROBLEM_MAX)
        if len(self.cases) > MAX_CASES:
            p.add("cases", f"names more than {MAX_CASES} cases")
        cases = [p.text(c, f"cases[{i}]", CASE_ID_MAX, multiline=False)
                 for i, c in enumerate(self.cases[:MAX_CASES])]
        if len(self.lots) > MAX_LOTS:
            p.add("lots", f"names more than {MAX_LOTS} lots")
        lots = []
        for i, ref in enumerate(self.lots[:MAX_LOTS]):
            if not isinstance(ref, LotRef):
                p.add(f"lots[{i}]", "must name a sku and a lot")
                continue
            lots.append(LotRef(p.text(ref.sku, f"lots[{i}].sku", SKU_MAX, multiline=False),
                               p.text(ref.lot, f"lots[{i}].lot", LOT_MAX, required=False,
                                      multiline=False)))
        signal = None
        if self.signal_id is not None:
            signal = p.text(self.signal_id, "signal", SIGNAL_ID_MAX, multiline=False) or None
        if not cases and not lots and signal is None:
            p.add("cases", "link at least one case, lot or quality signal: what the problem "
                           "was found in")
        p.raise_any()
        return CapaOpening(problem, tuple(dict.fromkeys(cases)), tuple(dict.fromkeys(lots)),
                           signal)


@dataclass(slots=True)
class CapaAction:
    """One corrective or preventive action: what, who owns it, by when; and when it was
    done, by whom."""

    number: int
    kind: ActionKind
    description: str
    owner: str
    due: date
    added_at: datetime
    added_by: str
    done_at: datetime | None = None
    done_by: str | None = None
    done_note: str = ""

    @property
    def is_done(self) -> bool:
        return self.done_at is not None

    def overdue(self, today: date) -> bool:
        return not self.is_done and self.due < today

    def as_json(self) -> dict[str, Any]:
        return {"number": self.number, "kind": self.kind.value,
                "description": self.description, "owner": self.owner,
                "due": self.due.isoformat(), "added_at": self.added_at.isoformat(),
                "added_by": self.added_by, "done_at": _iso(self.done_at),
                "done_by": self.done_by, "done_note": self.done_note}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CapaAction:
        return cls(int(d["number"]), ActionKind(d["kind"]), d["description"], d["owner"],
                   date.fromisoformat(d["due"]), datetime.fromisoformat(d["added_at"]),
                   d["added_by"], _at(d.get("done_at")), d.get("done_by"),
                   d.get("done_note") or "")


@dataclass(slots=True)
class EffectivenessCheck:
    """What will be measured to see that the actions worked, by when; and what it found."""

    number: int
    measure: str
    due: date
    planned_at: datetime
    planned_by: str
    result: CheckResult | None = None
    result_note: str = ""
    result_at: datetime | None = None
    result_by: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"number": self.number, "measure": self.measure, "due": self.due.isoformat(),
                "planned_at": self.planned_at.isoformat(), "planned_by": self.planned_by,
                "result": self.result.value if self.result else None,
                "result_note": self.result_note, "result_at": _iso(self.result_at),
                "result_by": self.result_by}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EffectivenessCheck:
        return cls(int(d["number"]), d["measure"], date.fromisoformat(d["due"]),
                   datetime.fromisoformat(d["planned_at"]), d["planned_by"],
                   CheckResult(d["result"]) if d.get("result") else None,
                   d.get("result_note") or "", _at(d.get("result_at")), d.get("result_by"))


@dataclass(frozen=True, slots=True)
class Escalation:
    """The recall campaign a CAPA asked for: what the form added to the CAPA's lots
    (stored before the campaign is opened, so a second escalation opens the same one)."""

    reference: str
    recall_class: str
    actions: tuple[str, ...]
    sku: str
    lots: tuple[str, ...]
    notice_date: date
    requested_at: datetime
    requested_by: str

    def as_json(self) -> dict[str, Any]:
        return {"reference": self.reference, "class": self.recall_class,
                "actions": list(self.actions), "sku": self.sku, "lots": list(self.lots),
                "notice_date": self.notice_date.isoformat(),
                "requested_at": self.requested_at.isoformat(),
                "requested_by": self.requested_by}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Escalation:
        return cls(d["reference"], d["class"], tuple(d["actions"]), d["sku"],
                   tuple(d["lots"]), date.fromisoformat(d["notice_date"]),
                   datetime.fromisoformat(d["requested_at"]), d["requested_by"])


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _due(value: object, name: str, p: _Problems) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    p.add(name, "must be a date (YYYY-MM-DD)")
    return date.min


# ------------------------------------------------------------------ the record


@dataclass(slots=True)
class CapaRecord:
    """The aggregate. Change it only through its methods: each moves the state machine or
    records a fact, and appends an event to `new_events`."""

    id: str
    shop_id: str
    problem: str
    cases: tuple[str, ...]
    lots: tuple[LotRef, ...]
    signal_id: str | None
    state: CapaState
    opened_at: datetime
    opened_by: str
    investigator: str | None = None
    investigation_started_at: datetime | None = None
    root_cause: str = ""
    root_cause_at: datetime | None = None
    root_cause_by: str | None = None
    actions: list[CapaAction] = field(default_factory=list)
    checks: list[EffectivenessCheck] = field(default_factory=list)
    closed_at: datetime | None = None
    closed_by: str | None = None
    closure_note: str = ""
    cancelled_at: datetime | None = None
    cancelled_by: str | None = None
    cancel_reason: str = ""
    escalation: Escalation | None = None
    campaign_id: str | None = None
    updated_at: datetime | None = None
    version: int = 0
    audit_seq: int = 0
    audit_head: str = GENESIS
    new_events: list[AuditEvent] = field(default_factory=list)

    @classmethod
    def open(cls, shop_id: str, opening: CapaOpening, *, key: str, actor: str,
             at: datetime) -> CapaRecord:
        o = opening.checked()
        record = cls(capa_id_for(shop_id, key), shop_id, o.problem, o.cases, o.lots,
                     o.signal_id, CapaState.OPEN, at, actor, updated_at=at)
        record._append(at, actor, CapaTransition.OPEN.value, None, CapaState.OPEN, {
            "problem": o.problem, "cases": list(o.cases),
            "lots": [ref.as_json() for ref in o.lots], "signal": o.signal_id})
        return record

    # ---------------------------------------------------------------- the trail

    def _append(self, at: datetime, actor: str, name: str, from_state: CapaState | None,
                to_state: CapaState | None, data: dict[str, Any]) -> None:
        event = chain_event(self.audit_seq, self.audit_head, at=at, actor=actor, name=name,
                            from_state=from_state.value if from_state else None,
                            to_state=to_state.value if to_state else None, data=data)
        self.audit_seq, self.audit_head = event.seq, event.hash
        self.updated_at = at
        self.new_events.append(event)

    def _check(self, transition: CapaTransition) -> None:
        if not allows(self.state, transition):
            raise IllegalTransition(self.id, self.state.value, transition.value)

    def _move(self, transition: CapaTransition, at: datetime, actor: str,
              data: dict[str, Any]) -> None:
        self._check(transition)
        before, self.state = self.state, CAPA_TRANSITIONS[transition][1]
        self._append(at, actor, transition.value, before, self.state, data)

    def _record(self, name: str, allowed: frozenset[CapaState], at: datetime, actor: str,
                data: dict[str, Any]) -> None:
        if self.state not in allowed:
            raise IllegalTransition(self.id, self.state.value, name)
        self._append(at, actor, name, self.state, self.state, data)

    # ---------------------------------------------------------------- reading

    @property
    def is_open(self) -> bool:
        return self.state not in TERMINAL

    @property
    def skus(self) -> list[str]:
        return list(dict.fromkeys(ref.sku for ref in self.lots))

    def action(self, number: int) -> CapaAction:
        for action in self.actions:
            if action.number == number:
                return action
        raise InvalidRequest("action", f"the CAPA has no action {number}")

    @property
    def current_check(self) -> EffectivenessCheck | None:
        return self.checks[-1] if self.checks else None

    def overdue_actions(self, today: date) -> list[CapaAction]:
        return [a for a in self.actions if a.overdue(today)] if self.is_open else []

    def next_steps(self) -> list[str]:
        """The steps the record's state allows now, by name (the console shows their
        forms; `/v1` answers 409 for any other)."""
        steps = [t.value for t in CapaTransition
                 if t not in {CapaTransition.OPEN, CapaTransition.ACTIONS_DONE,
                              CapaTransition.CHECK_EFFECTIVE,
                              CapaTransition.CHECK_NOT_EFFECTIVE}
                 and allows(self.state, t)]
        if self.state in ADD_ACTION_STATES:
            steps.append("add_action")
        if self.state in COMPLETE_ACTION_STATES and any(not a.is_done for a in self.actions):
            steps.append("complete_action")
        if self.state is CapaState.EFFECTIVENESS_CHECK:
            steps.append("record_effectiveness")
        if self.state in ESCALATE_STATES and self.campaign_id is None and self.lots:
            steps.append("escalate")
        return steps

    # ---------------------------------------------------------------- the steps

    def start_investigation(self, actor: str, at: datetime, note: str = "") -> None:
        p = _Problems()
        note = p.text(note, "note", TEXT_MAX, required=False)
        p.raise_any()
        self._check(CapaTransition.START_INVESTIGATION)
        self.investigator, self.investigation_started_at = actor, at
        self._move(CapaTransition.START_INVESTIGATION, at, actor, {"note": note})

    def record_root_cause(self, root_cause: str, actor: str, at: datetime) -> None:
        p = _Problems()
        text = p.text(root_cause, "root_cause", TEXT_MAX)
        p.raise_any()
        self._check(CapaTransition.RECORD_ROOT_CAUSE)
        revised = bool(self.root_cause)
        self.root_cause, self.root_cause_at, self.root_cause_by = text, at, actor
        self._move(CapaTransition.RECORD_ROOT_CAUSE, at, actor,
                   {"root_cause": text, "revision": revised})

    def add_action(self, kind: ActionKind | str, description: str, owner: str, due: object,
                   actor: str, at: datetime) -> CapaAction:
        p = _Problems()
        try:
            action_kind = ActionKind(kind)
        except ValueError:
            p.add("kind", "must be corrective or preventive")
            action_kind = ActionKind.CORRECTIVE
        text = p.text(description, "description", TEXT_MAX)
        who = p.text(owner, "owner", OWNER_MAX, multiline=False)
        when = _due(due, "due", p)
        if len(self.actions) >= MAX_ACTIONS:
            p.add("actions", f"a CAPA holds at most {MAX_ACTIONS} actions")
        p.raise_any()
        if self.state not in ADD_ACTION_STATES:
            raise IllegalTransition(self.id, self.state.value, "add_action")
        action = CapaAction(len(self.actions) + 1, action_kind, text, who, when, at, actor)
        self.actions.append(action)
        self._record("add_action", ADD_ACTION_STATES, at, actor, {
            "number": action.number, "kind": action_kind.value, "description": text,
            "owner": who, "due": when.isoformat()})
        return action

    def complete_action(self, number: int, actor: str, at: datetime, note: str = "") -> None:
        """The action is done. The last one done, with at least one corrective action among
        them and the root cause known, moves the record on to its effectiveness check."""
        p = _Problems()
        text = p.text(note, "note", TEXT_MAX, required=False)
        p.raise_any()
        if self.state not in COMPLETE_ACTION_STATES:
            raise IllegalTransition(self.id, self.state.value, "complete_action")
        action = self.action(number)
        if action.is_done:
            raise IllegalTransition(self.id, f"action {number} done", "complete_action")
        action.done_at, action.done_by, action.done_note = at, actor, text
        self._record("complete_action", COMPLETE_ACTION_STATES, at, actor,
                     {"number": number, "note": text})
        self._maybe_actions_done(actor, at)

    def _maybe_actions_done(self, actor: str, at: datetime) -> None:
        if (self.state is CapaState.ACTIONS_PLANNED and self.actions
                and all(a.is_done for a in self.actions)
                and any(a.kind is ActionKind.CORRECTIVE for a in self.actions)):
            self._move(CapaTransition.ACTIONS_DONE, at, actor,
                       {"actions": len(self.actions)})

    def plan_effectiveness_check(self, measure: str, due: object, actor: str,
                                 at: datetime) -> EffectivenessCheck:
        p = _Problems()
        text = p.text(measure, "measure", TEXT_MAX)
        when = _due(due, "due", p)
        p.raise_any()
        self._check(CapaTransition.PLAN_EFFECTIVENESS_CHECK)
        check = EffectivenessCheck(len(self.checks) + 1, text, when, at, actor)
        self.checks.append(check)
        self._move(CapaTransition.PLAN_EFFECTIVENESS_CHECK, at, actor, {
            "number": check.number, "measure": text, "due": when.isoformat()})
        return check

    def record_effectiveness(self, result: CheckResult | str, note: str, actor: str,
                             at: datetime) -> None:
        """The check's result: effective lets the record close; not effective reopens the
        actions (new ones are added, and the check is planned again)."""
        p = _Problems()
        try:
            outcome = CheckResult(result)
        except ValueError:
            p.add("result", "must be effective or not_effective")
            outcome = CheckResult.EFFECTIVE
        text = p.text(note, "note", TEXT_MAX)
        p.raise_any()
        transition = (CapaTransition.CHECK_EFFECTIVE if outcome is CheckResult.EFFECTIVE
                      else CapaTransition.CHECK_NOT_EFFECTIVE)
        self._check(transition)
        check = self.checks[-1]
        check.result, check.result_note = outcome, text
        check.result_at, check.result_by = at, actor
        self._move(transition, at, actor, {"number": check.number, "result": outcome.value,
                                           "note": text})

    def close(self, note: str, actor: str, at: datetime) -> None:
        p = _Problems()
        text = p.text(note, "note", TEXT_MAX)
        p.raise_any()
        self._check(CapaTransition.CLOSE)
        self.closed_at, self.closed_by, self.closure_note = at, actor, text
        self._move(CapaTransition.CLOSE, at, actor, {
            "note": text, "actions": len(self.actions), "checks": len(self.checks)})

    def cancel(self, reason: str, actor: str, at: datetime) -> None:
        p = _Problems()
        text = p.text(reason, "reason", REASON_MAX)
        p.raise_any()
        self._check(CapaTransition.CANCEL)
        self.cancelled_at, self.cancelled_by, self.cancel_reason = at, actor, text
        self._move(CapaTransition.CANCEL, at, actor, {"reason": text})

    # ---------------------------------------------------------------- escalation

    def request_escalation(self, reference: str, recall_class: str, actions: Sequence[str],
                           sku: str | None, notice_date: date, actor: str,
                           at: datetime) -> Escalation:
        """Claim the escalation: what the campaign is opened with, kept on the record before
        the campaign is opened. A record that asked already keeps what it asked first, so
        two escalations racing open one campaign."""
        if self.escalation is not None:
            return self.escalation
        if self.state not in ESCALATE_STATES:
            raise IllegalTransition(self.id, self.state.value, "escalate")
        p = _Problems()
        ref = p.text(reference, "reference", 128, multiline=False)
        if not self.lots:
            p.add("lots", "the CAPA names no product or lot to recall")
        chosen = (sku or "").strip() or (self.skus[0] if len(self.skus) == 1 else "")
        if self.lots and chosen not in self.skus:
            p.add("sku", "choose one of the CAPA's products: " + ", ".join(self.skus)
                  if not chosen else f"is not one of the CAPA's products: {', '.join(self.skus)}")
        if not actions:
            p.add("actions", "name at least one: what consignees must do")
        p.raise_any()
        refs = [r for r in self.lots if r.sku == chosen]
        # A product named without a lot is every lot of it: the campaign names none then.
        lots = () if any(not r.lot for r in refs) else tuple(r.lot for r in refs)
        self.escalation = Escalation(ref, str(recall_class), tuple(actions), chosen, lots,
                                     notice_date, at, actor)
        self._record("escalate", ESCALATE_STATES, at, actor, self.escalation.as_json())
        return self.escalation

    def campaign_opened(self, campaign_id: str, created: bool, actor: str,
                        at: datetime) -> bool:
        """The campaign is open (or was already, for the same reference): on the record and
        in its trail, once."""
        if self.campaign_id is not None:
            return False
        self.campaign_id = campaign_id
        self._append(at, actor, "campaign_opened", self.state, self.state,
                     {"campaign_id": campaign_id, "created": created})
        return True

    # ---------------------------------------------------------------- storage

    def details_json(self) -> dict[str, Any]:
        return {
            "problem": self.problem, "cases": list(self.cases),
            "lots": [ref.as_json() for ref in self.lots], "investigator": self.investigator,
            "investigation_started_at": _iso(self.investigation_started_at),
            "root_cause": self.root_cause, "root_cause_at": _iso(self.root_cause_at),
            "root_cause_by": self.root_cause_by,
            "actions": [a.as_json() for a in self.actions],
            "checks": [c.as_json() for c in self.checks], "closed_by": self.closed_by,
            "closure_note": self.closure_note, "cancelled_at": _iso(self.cancelled_at),
            "cancelled_by": self.cancelled_by, "cancel_reason": self.cancel_reason,
            "escalation": self.escalation.as_json() if self.escalation else None,
        }

    @classmethod
    def from_stored(cls, *, id: str, shop_id: str, state: str, signal_id: str | None,
                    opened_at: datetime, opened_by: str, closed_at: datetime | None,
                    updated_at: datetime | None, campaign_id: str | None,
                    details: dict[str, Any], version: int, audit_seq: int,
                    audit_head: str) -> CapaRecord:
        d = details
        return cls(
            id=id, shop_id=shop_id, problem=d["problem"], cases=tuple(d.get("cases") or ()),
            lots=tuple(LotRef(x["sku"], x.get("lot") or "") for x in d.get("lots") or ()),
            signal_id=signal_id, state=CapaState(state), opened_at=opened_at,
            opened_by=opened_by, investigator=d.get("investigator"),
            investigation_started_at=_at(d.get("investigation_started_at")),
            root_cause=d.get("root_cause") or "", root_cause_at=_at(d.get("root_cause_at")),
            root_cause_by=d.get("root_cause_by"),
            actions=[CapaAction.from_json(a) for a in d.get("actions") or ()],
            checks=[EffectivenessCheck.from_json(c) for c in d.get("checks") or ()],
            closed_at=closed_at, closed_by=d.get("closed_by"),
            closure_note=d.get("closure_note") or "",
            cancelled_at=_at(d.get("cancelled_at")), cancelled_by=d.get("cancelled_by"),
            cancel_reason=d.get("cancel_reason") or "",
            escalation=Escalation.from_json(d["escalation"]) if d.get("escalation") else None,
            campaign_id=campaign_id, updated_at=updated_at, version=version,
            audit_seq=audit_seq, audit_head=audit_head)


# ------------------------------------------------------------------ KPIs


AGE_BUCKETS: tuple[tuple[str, int | None], ...] = (
    ("0-7 days", 7), ("8-30 days", 30), ("31-90 days", 90), ("over 90 days", None))


def age_bucket(opened_at: datetime, now: datetime) -> str:
    days = (now - opened_at).days
    for name, most in AGE_BUCKETS:
        if most is None or days <= most:
            return name
    return AGE_BUCKETS[-1][0]  # pragma: no cover - the last bucket has no bound


@dataclass(frozen=True, slots=True)
class CapaKpis:
    """The figures the seed article asks for: open CAPAs by age, time to close, overdue
    actions, recurrence and response time. `None`: nothing to average."""

    open_by_age: dict[str, int]
    open_total: int
    closed: int
    mean_days_to_close: float | None
    overdue_actions: int
    actions_done: int
    actions_total: int
    recurrences: int  # closed CAPAs whose product had a new signal after they closed
    recurrence_skus: list[str]
    mean_response_hours: float | None  # first linked case created → CAPA opened

    def as_json(self) -> dict[str, Any]:
        return {"open_by_age": dict(self.open_by_age), "open_total": self.open_total,
                "closed": self.closed, "mean_days_to_close": self.mean_days_to_close,
                "overdue_actions": self.overdue_actions, "actions_done": self.actions_done,
                "actions_total": self.actions_total, "recurrences": self.recurrences,
                "recurrence_skus": list(self.recurrence_skus),
                "mean_response_hours": self.mean_response_hours}


def capa_kpis(records: Sequence[CapaRecord], first_case_at: dict[str, datetime],
              signals: Sequence[tuple[str, datetime]], now: datetime) -> CapaKpis:
    """`first_case_at`: each record's earliest linked case's creation; `signals`: the shops'
    quality signals as (sku, raised at), to count recurrences."""
    today = now.date()
    buckets = {name: 0 for name, _most in AGE_BUCKETS}
    open_records = [r for r in records if r.is_open]
    for record in open_records:
        buckets[age_bucket(record.opened_at, now)] += 1
    closed = [r for r in records if r.state is CapaState.CLOSED and r.closed_at]
    close_days = [(r.closed_at - r.opened_at).total_seconds() / 86400 for r in closed
                  if r.closed_at is not None]
    recurred = []
    for record in closed:
        assert record.closed_at is not None
        skus = set(record.skus)
        closed_at = record.closed_at
        if any(sku in skus and at > closed_at for sku, at in signals):
            recurred.append(record)
    responses = [(r.opened_at - first_case_at[r.id]).total_seconds() / 3600
                 for r in records if r.id in first_case_at]
    counted = [a for r in records if r.state is not CapaState.CANCELLED for a in r.actions]
    return CapaKpis(
        open_by_age=buckets, open_total=len(open_records), closed=len(closed),
        mean_days_to_close=round(sum(close_days) / len(close_days), 1) if close_days else None,
        overdue_actions=sum(len(r.overdue_actions(today)) for r in records),
        actions_done=sum(a.is_done for a in counted), actions_total=len(counted),
        recurrences=len(recurred),
        recurrence_skus=sorted({sku for r in recurred for sku in r.skus}),
        mean_response_hours=(round(sum(responses) / len(responses), 1)
                             if responses else None))


class CapaRepository(Protocol):
    """Where CAPA records are kept (store/capa.py). Every method is its own transaction."""

    def add(self, record: CapaRecord) -> bool:
        """Store a new record with its first event; False (nothing written) when a record
        of that id exists already."""
        ...

    def get(self, capa_id: str) -> CapaRecord:
        """Raises `NotFound`."""
        ...

    def save(self, record: CapaRecord) -> None:
        """Write the record and its new events; raises `ConcurrencyConflict` if anyone
        wrote it since it was read."""
        ...

    def events(self, capa_id: str) -> list[AuditEvent]: ...

    def case_lots(self, shop_id: str, case_ids: Sequence[str]) -> dict[str, list[LotRef]]:
        """The shop's cases among `case_ids` with the products and lots their lines name; a
        case that is not the shop's is left out."""
        ...

    def for_shops(self, shops: Sequence[str] | None, *, states: Sequence[CapaState] = (),
                  limit: int = 500) -> list[CapaRecord]:
        """The records of these shops (None: every shop), the newest first."""
        ...

    def for_case(self, case_id: str) -> list[CapaRecord]: ...

    def first_case_at(self, capa_ids: Sequence[str]) -> dict[str, datetime]:
        """Each record's earliest linked case's creation (for the response time)."""
        ...

    def signals_by_sku(self, shops: Sequence[str] | None) -> list[tuple[str, datetime]]:
        """The shops' quality signals as (sku, raised at), for recurrence."""
        ...
