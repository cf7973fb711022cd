"""Failing, reviving, retrying and cancelling a case."""

from __future__ import annotations

from refundbridge.core.errors import DomainError
from refundbridge.core.model import (
    Step,
)
from refundbridge.core.request import check_text
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


JOB_ACTIONS = frozenset({"job_requeued", "job_cancelled"})


def record_job_action(svc: Services, case_id: str, actor: str, action: str,
                      job_id: str, detail: str = "") -> None:
    """An operator requeued or cancelled one of the case's queue jobs (the console's Jobs
    page): the case's audit trail says who, which job, and what it had failed with."""
    if action not in JOB_ACTIONS:
        raise DomainError(f"'{action}' is not a job action")
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        case.record(action, actor=actor, at=svc.clock(), from_state=case.state,
                    to_state=case.state, data={"job_id": job_id, "detail": detail[:500]})
        uow.commit()


def cancel(svc: Services, case_id: str, actor: str, reason: str) -> None:
    check_text(reason, "reason", multiline=True)
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
        case.cancel(svc.clock(), actor, reason)
        uow.commit()
