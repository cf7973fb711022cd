"""The Jobs page: real RQ jobs in the test Redis, failing by design; requeue and cancel
through the page, recorded in the case's trail; only the operator's shops; no action on a
GET; who may act."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from redis import Redis
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus
from sqlalchemy import text

from refundbridge.api.console.jobs import last_line, parse_job_id
from refundbridge.bootstrap import Container
from tests.console.conftest import OTHER_SHOP, Session
from tests.console.kit import open_in

FAILS = "tests.console.failing_jobs.provider_away"
NEVER = "tests.console.failing_jobs.never_runs"


def _queue(container: Container) -> Queue:
    return Queue(container.settings.queue_name, connection=container.redis)


def _outbox_id(container: Container, case_id: str) -> int:
    with container.engine.connect() as conn:
        return int(conn.execute(text("SELECT min(id) FROM outbox WHERE case_id = :c"),
                                {"c": case_id}).scalar_one())


def failed_job(container: Container, case_id: str, dispatch: int = 1) -> str:
    """A job of the case's evaluate step that fails in a real worker, as a step whose
    provider is away does."""
    job_id = f"evaluate-{case_id}-{_outbox_id(container, case_id)}"
    job_id += f"-r{dispatch}" if dispatch > 1 else ""
    queue = _queue(container)
    queue.enqueue_call(FAILS, args=(case_id, "evaluate"), job_id=job_id, failure_ttl=3600)
    SimpleWorker([queue], connection=container.redis).work(burst=True, with_scheduler=False)
    assert Job.fetch(job_id, connection=container.redis).get_status() is JobStatus.FAILED
    return job_id


def _events(container: Container, case_id: str, name: str) -> list[Any]:
    with container.engine.connect() as conn:
        return list(conn.execute(text(
            "SELECT actor, data FROM case_events WHERE case_id = :c AND name = :n "
            "ORDER BY seq"), {"c": case_id, "n": name}))


def test_job_ids_are_read_as_the_dispatcher_writes_them() -> None:
    assert parse_job_id("refund-rc_0a1b-17") == parse_job_id("refund-rc_0a1b-17-r1")
    name = parse_job_id("write_back-rc_0a1b-17-r3")
    assert name is not None and (name.step, name.case_id, name.outbox_id, name.dispatch) == (
        "write_back", "rc_0a1b", 17, 3)
    assert parse_job_id("some-other-job") is None and parse_job_id("x") is None
    assert last_line("Traceback …\n  File x\nTimeoutError: late\n\n") == "TimeoutError: late"


def test_failed_jobs_are_listed_with_case_error_and_tries_and_requeued_on_post(
        login_as: Callable[..., Session], console_container: Container) -> None:
    reviewer = login_as("li.na", "reviewer")
    case_id = open_in(reviewer.client, None)
    job_id = failed_job(console_container, case_id, dispatch=3)
    page = reviewer.client.get("/console/jobs")
    assert page.status_code == 200
    assert f'data-job="{job_id}"' in page.text
    assert f'href="/console/cases/{case_id}"' in page.text
    assert f"TimeoutError: the ERP did not answer for {case_id} (evaluate) in 10 s" in page.text
    max_dispatches = console_container.settings.max_dispatches
    assert f'<td class="num">{max_dispatches - 3}</td>' in page.text
    assert 'action="/console/jobs/requeue"' in page.text

    answer = reviewer.post("/console/jobs/requeue", {"job_id": job_id})
    assert answer.status_code == 303 and answer.headers["location"].endswith("done=requeued")
    queue = _queue(console_container)
    assert job_id in queue.job_ids
    assert job_id not in queue.failed_job_registry.get_job_ids()
    [(actor, data)] = _events(console_container, case_id, "job_requeued")
    assert actor == "operator:li.na" and data["job_id"] == job_id
    assert "TimeoutError" in data["detail"]
    after = reviewer.client.get(answer.headers["location"])
    assert "The job was requeued." in after.text
    # Asked again, the job is not failed any more: nothing happens, nothing is recorded.
    again = reviewer.post("/console/jobs/requeue", {"job_id": job_id})
    assert again.headers["location"].endswith("error=gone")
    assert len(_events(console_container, case_id, "job_requeued")) == 1


def test_failed_and_deferred_jobs_are_cancelled_on_post(
        login_as: Callable[..., Session], console_container: Container) -> None:
    reviewer = login_as("li.na", "reviewer")
    case_id = open_in(reviewer.client, None)
    failed = failed_job(console_container, case_id)
    queue = _queue(console_container)
    parent = queue.enqueue_call(NEVER, args=(case_id, "stock"), job_id="parent-of-deferred")
    waiting_id = f"stock-{case_id}-{_outbox_id(console_container, case_id)}"
    waiting = queue.enqueue_call(NEVER, args=(case_id, "stock"), job_id=waiting_id,
                                 depends_on=parent)
    assert waiting.get_status() is JobStatus.DEFERRED
    page = reviewer.client.get("/console/jobs")
    assert f'data-job="{waiting_id}"' in page.text

    for job_id in (failed, waiting_id):
        answer = reviewer.post("/console/jobs/cancel", {"job_id": job_id})
        assert answer.headers["location"].endswith("done=cancelled"), job_id
        assert Job.fetch_many([job_id], connection=console_container.redis) == [None]
    events = _events(console_container, case_id, "job_cancelled")
    assert [(actor, data["job_id"]) for actor, data in events] == [
        ("operator:li.na", failed), ("operator:li.na", waiting_id)]
    # A queued job is neither failed nor deferred: not the page's to cancel.
    queued = reviewer.post("/console/jobs/cancel", {"job_id": parent.id})
    assert queued.status_code == 404  # and not a job of a case at all


def test_another_shops_jobs_are_not_listed_nor_touched(
        login_as: Callable[..., Session], console_container: Container) -> None:
    reviewer = login_as("li.na", "reviewer")
    theirs = open_in(reviewer.client, None, OTHER_SHOP)
    job_id = failed_job(console_container, theirs)
    page = reviewer.client.get("/console/jobs")
    assert job_id not in page.text and theirs not in page.text
    assert reviewer.post("/console/jobs/requeue", {"job_id": job_id}).status_code == 404
    assert reviewer.post("/console/jobs/cancel", {"job_id": job_id}).status_code == 404
    assert job_id in _queue(console_container).failed_job_registry.get_job_ids()
    assert _events(console_container, theirs, "job_requeued") == []
    admin = login_as("root", "admin", ())
    assert job_id in admin.client.get("/console/jobs").text


def test_only_operating_roles_act_and_only_by_post_with_the_token(
        login_as: Callable[..., Session], console_container: Container,
        redis_conn: Redis) -> None:
    reviewer = login_as("li.na", "reviewer")
    case_id = open_in(reviewer.client, None)
    job_id = failed_job(console_container, case_id)
    auditor = login_as("qa", "auditor")
    warehouse = login_as("zhao", "warehouse")
    for session in (auditor, warehouse):
        page = session.client.get("/console/jobs")
        assert page.status_code == 200 and job_id in page.text
        assert "/console/jobs/requeue" not in page.text  # no buttons
        assert session.post("/console/jobs/requeue", {"job_id": job_id}).status_code == 403
        assert session.post("/console/jobs/cancel", {"job_id": job_id}).status_code == 403
    # No token, a wrong one, a GET, a HEAD: nothing moves.
    client = reviewer.client
    assert client.post("/console/jobs/requeue", data={"job_id": job_id},
                       follow_redirects=False).status_code == 403
    assert client.post("/console/jobs/requeue", data={"job_id": job_id,
                                                      "csrf_token": "x" * 43},
                       follow_redirects=False).status_code == 403
    assert client.get(f"/console/jobs/requeue?job_id={job_id}").status_code == 405
    assert client.head("/console/jobs/requeue").status_code == 405
    assert client.head("/console/jobs").status_code == 405  # the page is GET only
    assert job_id in _queue(console_container).failed_job_registry.get_job_ids()
    assert _events(console_container, case_id, "job_requeued") == []


@pytest.mark.parametrize("junk", ["not-a-job", "evaluate-rc_nope-1"])
def test_a_job_that_is_not_ours_is_not_found(login_as: Callable[..., Session],
                                             junk: str) -> None:
    reviewer = login_as("li.na", "reviewer")
    assert reviewer.post("/console/jobs/requeue", {"job_id": junk}).status_code == 404


def test_the_queue_depth_counts_every_waiting_job(
        login_as: Callable[..., Session], console_container: Container) -> None:
    reviewer = login_as("li.na", "reviewer")
    case_id = open_in(reviewer.client, None)
    queue = _queue(console_container)
    for n in range(3):
        queue.enqueue_call(NEVER, args=(case_id, "notify"),
                           job_id=f"notify-{case_id}-{900 + n}")
    page = reviewer.client.get("/console/jobs")
    assert '<tr data-registry="queued"><td><a href="#jobs-queued">Queued jobs</a></td>' \
           '<td class="num">3</td><td class="num">3</td></tr>' in page.text
