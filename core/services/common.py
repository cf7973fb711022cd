"""What every use case shares: the services they are given, and the two ways a step ends
(its work found done already, or its provider's answer recorded after the call)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar, cast

from refundbridge.core.campaigns import CampaignRepository
from refundbridge.core.capa import CapaRepository
from refundbridge.core.errors import (
    ConcurrencyConflict,
    DomainError,
)
from refundbridge.core.model import (
    RefundCase,
    Step,
)
from refundbridge.core.ports import (
    ConsigneeLookup,
    ErpGateway,
    Notifier,
    OrderLookup,
    PaymentGateway,
    ReplacementCreator,
    ShipmentLookup,
    SmsSender,
    StatusWriter,
    StockQuarantine,
    UnitOfWork,
)
from refundbridge.core.rules import (
    RuleSet,
    ShopPolicy,
)
from refundbridge.core.signals import SignalRepository
from refundbridge.core.status_links import StatusLinks

log = logging.getLogger("refundbridge.services")

T = TypeVar("T")


@dataclass(frozen=True)
class ShopGateways:
    """The connectors one shop uses for each role (built by the composition root). The
    optional ports are set only when the shop's connector declares the capability."""

    payment: PaymentGateway
    erp: ErpGateway
    notifier: Notifier
    shipments: ShipmentLookup | None = None
    storefront: StatusWriter | None = None
    storefront_name: str | None = None
    # A second channel beside the notifier's email (`sms = "…"` in the shop's settings).
    sms: SmsSender | None = None
    # Recall campaigns: the ERP's consignees of a lot, its quarantine of the stock on hand,
    # and the storefront's orders (to open a consignee's recall case with what they paid).
    consignees: ConsigneeLookup | None = None
    quarantine: StockQuarantine | None = None
    orders: OrderLookup | None = None
    # Exchanges: the ERP orders (and ships) a replacement (`erp.replacement`).
    replacement: ReplacementCreator | None = None


@dataclass(frozen=True)
class Services:
    uow: Callable[[], UnitOfWork]
    policy: Callable[[str], ShopPolicy]
    gateways: Callable[[str], ShopGateways]
    rules: Callable[[str], RuleSet]
    clock: Callable[[], datetime]
    # How long a job's claim on a case's ERP booking keeps other jobs from calling the ERP:
    # longer than a job may run, so a live claim is never taken over.
    booking_lease: timedelta = timedelta(minutes=5)
    # Signs the customer's status link that every message carries (None: no links).
    status_links: StatusLinks | None = None
    # Recall campaigns and their consignees (None: a deployment without them, in tests).
    campaigns: CampaignRepository | None = None
    # CAPA records (None: a deployment without them, in tests).
    capas: CapaRepository | None = None
    signals: SignalRepository | None = None  # quality signals (core/signals.py)


@dataclass(frozen=True, slots=True)
class Received:
    case_id: str
    created: bool


@dataclass(frozen=True, slots=True)
class FirstPhase(Generic[T]):
    """What a step decides before its provider call. `prepare` looks at the case and may
    change it (reserve a refund's key, claim a booking); it returns what the call needs, or
    None when the step has nothing left to do. `writes`: what it changed must be committed
    before the call."""

    step: Step
    prepare: Callable[[Services, RefundCase], T | None]
    writes: bool


# The first phases that may ride on the commit of the step before them in a job's chain
# (filled in by the package, beside `STEP_HANDLERS`).
FOLDABLE: dict[Step, FirstPhase[Any]] = {}


@dataclass(slots=True)
class _Committed:
    case: RefundCase
    # The next step's first phase, done and committed with this commit: (step, its result).
    ready: tuple[Step, Any] | None = None


# The cases the steps of one worker job committed last, by id (None: not inside a job's
# chain). Only `chained_steps` sets it: anywhere else every step reads its case afresh.
_committed: ContextVar[dict[str, _Committed] | None] = ContextVar(
    "refundbridge_committed_cases", default=None)


@contextmanager
def chained_steps() -> Iterator[None]:
    """While one job runs its case's steps one after another:

    - each step starts from the case as the step before it committed it, instead of reading
      (and locking) it again. Saves check the version as always, so a write by anyone in
      between is never overwritten: the step then starts again from a fresh, locked read
      (`first_phase`);
    - a step's commit also carries the first phase of the step the chain runs next (a
      refund's reserved key, a booking's claim), when no provider call sits between them
      (`commit_step`). The commit before that step's provider call is then this one.
    """
    token = _committed.set({})
    try:
        yield
    finally:
        _committed.reset(token)


def remember(case: RefundCase, ready: tuple[Step, Any] | None = None) -> None:
    """`case` was just committed: the next step of the chain may start from it."""
    memory = _committed.get()
    if memory is not None:
        memory[case.id] = _Committed(case, ready)


def _recall(case_id: str) -> _Committed | None:
    memory = _committed.get()
    return None if memory is None else memory.pop(case_id, None)


def commit_step(svc: Services, uow: UnitOfWork, case: RefundCase) -> None:
    """Commit a step's changes to `case`. Inside a job's chain, the first phase of the step
    the chain runs next is done first, in this same transaction: the dispatcher keeps the
    first new step that is not a notification for the job itself, so that is the one."""
    ready = _fold_next(svc, case)
    uow.commit()
    remember(case, ready)


def _fold_next(svc: Services, case: RefundCase) -> tuple[Step, Any] | None:
    if _committed.get() is None:
        return None
    following = next((s for s in case.new_steps if s is not Step.NOTIFY), None)
    phase = FOLDABLE.get(following) if following is not None else None
    if phase is None or not phase.writes or phase.step not in case.steps_needed():
        return None
    try:
        prepared = phase.prepare(svc, case)
    except DomainError:
        return None  # it changes nothing then: the step itself meets it, and says so
    return None if prepared is None else (phase.step, prepared)


def first_phase(svc: Services, case_id: str, phase: FirstPhase[T]) -> T | None:
    """Run a step's first phase in a unit of work: its result, or None when the step found
    nothing to do (its work is then marked done).

    Inside a job's chain it may be done already (committed with the step before), or it
    starts from the case the previous step committed, without a read; if anyone wrote the
    case since, the commit's version check raises `ConcurrencyConflict` and the phase runs
    again on the case read and locked afresh, as it does outside a chain. A phase that
    writes nothing then opens no transaction at all."""
    found = _recall(case_id)
    if found is not None:
        if found.ready is not None and found.ready[0] is phase.step:
            return cast(T, found.ready[1])
        token = _on_snapshot.set(case_id)
        try:
            with svc.uow() as uow:
                uow.cases.attach(found.case)
                return _start(svc, uow, found.case, phase)
        except ConcurrencyConflict:
            log.info("case %s: reading it again, locked, for this step", case_id)
        finally:
            _on_snapshot.reset(token)
    with svc.uow() as uow:
        return _start(svc, uow, uow.cases.get(case_id), phase)


def _start(svc: Services, uow: UnitOfWork, case: RefundCase, phase: FirstPhase[T]) -> T | None:
    prepared = phase.prepare(svc, case)
    if prepared is None:
        finish_idle_step(svc, uow, case, phase.step)
    elif phase.writes:
        uow.commit()
        remember(case)
    return prepared


# The case whose step's first phase runs on a remembered snapshot, not on a locked read.
_on_snapshot: ContextVar[str | None] = ContextVar("refundbridge_on_snapshot", default=None)


def finish_idle_step(svc: Services, uow: UnitOfWork, case: RefundCase, step: Step) -> None:
    """A step found its work done already (by another job, or before a retry): mark its
    work done, and close the case if this step was all that kept it open."""
    if _on_snapshot.get() == case.id:
        # Completing the work may write nothing to the case, so no version check would
        # show a write since the snapshot (a new run queued by a person, say): decide on
        # the case read and locked instead (`first_phase` catches this).
        raise ConcurrencyConflict(f"case {case.id}: an idle step is decided on a locked read")
    case.close_if_done(svc.clock())
    uow.outbox.complete(case.id, step)
    uow.commit()
    remember(case)


def record_step(svc: Services, snapshot: RefundCase, step: Step,
            change: Callable[[RefundCase], None], *, done: bool = True) -> None:
    """Phase two of a step: apply `change` to the case as phase one read it, mark the step's
    work done (unless `done` is False: it is to be tried again), and commit.

    Saving checks the case's version, so if anyone wrote the case while the provider was
    being called, this raises `ConcurrencyConflict` inside; then the case is read again (and
    locked) and `change` applied to that. Most of the time nobody did, and the second read
    is saved.
    """
    try:
        with svc.uow() as uow:
            uow.cases.attach(snapshot)
            change(snapshot)
            if done:
                uow.outbox.complete(snapshot.id, step)
            commit_step(svc, uow, snapshot)
        return
    except ConcurrencyConflict:
        pass
    with svc.uow() as uow:
        case = uow.cases.get(snapshot.id)
        change(case)
        if done:
            uow.outbox.complete(case.id, step)
        commit_step(svc, uow, case)
