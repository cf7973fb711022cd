"""The job RQ runs: one step of one case, by id.

The worker process installs its container (`workers.runtime.install`) before it starts
working; jobs look it up there rather than building clients themselves.

A step that raises a transient error (a provider or the database briefly away, a lost
version race) leaves its outbox row open: the reconciler hands it out again, later each
time and a bounded number of times. Any other error would fail the same way on every try,
so the case is failed at once with the error, for a person to see in `GET /v1/cases/{id}`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from redis.exceptions import RedisError
from rq.timeouts import JobTimeoutException

from refundbridge.core import log_context
from refundbridge.core.campaigns import CampaignStep
from refundbridge.core.errors import ConcurrencyConflict, TransientProviderError
from refundbridge.core.services import STEP_HANDLERS, Services, chained_steps, fail_step
from refundbridge.core.services.campaigns import CAMPAIGN_HANDLERS, fail_campaign_step
from refundbridge.store.db import DATABASE_UNAVAILABLE
from refundbridge.store.outbox import Work, WorkStep, work_step
from refundbridge.workers import metrics, runtime

log = logging.getLogger("refundbridge.jobs")

MAX_CHAIN = 8  # steps one job may run for its case before handing the rest to the queue

# Errors that may not happen on the next try. A deadlock or a dropped connection is an
# OperationalError; a value the database cannot store is a DataError, and is not here.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientProviderError, ConcurrencyConflict, *DATABASE_UNAVAILABLE, RedisError,
    JobTimeoutException, ConnectionError, TimeoutError,
)


def run_signals() -> None:
    """The periodic quality-signal run over every shop (workers/signals.py)."""
    from refundbridge.workers.signals import run_signal_job

    run_signal_job(runtime.current())


def run_step(case_id: str, step: str, then: Sequence[tuple[int, str]] = ()) -> None:
    """Run `step` of the case, then the steps chained to it and `then`: the case's other
    steps handed out with it, as (outbox id, step) (`workers.queue.job_args`)."""
    container = runtime.current()
    with container.dispatcher.chain() as chained, chained_steps():
        chained.take([Work(int(outbox_id), case_id, work_step(name)) for outbox_id, name in then])
        run_one(container.services, case_id, work_step(step))
        for _ in range(MAX_CHAIN):
            if not chained:
                break
            work = chained.pop()
            run_one(container.services, work.case_id, work.step)


def run_one(svc: Services, case_id: str, step: WorkStep) -> None:
    """Run one step; fail the case when the step fails for a reason a retry won't mend. A
    campaign's step (`case_id` is then the campaign's id) is recorded failed on the
    campaign's trail instead."""
    campaign = isinstance(step, CampaignStep)
    # Every line logged while the step runs names it (and its case or campaign).
    with (log_context.bound(step=step.value, case_id=None if campaign else case_id,
                            campaign_id=case_id if campaign else None),
          metrics.step_span(step.value, case_id, campaign)):
        started, outcome = time.monotonic(), "failed"
        try:
            outcome = _run_one(svc, case_id, step)
        except TRANSIENT_ERRORS:
            outcome = "transient"
            raise
        finally:
            seconds = time.monotonic() - started
            metrics.job_finished(step.value, outcome, seconds)
            log.info("step %s: %s in %.1f ms", step.value, outcome, seconds * 1000,
                     extra={"outcome": outcome, "duration_ms": round(seconds * 1000, 1)})


def _run_one(svc: Services, case_id: str, step: WorkStep) -> str:
    """"ok", or "failed" once the failure is recorded; a transient error goes on up."""
    try:
        if isinstance(step, CampaignStep):
            CAMPAIGN_HANDLERS[step](svc, case_id)
        else:
            STEP_HANDLERS[step](svc, case_id)
        return "ok"
    except TRANSIENT_ERRORS:
        raise
    except Exception as exc:  # the job's boundary: whatever it is, the case must show it
        log.exception("step %s of %s failed", step.value, case_id)
        # The first line only: a database error goes on with the statement and its values.
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        message = f"{type(exc).__name__}: {first_line}"
        if isinstance(step, CampaignStep):
            fail_campaign_step(svc, case_id, step, message)
        else:
            fail_step(svc, case_id, step, message, code="step_error")
        return "failed"
