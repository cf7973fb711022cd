"""Every accepted request reaches an end state, by itself or in front of a person.

- A step that fails for a reason a retry will not mend fails the case at once, with the
  error shown in `GET /v1/cases/{id}` (it used to stay `received`, re-dispatched forever).
- A step that keeps failing transiently is handed out a bounded number of times, then the
  reconciler gives up and the case says so.
- A case the reconciler keeps finding idle without progress fails after a bounded number
  of revivals.
- An operator's retry, from every state a step can fail in, leads to the end by itself.
- A job that read a case it did not write keeps the case's version, so a later save is
  still checked against every other writer (it used to collide on the events' key).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from refundbridge.core import services
from refundbridge.core.lifecycle import CaseState
from refundbridge.core.model import RefundStatus
from refundbridge.workers.reconcile import reconcile
from tests.conftest import drain, open_case
from tests.factories import AUTH, SHOP, request_body, signed


def _case(client: Any, case_id: str) -> dict[str, Any]:
    return dict(client.get(f"/v1/cases/{case_id}", headers=AUTH).json())


def _post(client: Any, body: dict[str, Any]) -> str:
    raw, headers = signed(body)
    answer = client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["case_id"])


def _open_outbox_rows(engine: Any, case_id: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM outbox WHERE case_id = :c AND done_at IS NULL"),
            {"c": case_id}).scalar_one())


def _reconcile_and_drain(container: Any, rounds: int = 1) -> None:
    """What the periodic reconciler and the workers do, `rounds` times over, with nothing
    counting as recent (so every lost or idle piece of work is due)."""
    for _ in range(rounds):
        reconcile(container, stale_after=0, pending_after=0)
        drain(container)


def _poison_order(engine: Any, order_id: str) -> None:
    """The ledger learns the order in another currency after the request was accepted (two
    first requests of one order, in two currencies, passing intake at the same moment):
    evaluating the case then fails on every try with a non-transient error."""
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO orders (shop_id, order_id, currency, paid_minor, created_at) "
            "VALUES (:s, :o, 'USD', 100, :at)"),
            {"s": SHOP, "o": order_id, "at": datetime.now(UTC)})


def _heal_order(engine: Any, order_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM orders WHERE order_id = :o"), {"o": order_id})


def test_a_step_failing_for_good_fails_the_case_with_its_error(client, container, providers,
                                                               db):
    _, stripe_fake, erp = providers
    body = request_body()
    erp.add_invoice(body["order"]["id"], [("GLU-METER-01", 2, "199.00")])
    case_id = _post(client, body)
    _poison_order(db, body["order"]["id"])
    drain(container)

    case = _case(client, case_id)
    assert case["state"] == "failed"
    assert case["failure"]["step"] == "evaluate"
    assert "CurrencyMismatch" in case["failure"]["message"]
    assert _open_outbox_rows(db, case_id) == 0  # nothing left to re-dispatch
    report = reconcile(container, stale_after=0, pending_after=0)
    assert case_id not in report.revived and not report.requeued
    assert stripe_fake.posts == []

    _heal_order(db, body["order"]["id"])
    assert client.post(f"/v1/cases/{case_id}/retry", headers=AUTH, json={}).status_code == 200
    drain(container)
    assert _case(client, case_id)["state"] == "closed"
    assert len(stripe_fake.paid()) == 1


def test_the_reconciler_gives_up_on_a_step_that_never_finishes(client, container, providers,
                                                               db):
    _, stripe_fake, erp = providers
    container.settings = container.settings.model_copy(update={"max_dispatches": 3})
    stripe_fake.before_post.append(
        lambda request: httpx.Response(503, json={"error": {"type": "api_error"}}))
    case_id, _ = open_case(client, erp)
    drain(container)
    assert _case(client, case_id)["state"] == "refunding"

    rounds = 0
    while _case(client, case_id)["state"] == "refunding":
        rounds += 1
        assert rounds <= 5, "the reconciler never gave up"
        _reconcile_and_drain(container)

    case = _case(client, case_id)
    assert case["state"] == "failed"
    assert case["failure"]["step"] == "refund"
    assert "gave up on the refund step after 3 tries" in case["failure"]["message"]
    assert "503" in case["failure"]["message"] or "Stripe" in case["failure"]["message"]
    assert _open_outbox_rows(db, case_id) == 0
    assert case["refund_attempts"][0]["status"] == "started"  # the key stays for a retry
    again = reconcile(container, stale_after=0, pending_after=0)
    assert not again.requeued and case_id not in again.revived

    stripe_fake.before_post.clear()
    client.post(f"/v1/cases/{case_id}/retry", headers=AUTH, json={})
    drain(container)
    assert _case(client, case_id)["state"] == "closed"
    assert len(stripe_fake.paid()) == 1


def test_a_case_revived_without_progress_fails_after_a_bounded_number(client, container,
                                                                      providers):
    _, stripe_fake, erp = providers
    container.settings = container.settings.model_copy(update={"max_revivals": 2})
    stripe_fake.next_status = "a_status_stripe_adds_next_year"  # mapped to unknown
    case_id, _ = open_case(client, erp)
    drain(container)
    assert _case(client, case_id)["state"] == "refunding"  # unknown news is never acted on

    _reconcile_and_drain(container, rounds=4)
    case = _case(client, case_id)
    assert case["state"] == "failed"
    assert case["failure"]["code"] == "no_progress"
    assert "2 revivals" in case["failure"]["message"]
    assert len(stripe_fake.paid()) == 1


def test_a_pending_refund_is_polled_without_counting_as_no_progress(client, container,
                                                                     providers):
    _, stripe_fake, erp = providers
    container.settings = container.settings.model_copy(update={"max_revivals": 1})
    stripe_fake.next_status = "pending"
    case_id, _ = open_case(client, erp)
    drain(container)
    _reconcile_and_drain(container, rounds=3)
    assert _case(client, case_id)["state"] == "refunding"


# ---------------------------------------------------------------- a retry leads to the end


def _fail_evaluation(client: Any, container: Any, providers: Any, db: Any) -> tuple[str, Any]:
    _, _, erp = providers
    body = request_body()
    erp.add_invoice(body["order"]["id"], [("GLU-METER-01", 2, "199.00")])
    case_id = _post(client, body)
    _poison_order(db, body["order"]["id"])
    drain(container)
    return case_id, lambda: _heal_order(db, body["order"]["id"])


def _fail_refund(client: Any, container: Any, providers: Any, db: Any) -> tuple[str, Any]:
    _, stripe_fake, erp = providers
    refusal = httpx.Response(400, json={"error": {"type": "invalid_request_error",
                                                  "message": "charge_already_refunded"}})
    stripe_fake.before_post.append(lambda request: refusal)
    case_id, _ = open_case(client, erp)
    drain(container)
    return case_id, stripe_fake.before_post.clear


def _fail_booking_after_refund(client: Any, container: Any, providers: Any,
                               db: Any) -> tuple[str, Any]:
    _, _, erp = providers
    body = request_body()  # the ERP has no invoice for the order yet
    case_id = _post(client, body)
    drain(container)
    return case_id, lambda: erp.add_invoice(body["order"]["id"],
                                            [("GLU-METER-01", 2, "199.00")])


def _fail_booking_of_goods(client: Any, container: Any, providers: Any,
                           db: Any) -> tuple[str, Any]:
    """A return refunded on receipt whose booking the ERP refuses while it is refunding."""
    _, _, erp = providers
    body = request_body(kind="return_and_refund")
    case_id = _post(client, body)
    drain(container)
    assert _case(client, case_id)["state"] == "awaiting_return"
    client.post(f"/v1/cases/{case_id}/receipt", headers=AUTH, json={"lines": [
        {"line": 0, "seal_intact": True, "condition": "as_new", "inspector": "wang.fang",
         "quantity": 2}]})
    drain(container)
    return case_id, lambda: erp.add_invoice(body["order"]["id"],
                                            [("GLU-METER-01", 2, "199.00")])


FAILURES = {
    "received": _fail_evaluation,
    "refunding": _fail_refund,
    "refunded": _fail_booking_after_refund,
    "refunding_with_goods": _fail_booking_of_goods,
}


@pytest.mark.parametrize("how", list(FAILURES), ids=str)
def test_a_retried_case_reaches_its_end_by_itself(client, container, providers, db, how):
    _, stripe_fake, _ = providers
    case_id, mend = FAILURES[how](client, container, providers, db)
    failed = _case(client, case_id)
    assert failed["state"] == "failed", failed
    resume = failed["failure"]["resume_state"]
    assert resume == how.removesuffix("_with_goods")

    mend()
    answer = client.post(f"/v1/cases/{case_id}/retry", headers=AUTH)
    assert answer.status_code == 200, answer.text
    drain(container)

    case = _case(client, case_id)
    assert case["state"] == "closed", (case["failure"], case["notifications"])
    assert len(stripe_fake.paid()) == 1
    assert case["erp_reference"]


def test_a_retry_closes_a_case_whose_booking_landed_while_it_was_failed(client, container,
                                                                        providers):
    """A refund reported failed by the provider fails the case while its booking is out; the
    booking lands on the failed case and must be kept, and the retry then pays and closes
    without booking again."""
    _, stripe_fake, erp = providers
    case_id, _ = open_case(client, erp)
    drain(container)
    closed = _case(client, case_id)
    assert closed["state"] == "closed"
    with container.uow() as uow:  # the provider reverses the refund: the case fails
        case = uow.cases.get(case_id)
        attempt = case.current_attempt
        assert attempt is not None
        from refundbridge.core.model import RefundResult
        case.apply_refund_result(RefundResult(RefundStatus.FAILED, attempt.provider_ref,
                                              message="card closed"),
                                 datetime.now(UTC), actor="connector:stripe")
        uow.commit()
    assert _case(client, case_id)["state"] == CaseState.FAILED
    client.post(f"/v1/cases/{case_id}/retry", headers=AUTH, json={})
    drain(container)
    case_after = _case(client, case_id)
    assert case_after["state"] == "closed"
    assert case_after["erp_reference"] == closed["erp_reference"]
    assert len(erp.returns) == 1
    assert len(stripe_fake.paid()) == 2  # the reversed refund, and the one the retry paid


# ---------------------------------------------------------------- versions


def test_a_job_that_only_read_a_case_still_detects_another_writer(client, container,
                                                                  providers):
    """A refund job re-run for an attempt already stored writes nothing in its first phase.
    While it asks Stripe, another job commits events for the case; its second phase must
    see the conflict and apply its answer to the new row, not overwrite it."""
    _, stripe_fake, erp = providers

    class Lost(ConnectionError):
        pass

    def lose_answer(refund: dict[str, Any]) -> None:
        raise Lost("connection lost after the refund was made")

    stripe_fake.after_pay.append(lose_answer)
    case_id, _ = open_case(client, erp)
    drain(container)  # the attempt is stored as started; the answer was lost
    stripe_fake.after_pay.clear()
    assert _case(client, case_id)["state"] == "refunding"

    def another_writer(request: httpx.Request) -> None:
        with container.uow() as uow:
            case = uow.cases.get(case_id)
            case.record("operator_note", actor="operator:zhao", at=datetime.now(UTC),
                        from_state=case.state, to_state=case.state, data={"note": "asked"})
            uow.commit()
        stripe_fake.before_get.clear()
        return None

    stripe_fake.before_get.append(another_writer)
    services.issue_refund(container.services, case_id)
    drain(container)

    case = _case(client, case_id)
    assert case["state"] == "closed"
    assert "operator_note" in [event["name"] for event in case["timeline"]]
    evidence = client.get(f"/v1/cases/{case_id}/evidence", headers=AUTH).json()
    assert evidence["verifies"] is True
    assert len(stripe_fake.paid()) == 1


def test_a_retry_closes_a_case_failed_at_the_stock_step_that_another_job_booked(
        client, container, providers):
    """The stock step failed (the ERP refused a duplicate) and the other job's booking then
    landed on the failed case. The retry leads back to `refunded` with nothing left to
    book: the case must close, not wait there forever."""
    _, stripe_fake, erp = providers
    body = request_body()  # no invoice yet: the stock step is refused
    case_id = _post(client, body)
    drain(container)
    assert _case(client, case_id)["failure"]["step"] == "stock"
    with container.uow() as uow:  # the other job's booking lands while the case is failed
        case = uow.cases.get(case_id)
        case.record_stock_booked("ACC-SINV-RET-00042", [], datetime.now(UTC),
                                 actor="connector:erpnext")
        uow.commit()
    failed = _case(client, case_id)
    assert (failed["state"], failed["erp_reference"]) == ("failed", "ACC-SINV-RET-00042")

    client.post(f"/v1/cases/{case_id}/retry", headers=AUTH, json={})
    drain(container)
    case_after = _case(client, case_id)
    assert case_after["state"] == "closed", case_after["failure"]
    assert case_after["erp_reference"] == "ACC-SINV-RET-00042"  # the booking was kept
    assert erp.returns == []  # and not made again
    assert len(stripe_fake.paid()) == 1
