"""A refund is paid once, however many jobs reach the refund step at once.

Inside a job's chain the refund step starts from the case its decision committed, with the
refund's idempotency key already in that commit (`core/services/common.py`). A second job of
the same case (a re-dispatch of a job that only seemed dead) cannot tell a slow call from a
lost one, so it asks Stripe again under the same key, and Stripe is what refuses the second
payment: while the first request is in progress it answers 409 `idempotency_key_in_use`
(the fake does so too), which the connector treats as transient. These tests hold the first
job inside its call to Stripe while the second runs to its end, on real PostgreSQL, with the
jobs production runs: nothing is paid twice, and the case still reaches `closed`.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx

from refundbridge.core import services
from refundbridge.workers import runtime
from refundbridge.workers.jobs import run_step
from tests.conftest import drain
from tests.factories import AUTH, SHOP, request_body, signed

HOLD_SECONDS = 20


class HeldRefund:
    """Holds the first refund POST that reaches the fake Stripe until `release()`."""

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.released = threading.Event()
        self.held = 0

    def __call__(self, request: httpx.Request) -> httpx.Response | None:
        if self.held:
            return None
        self.held += 1
        self.inside.set()
        assert self.released.wait(HOLD_SECONDS), "the test never released the held refund"
        return None  # then the fake answers it as Stripe would

    def release(self) -> None:
        self.released.set()


def _new_refund_case(client: Any, erp: Any) -> str:
    body = request_body()
    erp.add_invoice(body["order"]["id"], [("GLU-METER-01", 2, "199.00")], update_stock=True)
    raw, headers = signed(body)
    answer = client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["case_id"])


def _case(client: Any, case_id: str) -> dict[str, Any]:
    return dict(client.get(f"/v1/cases/{case_id}", headers=AUTH).json())


def _race(held: HeldRefund, stripe_fake: Any, first: str, second: str,
          case_id: str) -> tuple[list[BaseException], int]:
    """Run job `first` until Stripe holds it, then job `second` to its end; release the first.
    Returns the errors the jobs raised and how many refunds were paid while it was held."""
    errors: list[BaseException] = []
    paid_while_held = -1

    def run() -> None:
        try:
            run_step(case_id, first)
        except BaseException as exc:  # handed to the test, which fails on it
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert held.inside.wait(HOLD_SECONDS), "the first job never reached Stripe"
    try:
        run_step(case_id, second)
    except BaseException as exc:  # a transient error is the queue's to retry
        errors.append(exc)
    finally:
        paid_while_held = len(stripe_fake.paid())
        held.release()
        thread.join(HOLD_SECONDS)
    assert not thread.is_alive()
    return errors, paid_while_held


def test_a_refund_job_racing_the_chain_that_is_paying_pays_once(client, container,
                                                                 providers):
    """The evaluate job decides and, in its chain, calls Stripe; a re-dispatched refund job
    of the same case arrives while that call is out."""
    _, stripe_fake, erp = providers
    case_id = _new_refund_case(client, erp)
    held = HeldRefund()
    stripe_fake.before_post.append(held)
    runtime.install(container)

    errors, paid_while_held = _race(held, stripe_fake, "evaluate", "refund", case_id)
    # The second job's calls all carried the first's key, and none of them paid.
    assert paid_while_held == 0
    assert {r.headers["Idempotency-Key"] for r in stripe_fake.posts} == {f"{case_id}-refund-1"}
    assert len(stripe_fake.posts) > 1, "the second job did not reach the refund call"
    drain(container)  # what either job left to the queue

    case = _case(client, case_id)
    assert case["state"] == "closed", (case["failure"], errors)
    paid = stripe_fake.paid()
    assert len(paid) == 1
    assert set(stripe_fake.keys_posted()) == {f"{case_id}-refund-1"}
    assert paid[0]["metadata"]["idempotency_key"] == f"{case_id}-refund-1"


def test_two_refund_jobs_of_one_case_pay_once(client, container, providers):
    _, stripe_fake, erp = providers
    case_id = _new_refund_case(client, erp)
    held = HeldRefund()
    stripe_fake.before_post.append(held)
    runtime.install(container)
    # Decided by the rules, its key committed with the decision, the call not yet made.
    services.evaluate(container.services, case_id)
    assert _case(client, case_id)["state"] == "refunding"
    assert stripe_fake.paid() == []

    errors, paid_while_held = _race(held, stripe_fake, "refund", "refund", case_id)
    # The second job's calls all carried the first's key, and none of them paid.
    assert paid_while_held == 0
    assert {r.headers["Idempotency-Key"] for r in stripe_fake.posts} == {f"{case_id}-refund-1"}
    assert len(stripe_fake.posts) > 1, "the second job did not reach the refund call"
    drain(container)

    case = _case(client, case_id)
    assert case["state"] == "closed", (case["failure"], errors)
    assert len(stripe_fake.paid()) == 1
    assert set(stripe_fake.keys_posted()) == {f"{case_id}-refund-1"}
