"""Refunds through WooCommerce and write-back to its orders: the refund request we send for a
`RefundOrder`, how we know our refunds again, what their answers mean, and the order notes
and statuses we write. No I/O: `client.py` sends what these functions build.

Sources: `RestApiUtil::adjust_create_refund_request_parameters` and `wc_create_refund()`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from decimal import ROUND_DOWN, Decimal
from types import MappingProxyType
from typing import Any, Final

from refundbridge.connectors.base import mapped_status
from refundbridge.connectors.minor_units import held_decimal
from refundbridge.connectors.woocommerce.transformers import (
    META_CASE_ID,
    META_IDEMPOTENCY_KEY,
    NAME,
    REFUND_MARKER,
    line_sku,
    wc_money,
)
from refundbridge.connectors.woocommerce.wire import WCLineItem, WCOrder, WCRefund
from refundbridge.core.errors import InvalidRequest, PermanentProviderError
from refundbridge.core.model import RefundResult, RefundStatus
from refundbridge.core.money import Money, minor_units
from refundbridge.core.ports import RefundOrder, StatusOutcome

log = logging.getLogger(__name__)

# A refund object has no status field. What it has is `refunded_payment`: WooCommerce saves
# the refund, calls the gateway, and sets `refunded_payment: true` only once the gateway said
# yes; if the gateway says no it deletes the refund again. So for a refund we asked the
# gateway to pay (`api_refund: true`, always, for ours):
#   true   → the gateway paid;
#   false  → the gateway call has not returned (or PHP died during it): pending, polled, and
#            a person looks if it stays so;
#   gone   → WooCommerce deleted it because the gateway refused: failed.
# Anything else (null, a string, the field missing) is unknown: recorded, never acted on.
STATUS_MAP: Final[Mapping[str, RefundStatus]] = MappingProxyType({
    "refunded_payment=true": RefundStatus.SUCCEEDED,
    "refunded_payment=false": RefundStatus.PENDING,
    "deleted": RefundStatus.FAILED,
})


# ------------------------------------------------------------------ refunds


def refund_reason(order: RefundOrder) -> str:
    # WooCommerce passes the reason to the gateway too (e.g. as the refund's description),
    # so it stays short. The marker and key are how we recognise the refund later.
    return f"{order.reason.value} ({REFUND_MARKER} {order.idempotency_key})"


def _scaled(amount: Decimal, fraction: Decimal, quantum: Decimal) -> Decimal:
    return (amount * fraction).quantize(quantum, rounding=ROUND_DOWN)


def refund_line_items(order: RefundOrder, wc_order: WCOrder) -> list[dict[str, Any]]:
    """`line_items` of the refund: the order's line item ids matched by SKU, with quantity,
    `refund_total` (excluding tax) and `refund_tax` per tax rate, both in proportion to the
    quantity returned and, if less than the lines' worth was approved, scaled down to it.

    Returns [] (refund by amount only, which pays the same) if any line can't be matched:
    a half-matched refund would misstate what was returned.
    """
    currency = order.amount.currency
    quantum = Decimal(1).scaleb(-minor_units(currency))
    remaining = {item.id: item.quantity for item in wc_order.line_items}
    picked: list[tuple[WCLineItem, int]] = []
    for line in order.lines:
        wanted = line.quantity
        for item in wc_order.line_items:
            if wanted == 0:
                break
            if line_sku(item) != line.sku or remaining[item.id] <= 0:
                continue
            take = min(wanted, remaining[item.id])
            remaining[item.id] -= take
            wanted -= take
            picked.append((item, take))
        if wanted:
            log.warning("woocommerce: order %s has no line with %d more of SKU %s; refunding "
                        "case %s by amount only", wc_order.id, wanted, line.sku, order.case_id)
            return []
    rows: list[tuple[WCLineItem, int, Decimal, list[tuple[int, Decimal]]]] = []
    gross = Decimal(0)
    for item, quantity in picked:
        fraction = Decimal(quantity) / Decimal(item.quantity)
        total = _scaled(Decimal(item.total), fraction, quantum)
        taxes = [(tax.id, _scaled(Decimal(tax.total or "0"), fraction, quantum))
                 for tax in item.taxes]
        gross += total + sum((t for _, t in taxes), Decimal(0))
        rows.append((item, quantity, total, taxes))
    factor = min(Decimal(1), order.amount.amount / gross) if gross else Decimal(1)
    body: list[dict[str, Any]] = []
    for item, quantity, total, taxes in rows:
        entry: dict[str, Any] = {
            "id": item.id,
            "quantity": quantity,
            "refund_total": str(_scaled(total, factor, quantum)),
        }
        if taxes:
            entry["refund_tax"] = [{"id": tax_id, "refund_total": str(_scaled(t, factor, quantum))}
                                   for tax_id, t in taxes]
        body.append(entry)
    return body


def refund_body(order: RefundOrder, line_items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The JSON of `POST /orders/<id>/refunds`.

    `api_refund: true`: the gateway pays the money back. `api_restock: false`: goods are
    booked back into stock in the ERP after inspection, never on the shop's word alone
    (a returned sterile device may not be sellable). WooCommerce's own name for that switch
    inside `wc_create_refund()` is `restock_items`; the REST API calls it `api_restock`.
    """
    if not order.amount.is_positive():
        raise InvalidRequest("amount", f"a refund must be positive, got {order.amount}")
    return {
        "amount": held_decimal(order.amount, NAME),
        "reason": refund_reason(order),
        "api_refund": True,
        "api_restock": False,
        "line_items": list(line_items),
        "meta_data": [
            {"key": META_IDEMPOTENCY_KEY, "value": order.idempotency_key},
            {"key": META_CASE_ID, "value": order.case_id},
        ],
    }


def belongs_to(refund: WCRefund, order: RefundOrder) -> bool:
    """Is this the refund made under `order`'s idempotency key? The meta is written after the
    gateway returned; the reason before it, so either will do."""
    return (refund.meta(META_IDEMPOTENCY_KEY) == order.idempotency_key
            or f"{REFUND_MARKER} {order.idempotency_key})" in refund.reason)


def raw_status(refund: WCRefund | None) -> str | None:
    if refund is None:
        return "deleted"
    value = refund.refunded_payment
    if isinstance(value, bool):
        return f"refunded_payment={'true' if value else 'false'}"
    return None if value is None else f"refunded_payment={value!r}"


def map_status(raw: str | None) -> RefundStatus:
    return mapped_status(STATUS_MAP, raw, NAME, "refund state")


def to_refund_result(refund: WCRefund, currency: str) -> RefundResult:
    raw = raw_status(refund)
    status = map_status(raw)
    try:
        amount = wc_money(refund.amount, currency, "amount")
    except InvalidRequest as exc:  # the shop's answer, not our caller's request, is wrong
        raise PermanentProviderError(NAME, f"refund {refund.id}: {exc}",
                                     code="invalid_response") from exc
    return RefundResult(
        status=status,
        provider_ref=str(refund.id),
        amount=amount,
        message="the gateway has not confirmed the refund yet"
        if status is RefundStatus.PENDING else None,
        raw_status=raw,
    )


def deleted_refund_result(refund_id: str) -> RefundResult:
    return RefundResult(
        status=map_status("deleted"),
        provider_ref=refund_id,
        message=f"refund #{refund_id} no longer exists in WooCommerce, which deletes a refund "
                "when the payment gateway refuses it; check the order before retrying",
        raw_status="deleted",
    )


# ------------------------------------------------------------------ write-back


def note_marker(case_id: str, outcome: StatusOutcome) -> str:
    return f"[{REFUND_MARKER} {case_id} {outcome.value}]"


def note_text(case_id: str, outcome: StatusOutcome, note: str, amount: Money | None) -> str:
    what = {
        StatusOutcome.APPROVED: "refund approved",
        StatusOutcome.DECLINED: "refund declined",
        StatusOutcome.REFUNDED: "refund paid",
    }[outcome]
    parts = [f"{REFUND_MARKER}: {what}"]
    if amount is not None:
        parts.append(f"({amount})")
    text = " ".join(parts) + "."
    if note:
        text += f" {note}"
    return f"{text} {note_marker(case_id, outcome)}"
