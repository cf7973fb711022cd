"""Failing, reviving, retrying and cancelling a case."""

from __future__ import annotations

from refundbridge.core.model import (
    Step,
)
from refundbridge.core.services.common import Services


def fail_step(svc: Services, case_id: str, step: Step, message: str,
              code: str | None = None) -> None:
    """A job's step failed for a reason retrying will not mend, or the reconciler gave up on
    it: show that on the case (`RefundCase.step_failed`) and close the step's work."""
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        case.step_failed(step, message[:1000], svc.clock(), code)
        uow.outbox.complete(case_id, step)
        uow.commit()


def revive(svc: Services, case_id: str, limit: int) -> list[Step]:
    """The reconciler found the case idle: queue the steps its state needs (or fail it for a
    person after `limit` revivals without progress). Returns the steps queued."""
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        steps = case.revive(svc.clock(), limit)
        uow.commit()
        return steps


def retry(svc: Services, case_id: str, actor: str) -> None:
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        case.retry(svc.clock(), actor)
        uow.commit()


def cancel(svc: Services, case_id: str, actor: str, reason: str) -> None:
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        case.cancel(svc.clock(), actor, reason)
        uow.commit()
