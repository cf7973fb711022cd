"""A consignee's answer: recorded once, and their recall case opened once (through the
inbox, under a key derived from the consignee), built from the storefront's order."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from refundbridge.core.campaigns import (
    ACK_NOTE_MAX,
    Acknowledgement,
    CampaignState,
    CampaignStep,
    ConsigneeRecord,
    RecallCampaign,
)
from refundbridge.core.errors import (
    ConcurrencyConflict,
    DomainError,
    InvalidRequest,
    PermanentProviderError,
)
from refundbridge.core.ports import OrderSnapshot
from refundbridge.core.request import (
    CustomerInfo,
    NormalizedRefundRequest,
    OrderInfo,
    PaymentRef,
    Reason,
    ReasonCode,
    RequestKind,
    RequestLine,
)
from refundbridge.core.services.campaign_common import campaign_repo, save_campaign
from refundbridge.core.services.common import Services
from refundbridge.core.services.intake import receive_request

# The inbox's connector name for the cases campaigns open (their external id is
# "<campaign id>.<consignee id>": one case per consignee, however often it is asked).
CAMPAIGN_SOURCE = "recall_campaign"
CASE_BATCH = 50


class CampaignClosed(DomainError):
    """The campaign is closed: it takes no more acknowledgements."""


@dataclass(frozen=True, slots=True)
class AcknowledgementRecorded:
    consignee: ConsigneeRecord
    recorded: bool  # False: they had acknowledged before; the first answer stands


def acknowledge(svc: Services, campaign_id: str, consignee_id: int,
                ack: Acknowledgement) -> AcknowledgementRecorded:
    """A consignee's answer from their link. Units to return open a recall case (by the
    next `rc_cases` job): one per consignee, whatever is sent twice."""
    repo = campaign_repo(svc)
    record = repo.consignee(campaign_id, consignee_id)
    if record.acknowledged_at is not None:
        return AcknowledgementRecorded(record, False)
    if not 0 <= ack.quantity_held <= record.quantity:
        raise InvalidRequest("quantity_held", f"must be between 0 and {record.quantity}, the "
                                              "units you received")
    if ack.wants_return and ack.quantity_held == 0:
        raise InvalidRequest("wants_return", "there is nothing to return when you hold no "
                                             "units")
    if len(ack.note) > ACK_NOTE_MAX:
        raise InvalidRequest("note", f"is longer than {ACK_NOTE_MAX} characters")
    now = svc.clock()
    record.acknowledged_at, record.acknowledgement = now, ack
    for _ in range(5):
        campaign = repo.get(campaign_id)
        if campaign.state is CampaignState.CLOSED:
            raise CampaignClosed(f"campaign {campaign.notice.reference} is closed")
        campaign.record("acknowledged", now, f"consignee:{record.key}", {
            "consignee": record.id, "stopped_use": ack.stopped_use,
            "quantity_held": ack.quantity_held, "wants_return": ack.wants_return,
            "passed_on": ack.passed_on})
        if ack.wants_return:
            campaign.new_steps.append(CampaignStep.OPEN_CASES)
        try:
            recorded = repo.acknowledge(campaign, record)
        except ConcurrencyConflict:
            continue
        if not recorded:
            return AcknowledgementRecorded(repo.consignee(campaign_id, consignee_id), False)
        return AcknowledgementRecorded(record, True)
    raise ConcurrencyConflict(f"campaign {campaign_id}: too many writers at once")


def open_recall_cases(svc: Services, campaign_id: str) -> None:
    """Open the recall case of every consignee who asked to return units and has none yet."""
    repo = campaign_repo(svc)
    campaign = repo.get(campaign_id)
    waiting = repo.awaiting_cases(campaign_id, CASE_BATCH)
    opened: list[dict[str, Any]] = []
    for record in waiting:
        case_id, problem = _open_case(svc, campaign, record)
        repo.link_case(campaign_id, record.id, case_id, problem)
        opened.append({"consignee": record.id, "case": case_id, "problem": problem})

    def record_batch(c: RecallCampaign) -> bool:
        for item in opened:
            c.record("recall_case_opened" if item["case"] else "recall_case_by_hand",
                     svc.clock(), "system", item)
        if len(waiting) >= CASE_BATCH:
            c.new_steps.append(CampaignStep.OPEN_CASES)
        return True

    save_campaign(svc, campaign_id, CampaignStep.OPEN_CASES, record_batch)


def _open_case(svc: Services, campaign: RecallCampaign, record: ConsigneeRecord
               ) -> tuple[str | None, str | None]:
    """(case id, None), or (None, why a person must arrange the refund)."""
    ack = record.acknowledgement
    assert ack is not None
    orders = [u.order_id for u in record.units if u.order_id]
    lookup = svc.gateways(campaign.shop_id).orders
    if not orders:
        return None, "the ERP names no storefront order for these units"
    if lookup is None:
        return None, ("the shop's storefront cannot look orders up; arrange the refund of "
                      f"order {orders[0]} by hand")
    # One case per consignee, on the order that shipped them the most recalled units.
    by_order: dict[str, int] = {}
    for unit in record.units:
        if unit.order_id:
            by_order[unit.order_id] = by_order.get(unit.order_id, 0) + unit.quantity
    order_id = max(by_order, key=lambda o: (by_order[o], o))
    try:
        snapshot = lookup.lookup_order(order_id)
    except PermanentProviderError as exc:
        return None, f"order {order_id}: {exc.message}"
    try:
        request = _recall_request(campaign, record, ack, snapshot, order_id,
                                  record.acknowledged_at or svc.clock())
    except (InvalidRequest, ValueError) as exc:
        return None, f"order {order_id}: {exc}"
    # The case is the consignee's answer, not the order's state as read now: two jobs that
    # build it moments apart (prices, addresses read twice) still name one delivery.
    fingerprint = hashlib.sha256(request.external_id.encode()).hexdigest()
    received = receive_request(svc, campaign.shop_id, CAMPAIGN_SOURCE, request, fingerprint)
    problem = None
    if len(by_order) > 1:
        others = ", ".join(sorted(o for o in by_order if o != order_id))
        problem = f"units of orders {others} are for a person to refund"
    return received.case_id, problem


def _recall_request(campaign: RecallCampaign, record: ConsigneeRecord, ack: Acknowledgement,
                    order: OrderSnapshot, order_id: str, now: datetime
                    ) -> NormalizedRefundRequest:
    prices = {line.sku.casefold(): line for line in order.lines}
    left = ack.quantity_held
    lines: list[RequestLine] = []
    for unit in sorted(record.units, key=lambda u: u.line_id):
        if unit.order_id != order_id or left <= 0:
            continue
        priced = prices.get(unit.sku.casefold())
        if priced is None:
            raise ValueError(f"the order has no line for {unit.sku}")
        quantity = min(unit.quantity, left)
        left -= quantity
        lines.append(RequestLine(
            sku=unit.sku, name=priced.name, quantity=quantity,
            unit_price=priced.unit_price.amount, lot=unit.lot, serial=unit.serial,
            gtin=campaign.notice.gtin))
    if not lines:
        raise ValueError("no recalled units on the order")
    amount = sum((li.unit_price * li.quantity for li in lines), Decimal(0))
    notice = campaign.notice
    return NormalizedRefundRequest(
        external_id=f"{campaign.id}.{record.id}", kind=RequestKind.RETURN_AND_REFUND,
        order=OrderInfo(id=order_id, currency=order.paid_total.currency,
                        paid_total=order.paid_total.amount, placed_at=order.placed_at,
                        delivered_at=order.delivered_at,
                        payment=PaymentRef(provider=order.payment_provider,
                                           reference=order.payment_reference)),
        customer=CustomerInfo(id=order.customer_id or record.key,
                              email=order.customer_email or record.email,
                              phone=order.customer_phone or record.phone,
                              locale=record.locale or order.customer_locale or "en"),
        lines=lines,
        reason=Reason(code=ReasonCode.RECALL,
                      text=f"Recall {notice.reference} (class {notice.recall_class.value}): "
                           "returned through the recall campaign"),
        requested_amount=amount, requested_at=now)
