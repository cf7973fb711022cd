"""What every use case shares: the services they are given, and the two ways a step ends
(its work found done already, or its provider's answer recorded after the call)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from refundbridge.core.campaigns import CampaignRepository
from refundbridge.core.errors import (
    ConcurrencyConflict,
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
from refundbridge.core.status_links import StatusLinks

log = logging.getLogger("refundbridge.services")


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


@dataclass(frozen=True, slots=True)
class Received:
    case_id: str
    created: bool


def finish_idle_step(svc: Services, uow: UnitOfWork, case: RefundCase, step: Step) -> None:
    """A step found its work done already (by another job, or before a retry): mark its
    work done, and close the case if this step was all that kept it open."""
    case.close_if_done(svc.clock())
    uow.outbox.complete(case.id, step)
    uow.commit()


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
            uow.commit()
        return
    except ConcurrencyConflict:
        pass
    with svc.uow() as uow:
        case = uow.cases.get(snapshot.id)
        change(case)
        if done:
            uow.outbox.complete(case.id, step)
        uow.commit()
