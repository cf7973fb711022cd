"""A return is booked in the ERP once, however many jobs reach the stock step at once.

Two callers at the ERP at the same time both look for the case's documents, both find none,
and both book: the connector's look-before-write cannot stop that. The stock step claims the
booking under the case's lock first, so the second job leaves it to the first. These tests
hold the first job inside its ERP call (the fake ERPNext's `before_insert`) while the second
runs, on real PostgreSQL, with the services and jobs production uses.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from refundbridge.core import services
from refundbridge.workers import runtime
from refundbridge.workers.jobs import run_step
from tests.conftest import drain
from tests.factories import AUTH, SHOP, request_body, signed

HOLD_SECONDS = 20


class HeldInsert:
    """Holds the first insert that arrives at the fake ERP until `release()`."""

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.released = threading.Event()
        self.held = 0

    def __call__(self, doctype: str, doc: dict[str, Any]) -> None:
        if self.held:
            return
        self.held += 1
        self.inside.set()
        assert self.released.wait(HOLD_SECONDS), "the test never released the held insert"

    def release(self) -> None:
        self.released.set()


def _return_awaiting_goods(client: Any, container: Any, erp: Any, *,
                           update_stock: bool) -> str:
    body = request_body(kind="return_and_refund")
    order_id = body["order"]["id"]
    items = [("GLU-METER-01", 2, "199.00")]
    erp.add_invoice(order_id, items, update_stock=update_stock)
    if not update_stock:
        erp.add_delivery_note(order_id, items)
    raw, headers = signed(body)
    answer = client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
    assert answer.status_code == 202, answer.text
    case_id = str(answer.json()["case_id"])
    drain(container)
    assert _case(client, case_id)["state"] == "awaiting_return"
    return case_id


def _receive(client: Any, case_id: str) -> None:
    answer = client.post(f"/v1/cases/{case_id}/receipt", headers=AUTH, json={"lines": [
        {"line": 0, "seal_intact": True, "condition": "as_new", "inspector": "wang.fang",
         "quantity": 2}]})
    assert answer.status_code == 200, answer.text


def _case(client: Any, case_id: str) -> dict[str, Any]:
    return dict(client.get(f"/v1/cases/{case_id}", headers=AUTH).json())


def _in_thread(target: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # handed to the test thread, which fails on it
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


def _race(held: HeldInsert, first: Callable[[], object], second: Callable[[], object],
          documents: Callable[[], int]) -> int:
    """Run `first` in a thread until the fake ERP holds it inside its call, then `second` to
    its end; release the first and wait for it. Returns how many documents the ERP had
    made while the first was held."""
    thread, errors = _in_thread(first)
    assert held.inside.wait(HOLD_SECONDS)
    second()
    made_while_held = documents()
    held.release()
    thread.join(HOLD_SECONDS)
    assert not thread.is_alive() and not errors
    return made_while_held


def _case_closed(client: Any, case_id: str) -> dict[str, Any]:
    case = _case(client, case_id)
    assert case["state"] == "closed", (case["failure"], case["notifications"])
    return case


def _assert_booked_once(erp: Any, case_id: str, *, update_stock: bool) -> None:
    credit_notes = [doc for doc in erp.returns if case_id in doc.get("remarks", "")]
    assert len(credit_notes) == 1, [doc["name"] for doc in credit_notes]
    assert len(erp.returns) == 1
    assert len(erp.delivery_returns) == (0 if update_stock else 1)


@pytest.mark.parametrize("update_stock", [True, False],
                         ids=["invoice_ships", "delivery_note_ships"])
def test_two_stock_jobs_racing_book_the_return_once(client, container, providers,
                                                    update_stock):
    _, stripe_fake, erp = providers
    case_id = _return_awaiting_goods(client, container, erp, update_stock=update_stock)
    _receive(client, case_id)
    held = HeldInsert()
    erp.before_insert.append(held)

    def stock_job() -> None:
        services.adjust_stock(container.services, case_id)

    # The second job runs to its end while the first is inside the ERP: it must not book.
    assert _race(held, stock_job, stock_job,
                 lambda: len(erp.returns) + len(erp.delivery_returns)) == 0
    drain(container)
    _case_closed(client, case_id)
    _assert_booked_once(erp, case_id, update_stock=update_stock)
    assert len(stripe_fake.paid()) == 1


def test_refund_completion_racing_the_receipt_books_once(client, container, providers):
    """The receipt queues the stock step, and so does the refund's completion while the
    booking is still out: the refund job's chained stock step must leave it to the first."""
    _, stripe_fake, erp = providers
    case_id = _return_awaiting_goods(client, container, erp, update_stock=False)
    _receive(client, case_id)
    held = HeldInsert()
    erp.before_insert.append(held)
    runtime.install(container)

    # The refund job pays, then runs the stock step it queues in its chain.
    assert _race(held, lambda: services.adjust_stock(container.services, case_id),
                 lambda: run_step(case_id, "refund"),
                 lambda: len(erp.returns) + len(erp.delivery_returns)) == 0
    assert len(stripe_fake.paid()) == 1
    drain(container)
    _case_closed(client, case_id)
    _assert_booked_once(erp, case_id, update_stock=False)


def test_two_workers_running_a_received_return_s_one_job_book_and_pay_once(
        client, container, providers):
    """The receipt's rows go out as one job (stock, then refund, then the message,
    `workers.queue.by_case`); the same job run by two workers at once (its rows handed out
    again while it only seemed dead) books the return once and pays once."""
    from rq import Queue
    from rq.job import Job

    from refundbridge.workers.relay import relay_once

    _, stripe_fake, erp = providers
    case_id = _return_awaiting_goods(client, container, erp, update_stock=True)
    _receive(client, case_id)
    relay_once(container)
    queue = Queue(container.settings.queue_name, connection=container.redis)
    [job_id] = [j for j in queue.job_ids if case_id in j]
    args = Job.fetch(job_id, connection=container.redis).args
    assert args[1] == "stock" and "refund" in [step for _, step in args[2]]
    queue.empty()  # both "workers" below run it
    held = HeldInsert()
    erp.before_insert.append(held)
    runtime.install(container)

    assert _race(held, lambda: run_step(*args), lambda: run_step(*args),
                 lambda: len(erp.returns) + len(erp.delivery_returns)) == 0
    drain(container)
    _case_closed(client, case_id)
    _assert_booked_once(erp, case_id, update_stock=True)
    assert len(stripe_fake.paid()) == 1


def test_a_booked_case_is_not_failed_by_a_duplicate_the_erp_refused(client, container,
                                                                    providers):
    """A claim taken over from a job that only seemed dead: the live job's own booking is
    then refused by the ERP ("cannot return more than"), and the case, booked by the
    other, must close rather than fail."""
    _, _, erp = providers
    case_id = _return_awaiting_goods(client, container, erp, update_stock=True)
    _receive(client, case_id)
    impatient = replace(container.services, booking_lease=timedelta(0))
    held = HeldInsert()
    erp.before_insert.append(held)

    def impatient_job() -> None:
        services.adjust_stock(impatient, case_id)

    # The second takes the claim over and books while the first is held.
    assert _race(held, impatient_job, impatient_job, lambda: len(erp.returns)) == 1
    drain(container)
    case = _case_closed(client, case_id)
    assert case["erp_reference"] == erp.returns[0]["name"]
    _assert_booked_once(erp, case_id, update_stock=True)


class HeldOdooCall(HeldInsert):
    """Holds the first `create` that arrives at the fake Odoo (the return wizard)."""

    def odoo_hook(self, phase: str, model: str, method: str) -> None:
        if phase == "before" and method == "create":
            self(model, {})


def test_two_stock_jobs_racing_book_the_return_once_in_odoo(make_container, providers):
    from fastapi.testclient import TestClient

    from refundbridge.api.app import create_app
    from tests.fakes import odoo as odoo_fake

    router, stripe_fake, _ = providers
    odoo = odoo_fake.OdooFake()
    odoo.install(router)
    container = make_container(erp="odoo", odoo={
        "base_url": odoo_fake.BASE, "database": odoo_fake.DATABASE,
        "username": odoo_fake.LOGIN, "api_key": odoo_fake.API_KEY})
    body = request_body(kind="return_and_refund")
    odoo.add_order(body["order"]["id"], [("GLU-METER-01", "L2401", 2)],
                   {"GLU-METER-01": "199.00"})
    with TestClient(create_app(container, dashboard=False)) as client:
        raw, headers = signed(body)
        case_id = client.post(f"/webhooks/{SHOP}/generic", content=raw,
                              headers=headers).json()["case_id"]
        drain(container)
        _receive(client, case_id)
        held = HeldOdooCall()
        odoo.hooks.append(held.odoo_hook)  # type: ignore[arg-type]

        def stock_job() -> None:
            services.adjust_stock(container.services, case_id)

        assert _race(held, stock_job, stock_job,
                     lambda: len(odoo.return_pickings()) + len(odoo.credit_notes())) == 0
        drain(container)
        _case_closed(client, case_id)
        assert len(odoo.return_pickings()) == 1
        assert len(odoo.credit_notes()) == 1
        assert len(stripe_fake.paid()) == 1
