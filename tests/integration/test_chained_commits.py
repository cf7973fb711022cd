"""A job's chain commits a refund's key with the decision and a booking's claim with the
refund's result (`core.services.common.commit_step`), and starts each step from the case the
step before committed: fewer transactions per case, each provider call still between two
commits. Real PostgreSQL or SQLite, Redis and the worker code production runs."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from refundbridge.store import tables as t
from tests.conftest import drain
from tests.factories import AUTH, SHOP, request_body, signed


def _open(client: Any) -> str:
    raw, headers = signed(request_body())
    answer = client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["case_id"])


def _events(container: Any, case_id: str) -> list[tuple[int, str]]:
    e = t.case_events.c
    with container.engine.connect() as conn:
        rows = conn.execute(select(e.seq, e.name).where(e.case_id == case_id)
                            .order_by(e.seq)).all()
    return [(int(r.seq), str(r.name)) for r in rows]


def _version(container: Any, case_id: str) -> int:
    with container.engine.connect() as conn:
        return int(conn.execute(select(t.cases.c.version)
                                .where(t.cases.c.id == case_id)).scalar_one())


def test_a_refund_case_closes_with_four_case_writes_after_intake(make_container: Any) -> None:
    from fastapi.testclient import TestClient

    from refundbridge.api.app import create_app

    container = make_container(payment="sandbox_payment", erp="sandbox_erp",
                               notifier="sandbox_notifier",
                               policy={"refund_timing": "on_approval",
                                       "auto_approve_limits": {"CNY": "500", "USD": "80"}})
    with TestClient(create_app(container, dashboard=False)) as client:
        case_id = _open(client)
        opened = _version(container, case_id)
        drain(container)
        case = client.get(f"/v1/cases/{case_id}", headers=AUTH).json()
    assert case["state"] == "closed"
    # Every commit that writes the case moves its version once: decision + the refund's key;
    # the refund's result + the booking's claim; the booking; the messages (their own job).
    assert _version(container, case_id) - opened == 4
    names = [name for _, name in _events(container, case_id)]
    assert names.count("refund_attempt_reserved") == 1
    assert names.count("stock_booking_claimed") == 1
    # The key is stored before the provider is called, the claim before the ERP is.
    assert names.index("refund_attempt_reserved") < names.index("stock_booking_claimed") \
        < names.index("stock_booked")
    assert names[-1] == "close"


def _open_outbox_steps(container: Any, case_id: str) -> list[str]:
    o = t.outbox.c
    with container.engine.connect() as conn:
        return sorted(str(s) for s in conn.execute(
            select(o.step).where(o.case_id == case_id, o.done_at.is_(None))).scalars())


def test_a_step_that_read_nothing_saves_in_one_autocommit_statement(client: Any,
                                                                    container: Any) -> None:
    """`store/case_save.py`: the case's row, its event, its finished work, no transaction."""
    from sqlalchemy import event

    from refundbridge.core.model import Step

    svc = container.services
    case_id = _open(client)
    with svc.uow() as uow:
        case = uow.cases.get(case_id)
    begun: list[object] = []

    def began(conn: object) -> None:
        begun.append(conn)

    event.listen(container.engine, "begin", began)
    try:
        with svc.uow() as uow:
            uow.cases.attach(case)
            case.start_evaluation(svc.clock())
            uow.outbox.complete(case_id, Step.EVALUATE)
            uow.commit()
    finally:
        event.remove(container.engine, "begin", began)
    assert begun == []  # autocommit: no BEGIN, no COMMIT
    assert _events(container, case_id)[-1][1] == "start_evaluation"
    assert Step.EVALUATE.value not in _open_outbox_steps(container, case_id)
    with svc.uow() as uow:
        assert uow.cases.get(case_id).state.value == "evaluating"


def test_a_one_statement_save_that_lost_the_race_writes_nothing(client: Any,
                                                                container: Any) -> None:
    from refundbridge.core.errors import ConcurrencyConflict
    from refundbridge.core.model import Step

    svc = container.services
    case_id = _open(client)
    with svc.uow() as uow:
        stale = uow.cases.get(case_id)
    with svc.uow() as uow:  # another writer moves the case on first
        moved = uow.cases.get(case_id)
        moved.start_evaluation(svc.clock())
        uow.commit()
    events, version = _events(container, case_id), _version(container, case_id)
    work = _open_outbox_steps(container, case_id)
    with svc.uow() as uow:
        uow.cases.attach(stale)
        stale.start_evaluation(svc.clock())
        uow.outbox.complete(case_id, Step.EVALUATE)
        with pytest.raises(ConcurrencyConflict):
            uow.commit()
    assert _events(container, case_id) == events
    assert _version(container, case_id) == version
    assert _open_outbox_steps(container, case_id) == work


@pytest.mark.parametrize("lose_after_first_step", [False, True], ids=["whole", "lost"])
def test_a_received_return_s_steps_are_one_job_and_the_case_closes(
        make_container: Any, lose_after_first_step: bool) -> None:
    """The receipt leaves several rows for one case (the booking, the refund, the message):
    the relay hands them out as one job, not as jobs two workers would run at once; that
    job ends the case and every row is done. While it waits, the reconciler does not take
    its rows for lost; if it is lost after its first step, the reconciler hands out the rest
    and the case still closes."""
    from fastapi.testclient import TestClient
    from rq import Queue
    from rq.job import Job

    from refundbridge.api.app import create_app
    from refundbridge.workers.jobs import run_step
    from refundbridge.workers.reconcile import reconcile
    from refundbridge.workers.relay import relay_once

    container = make_container(payment="sandbox_payment", erp="sandbox_erp",
                               notifier="sandbox_notifier",
                               policy={"auto_approve_limits": {"CNY": "500", "USD": "80"}})
    queue = Queue(container.settings.queue_name, connection=container.redis)
    with TestClient(create_app(container, dashboard=False)) as client:
        raw, headers = signed(request_body(kind="return_and_refund"))
        answer = client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
        assert answer.status_code == 202, answer.text
        case_id = str(answer.json()["case_id"])
        drain(container)
        assert client.get(f"/v1/cases/{case_id}", headers=AUTH).json()["state"] == \
            "awaiting_return"
        received = client.post(f"/v1/cases/{case_id}/receipt", headers=AUTH, json={"lines": [
            {"line": 0, "seal_intact": True, "condition": "as_new", "inspector": "wang.fang",
             "quantity": 2}]})
        assert received.status_code == 200, received.text
        rows = _open_outbox_steps(container, case_id)
        assert len(rows) >= 2, rows
        assert relay_once(container) == len(rows)
        [only] = queue.job_ids
        job = Job.fetch(only, connection=container.redis)
        assert job.args[0] == case_id and job.args[1] != "notify"
        assert sorted([job.args[1], *(step for _, step in job.args[2])]) == rows
        # Waiting long in the queue, it is not taken for lost: no row is handed out again.
        assert reconcile(container, stale_after=0, pending_after=0).requeued == []
        assert [j for j in queue.job_ids if not j.startswith("signals-")] == [only]
        if lose_after_first_step:
            # The worker died after the job's first step: the job is gone, its other rows
            # are open, and the reconciler hands them out again.
            queue.empty()
            run_step(case_id, job.args[1])
            assert len(_open_outbox_steps(container, case_id)) == len(rows) - 1
            reconcile(container, stale_after=0, pending_after=0)
        drain(container)
        assert client.get(f"/v1/cases/{case_id}", headers=AUTH).json()["state"] == "closed"
    assert _open_outbox_steps(container, case_id) == []
    assert queue.count == 0 and queue.failed_job_registry.count == 0
