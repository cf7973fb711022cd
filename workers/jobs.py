"""The job RQ runs: one step of one case, by id.

The worker process installs its container (`workers.runtime.install`) before it starts
working; jobs look it up there rather than building clients themselves.
"""

from __future__ import annotations

from core.model import Step
from core.services import STEP_HANDLERS
from workers import runtime

MAX_CHAIN = 8  # steps one job may run for its case before handing the rest to the queue


def run_step(case_id: str, step: str) -> None:
    container = runtime.current()
    with container.dispatcher.chain() as chained:
        STEP_HANDLERS[Step(step)](container.services, case_id)
        for _ in range(MAX_CHAIN):
            if not chained:
                break
            work = chained.pop()
            STEP_HANDLERS[work.step](container.services, work.case_id)
