"""The unit of work on PostgreSQL: the version check, and the outbox written with the case."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from refundbridge.core import services
from refundbridge.core.errors import ConcurrencyConflict, PermanentProviderError
from refundbridge.core.model import DeliveryStatus, NotificationKind, ShippedUnit, Step
from refundbridge.core.request import NormalizedRefundRequest
from tests.factories import SHOP, request_body

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def _open(container) -> str:
    request = NormalizedRefundRequest.model_validate(request_body())
    return services.receive_request(container.api_services, SHOP, "generic", request).case_id


def test_saving_a_case_someone_else_wrote_since_it_was_read_is_refused(container):
    case_id = _open(container)
    with container.uow() as uow:
        stale = uow.cases.get(case_id)  # read, not saved
    with container.uow() as uow:
        uow.cases.get(case_id).start_evaluation(NOW)
        uow.commit()

    with pytest.raises(ConcurrencyConflict), container.uow() as uow:
        uow.cases.attach(stale)
        stale.start_evaluation(NOW)
        uow.commit()

    with container.engine.connect() as conn:
        events = conn.execute(text("SELECT name FROM case_events WHERE case_id = :c ORDER BY seq"),
                              {"c": case_id}).scalars().all()
    assert events == ["received", "start_evaluation"]  # nothing lost, nothing doubled


def test_a_step_records_on_a_fresh_read_when_its_snapshot_went_stale(container):
    case_id = _open(container)
    with container.uow() as uow:
        stale = uow.cases.get(case_id)
    with container.uow() as uow:
        uow.cases.get(case_id).start_evaluation(NOW)
        uow.commit()

    services.record_step(container.services, stale, Step.NOTIFY, lambda c: c.record_notifications(
        [(NotificationKind.RECEIVED, DeliveryStatus.SENT, None)], NOW))

    with container.uow() as uow:
        case = uow.cases.get(case_id)
    assert case.state.value == "evaluating"  # the other writer's change survived
    assert [(n.kind, n.status) for n in case.notifications] == [
        (NotificationKind.RECEIVED, DeliveryStatus.SENT)]


def test_the_case_and_its_work_commit_together(container):
    case_id = _open(container)
    with container.engine.connect() as conn:
        work = conn.execute(text("SELECT step, dispatched_at FROM outbox WHERE case_id = :c"),
                            {"c": case_id}).all()
    # The API leaves the hand-over to the relay: the row waits, undispatched.
    assert [(w.step, w.dispatched_at) for w in work] == [("evaluate", None)]


class UnknownOrderErp:
    """An ERP that answers, permanently, that it does not know the order."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def shipped_units(self, order_id: str) -> list[ShippedUnit]:
        self.asked.append(order_id)
        raise PermanentProviderError("erpnext", f"ERPNext knows no order {order_id}",
                                     code="order_not_found")


def test_an_erp_that_cannot_say_what_it_shipped_leaves_its_answer_on_the_record(container):
    case_id = _open(container)
    erp = UnknownOrderErp()
    gateways = container.services.gateways
    svc = replace(container.services,
                  gateways=lambda shop: replace(gateways(shop), shipments=erp))

    services.evaluate(svc, case_id)

    with container.uow() as uow:
        case = uow.cases.get(case_id)
    assert erp.asked == [case.request.order.id]
    assert case.shipments is None
    assert [r.outcome.value for r in case.decisions[0].rules if r.rule_id == "R01"] == ["pass"]
    with container.engine.connect() as conn:
        looked_up = conn.execute(text(
            "SELECT data FROM case_events WHERE case_id = :c AND name = 'shipments_looked_up'"),
            {"c": case_id}).scalar_one()
    assert looked_up["known"] is False
    assert looked_up["error"] == f"ERPNext knows no order {case.request.order.id}"
