"""Exchanges end to end: a signed generic webhook, the rules, the warehouse's receipt, the
replacement ordered once in the sandbox ERP, the price difference refunded once, the
customer's emails, and the case closed with its trail verifying. On real PostgreSQL and
Redis, with the jobs production runs."""

from __future__ import annotations

import email
import email.policy
import threading
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from refundbridge.core import services
from refundbridge.core.errors import (
    ConcurrencyConflict,
    PermanentProviderError,
    TransientProviderError,
)
from refundbridge.core.ports import ReplacementOrder, ReplacementResult, ReplacementState
from tests.conftest import drain
from tests.factories import AUTH, REVIEWER_AUTH, SHOP, request_body, signed

SANDBOX = {"erp": "sandbox_erp", "payment": "sandbox_payment"}
# Two glucose meters back (2 × 199.00), two of the next model out (2 × 179.00): 40.00 back.
REPLACEMENTS = [{"sku": "GLU-METER-02", "name": "血糖仪二代 Glucose meter II", "quantity": 2,
                 "unit_price": "179.00", "replaces_sku": "GLU-METER-01"}]


def exchange_body(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"kind": "exchange", "replacements": REPLACEMENTS,
                              "requested_amount": "40.00",
                              "reason": {"code": "wrong_item", "text": "想换二代"}}
    fields.update(overrides)
    return request_body(**fields)


def send(client: Any, body: dict[str, Any]) -> str:
    raw, headers = signed(body)
    answer = client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["case_id"])


def case(client: Any, case_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/cases/{case_id}", headers=AUTH)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def receive(client: Any, case_id: str) -> None:
    answer = client.post(f"/v1/cases/{case_id}/receipt", headers=AUTH, json={"lines": [
        {"line": 0, "seal_intact": True, "condition": "as_new", "inspector": "wang.fang",
         "quantity": 2}]})
    assert answer.status_code == 200, answer.text


def sandbox_erp(container: Any) -> Any:
    return container.shops[SHOP].by_name["sandbox_erp"]


def sandbox_payment(container: Any) -> Any:
    return container.shops[SHOP].by_name["sandbox_payment"]


def trail(client: Any, case_id: str) -> list[str]:
    evidence = client.get(f"/v1/cases/{case_id}/evidence", headers=AUTH).json()
    assert evidence["verifies"] is True
    return [event["name"] for event in evidence["chain"]]


def test_an_exchange_goes_from_the_webhook_to_closed_with_one_replacement(make_container,
                                                                         mailbox):
    from fastapi.testclient import TestClient

    from refundbridge.api.app import create_app

    container = make_container(**SANDBOX)
    with TestClient(create_app(container)) as client:
        case_id = send(client, exchange_body())
        drain(container)
        waiting = case(client, case_id)
        # The replacement waits for the returned unit (the default "on_receipt").
        assert waiting["state"] == "awaiting_return", waiting["decisions"]
        assert waiting["replacement"] is None
        assert [r["sku"] for r in waiting["replacements"]] == ["GLU-METER-02"]
        x01 = next(r for r in waiting["decisions"][-1]["rules"] if r["id"] == "X01")
        assert x01["outcome"] == "pass" and "40.00" in x01["message"]
        assert sandbox_erp(container).replacements == {}

        receive(client, case_id)
        drain(container)
        done = case(client, case_id)
        assert done["state"] == "closed", (done["failure"], done["notifications"])
        replacement = done["replacement"]
        assert replacement["progress"] == "shipped"
        assert replacement["key"] == f"{case_id}-replacement"
        erp = sandbox_erp(container)
        assert list(erp.replacements) == [f"{case_id}-replacement"]
        order, result = erp.replacements[f"{case_id}-replacement"]
        assert (replacement["document"], replacement["delivery"]) == (
            result.document, result.delivery)
        assert [(i.sku, i.quantity, str(i.unit_price.amount)) for i in order.items] == [
            ("GLU-METER-02", 2, "179.00")]
        # The price difference, once, through the payment connector; the return booked once.
        paid = sandbox_payment(container).refunds
        assert [str(r.amount.amount) for r in paid.values()] == ["40.00"]
        assert list(erp.bookings) == [case_id]

        names = trail(client, case_id)
        expected = ["approve", "await_return", "receive_goods", "start_replacement",
                    "replacement_claimed", "confirm_replacement", "start_refund",
                    "confirm_refund", "close"]
        assert [n for n in names if n in expected] == expected
        # The return's booking runs beside the replacement, once the unit is back.
        assert names.index("receive_goods") < names.index("stock_booked") < names.index(
            "close")
        kinds = {n["kind"] for n in done["notifications"] if n["status"] == "sent"}
        assert {"approved", "goods_received", "replacement_shipped", "refunded"} <= kinds
        subjects = [email.message_from_bytes(m, policy=email.policy.default)["Subject"]
                    for m in mailbox.messages]
        assert any("换货" in s for s in subjects), subjects


def test_an_advance_replacement_is_ordered_on_approval_and_closes_on_receipt(make_container):
    from fastapi.testclient import TestClient

    from refundbridge.api.app import create_app

    container = make_container(**SANDBOX, policy={
        "replacement_timing": "on_approval", "auto_approve_limits": {"CNY": "500"}})
    with TestClient(create_app(container)) as client:
        # A straight swap: the same meter for the same meter, nothing to refund.
        body = exchange_body(requested_amount="0", replacements=[
            {"sku": "GLU-METER-01", "name": "血糖仪 Glucose meter", "quantity": 2,
             "unit_price": "199.00"}], reason={"code": "wrong_item", "text": "发错了型号"})
        case_id = send(client, body)
        drain(container)
        shipped = case(client, case_id)
        assert shipped["state"] == "awaiting_return", [
            r for r in shipped["decisions"][-1]["rules"] if r["outcome"] != "pass"]
        assert shipped["replacement"]["progress"] == "shipped"
        receive(client, case_id)
        drain(container)
        done = case(client, case_id)
        assert done["state"] == "closed", (done["failure"], done["notifications"])
        assert sandbox_payment(container).refunds == {}  # a swap pays nothing
        assert len(sandbox_erp(container).replacements) == 1
        names = trail(client, case_id)
        assert names.index("confirm_replacement") < names.index("receive_goods")
        # No refund deadline for a swap that pays nothing back.
        assert not [o for o in done["obligations"] if o["kind"] == "refund_deadline"]


def _mails(mailbox: Any, case_id: str) -> dict[str, Any]:
    """The case's emails by kind (its Message-ID ends in `<case>.<kind>`)."""
    found = {}
    for raw in mailbox.messages:
        mail = email.message_from_bytes(raw, policy=email.policy.default)
        ident = str(mail["Message-ID"])
        if case_id in ident:
            kind = ident.split(case_id + ".", 1)[1].split("@", 1)[0].rstrip(">")
            found[kind] = mail
    return found


def _text(mail: Any) -> str:
    return str(mail.get_body(("plain",)).get_content())


def test_the_customer_is_told_of_the_exchange_and_never_of_the_internal_note(
        make_container, mailbox):
    from fastapi.testclient import TestClient

    from refundbridge.api.app import create_app

    container = make_container(**SANDBOX)
    internal = "仓库说这批次退货偏多，已报质量部"
    with TestClient(create_app(container)) as client:
        case_id = send(client, exchange_body(reason={"code": "defective", "text": "屏幕不亮"}))
        drain(container)
        assert case(client, case_id)["state"] == "awaiting_review"  # a defect: R06
        answer = client.post(f"/v1/cases/{case_id}/review", headers=REVIEWER_AUTH, json={
            "decision": "approve", "internal_note": internal,
            "customer_message": "二代已为您预留"})
        assert answer.status_code == 200, answer.text
        drain(container)
        receive(client, case_id)
        drain(container)
        assert case(client, case_id)["state"] == "closed"
        mails = _mails(mailbox, case_id)
        assert {"approved", "goods_received", "replacement_shipped", "refunded"} <= set(mails)
        approved = _text(mails["approved"])
        assert "换货申请已审核通过" in approved and "血糖仪二代" in approved
        assert "退还差价：¥40.00" in approved and "二代已为您预留" in approved
        assert "换货" in str(mails["approved"]["Subject"])
        assert "我们将为您寄出换货商品并退还差价" in _text(mails["goods_received"])
        shipped = _text(mails["replacement_shipped"])
        delivery = case(client, case_id)["replacement"]["delivery"]
        assert f"发货单号：{delivery}" in shipped and "血糖仪二代" in shipped
        for mail in mails.values():
            assert internal not in mail.as_string()
            assert internal not in _text(mail)


def test_an_exchange_that_leaves_the_customer_owing_goes_to_a_person(make_container):
    from fastapi.testclient import TestClient

    from refundbridge.api.app import create_app

    container = make_container(**SANDBOX)
    with TestClient(create_app(container)) as client:
        body = exchange_body(requested_amount="0", replacements=[
            {"sku": "GLU-METER-PRO", "name": "Glucose meter Pro", "quantity": 2,
             "unit_price": "249.00"}])
        case_id = send(client, body)
        drain(container)
        waiting = case(client, case_id)
        assert waiting["state"] == "awaiting_review"
        x01 = next(r for r in waiting["decisions"][-1]["rules"] if r["id"] == "X01")
        assert x01["outcome"] == "review"
        assert "100.00 CNY" in x01["message"]  # 2 × 249 − 2 × 199, in Chinese: the locale
        # The reviewer collected it (or waived it) and approves: the exchange goes on.
        answer = client.post(f"/v1/cases/{case_id}/review", headers=REVIEWER_AUTH, json={
            "decision": "approve", "internal_note": "客户已电话支付差价 100 元"})
        assert answer.status_code == 200, answer.text
        drain(container)
        assert case(client, case_id)["state"] == "awaiting_return"


@pytest.mark.parametrize("body, field", [
    (exchange_body(replacements=[]), "replacements"),
    (request_body(kind="return_and_refund", replacements=REPLACEMENTS), "replacements"),
    (exchange_body(requested_amount="50.00"), "requested_amount"),
    (exchange_body(replacements=[{**REPLACEMENTS[0], "unit_price": "1.001"}]),
     "replacements.0.unit_price"),
    (exchange_body(replacements=[{**REPLACEMENTS[0], "quantity": 0}]),
     "replacements.0.quantity"),
    (request_body(requested_amount="0"), "requested_amount"),
], ids=["none", "refund_with_replacements", "more_than_difference", "too_many_decimals",
        "zero_quantity", "refund_of_zero"])
def test_a_malformed_exchange_is_a_422_naming_the_field(client, body, field):
    raw, headers = signed(body)
    answer = client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
    assert answer.status_code == 422, answer.text
    assert field in answer.text


def _replacing_case(client: Any, container: Any) -> str:
    case_id = send(client, exchange_body())
    drain(container)
    receive(client, case_id)
    # The receipt's own jobs are left in the queue: the test's workers run the step.
    assert case(client, case_id)["state"] == "replacing"
    return case_id


def _race(target: Any, workers: int = 2) -> None:
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work() -> None:
        barrier.wait()
        try:
            target()
        except ConcurrencyConflict:
            pass  # the queue tries a lost version race again
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []


def test_two_workers_racing_the_replacement_order_it_once(make_container):
    """The sandbox ERP answers slowly, so the first worker is inside its call while the
    second runs: the second finds the first's live claim and calls nothing."""
    from fastapi.testclient import TestClient

    from refundbridge.api.app import create_app

    container = make_container(**SANDBOX, sandbox_erp={"latency_ms": 400})
    with TestClient(create_app(container)) as client:
        case_id = _replacing_case(client, container)
        erp = sandbox_erp(container)
        _race(lambda: services.order_replacement(container.services, case_id))
        assert erp.replacement_calls == 1
        assert len(erp.replacements) == 1
        drain(container)
        done = case(client, case_id)
        assert done["state"] == "closed", done["failure"]
        assert erp.replacement_calls == 1
        assert [n for n in trail(client, case_id)].count("replacement_claimed") == 1


def test_a_claim_taken_over_after_a_crash_looks_the_order_up_first(make_container):
    """The first job ordered and died before recording it; a job after its lease asks the
    ERP by the case's key, finds the order and records it: nothing is ordered twice."""
    from fastapi.testclient import TestClient

    from refundbridge.api.app import create_app

    container = make_container(**SANDBOX)
    with TestClient(create_app(container)) as client:
        case_id = _replacing_case(client, container)
        erp = sandbox_erp(container)
        with container.services.uow() as uow:  # the dead job's claim, committed
            dead = uow.cases.get(case_id)
            claim = dead.claim_replacement(container.services.clock(), timedelta(minutes=5))
            assert claim is not None
            uow.commit()
        order = services.exchanges.replacement_order(dead, claim)
        assert erp.create_replacement(order).state is ReplacementState.SHIPPED  # then died
        # Within the lease nobody touches it …
        services.order_replacement(container.services, case_id)
        assert case(client, case_id)["replacement"]["progress"] == "claimed"
        # … after it, the next job finds the dead one's order.
        services.order_replacement(replace(container.services, booking_lease=timedelta(0)),
                                   case_id)
        assert erp.replacement_calls == 1
        found = case(client, case_id)
        assert found["replacement"]["claims"] == 2
        made = erp.replacements[claim.idempotency_key][1]
        assert found["replacement"]["document"] == made.document
        drain(container)
        assert case(client, case_id)["state"] == "closed"
        names = trail(client, case_id)
        assert names.count("confirm_replacement") == 1


class FlakyErp:
    """An ERP whose first create orders the replacement and then loses its answer (a
    timeout after the ERP committed), or refuses every create for good (`refuse`)."""

    name = "flaky_erp"

    def __init__(self, refuse: str | None = None) -> None:
        self.refuse = refuse
        self.made: dict[str, ReplacementResult] = {}
        self.creates = 0
        self.finds = 0

    def create_replacement(self, order: ReplacementOrder) -> ReplacementResult:
        self.creates += 1
        if self.refuse:
            raise PermanentProviderError(self.name, self.refuse, "item_unknown")
        first = order.idempotency_key not in self.made
        self.made.setdefault(order.idempotency_key, ReplacementResult(
            "SO-FLAKY-1", ReplacementState.CREATED))
        if first:
            raise TransientProviderError(self.name, "read timed out")
        return self.made[order.idempotency_key]

    def find_replacement(self, order: ReplacementOrder) -> ReplacementResult | None:
        self.finds += 1
        return self.made.get(order.idempotency_key)


def _with_erp(svc: Any, erp: Any) -> Any:
    gateways = svc.gateways
    return replace(svc, gateways=lambda shop: replace(gateways(shop), replacement=erp))


def test_a_lost_answer_is_retried_by_looking_the_order_up_not_ordering_again(make_container):
    from fastapi.testclient import TestClient

    from refundbridge.api.app import create_app

    container = make_container(**SANDBOX)
    with TestClient(create_app(container)) as client:
        case_id = _replacing_case(client, container)
        flaky = FlakyErp()
        svc = _with_erp(container.services, flaky)
        with pytest.raises(TransientProviderError):
            services.order_replacement(svc, case_id)
        # The claim is released at once: the queue's next try does not wait for the lease.
        held = case(client, case_id)["replacement"]
        assert (held["progress"], held["held"], held["claims"]) == ("claimed", False, 1)
        services.order_replacement(svc, case_id)
        assert (flaky.creates, flaky.finds) == (1, 1)
        found = case(client, case_id)
        assert found["state"] in {"refunding", "refunded", "closed"}
        assert found["replacement"]["progress"] == "ordered"
        assert found["replacement"]["document"] == "SO-FLAKY-1"
        claimed = [e for e in client.get(f"/v1/cases/{case_id}/evidence", headers=AUTH)
                   .json()["chain"] if e["name"] == "confirm_replacement"]
        assert claimed[0]["data"]["found_after_crash"] is True


def test_a_refusal_fails_the_case_with_the_erps_reason_and_a_retry_orders_it(make_container):
    from fastapi.testclient import TestClient

    from refundbridge.api.app import create_app

    container = make_container(**SANDBOX)
    with TestClient(create_app(container)) as client:
        case_id = _replacing_case(client, container)
        refusing = FlakyErp(refuse="Item GLU-METER-02 not found")
        services.order_replacement(_with_erp(container.services, refusing), case_id)
        failed = case(client, case_id)
        assert failed["state"] == "failed"
        assert failed["failure"]["step"] == "replace"
        assert failed["failure"]["message"] == "Item GLU-METER-02 not found"
        assert failed["failure"]["code"] == "item_unknown"
        assert failed["failure"]["resume_state"] == "replacing"
        retried = client.post(f"/v1/cases/{case_id}/retry", headers=REVIEWER_AUTH)
        assert retried.status_code == 200, retried.text
        drain(container)  # the shop's own (sandbox) ERP now
        done = case(client, case_id)
        assert done["state"] == "closed", done["failure"]
        assert len(sandbox_erp(container).replacements) == 1


def test_a_shop_whose_erp_cannot_replace_fails_the_case_saying_so(make_container):
    from fastapi.testclient import TestClient

    from refundbridge.api.app import create_app

    container = make_container(**SANDBOX)
    with TestClient(create_app(container)) as client:
        case_id = _replacing_case(client, container)
        services.order_replacement(_with_erp(container.services, None), case_id)
        failed = case(client, case_id)
        assert failed["state"] == "failed" and failed["failure"]["code"] == "not_supported"
        assert "erp.replacement" in failed["failure"]["message"]
