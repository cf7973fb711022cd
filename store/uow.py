"""The SQL unit of work and the repositories it carries.

`SqlUnitOfWork.commit` writes every case it handed out, their new audit events and their new
work (the outbox) in one transaction: "case saved" and "work to do" can't come apart. With a
`dispatch` (in workers) it then hands the work to the queue itself; without one (the API)
the rows wait for the relay (`workers.relay`), so accepting a webhook never waits on Redis.
If a hand-over fails, the reconciler finds the outbox rows and enqueues them again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from sqlalchemy import (
    Connection,
    Engine,
    RootTransaction,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)

from refundbridge.core.errors import ConcurrencyConflict, DuplicateDelivery, NotFound
from refundbridge.core.lifecycle import CaseState, Transition
from refundbridge.core.model import MONEY_RELEASED_STATES, RefundCase, Step
from refundbridge.core.money import Money
from refundbridge.core.ports import (
    CaseRepository,
    ExternalRefund,
    HeldUnits,
    Inbox,
    InboxEntry,
    IntakeWriter,
    OrderLedger,
    Outbox,
    RecallSource,
    SmsOptOuts,
    SmsSends,
)
from refundbridge.core.recalls import RecallList
from refundbridge.store import tables as t
from refundbridge.store.case_save import (
    IMMUTABLE_COLUMNS,
    SAVE_CASE,
    save_case_params,
    saved_work,
)
from refundbridge.store.db import dialect_insert
from refundbridge.store.intake import SqlIntakeWriter, execute_autocommit
from refundbridge.store.mapping import (
    aware,
    case_from_row,
    case_to_row,
    event_to_row,
    rules_to_rows,
    units_to_rows,
)
from refundbridge.store.outbox import Dispatch, Work
from refundbridge.store.recalls import recalls_for_shop
from refundbridge.store.sms import SqlSmsOptOuts, SqlSmsSends

# The evaluation's reads, built once: building a statement costs more than SQLAlchemy's
# cached compile of it (0.1-0.4 ms each, on every case).
_c, _x = t.cases.c, t.external_refunds.c
_STILL_HOLDING = _c.state.not_in([s.value for s in MONEY_RELEASED_STATES])
_OTHER_CASES_OF_ORDER = (_c.shop_id == bindparam("shop_id"),
                         _c.order_id == bindparam("order_id"), _c.id != bindparam("excluding"))
EARLIER_REQUESTS = select(_c.created_at).where(
    _c.shop_id == bindparam("shop_id"), _c.customer_id == bindparam("customer_id"),
    _c.created_at >= bindparam("since"), _c.id != bindparam("excluding"))
# The cases' and the outside refunds' sums in one round trip.
RESERVED = select(
    select(func.coalesce(func.sum(_c.approved_minor), 0)).where(
        *_OTHER_CASES_OF_ORDER, _c.approved_minor.is_not(None), _STILL_HOLDING,
    ).scalar_subquery()
    + select(func.coalesce(func.sum(_x.amount_minor), 0)).where(
        _x.shop_id == bindparam("shop_id"), _x.order_id == bindparam("order_id"),
        _x.currency == bindparam("currency"),
    ).scalar_subquery())
HELD_UNITS = select(_c.id, _c.state, _c.request).where(
    *_OTHER_CASES_OF_ORDER, _STILL_HOLDING,
    _c.approved_minor.is_not(None) | (_c.state == CaseState.AWAITING_REVIEW.value),
).order_by(_c.seq)


class SqlCaseRepository:
    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    def add(self, case: RefundCase) -> None:
        self._uow.seen[case.id] = (case, True)

    def get(self, case_id: str) -> RefundCase:
        if case_id in self._uow.seen:
            return self._uow.seen[case_id][0]
        query = select(t.cases).where(t.cases.c.id == case_id)
        if self._uow.conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = self._uow.conn.execute(query).first()
        if row is None:
            raise NotFound(f"no case {case_id}")
        case = case_from_row(row)
        self._uow.seen[case.id] = (case, False)
        return case

    def attach(self, case: RefundCase) -> None:
        self._uow.seen[case.id] = (case, False)

    def earlier_requests(self, shop_id: str, customer_id: str, since: datetime,
                         excluding: str) -> list[datetime]:
        rows = self._uow.conn.execute(EARLIER_REQUESTS, {
            "shop_id": shop_id, "customer_id": customer_id, "since": since,
            "excluding": excluding}).scalars().all()
        return [aware(at) for at in rows]

    def find_by_refund(self, provider_ref: str | None, idempotency_key: str | None
                       ) -> RefundCase | None:
        conditions = []
        if provider_ref:
            conditions.append(t.cases.c.refund_ref == provider_ref)
        if idempotency_key:
            conditions.append(t.cases.c.refund_key == idempotency_key)
        for condition in conditions:
            case_id = self._uow.conn.execute(select(t.cases.c.id).where(condition)).scalar()
            if case_id is not None:
                return self.get(case_id)
        return None


class SqlOrderLedger:
    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    def lock(self, shop_id: str, order_id: str, paid_total: Money) -> Money:
        # One statement creates the order on first sight or, on conflict, takes its row lock
        # (the no-op update): what the first case said was paid stays the ledger's figure.
        insert_order = dialect_insert(self._uow.conn)(t.orders)
        statement = insert_order.on_conflict_do_update(
            index_elements=[t.orders.c.shop_id, t.orders.c.order_id],
            set_={"shop_id": insert_order.excluded.shop_id},
        ).returning(t.orders.c.paid_minor, t.orders.c.currency)
        row = self._uow.conn.execute(statement, {
            "shop_id": shop_id, "order_id": order_id, "currency": paid_total.currency,
            "paid_minor": paid_total.minor, "created_at": datetime.now(UTC)}).one()
        return Money.from_minor(row.paid_minor, row.currency)

    def known_currency(self, shop_id: str, order_id: str) -> str | None:
        # One round trip on the intake path: the ledger's row is made by evaluating a case of
        # the order, and intake lets no case in another currency in, so any case of the order
        # says what it was paid in (any one: the (shop, order) index answers at once).
        c = t.cases.c
        earlier = self._uow.conn.execute(
            select(c.currency).where(c.shop_id == shop_id, c.order_id == order_id)
            .limit(1)).scalar()
        return None if earlier is None else str(earlier)

    def reserved(self, shop_id: str, order_id: str, currency: str, excluding: str) -> Money:
        total = self._uow.conn.execute(RESERVED, {
            "shop_id": shop_id, "order_id": order_id, "currency": currency,
            "excluding": excluding}).scalar_one()
        return Money.from_minor(int(total), currency)

    def record_external(self, shop_id: str, refund: ExternalRefund) -> bool:
        x = t.external_refunds.c
        statement = dialect_insert(self._uow.conn)(t.external_refunds).on_conflict_do_nothing(
            index_elements=[x.shop_id, x.external_id]).returning(x.id)
        inserted = self._uow.conn.execute(statement, {
            "shop_id": shop_id, "order_id": refund.order_id, "external_id": refund.external_id,
            "currency": refund.amount.currency, "amount_minor": refund.amount.minor,
            "note": refund.note[:500], "created_at": datetime.now(UTC)}).first()
        return inserted is not None

    def held_units(self, shop_id: str, order_id: str, excluding: str) -> list[HeldUnits]:
        # Units have no ledger of their own: an order has few cases, and each case's request
        # (stored whole, never changed) names its lines, so they are read from there.
        rows = self._uow.conn.execute(HELD_UNITS, {
            "shop_id": shop_id, "order_id": order_id, "excluding": excluding}).all()
        return [
            HeldUnits(row.id, str(line["sku"]), int(line["quantity"]), line.get("lot"),
                      line.get("serial"),
                      pending=row.state == CaseState.AWAITING_REVIEW.value)
            for row in rows for line in row.request["lines"]
        ]


class SqlInbox:
    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    def find(self, shop_id: str, connector: str, external_id: str) -> InboxEntry | None:
        row = self._uow.conn.execute(
            select(t.inbox.c.case_id, t.inbox.c.fingerprint).where(
                t.inbox.c.shop_id == shop_id, t.inbox.c.connector == connector,
                t.inbox.c.external_id == external_id)
        ).first()
        return None if row is None else InboxEntry(row.case_id, row.fingerprint)

    def add(self, shop_id: str, connector: str, external_id: str, entry: InboxEntry) -> None:
        self._uow.inbox_rows.append({
            "shop_id": shop_id, "connector": connector, "external_id": external_id,
            "fingerprint": entry.fingerprint, "case_id": entry.case_id,
            "received_at": datetime.now(UTC),
        })


class SqlOutbox:
    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    def complete(self, case_id: str, step: Step) -> None:
        # Written at commit, after the case row: every transaction locks a case before its
        # outbox rows, so two of them can't wait on each other.
        self._uow.completed.append({"done_case": case_id, "done_step": step.value})

    def postpone(self, case_id: str, step: Step, until: datetime) -> None:
        # As if handed out once, at `until`: the reconciler's first wait runs from there.
        self._uow.postponed.append({"p_case": case_id, "p_step": step.value,
                                    "until": until})


class SqlRecallReader:
    """The shop's recall list, read in the unit of work's own transaction (on SQLite a
    second connection would wait for this one's write lock)."""

    def __init__(self, uow: SqlUnitOfWork) -> None:
        self._uow = uow

    def for_shop(self, shop_id: str) -> RecallList:
        return recalls_for_shop(self._uow.conn, shop_id)


class SqlUnitOfWork:
    def __init__(self, engine: Engine, dispatch: Dispatch | None = None) -> None:
        self._engine = engine
        self._dispatch = dispatch
        self.cases: CaseRepository = SqlCaseRepository(self)
        self.orders: OrderLedger = SqlOrderLedger(self)
        self.inbox: Inbox = SqlInbox(self)
        self.outbox: Outbox = SqlOutbox(self)
        self.intake: IntakeWriter = SqlIntakeWriter(self)
        self.recalls: RecallSource = SqlRecallReader(self)
        self.sms_opt_outs: SmsOptOuts = SqlSmsOptOuts(self)
        self.sms_sends: SmsSends = SqlSmsSends(self)

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def dispatch(self) -> Dispatch | None:
        return self._dispatch

    def __enter__(self) -> Self:
        self._conn: Connection | None = None
        self._tx: RootTransaction | None = None
        self.seen: dict[str, tuple[RefundCase, bool]] = {}
        self.inbox_rows: list[dict[str, Any]] = []
        self.completed: list[dict[str, Any]] = []
        self.postponed: list[dict[str, Any]] = []
        return self

    # Connected on first use: the intake's one statement (store/intake.py) takes a pooled
    # connection of its own, and a unit of work that never needs one never holds one.
    @property
    def conn(self) -> Connection:
        if self._conn is None:
            self._conn = self._engine.connect()
            self._tx = self._conn.begin()
        return self._conn

    @property
    def tx(self) -> RootTransaction:
        if self._tx is None:
            self.conn  # noqa: B018 - connects and begins
        assert self._tx is not None
        return self._tx

    def begin_again(self) -> None:
        """End this transaction and start another: what a new unit of work would read."""
        self.tx.rollback()
        self._tx = self.conn.begin()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._conn is None:
            return
        if self._tx is not None and self._tx.is_active:
            self._tx.rollback()
        self._conn.close()

    def commit(self) -> None:
        now = datetime.now(UTC)
        # Only the cases this transaction writes move on a version: a case it merely read
        # keeps the version its row has, so a later save of it is still checked against
        # every other writer.
        written = [case for case, is_new in self.seen.values()
                   if is_new or case.new_events or case.new_steps]
        if self._saves_in_one_statement(written):
            work = self._save_in_one_statement(written[0], now)
        else:
            work = self._write_step_by_step(written, now)
        if self._tx is not None:
            self._tx.commit()
        for case in written:
            case.version += 1
            case.new_events.clear()
            case.new_steps.clear()
        if work and self._dispatch is not None:
            self._dispatch(work)

    def _save_in_one_statement(self, case: RefundCase, now: datetime) -> list[Work]:
        decided = any(e.name in DECISION_EVENTS for e in case.new_events)
        params = save_case_params(case, [c["done_step"] for c in self.completed], now,
                                  now if self._dispatch is not None else None, decided)
        if self._conn is None:  # nothing read first: the statement is the transaction
            return saved_work(case, execute_autocommit(self._engine, SAVE_CASE, params))
        # Through SQLAlchemy's driver-level call: its errors (a deadlock, a dropped
        # connection) reach the job as the same exceptions.
        return saved_work(case, self._conn.exec_driver_sql(SAVE_CASE, params).fetchone())

    def _write_step_by_step(self, written: list[RefundCase], now: datetime) -> list[Work]:
        conn = self.conn
        work: list[Work] = []
        if self.inbox_rows and not self._insert_inbox(conn):
            raise DuplicateDelivery(self.inbox_rows[0]["case_id"], same_body=True)
        for case in written:
            self._write_case(conn, case, self.seen[case.id][1], now)
        if self.completed:
            conn.execute(COMPLETE_WORK, [{**c, "now": now} for c in self.completed])
        if self.postponed:
            conn.execute(POSTPONE_WORK, self.postponed)
        for case in written:
            if case.new_steps:
                work.extend(self._write_work(conn, case, now))
        return work

    def _saves_in_one_statement(self, written: list[RefundCase]) -> bool:
        """Whether this commit is a worker step's usual one (`store/case_save.py`): one
        existing case, its events, its own finished and next work, at most its first
        decision."""
        if (self._engine.dialect.name != "postgresql" or self.inbox_rows or self.postponed
                or len(written) != 1 or self.seen[written[0].id][1]):
            return False
        case = written[0]
        if any(c["done_case"] != case.id for c in self.completed):
            return False
        decided = sum(e.name in DECISION_EVENTS for e in case.new_events)
        # A later decision deletes the rules of the first: left to the step-by-step path.
        return decided == 0 or len(case.decisions) == decided

    def _insert_inbox(self, conn: Connection) -> bool:
        """Insert the inbox keys; False if one exists (a concurrent delivery committed it)."""
        statement = dialect_insert(conn)(t.inbox).on_conflict_do_nothing().returning(
            t.inbox.c.case_id)
        inserted = conn.execute(statement, self.inbox_rows).all()
        return len(inserted) == len(self.inbox_rows)

    def _write_case(self, conn: Connection, case: RefundCase, is_new: bool,
                    now: datetime) -> None:
        row = case_to_row(case, now)
        if is_new:
            conn.execute(INSERT_CASE, row)
            conn.execute(INSERT_UNITS, units_to_rows(case))
        else:
            changing = {k: v for k, v in row.items() if k not in IMMUTABLE_COLUMNS}
            result = conn.execute(UPDATE_CASE, {**changing, "_id": case.id,
                                                "_version": case.version})
            if result.rowcount != 1:
                raise ConcurrencyConflict(f"case {case.id} was changed by another writer")
        if case.new_events:
            conn.execute(INSERT_EVENT, [event_to_row(case.id, e) for e in case.new_events])
        decided = sum(e.name in DECISION_EVENTS for e in case.new_events)
        if decided:
            # The rules that spoke, for the console's filter: rewritten with the decisions.
            if len(case.decisions) > decided:
                conn.execute(DELETE_RULES, {"case_id": case.id})
            rules = rules_to_rows(case)
            if rules:
                conn.execute(INSERT_RULES, rules)

    def _write_work(self, conn: Connection, case: RefundCase, now: datetime) -> list[Work]:
        steps = list(dict.fromkeys(case.new_steps))
        if Step.NOTIFY in steps and conn.execute(PENDING_NOTIFY, {"case_id": case.id}).first():
            # A notify job that has not finished yet sends every pending message, and asks
            # for another run if more arrived while it was sending: one job is enough.
            steps.remove(Step.NOTIFY)
        if not steps:
            return []
        dispatched = now if self._dispatch is not None else None
        rows = conn.execute(INSERT_WORK, [
            {"case_id": case.id, "step": step.value, "created_at": now,
             "dispatched_at": dispatched, "dispatch_count": 1}
            for step in steps
        ]).all()
        return [Work(int(row.id), case.id, Step(row.step)) for row in rows]


INSERT_CASE = insert(t.cases)
UPDATE_CASE = update(t.cases).where(t.cases.c.id == bindparam("_id"),
                                    t.cases.c.version == bindparam("_version"))
INSERT_EVENT = insert(t.case_events)
INSERT_UNITS = insert(t.case_units)
INSERT_RULES = insert(t.case_rules)
DELETE_RULES = delete(t.case_rules).where(t.case_rules.c.case_id == bindparam("case_id"))
# The events that append a decision (`RefundCase.decide`).
DECISION_EVENTS = frozenset({Transition.APPROVE.value, Transition.DENY.value,
                             Transition.SEND_TO_REVIEW.value})
POSTPONE_WORK = update(t.outbox).where(
    t.outbox.c.case_id == bindparam("p_case"), t.outbox.c.step == bindparam("p_step"),
    t.outbox.c.done_at.is_(None)).values(dispatched_at=bindparam("until"), dispatch_count=1)
COMPLETE_WORK = update(t.outbox).where(
    t.outbox.c.case_id == bindparam("done_case"), t.outbox.c.step == bindparam("done_step"),
    t.outbox.c.done_at.is_(None)).values(done_at=bindparam("now"))
INSERT_WORK = insert(t.outbox).returning(t.outbox.c.id, t.outbox.c.step,
                                         sort_by_parameter_order=True)
PENDING_NOTIFY = select(t.outbox.c.id).where(
    t.outbox.c.case_id == bindparam("case_id"), t.outbox.c.step == Step.NOTIFY.value,
    t.outbox.c.done_at.is_(None)).limit(1)
