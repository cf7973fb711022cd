"""Recall campaigns in SQL: the campaign row, its audit trail, its consignees, and its work.

A campaign's work goes through the cases' outbox (`outbox.case_id` holds the campaign's id,
`outbox.step` a `CampaignStep`), so the relay hands it to the queue and the reconciler finds
it when a job is lost, exactly as for a case.

Telling a consignee is claim-then-send: `claim_notices` marks a batch `sending` and commits
before any message leaves, under `FOR UPDATE SKIP LOCKED` on PostgreSQL, so two jobs never
take the same consignee; what a dead job left `sending` comes back as stale, to be settled
(never simply sent again).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    case,
    func,
    insert,
    or_,
    select,
    update,
)

from refundbridge.core.audit import AuditEvent
from refundbridge.core.campaign_report import CaseOutcome
from refundbridge.core.campaigns import (
    Acknowledgement,
    CampaignCounts,
    CampaignState,
    CampaignStep,
    ConsigneeRecord,
    NoticeState,
    RecallCampaign,
    RecallNotice,
    merge_units,
)
from refundbridge.core.errors import ConcurrencyConflict, NotFound
from refundbridge.core.lifecycle import CaseState
from refundbridge.core.money import Money
from refundbridge.core.ports import Consignee, ConsigneeUnits
from refundbridge.store import tables as t
from refundbridge.store.db import dialect_insert
from refundbridge.store.mapping import aware, event_from_row
from refundbridge.store.outbox import Dispatch, Work
from refundbridge.store.recalls import recall_row

_C = t.campaign_consignees.c
_R = t.recall_campaigns.c


def _units_to_json(units: Sequence[ConsigneeUnits]) -> list[dict[str, Any]]:
    return [{"line_id": u.line_id, "document": u.document, "sku": u.sku,
             "quantity": u.quantity, "lot": u.lot, "serial": u.serial,
             "shipped_on": u.shipped_on.isoformat() if u.shipped_on else None,
             "order_id": u.order_id} for u in units]


def _units_from_json(rows: Sequence[dict[str, Any]]) -> list[ConsigneeUnits]:
    return [ConsigneeUnits(
        line_id=r["line_id"], document=r["document"], sku=r["sku"],
        quantity=int(r["quantity"]), lot=r.get("lot"), serial=r.get("serial"),
        shipped_on=date.fromisoformat(r["shipped_on"]) if r.get("shipped_on") else None,
        order_id=r.get("order_id")) for r in rows]


def _maybe(value: datetime | None) -> datetime | None:
    return aware(value) if value is not None else None


def consignee_from_row(row: Any) -> ConsigneeRecord:
    ack = row.acknowledgement
    return ConsigneeRecord(
        id=int(row.id), campaign_id=row.campaign_id, key=row.consignee_key, name=row.name,
        email=row.email, phone=row.phone, locale=row.locale,
        units=_units_from_json(row.units), email_state=NoticeState(row.email_state),
        sms_state=NoticeState(row.sms_state), notified_at=_maybe(row.notified_at),
        attempts=int(row.attempts), last_error=row.last_error, reminders=int(row.reminders),
        next_reminder_at=_maybe(row.next_reminder_at),
        acknowledged_at=_maybe(row.acknowledged_at),
        acknowledgement=Acknowledgement(**ack) if ack else None,
        case_id=row.case_id, case_problem=row.case_problem, delivery=row.delivery)


def _ack_json(ack: Acknowledgement | None) -> dict[str, Any] | None:
    if ack is None:
        return None
    return {"stopped_use": ack.stopped_use, "quantity_held": ack.quantity_held,
            "wants_return": ack.wants_return, "passed_on": ack.passed_on, "note": ack.note}


def campaign_from_row(row: Any) -> RecallCampaign:
    d = row.details
    return RecallCampaign(
        id=row.id, shop_id=row.shop_id, notice=RecallNotice.from_json(row.notice),
        state=CampaignState(row.state), opened_at=aware(row.opened_at),
        opened_by=row.opened_by, cursor=d.get("cursor"), pages_read=int(d.get("pages", 0)),
        identified_at=_at(d.get("identified_at")),
        quarantine_document=d.get("quarantine_document"),
        quarantined_at=_at(d.get("quarantined_at")),
        quarantined_units=int(d.get("quarantined_units", 0)),
        all_notified_at=_at(d.get("all_notified_at")), closed_at=_maybe(row.closed_at),
        closed_by=d.get("closed_by"), close_note=d.get("close_note", ""),
        capa_id=d.get("capa_id"), walk_failed=d.get("walk_failed"),
        quarantine_claimed_at=_at(d.get("quarantine_claimed_at")), version=int(row.version),
        audit_seq=int(row.audit_seq), audit_head=row.audit_head)


def _at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def campaign_to_row(c: RecallCampaign) -> dict[str, Any]:
    return {
        "id": c.id, "shop_id": c.shop_id, "reference": c.notice.reference,
        "recall_class": c.notice.recall_class.value, "state": c.state.value,
        "notice": c.notice.as_json(), "notice_due": c.notice.notice_due,
        "details": {"cursor": c.cursor, "pages": c.pages_read,
                    "identified_at": _iso(c.identified_at),
                    "quarantine_document": c.quarantine_document,
                    "quarantined_at": _iso(c.quarantined_at),
                    "quarantined_units": c.quarantined_units,
                    "all_notified_at": _iso(c.all_notified_at), "closed_by": c.closed_by,
                    "close_note": c.close_note, "capa_id": c.capa_id,
                    "walk_failed": c.walk_failed,
                    "quarantine_claimed_at": _iso(c.quarantine_claimed_at)},
        "opened_at": c.opened_at, "opened_by": c.opened_by, "closed_at": c.closed_at,
        "version": c.version + 1, "audit_seq": c.audit_seq, "audit_head": c.audit_head,
    }


def _event_row(campaign_id: str, e: AuditEvent) -> dict[str, Any]:
    return {"campaign_id": campaign_id, "seq": e.seq, "at": e.at.isoformat(),
            "actor": e.actor, "name": e.name, "from_state": e.from_state,
            "to_state": e.to_state, "data": e.data, "prev_hash": e.prev_hash, "hash": e.hash}


RECORD_NOTICE = update(t.campaign_consignees).where(_C.id == bindparam("_id")).values(
    email_state=bindparam("email_state"), sms_state=bindparam("sms_state"),
    notified_at=bindparam("notified_at"), attempts=bindparam("attempts"),
    last_error=bindparam("last_error"), next_reminder_at=bindparam("next_reminder_at"),
    reminders=bindparam("reminders"), delivery=bindparam("delivery"))


class SqlCampaignRepository:
    """`core.campaigns.CampaignRepository` on one database. With a `dispatch` (in workers)
    new work goes to the queue after the commit; without one the relay takes it."""

    def __init__(self, engine: Engine, dispatch: Dispatch | None = None) -> None:
        self._engine = engine
        self._dispatch = dispatch

    # ---------------------------------------------------------------- the campaign

    def add(self, campaign: RecallCampaign) -> bool:
        with self._engine.connect() as conn, conn.begin() as tx:
            row = campaign_to_row(campaign)
            row["version"] = 0
            inserted = conn.execute(
                dialect_insert(conn)(t.recall_campaigns).on_conflict_do_nothing()
                .returning(_R.id), row).first()
            if inserted is None:
                tx.rollback()
                return False
            self._write_events_and_work(conn, campaign, None)
            # The notice joins the shop's recall list in the same transaction: a request
            # for a unit of the lot meets rule R13 from the moment the campaign exists.
            conn.execute(dialect_insert(conn)(t.recalls).on_conflict_do_nothing(),
                         [recall_row(campaign.shop_id, r, campaign.opened_at)
                          for r in campaign.notice.recalls()])
            work = self._write_work(conn, campaign)
            tx.commit()
        campaign.new_events.clear()
        campaign.new_steps.clear()
        self._hand_over(work)
        return True

    def get(self, campaign_id: str, *, lock: bool = False) -> RecallCampaign:
        with self._engine.connect() as conn:
            return self._get(conn, campaign_id)

    def _get(self, conn: Connection, campaign_id: str) -> RecallCampaign:
        row = conn.execute(select(t.recall_campaigns).where(_R.id == campaign_id)).first()
        if row is None:
            raise NotFound(f"no recall campaign {campaign_id}")
        return campaign_from_row(row)

    def save(self, campaign: RecallCampaign, *, done: CampaignStep | None = None) -> None:
        with self._engine.connect() as conn, conn.begin():
            work = self._save(conn, campaign, done)
        campaign.version += 1
        campaign.new_events.clear()
        campaign.new_steps.clear()
        self._hand_over(work)

    def _save(self, conn: Connection, campaign: RecallCampaign,
              done: CampaignStep | None) -> list[Work]:
        row = campaign_to_row(campaign)
        changed = conn.execute(
            update(t.recall_campaigns)
            .where(_R.id == campaign.id, _R.version == campaign.version)
            .values({k: v for k, v in row.items() if k != "id"}))
        if changed.rowcount != 1:
            raise ConcurrencyConflict(f"campaign {campaign.id} was changed by another writer")
        self._write_events_and_work(conn, campaign, done)
        return self._write_work(conn, campaign)

    def _write_events_and_work(self, conn: Connection, campaign: RecallCampaign,
                               done: CampaignStep | None) -> None:
        if campaign.new_events:
            conn.execute(insert(t.campaign_events),
                         [_event_row(campaign.id, e) for e in campaign.new_events])
        if done is not None:
            o = t.outbox.c
            conn.execute(update(t.outbox).where(o.case_id == campaign.id,
                                                o.step == done.value, o.done_at.is_(None))
                         .values(done_at=datetime.now().astimezone()))

    def _write_work(self, conn: Connection, campaign: RecallCampaign) -> list[Work]:
        steps = list(dict.fromkeys(campaign.new_steps))
        if not steps:
            return []
        o = t.outbox.c
        # One open row per step is enough: a job that is waiting runs the step's next
        # batch anyway, and asks for another run when more is left.
        open_steps = set(conn.execute(
            select(o.step).where(o.case_id == campaign.id, o.done_at.is_(None),
                                 o.step.in_([s.value for s in steps]))).scalars())
        steps = [s for s in steps if s.value not in open_steps]
        if not steps:
            return []
        now = datetime.now().astimezone()
        dispatched = now if self._dispatch is not None else None
        rows = conn.execute(
            insert(t.outbox).returning(t.outbox.c.id, t.outbox.c.step,
                                       sort_by_parameter_order=True),
            [{"case_id": campaign.id, "step": s.value, "created_at": now,
              "dispatched_at": dispatched, "dispatch_count": 1} for s in steps]).all()
        return [Work(int(r.id), campaign.id, CampaignStep(r.step)) for r in rows]

    def _hand_over(self, work: list[Work]) -> None:
        if work and self._dispatch is not None:
            self._dispatch(work)

    def events(self, campaign_id: str) -> list[AuditEvent]:
        e = t.campaign_events.c
        with self._engine.connect() as conn:
            rows = conn.execute(select(t.campaign_events).where(e.campaign_id == campaign_id)
                                .order_by(e.seq)).all()
        return [event_from_row(r) for r in rows]

    def open_campaigns(self) -> list[tuple[str, str]]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(_R.shop_id, _R.id).where(
                _R.state != CampaignState.CLOSED.value)).all()
        return [(r.shop_id, r.id) for r in rows]

    def by_reference(self, shop_id: str, reference: str) -> RecallCampaign | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(t.recall_campaigns).where(
                _R.shop_id == shop_id, func.lower(_R.reference) == reference.strip().lower())
            ).first()
        return campaign_from_row(row) if row is not None else None

    def for_shops(self, shops: Sequence[str] | None) -> list[RecallCampaign]:
        """Campaigns of these shops (None: every shop), the newest first."""
        query = select(t.recall_campaigns).order_by(_R.opened_at.desc())
        if shops is not None:
            query = query.where(_R.shop_id.in_(list(shops)))
        with self._engine.connect() as conn:
            return [campaign_from_row(r) for r in conn.execute(query).all()]

    def for_lot(self, shop_id: str, lot: str) -> list[RecallCampaign]:
        """The shop's campaigns whose notice names `lot` (compared as the recall list does,
        ignoring case), the oldest first."""
        wanted = lot.strip().casefold()
        return [c for c in reversed(self.for_shops([shop_id]))
                if any(x.casefold() == wanted for x in c.notice.lots)]

    # ---------------------------------------------------------------- consignees

    def merge_consignees(self, campaign_id: str, consignees: Sequence[Consignee],
                         phones: dict[str, str | None]) -> int:
        if not consignees:
            return 0
        new = 0
        with self._engine.connect() as conn, conn.begin():
            keys = [c.key for c in consignees]
            known = {r.consignee_key: r for r in conn.execute(
                select(_C.id, _C.consignee_key, _C.units).where(
                    _C.campaign_id == campaign_id, _C.consignee_key.in_(keys))
                .with_for_update()).all()}
            for consignee in consignees:
                row = known.get(consignee.key)
                if row is None:
                    phone = phones.get(consignee.key)
                    units = merge_units((), consignee.units)
                    inserted = conn.execute(
                        dialect_insert(conn)(t.campaign_consignees).on_conflict_do_nothing()
                        .returning(_C.id), {
                            "campaign_id": campaign_id, "consignee_key": consignee.key,
                            "name": consignee.name[:255],
                            "email": consignee.email, "phone": phone,
                            "locale": consignee.locale, "units": _units_to_json(units),
                            "quantity": sum(u.quantity for u in units),
                            "email_state": (NoticeState.PENDING if consignee.email
                                            else NoticeState.NONE).value,
                            "sms_state": (NoticeState.PENDING if phone
                                          else NoticeState.NONE).value,
                            "attempts": 0, "reminders": 0}).first()
                    new += inserted is not None
                    continue
                merged = merge_units(_units_from_json(row.units), consignee.units)
                if len(merged) != len(row.units):
                    conn.execute(update(t.campaign_consignees).where(_C.id == row.id).values(
                        units=_units_to_json(merged),
                        quantity=sum(u.quantity for u in merged)))
        return new

    def claim_notices(self, campaign_id: str, limit: int, at: datetime, stale_before: datetime
                      ) -> tuple[list[ConsigneeRecord], list[ConsigneeRecord]]:
        pending, claimed = NoticeState.PENDING.value, NoticeState.CLAIMED.value
        taken = [claimed, NoticeState.SENDING.value]
        with self._engine.connect() as conn, conn.begin():
            # A dead job's consignees: claimed (or being sent) longer ago than any job runs.
            stale_query = select(t.campaign_consignees).where(
                _C.campaign_id == campaign_id,
                or_(_C.email_state.in_(taken), _C.sms_state.in_(taken)),
                _C.claimed_at < stale_before).order_by(_C.id).limit(limit)
            query = select(t.campaign_consignees).where(
                _C.campaign_id == campaign_id,
                or_(_C.email_state == pending, _C.sms_state == pending),
            ).order_by(_C.id).limit(limit)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
                stale_query = stale_query.with_for_update(skip_locked=True)
            stale = [consignee_from_row(r) for r in conn.execute(stale_query).all()]
            rows = [consignee_from_row(r) for r in conn.execute(query).all()]
            ids = [r.id for r in rows] + [r.id for r in stale]
            if ids:
                conn.execute(update(t.campaign_consignees).where(_C.id.in_(ids)).values(
                    email_state=case((_C.email_state == pending, claimed),
                                     else_=_C.email_state),
                    sms_state=case((_C.sms_state == pending, claimed), else_=_C.sms_state),
                    claimed_at=at))
            for record in rows:
                if record.email_state is NoticeState.PENDING:
                    record.email_state = NoticeState.CLAIMED
                if record.sms_state is NoticeState.PENDING:
                    record.sms_state = NoticeState.CLAIMED
        return rows, stale

    def record_notice(self, record: ConsigneeRecord) -> None:
        self.record_notices([record])

    def record_notices(self, records: Sequence[ConsigneeRecord]) -> None:
        if not records:
            return
        with self._engine.begin() as conn:
            conn.execute(RECORD_NOTICE, [{
                "_id": r.id, "email_state": r.email_state.value,
                "sms_state": r.sms_state.value, "notified_at": r.notified_at,
                "attempts": r.attempts,
                "last_error": (r.last_error or None) and r.last_error[:500],
                "next_reminder_at": r.next_reminder_at, "reminders": r.reminders,
                "delivery": r.delivery} for r in records])

    def unnotified(self, campaign_id: str) -> int:
        waiting = [NoticeState.PENDING.value, NoticeState.CLAIMED.value,
                   NoticeState.SENDING.value]
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).where(
                _C.campaign_id == campaign_id,
                or_(_C.email_state.in_(waiting), _C.sms_state.in_(waiting)))).scalar_one())

    def claim_reminders(self, campaign_id: str, now: datetime, limit: int
                        ) -> list[ConsigneeRecord]:
        with self._engine.connect() as conn, conn.begin():
            query = select(t.campaign_consignees).where(
                _C.campaign_id == campaign_id, _C.acknowledged_at.is_(None),
                _C.next_reminder_at <= now).order_by(_C.id).limit(limit)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = [consignee_from_row(r) for r in conn.execute(query).all()]
            if rows:
                # Claimed by clearing the due time: the service sets the next one after
                # the send. A job that dies here loses one reminder, never sends two.
                conn.execute(update(t.campaign_consignees)
                             .where(_C.id.in_([r.id for r in rows]))
                             .values(next_reminder_at=None, reminders=_C.reminders + 1))
            for record in rows:
                record.reminders += 1
                record.next_reminder_at = None
        return rows

    def due_reminders(self, campaign_id: str, now: datetime) -> bool:
        with self._engine.connect() as conn:
            return conn.execute(select(_C.id).where(
                _C.campaign_id == campaign_id, _C.acknowledged_at.is_(None),
                _C.next_reminder_at <= now).limit(1)).first() is not None

    def awaiting_cases(self, campaign_id: str, limit: int) -> list[ConsigneeRecord]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(t.campaign_consignees).where(
                _C.campaign_id == campaign_id, _C.acknowledged_at.is_not(None),
                _C.case_id.is_(None), _C.case_problem.is_(None)).order_by(_C.id)
                .limit(limit * 4)).all()
        records = [consignee_from_row(r) for r in rows]
        wanted = [r for r in records if r.acknowledgement and r.acknowledgement.wants_return]
        return wanted[:limit]

    def consignee(self, campaign_id: str, consignee_id: int) -> ConsigneeRecord:
        with self._engine.connect() as conn:
            row = conn.execute(select(t.campaign_consignees).where(
                _C.campaign_id == campaign_id, _C.id == consignee_id)).first()
        if row is None:
            raise NotFound(f"no consignee {consignee_id} in campaign {campaign_id}")
        return consignee_from_row(row)

    def consignees(self, campaign_id: str, *, after: int = 0, limit: int = 100
                   ) -> list[ConsigneeRecord]:
        """A page of the campaign's consignees by id (keyset: `after` the last id seen)."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(t.campaign_consignees).where(
                _C.campaign_id == campaign_id, _C.id > after).order_by(_C.id).limit(limit)
            ).all()
        return [consignee_from_row(r) for r in rows]

    def acknowledge(self, campaign: RecallCampaign, record: ConsigneeRecord) -> bool:
        """False (nothing written) when the consignee had acknowledged already."""
        with self._engine.connect() as conn, conn.begin() as tx:
            changed = conn.execute(update(t.campaign_consignees).where(
                _C.id == record.id, _C.acknowledged_at.is_(None)).values(
                acknowledged_at=record.acknowledged_at,
                acknowledgement=_ack_json(record.acknowledgement), next_reminder_at=None))
            if changed.rowcount != 1:
                tx.rollback()
                return False
            work = self._save(conn, campaign, None)
        campaign.version += 1
        campaign.new_events.clear()
        campaign.new_steps.clear()
        self._hand_over(work)
        return True

    def link_case(self, campaign_id: str, consignee_id: int, case_id: str | None,
                  problem: str | None) -> None:
        with self._engine.begin() as conn:
            conn.execute(update(t.campaign_consignees).where(
                _C.campaign_id == campaign_id, _C.id == consignee_id).values(
                case_id=case_id, case_problem=problem and problem[:500]))

    def set_delivery(self, campaign_id: str, consignee_id: int, state: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(update(t.campaign_consignees).where(
                _C.campaign_id == campaign_id, _C.id == consignee_id).values(delivery=state))

    # ---------------------------------------------------------------- counting

    def counts(self, campaign_id: str) -> CampaignCounts:
        told = [NoticeState.SENT.value, NoticeState.UNCONFIRMED.value]
        unreached = [NoticeState.FAILED.value, NoticeState.NONE.value]
        with self._engine.connect() as conn:
            row = conn.execute(select(
                func.count(),
                func.coalesce(func.sum(case(
                    (or_(_C.email_state.in_(told), _C.sms_state.in_(told)), 1), else_=0)), 0),
                func.coalesce(func.sum(case(
                    (or_(_C.email_state == NoticeState.SENT.value,
                         _C.delivery == "delivered"), 1), else_=0)), 0),
                func.coalesce(func.sum(case(
                    (and_(_C.email_state.in_(unreached), _C.sms_state.in_(unreached)), 1),
                    else_=0)), 0),
                func.count(_C.acknowledged_at),
                func.coalesce(func.sum(_C.quantity), 0),
                func.count(_C.case_id),
            ).where(_C.campaign_id == campaign_id)).one()
            acks = conn.execute(select(_C.acknowledgement).where(
                _C.campaign_id == campaign_id, _C.acknowledgement.is_not(None))).scalars()
            held = to_return = 0
            for ack in acks:
                held += int(ack.get("quantity_held", 0))
                if ack.get("wants_return"):
                    to_return += int(ack.get("quantity_held", 0))
            case_ids = list(conn.execute(select(_C.case_id).where(
                _C.campaign_id == campaign_id, _C.case_id.is_not(None))).scalars())
        # Returned as the report counts it: goods received on the case's trail, whatever
        # state it went on to.
        outcomes = self.case_outcomes(case_ids).values()
        refunded: dict[str, int] = {}
        paid = sum(o.refunded is not None for o in outcomes)
        returned = sum(o.units_returned for o in outcomes)
        for outcome in outcomes:
            if outcome.refunded is not None:
                currency = outcome.refunded.currency
                refunded[currency] = refunded.get(currency, 0) + outcome.refunded.minor
        return CampaignCounts(
            consignees=int(row[0]), notified=int(row[1]), delivered=int(row[2]),
            failed=int(row[3]), acknowledged=int(row[4]), units_shipped=int(row[5]),
            units_held=held, units_to_return=to_return, units_returned=returned,
            cases=int(row[6]), refunds_paid=paid,
            refunded={cur: str(Money.from_minor(minor, cur).amount)
                      for cur, minor in sorted(refunded.items())})

    def progress(self, campaign_id: str) -> dict[str, list[datetime]]:
        """When each consignee was notified and acknowledged, for the chart over time."""
        with self._engine.connect() as conn:
            rows = conn.execute(select(_C.notified_at, _C.acknowledged_at).where(
                _C.campaign_id == campaign_id)).all()
        return {"notified": sorted(aware(r.notified_at) for r in rows if r.notified_at),
                "acknowledged": sorted(aware(r.acknowledged_at) for r in rows
                                       if r.acknowledged_at)}

    def case_outcomes(self, case_ids: Sequence[str]) -> dict[str, CaseOutcome]:
        """For the campaign report (`core.campaign_report`): each recall case's state, its
        refund, and its units back. Units count as back once the case's trail shows the goods
        received, whatever state it went on to (refunding, refunded, closed, even failed)."""
        ids = list(dict.fromkeys(case_ids))
        if not ids:
            return {}
        e = t.case_events.c
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(t.cases.c.id, t.cases.c.state, t.cases.c.currency,
                       t.cases.c.refunded_minor, t.cases.c.request)
                .where(t.cases.c.id.in_(ids))).all()
            received = set(conn.execute(select(e.case_id).where(
                e.case_id.in_(ids), e.to_state == CaseState.RECEIVED_GOODS.value)
                .distinct()).scalars())
        return {r.id: CaseOutcome(
            case_id=r.id, state=r.state,
            refunded=(Money.from_minor(int(r.refunded_minor), r.currency)
                      if r.refunded_minor else None),
            units_returned=(sum(int(line["quantity"]) for line in r.request["lines"])
                            if r.id in received else 0)) for r in rows}

    def recovery(self, campaign_id: str) -> dict[str, list[tuple[datetime, int]]]:
        """When the recall cases got their goods back (with the units) and their refunds
        confirmed (one each), from the cases' own trails: the console's chart over time."""
        e = t.case_events.c
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(e.at, e.name, t.cases.c.request)
                .join(t.campaign_consignees, _C.case_id == e.case_id)
                .join(t.cases, t.cases.c.id == e.case_id)
                .where(_C.campaign_id == campaign_id,
                       e.name.in_(["receive_goods", "confirm_refund"]))).all()
        found: dict[str, list[tuple[datetime, int]]] = {"returned": [], "refunded": []}
        for row in rows:
            at = aware(datetime.fromisoformat(row.at))
            if row.name == "receive_goods":
                found["returned"].append(
                    (at, sum(int(line["quantity"]) for line in row.request["lines"])))
            else:
                found["refunded"].append((at, 1))
        return {key: sorted(values) for key, values in found.items()}


__all__ = ["SqlCampaignRepository", "campaign_from_row", "consignee_from_row"]
