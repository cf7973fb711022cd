"""A job's chain commits a refund's key with the decision and a booking's claim with the
refund's result (`core.services.common.commit_step`), and starts each step from the case the
step before committed: fewer transactions per case, each provider call still between two
commits. Real PostgreSQL or SQLite, Redis and the worker code production runs."""

from __future__ import annotations

from typing import Any

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
