"""CAPA records: open one from a signal or from cases, take it through its steps, escalate
it into a recall campaign.

Each step is one change to the record saved under its version check: a second writer's
change is read again and the step applied to that (a step that no longer applies raises
`IllegalTransition`, which the API answers 409). Escalation is claim-then-call: what the
campaign is opened with is saved on the record first, the campaign opened (its id derived
from the shop and reference, so opening it twice names one campaign), and its id recorded
last; two escalations racing open one campaign, and a second one later changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from typing import TypeVar

from refundbridge.core.campaigns import RecallAction, RecallNotice
from refundbridge.core.capa import (
    MAX_LOTS,
    CapaOpening,
    CapaRecord,
    CapaRepository,
    Escalation,
    LotRef,
    new_opening_key,
)
from refundbridge.core.errors import (
    ConcurrencyConflict,
    IllegalTransition,
    InvalidRequest,
    NotFound,
    NotSupported,
)
from refundbridge.core.recalls import RecallClass
from refundbridge.core.services.campaigns import open_campaign
from refundbridge.core.services.common import Services

T = TypeVar("T")


def capa_repo(svc: Services) -> CapaRepository:
    if svc.capas is None:  # pragma: no cover - every composition root sets it
        raise NotSupported("capa", "CAPA records")
    return svc.capas


@dataclass(frozen=True, slots=True)
class CapaOpened:
    capa_id: str
    created: bool


def open_capa(svc: Services, shop_id: str, opening: CapaOpening, actor: str,
              key: str | None = None) -> CapaOpened:
    """Open a CAPA record. From a signal its id is the signal's (one CAPA per signal);
    otherwise `key` (a form's one-time token, a client's request id) makes a repeat of the
    same request name the same record. `created` False: it existed already."""
    if key is not None and (not key.strip() or len(key) > 64):
        raise InvalidRequest("request_id", "must be 1 to 64 characters")
    opening = _with_lots(svc, shop_id, opening.checked())
    if opening.signal_id:
        opening_key = f"signal\x1f{opening.signal_id.strip()}"
    else:
        opening_key = f"key\x1f{key.strip()}" if key else new_opening_key()
    record = CapaRecord.open(shop_id, opening, key=opening_key, actor=actor, at=svc.clock())
    created = capa_repo(svc).add(record)
    _link_signal(svc, record, actor)
    return CapaOpened(record.id, created)


def _with_lots(svc: Services, shop_id: str, opening: CapaOpening) -> CapaOpening:
    """Every linked case is the shop's; the lots default to what the cases and the signal
    name, so nobody retypes them."""
    repo = capa_repo(svc)
    found = repo.case_lots(shop_id, opening.cases)
    missing = [(f"cases[{i}]", "no such case in the shop")
               for i, case_id in enumerate(opening.cases) if case_id not in found]
    if missing:
        raise InvalidRequest(missing[0][0], missing[0][1], missing)
    signal_lot = _signal_lot(svc, shop_id, opening.signal_id)
    if opening.lots:
        return opening
    lots = [ref for case_id in opening.cases for ref in found[case_id]]
    if signal_lot is not None:
        lots.insert(0, signal_lot)
    return replace(opening, lots=tuple(dict.fromkeys(lots))[:MAX_LOTS])


def _signal_lot(svc: Services, shop_id: str, signal_id: str | None) -> LotRef | None:
    """The signal's product and lot; a signal the shop does not have is a bad field."""
    if signal_id is None or svc.signals is None:
        return None
    try:
        signal = svc.signals.get(signal_id)
    except NotFound:
        signal = None
    if signal is None or signal.shop_id != shop_id:
        raise InvalidRequest("signal", "no such quality signal in the shop")
    return LotRef(signal.sku, signal.lot or "")


def _link_signal(svc: Services, record: CapaRecord, actor: str) -> None:
    """The signal is answered by the record (on the signal's own trail). A separate write:
    opening the record again (same signal, same record) links it if this one was lost."""
    store = svc.signals
    if store is None or record.signal_id is None:
        return
    for _ in range(5):
        try:
            signal = store.get(record.signal_id)
        except NotFound:
            return
        if signal.shop_id != record.shop_id or signal.capa_id is not None:
            return
        try:
            signal.link_capa(record.id, actor, svc.clock())
            store.save(signal)
        except IllegalTransition:
            return  # the signal's state takes no CAPA any more; the record names it still
        except ConcurrencyConflict:
            continue
        return


def change_capa(svc: Services, capa_id: str, change: Callable[[CapaRecord], T]
                ) -> tuple[CapaRecord, T]:
    """Apply `change` to the record and save it; on a lost version race read it again and
    apply `change` to that."""
    repo = capa_repo(svc)
    for _ in range(5):
        record = repo.get(capa_id)
        result = change(record)
        if not record.new_events:
            return record, result
        try:
            repo.save(record)
        except ConcurrencyConflict:
            continue
        return record, result
    raise ConcurrencyConflict(f"CAPA {capa_id}: too many writers at once")


# ------------------------------------------------------------------ escalation


@dataclass(frozen=True, slots=True)
class CapaEscalated:
    capa_id: str
    campaign_id: str
    created: bool  # False: the record had escalated already, nothing changed


def _notice(escalation: Escalation) -> RecallNotice:
    try:
        recall_class = RecallClass(escalation.recall_class)
    except ValueError:
        raise InvalidRequest("class", "must be I, II or III") from None
    actions = []
    for index, action in enumerate(escalation.actions):
        try:
            actions.append(RecallAction(action))
        except ValueError:
            raise InvalidRequest(f"actions[{index}]", "must be one of " + ", ".join(
                a.value for a in RecallAction)) from None
    return RecallNotice(reference=escalation.reference, recall_class=recall_class,
                        notice_date=escalation.notice_date, sku=escalation.sku,
                        lots=escalation.lots, actions=tuple(actions))


def escalate_capa(svc: Services, capa_id: str, *, reference: str, recall_class: str,
                  actions: Sequence[str], actor: str, sku: str | None = None,
                  notice_date: date | None = None) -> CapaEscalated:
    """Open the recall campaign of the CAPA's lots: only the recall reference, class and
    actions are asked; the product and lots are the CAPA's."""
    repo = capa_repo(svc)
    record = repo.get(capa_id)
    if record.campaign_id is not None:
        return CapaEscalated(capa_id, record.campaign_id, False)
    today = svc.clock().date()
    if record.escalation is None:
        # The notice is checked before the claim is saved: a bad class or action is a 422
        # that leaves the record as it was.
        _notice(Escalation(reference.strip(), recall_class, tuple(actions),
                           sku or (record.skus[0] if record.skus else ""), (),
                           notice_date or today, svc.clock(), actor))
    record, escalation = change_capa(svc, capa_id, lambda r: r.request_escalation(
        reference, recall_class, actions, sku, notice_date or today, actor, svc.clock()))
    if record.campaign_id is not None:
        return CapaEscalated(capa_id, record.campaign_id, False)
    opened = open_campaign(svc, record.shop_id, _notice(escalation), actor, capa_id=capa_id)
    record, linked = change_capa(svc, capa_id, lambda r: r.campaign_opened(
        opened.campaign_id, opened.created, actor, svc.clock()))
    assert record.campaign_id is not None
    return CapaEscalated(capa_id, record.campaign_id, linked)


__all__ = ["CapaEscalated", "CapaOpened", "capa_repo", "change_capa", "escalate_capa",
           "open_capa"]
