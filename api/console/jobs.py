"""Jobs `/console/jobs`: the work queue as RQ's registries hold it — queued (the depth),
started, failed, deferred and scheduled jobs, each with its case, its error and the tries
it has left — and, for operators who may operate, requeue or cancel a failed job.

Only jobs of the operator's shops are listed: a job's id names its case
(`<step>-<case_id>-<outbox_id>[-r<dispatch>]`, workers/queue.py `job_id`), and the case
names its shop. A job whose case is unknown is an admin's to see. Nothing changes on a GET
or HEAD: the actions are POSTs with the session's CSRF token, and each is recorded in the
case's audit trail (`job_requeued`, `job_cancelled`) with the operator and the job id.
Cancelling deletes the RQ job only; the step's work stays open in the outbox, so the
reconciler hands it out again later unless the case is settled (cancel the case on its page
to stop it for good).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import BaseRegistry

from refundbridge.api.console.web import (
    PREFIX,
    ConsoleContext,
    ConsoleUser,
    ConsoleWriter,
    redirect,
    render,
)
from refundbridge.api.deps import AppDeps
from refundbridge.core import services
from refundbridge.core.access import Permission
from refundbridge.core.errors import ConcurrencyConflict, InvalidRequest, NotFound
from refundbridge.store.console_reads import ConsoleReads

router = APIRouter(prefix=PREFIX, include_in_schema=False)

JOB_ID = re.compile(r"^(?P<step>[a-z_]+)-(?P<case>[A-Za-z0-9_]{1,40})-(?P<outbox>\d{1,18})"
                    r"(?:-r(?P<dispatch>\d{1,6}))?$")
SHOWN = 100  # jobs listed per registry (the counts are of all of them)
SCANNED = 1000  # job ids read per registry to find the operator's shops' jobs
REGISTRIES = ("queued", "started", "failed", "deferred", "scheduled")
LABELS = {"queued": "Queued jobs", "started": "Started jobs", "failed": "Failed jobs",
          "deferred": "Deferred jobs", "scheduled": "Scheduled jobs"}
CANCELLABLE = ("failed", "deferred")


@dataclass(frozen=True, slots=True)
class JobName:
    step: str
    case_id: str
    outbox_id: int
    dispatch: int


def parse_job_id(job_id: str) -> JobName | None:
    """What a RefundBridge job id names; None for any other job."""
    found = JOB_ID.match(job_id)
    if found is None:
        return None
    return JobName(found["step"], found["case"], int(found["outbox"]),
                   int(found["dispatch"] or 1))


def last_line(text: str | None) -> str:
    """The last non-blank line of a traceback: the exception and its message."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:500] if lines else ""


def _queue(deps: AppDeps) -> Queue:
    return Queue(deps.settings.queue_name, connection=deps.redis)


def _registry(queue: Queue, name: str) -> BaseRegistry:
    registry: BaseRegistry = {
        "started": queue.started_job_registry, "failed": queue.failed_job_registry,
        "deferred": queue.deferred_job_registry, "scheduled": queue.scheduled_job_registry,
    }[name]
    return registry


def _ids(queue: Queue, name: str) -> tuple[int, list[str]]:
    if name == "queued":
        return queue.count, queue.get_job_ids(0, SCANNED)
    registry = _registry(queue, name)
    return registry.count, registry.get_job_ids(0, SCANNED - 1, desc=name != "scheduled")


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _retries_left(job: Job, name: JobName | None, max_dispatches: int) -> str:
    """RQ's own retries if the job has any; else how often the reconciler will still hand
    the step out (its `max_dispatches`, counted by the id's `-r<n>`)."""
    if job.retries_left is not None:
        return str(job.retries_left)
    if name is None:
        return ""
    return str(max(0, max_dispatches - name.dispatch))


def read_jobs(deps: AppDeps, user: ConsoleContext) -> dict[str, Any]:
    """Every registry's count and the operator's jobs in it (blocking: Redis, database)."""
    queue = _queue(deps)
    found: dict[str, tuple[int, list[str]]] = {name: _ids(queue, name) for name in REGISTRIES}
    names = {job_id: parse_job_id(job_id) for _, ids in found.values() for job_id in ids}
    shops = ConsoleReads(deps.reads.engine).case_shops(
        [n.case_id for n in names.values() if n is not None])
    principal = user.principal

    def visible(job_id: str) -> bool:
        name = names[job_id]
        shop = shops.get(name.case_id) if name else None
        return principal.shops is None if shop is None else principal.sees(shop)

    sections = []
    max_dispatches = deps.settings.max_dispatches
    for registry, (count, ids) in found.items():
        mine = [job_id for job_id in ids if visible(job_id)]
        jobs = Job.fetch_many(mine[:SHOWN], connection=deps.redis)
        scheduled_at: dict[str, datetime] = {}
        if registry == "scheduled":
            for job_id in mine[:SHOWN]:
                try:
                    scheduled_at[job_id] = queue.scheduled_job_registry.get_scheduled_time(
                        job_id)
                except NoSuchJobError:  # gone meanwhile: shown without a time
                    continue
        rows = []
        for job_id, job in zip(mine[:SHOWN], jobs, strict=True):
            if job is None:
                continue  # finished or deleted since the ids were read
            name = names[job_id]
            result = job.latest_result() if registry == "failed" else None
            rows.append({
                "id": job_id, "step": name.step if name else job.func_name or "",
                "case_id": name.case_id if name else "",
                "shop": shops.get(name.case_id, "") if name else "",
                "enqueued": _time(job.enqueued_at), "started": _time(job.started_at),
                "ended": _time(job.ended_at),
                "scheduled": _time(scheduled_at.get(job_id)),
                "error": last_line(result.exc_string if result else None),
                "retries_left": _retries_left(job, name, max_dispatches),
                "cancellable": registry in CANCELLABLE,
                "requeueable": registry == "failed",
            })
        sections.append({"name": registry, "label": LABELS[registry], "count": count,
                         "mine": len(mine),
                         "more": len(mine) > SHOWN or len(ids) >= SCANNED, "rows": rows})
    return {"sections": sections, "queue_name": queue.name}


@router.get("/jobs")
async def jobs_page(request: Request, user: ConsoleUser, deps: AppDeps,
                    done: str = "", error: str = "") -> Response:
    user.principal.require(Permission.READ)
    values = await run_in_threadpool(read_jobs, deps, user)
    notice = {"requeued": "The job was requeued.",
              "cancelled": "The job was cancelled."}.get(done, "")
    problem = {"gone": "That job is no longer there (it ran, or someone else acted on it)."
               }.get(error, "")
    return render(request, "jobs.html", user, notice=notice, problem=problem,
                  may_operate=user.may(Permission.OPERATE), **values)


def _act(deps: AppDeps, user: ConsoleContext, job_id: str, action: str) -> bool:
    """Requeue or cancel the job, then record it on its case; False if the job is not in
    a registry the action applies to (any more). Another shop's job is a 404 whatever the
    role; the role is checked after the shop."""
    name = parse_job_id(job_id)
    if name is None:
        raise NotFound(f"no job {job_id}")
    shop = ConsoleReads(deps.reads.engine).case_shops([name.case_id]).get(name.case_id)
    if shop is None:
        raise NotFound(f"no case {name.case_id}")
    user.principal.require_shop(shop, f"job {job_id}")
    user.principal.require(Permission.OPERATE)
    queue = _queue(deps)
    job = Job.fetch_many([job_id], connection=deps.redis)[0]
    if job is None:
        return False
    status = job.get_status()
    result = job.latest_result()
    detail = last_line(result.exc_string if result else None)
    if action == "job_requeued":
        if status is not JobStatus.FAILED:
            return False
        try:
            queue.failed_job_registry.requeue(job_id)
        except InvalidJobOperation:
            return False
    else:
        if status not in (JobStatus.FAILED, JobStatus.DEFERRED):
            return False
        job.delete()
        detail = detail or f"was {status.value}"
    for attempt in range(3):  # a worker may save the case between our read and our write
        try:
            services.record_job_action(deps.api_services, name.case_id,
                                       user.principal.actor, action, job_id, detail)
            break
        except ConcurrencyConflict:
            if attempt == 2:
                raise
    return True


async def _post(request: Request, user: ConsoleContext, deps: AppDeps, job_id: str,
                action: str, done: str) -> Response:
    if len(job_id) > 128:
        raise InvalidRequest("job_id", "too long")
    acted = await run_in_threadpool(_act, deps, user, job_id, action)
    return redirect(f"{PREFIX}/jobs?done={done}" if acted else f"{PREFIX}/jobs?error=gone")


@router.post("/jobs/requeue")
async def requeue(request: Request, user: ConsoleWriter, deps: AppDeps,
                  job_id: Annotated[str, Form(max_length=128)]) -> Response:
    return await _post(request, user, deps, job_id, "job_requeued", "requeued")


@router.post("/jobs/cancel")
async def cancel(request: Request, user: ConsoleWriter, deps: AppDeps,
                 job_id: Annotated[str, Form(max_length=128)]) -> Response:
    return await _post(request, user, deps, job_id, "job_cancelled", "cancelled")
