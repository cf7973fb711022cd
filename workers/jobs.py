"""The job RQ runs: one step of one case, by id.

The worker process installs its container (`workers.runtime.install`) before it starts
working; jobs look it up there rather than building clients themselves.
"""

from __future__ import annotations

from core.model import Step
from core.services import STEP_HANDLERS
from workers import runtime


def run_step(case_id: str, step: str) -> None:
    services = runtime.current().services
    STEP_HANDLERS[Step(step)](services, case_id)
