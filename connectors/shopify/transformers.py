"""The Shopify connector's mapping between its wire models (`wire.py`) and the core model:
status and reason tables, the limits of what one answer holds, money, our marker in refund
notes, a return and its order as a request, refunds both ways. No I/O here.

Every id we hand the core is a GID, so a return's order and a refund's order name the order
the same way whichever dialect (GraphQL or webhook) it came from.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final

from pydantic import ValidationError

from refundbridge.connectors.base import validation_error
from refundbridge.connectors.minor_units import held_decimal
from refundbridge.connectors.shopify.queries import REFUNDS_FIRST
from refundbridge.connectors.shopify.wire import (
    GqlLineItem,
    GqlOrder,
    GqlOrderRefunds,
    GqlRefund,
    GqlRefundNote,
    MoneyBag,
    WebhookRefund,
    WebhookReturn,
    WebhookReturnLineItem,
    WebhookTransaction,
)
from refundbridge.core.errors import InvalidRequest, PermanentProviderError
from refundbridge.core.model import RefundResult, RefundStatus
from refundbridge.core.money import Money
from refundbridge.core.ports import (
    ExternalRefund,
    OrderLine,
    OrderSnapshot,
    RefundOrder,
    RefundUpdate,
)
from refundbridge.core.request import (
    WIRE_FRACTION_DIGITS,
    NormalizedRefundRequest,
    ReasonCode,
    parse_amount_text,
)

log = logging.getLogger(__name__)

NAME: Final = "shopify"
PROVIDER: Final = "shopify"  # `order.payment.provider` of the requests we normalise

# ------------------------------------------------------------------ status and reason maps

# OrderTransactionStatus (Admin GraphQL) and the REST `transaction.status` in webhooks, which
# is the same set in lower case. An unmapped value is UNKNOWN: recorded, never acted on.
TRANSACTION_STATUS: Final[Mapping[str, RefundStatus]] = MappingProxyType({
    "SUCCESS": RefundStatus.SUCCEEDED,
    "PENDING": RefundStatus.PENDING,
    "AWAITING_RESPONSE": RefundStatus.PENDING,
    "FAILURE": RefundStatus.FAILED,
    "ERROR": RefundStatus.FAILED,
    "UNKNOWN": RefundStatus.UNKNOWN,
})

# Shopify's ReturnReason enum. Webhooks send it in lower case (`"unwanted"`), GraphQL in upper.
# Sizes are ordered wrongly rather than faulty; style and colour are a change of mind.
REASON_MAP: Final[Mapping[str, ReasonCode]] = MappingProxyType({
    "DEFECTIVE": ReasonCode.DEFECTIVE,
    "NOT_AS_DESCRIBED": ReasonCode.NOT_AS_DESCRIBED,
    "WRONG_ITEM": ReasonCode.WRONG_ITEM,
    "SIZE_TOO_SMALL": ReasonCode.ORDERED_BY_MISTAKE,
    "SIZE_TOO_LARGE": ReasonCode.ORDERED_BY_MISTAKE,
    "UNWANTED": ReasonCode.NO_LONGER_NEEDED,
    "STYLE": ReasonCode.CHANGED_MIND,
    "COLOR": ReasonCode.CHANGED_MIND,
    "OTHER": ReasonCode.OTHER,
    "UNKNOWN": ReasonCode.OTHER,
})

# When the lines of one return give different reasons, the case carries the one that matters
# most for a medical device: a fault must never hide behind "wrong size" on another line.
REASON_PRIORITY: Final[tuple[ReasonCode, ...]] = (
    ReasonCode.DEFECTIVE,
    ReasonCode.NOT_AS_DESCRIBED,
    ReasonCode.WRONG_ITEM,
    ReasonCode.OTHER,
    ReasonCode.ORDERED_BY_MISTAKE,
    ReasonCode.NO_LONGER_NEEDED,
    ReasonCode.CHANGED_MIND,
)

# Return.status values (ReturnStatus) that mean the merchant already said yes or no.
RETURN_APPROVED_STATES: Final = frozenset({"OPEN", "CLOSED"})
RETURN_DECLINED_STATES: Final = frozenset({"DECLINED"})
RETURN_REQUESTED: Final = "REQUESTED"

DECLINE_NOTE_MAX = 500  # ReturnDecline.note: "Maximum length: 500 characters."
REFUND_PARENT_KINDS: Final = frozenset({"SALE", "CAPTURE"})

# ------------------------------------------------------------------ limits of one answer


def too_large(owner: str, what: str, limit: int) -> PermanentProviderError:
    return PermanentProviderError(
        NAME, f"{owner} has {limit} or more {what}, more than RefundBridge reads from Shopify "
              "in one query; it cannot be handled here without risking a wrong amount, so "
              "handle it in the Shopify admin", code="order_too_large")


def refund_with_key(order_refunds: GqlOrderRefunds, idempotency_key: str
                    ) -> GqlRefundNote | None:
    """The order's refund whose note carries `idempotency_key`, or None if it has none.

    "None" lets the caller pay, so it is only said when every refund of the order was seen.
    """
    for refund in order_refunds.refunds:
        marker = read_note(refund.note)
        if marker is not None and marker.idempotency_key == idempotency_key:
            return refund
    if len(order_refunds.refunds) >= REFUNDS_FIRST:
        raise too_large(f"order {order_refunds.id}", "refunds", REFUNDS_FIRST)
    return None


# ------------------------------------------------------------------ money and statuses


def wire_money(amount: str, currency: str, field: str) -> Money:
    """Shopify writes "16.99", "0.0" and, for yen, "1000.0": trailing zeros are not extra
    precision, so they are dropped before the currency's decimal places are checked."""
    try:
        value = parse_amount_text(amount, WIRE_FRACTION_DIGITS)
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(field, str(exc)) from exc
    return Money.parse(value.normalize() if value else Decimal(0), currency, field)


def bag_money(bag: MoneyBag, field: str) -> Money:
    return wire_money(bag.presentment_money.amount, bag.presentment_money.currency_code, field)


def map_transaction_status(raw: str | None) -> RefundStatus:
    status = TRANSACTION_STATUS.get(raw.upper()) if raw is not None else None
    if status is None:
        log.warning("shopify: unmapped transaction status %r; recorded as unknown", raw)
        return RefundStatus.UNKNOWN
    if status is RefundStatus.UNKNOWN:
        log.warning("shopify: transaction status %r; recorded as unknown", raw)
    return status


def combine_statuses(statuses: Sequence[RefundStatus]) -> RefundStatus:
    """One status for a refund from its transactions.

    Unknown wins over everything: calling a refund failed while one of its transactions is in
    an unknown state could lead an operator to pay it again. A refund without transactions
    moved no money we can see, so it is unknown too.
    """
    if not statuses or RefundStatus.UNKNOWN in statuses:
        return RefundStatus.UNKNOWN
    if RefundStatus.FAILED in statuses:
        return RefundStatus.FAILED
    if RefundStatus.PENDING in statuses:
        return RefundStatus.PENDING
    return RefundStatus.SUCCEEDED


def map_reason(raw: str | None) -> ReasonCode:
    reason = REASON_MAP.get(raw.upper()) if raw else None
    if reason is None:
        log.warning("shopify: unmapped return reason %r; recorded as other", raw)
        return ReasonCode.OTHER
    return reason


def main_reason(reasons: Iterable[ReasonCode]) -> ReasonCode:
    found = set(reasons)
    for reason in REASON_PRIORITY:
        if reason in found:
            return reason
    return ReasonCode.OTHER


# ------------------------------------------------------------------ our marker in refund notes

_NOTE_MARKER = re.compile(r"\[refundbridge case=(?P<case>[^\s\]]+) key=(?P<key>[^\s\]]+)\]")


@dataclass(frozen=True, slots=True)
class NoteMarker:
    case_id: str
    idempotency_key: str


def refund_note(order: RefundOrder) -> str:
    # The note is the only field of a refund that comes back in `refunds/create` webhooks
    # and in `order.refunds`, so it is how we know a refund is ours (and under which key).
    return (f"RefundBridge refund [refundbridge case={order.case_id} "
            f"key={order.idempotency_key}]")


def read_note(note: str | None) -> NoteMarker | None:
    match = _NOTE_MARKER.search(note or "")
    if match is None:
        return None
    return NoteMarker(match.group("case"), match.group("key"))


# ------------------------------------------------------------------ order → core


_LOCALE = re.compile(r"^[a-z]{2}(-[A-Za-z]{2,4})?$")


def normalise_locale(raw: str | None, default: str) -> str:
    """Shopify locales are BCP 47 tags ("en", "zh-CN", "pt-BR"); anything our templates'
    pattern would refuse falls back to the shop's default."""
    if raw:
        candidate = raw.replace("_", "-")
        head, _, tail = candidate.partition("-")
        candidate = head.lower() + (f"-{tail}" if tail else "")
        if _LOCALE.match(candidate):
            return candidate
    return default


def paid_total(order: GqlOrder) -> Money:
    """What the customer paid: the successful sales and captures, in the order's
    presentment currency (the one refunds are made in)."""
    currency = order.presentment_currency_code
    total = Money.zero(currency)
    for index, tx in enumerate(order.transactions):
        if tx.kind.upper() in REFUND_PARENT_KINDS and tx.status.upper() == "SUCCESS":
            total = total + bag_money(tx.amount_set, f"order.transactions.{index}.amount")
    return total


def delivered_at(order: GqlOrder, line_ids: set[str] | None = None) -> datetime | None:
    """When the goods arrived: the latest delivery among fulfillments holding `line_ids`
    (every fulfillment if None)."""
    dates = [
        f.delivered_at for f in order.fulfillments
        if f.delivered_at is not None and (
            line_ids is None
            or any(n.line_item.id in line_ids for n in f.fulfillment_line_items.nodes))
    ]
    return max(dates) if dates else None


def customer_id(order: GqlOrder) -> str:
    return order.customer.id if order.customer else f"guest:{order.id}"


def customer_locale(order: GqlOrder, default: str) -> str:
    raw = order.customer_locale or (order.customer.locale if order.customer else None)
    return normalise_locale(raw, default)


def to_order_line(line: GqlLineItem, index: int) -> OrderLine:
    return OrderLine(
        sku=line.sku or line.id,  # a line without a SKU is still a line; its GID names it
        name=line.name,
        quantity=line.quantity,
        unit_price=bag_money(line.discounted_unit_price_after_all_discounts_set,
                             f"order.lineItems.{index}.unitPrice"),
        line_id=line.id,
    )


def to_snapshot(order: GqlOrder, default_locale: str) -> OrderSnapshot:
    return OrderSnapshot(
        order_id=order.id,
        paid_total=paid_total(order),
        placed_at=order.processed_at or order.created_at,
        delivered_at=delivered_at(order),
        payment_provider=PROVIDER,
        payment_reference=order.id,
        customer_id=customer_id(order),
        customer_email=order.email,
        customer_phone=order.phone,
        customer_locale=customer_locale(order, default_locale),
        lines=tuple(to_order_line(line, i) for i, line in enumerate(order.line_items.nodes)),
    )


def _line_of(item: WebhookReturnLineItem, by_fulfillment_line: Mapping[str, str]) -> str:
    nested = item.fulfillment_line_item.line_item
    if nested is not None:
        return nested.admin_graphql_api_id
    fli = item.fulfillment_line_item.admin_graphql_api_id
    line_id = by_fulfillment_line.get(fli)
    if line_id is None:
        raise InvalidRequest("return_line_items.fulfillment_line_item",
                             f"{fli} is not a fulfillment line of the order")
    return line_id


def _reason_text(ret: WebhookReturn, lines: Mapping[str, GqlLineItem],
                 line_ids: Sequence[str]) -> str:
    parts = []
    for item, line_id in zip(ret.return_line_items, line_ids, strict=True):
        notes = [n for n in (item.return_reason_note, item.customer_note) if n]
        label = lines[line_id].sku or lines[line_id].name
        parts.append(f"{label}: {(item.return_reason or 'unknown').upper()}"
                     + (f" – {' / '.join(notes)}" if notes else ""))
    return "; ".join(parts)[:4000]


def to_request(ret: WebhookReturn, order: GqlOrder, requested_at: datetime,
               default_locale: str) -> NormalizedRefundRequest:
    """A `returns/request` webhook plus the order it names, as our normalized request.

    The amount asked for is what the returned units cost after discounts; the over-refund
    guard and the rules then judge it like any other request (exchanges: `exchanges.py`).
    """
    return validated_request(request_body(ret, order, requested_at, default_locale))


def validated_request(body: Mapping[str, Any]) -> NormalizedRefundRequest:
    try:
        return NormalizedRefundRequest.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from exc


def request_body(ret: WebhookReturn, order: GqlOrder, requested_at: datetime,
                 default_locale: str) -> dict[str, Any]:
    """The fields of the return's request, before validation (`to_request`)."""
    if order.id != ret.order.admin_graphql_api_id:
        raise InvalidRequest("order.admin_graphql_api_id",
                             f"the return names {ret.order.admin_graphql_api_id} but Shopify "
                             f"answered with {order.id}")
    currency = order.presentment_currency_code
    lines_by_id = {line.id: line for line in order.line_items.nodes}
    by_fli = {f_line.id: f_line.line_item.id
              for f in order.fulfillments for f_line in f.fulfillment_line_items.nodes}
    line_ids = [_line_of(item, by_fli) for item in ret.return_line_items]
    request_lines: list[dict[str, Any]] = []
    requested = Money.zero(currency)
    for index, (item, line_id) in enumerate(zip(ret.return_line_items, line_ids, strict=True)):
        line = lines_by_id.get(line_id)
        if line is None:
            raise InvalidRequest(f"return_line_items.{index}.fulfillment_line_item.line_item",
                                 f"{line_id} is not a line of order {order.id}")
        unit = bag_money(line.discounted_unit_price_after_all_discounts_set,
                         f"order.lineItems.{line_id}.unitPrice")
        requested = requested + Money.from_minor(unit.minor * item.quantity, currency)
        request_lines.append({"sku": line.sku or line.id, "name": line.name,
                              "quantity": item.quantity, "unit_price": unit.amount})
    paid = paid_total(order)
    # Never ask for more than was paid: lines before order-level adjustments can exceed it.
    requested = min(requested, paid) if paid.is_positive() else requested
    reason = main_reason(map_reason(item.return_reason) for item in ret.return_line_items)
    return {
        "external_id": ret.admin_graphql_api_id,
        "kind": "return_and_refund",
        "order": {
            "id": order.id,
            "currency": currency,
            "paid_total": paid.amount,
            "placed_at": order.processed_at or order.created_at,
            "delivered_at": delivered_at(order, set(line_ids)),
            "payment": {"provider": PROVIDER, "reference": order.id},
        },
        "customer": {
            "id": customer_id(order),
            "email": order.email,
            "phone": order.phone,
            "locale": customer_locale(order, default_locale),
        },
        "lines": request_lines,
        "reason": {"code": reason,
                   "text": _reason_text(ret, lines_by_id, line_ids)},
        "requested_amount": requested.amount,
        "requested_at": requested_at,
    }


# ------------------------------------------------------------------ refunds


def refund_transactions(order: RefundOrder, shop_order: GqlOrder) -> list[dict[str, str]]:
    """The REFUND transactions that pay `order.amount` back, each against a successful sale
    or capture and never more than what is left of it.

    Built once per issue_refund call and sent unchanged on every retry: Shopify refuses the
    same idempotency key with different variables.
    """
    currency = order.amount.currency
    refunded: dict[str, Money] = {}
    for tx in shop_order.transactions:
        if (tx.kind.upper() == "REFUND" and tx.parent_transaction is not None
                and tx.status.upper() in {"SUCCESS", "PENDING", "AWAITING_RESPONSE"}):
            amount = bag_money(tx.amount_set, "order.transactions.amount")
            parent = tx.parent_transaction.id
            refunded[parent] = refunded.get(parent, Money.zero(amount.currency)) + amount
    remaining = order.amount
    transactions: list[dict[str, str]] = []
    for tx in shop_order.transactions:
        if not remaining.is_positive():
            break
        if tx.kind.upper() not in REFUND_PARENT_KINDS or tx.status.upper() != "SUCCESS":
            continue
        paid = bag_money(tx.amount_set, "order.transactions.amount")
        if paid.currency != currency:
            continue
        left = paid - refunded.get(tx.id, Money.zero(currency))
        if not left.is_positive():
            continue
        share = min(left, remaining)
        transactions.append({
            "orderId": shop_order.id,
            "parentId": tx.id,
            "kind": "REFUND",
            "gateway": tx.gateway or "manual",
            "amount": held_decimal(share, NAME),
        })
        remaining = remaining - share
    if remaining.is_positive():
        raise PermanentProviderError(
            NAME, f"order {shop_order.id} has less than {order.amount} left to refund "
                  f"({order.amount - remaining} refundable)", code="insufficient_refundable")
    return transactions


def refund_input(order: RefundOrder, shop_order: GqlOrder) -> dict[str, Any]:
    if not order.amount.is_positive():
        raise InvalidRequest("amount", f"a refund must be positive, got {order.amount}")
    if order.amount.currency != shop_order.presentment_currency_code:
        raise InvalidRequest(
            "amount", f"order {shop_order.id} is paid in {shop_order.presentment_currency_code}"
                      f", not {order.amount.currency}")
    return {
        "orderId": shop_order.id,
        "currency": order.amount.currency,  # required when shop and presentment differ
        "note": refund_note(order),
        "notify": False,  # RefundBridge writes to the customer itself
        "transactions": refund_transactions(order, shop_order),
    }


def to_refund_result(refund: GqlRefund) -> RefundResult:
    statuses = [map_transaction_status(tx.status) for tx in refund.transactions.nodes]
    raw = ",".join(tx.status for tx in refund.transactions.nodes) or None
    amount = (bag_money(refund.total_refunded_set, "refund.totalRefundedSet")
              if refund.total_refunded_set is not None else None)
    return RefundResult(status=combine_statuses(statuses), provider_ref=refund.id,
                        amount=amount, raw_status=raw)


def to_webhook_update(refund: WebhookRefund, marker: NoteMarker, event_id: str | None
                      ) -> RefundUpdate:
    refunds = [tx for tx in refund.transactions if tx.kind.lower() == "refund"]
    statuses = [map_transaction_status(tx.status) for tx in refunds]
    amount = _sum(refunds, "transactions")
    return RefundUpdate(
        result=RefundResult(status=combine_statuses(statuses), provider_ref=refund.gid,
                            amount=amount,
                            raw_status=",".join(tx.status for tx in refunds) or None),
        idempotency_key=marker.idempotency_key,
        case_id=marker.case_id,
        event_id=event_id,
    )


# Refund transactions whose money has left or is on its way. `refunds/create` fires once, so
# a pending one must count now or never: the guard errs towards refusing an over-refund.
MONEY_OUT_STATUSES: Final = frozenset({"success", "pending", "awaiting_response"})


def to_external_refund(refund: WebhookRefund) -> ExternalRefund | None:
    """A refund made outside RefundBridge, for the over-refund guard: money that has left or
    is leaving counts, a failed transaction does not. None if nothing moves."""
    succeeded = [tx for tx in refund.transactions
                 if tx.kind.lower() == "refund" and tx.status.lower() in MONEY_OUT_STATUSES]
    amount = _sum(succeeded, "transactions")
    if amount is None or not amount.is_positive():
        return None
    return ExternalRefund(order_id=refund.order_gid, external_id=refund.gid, amount=amount,
                          note=refund.note or "")


def _sum(transactions: Sequence[WebhookTransaction], field: str) -> Money | None:
    if not transactions:
        return None
    currencies = {tx.currency.upper() for tx in transactions}
    if len(currencies) > 1:
        raise InvalidRequest(f"{field}.currency",
                             f"one refund in several currencies: {sorted(currencies)}")
    total = Money.zero(transactions[0].currency)
    for index, tx in enumerate(transactions):
        total = total + wire_money(tx.amount, tx.currency, f"{field}.{index}.amount")
    return total
