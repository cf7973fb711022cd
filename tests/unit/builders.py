"""Deterministic builders for unit tests: request bodies, requests, cases and decisions.

Nothing here is random or reads the clock, so a failing test fails the same way every run.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from refundbridge.core.model import Decision, Inspection, Outcome, RefundCase
from refundbridge.core.money import Money
from refundbridge.core.request import NormalizedRefundRequest

T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    """A point in time `minutes` after T0: events in a test get increasing times."""
    return T0 + timedelta(minutes=minutes)


def line(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "sku": "GLU-METER-01",
        "name": "Glucose meter",
        "quantity": 2,
        "unit_price": "199.00",
        "device_class": "II",
        "lot": "L2401",
        "serial": None,
        "expiry_date": "2026-01-31",
        "udi": None,
        "sterile": False,
        "package_opened": False,
        "cold_chain": False,
        "custom_made": False,
    }
    body.update(overrides)
    return body


def request_body(**overrides: Any) -> dict[str, Any]:
    """A valid normalized request for 398.00 CNY (two glucose meters at 199.00).

    Keyword names with dots address nested keys: `**{"order.paid_total": "1.00"}`,
    `**{"lines.0.unit_price": "2.00"}`. A value of `DELETE` removes the key.
    """
    body: dict[str, Any] = {
        "external_id": "ext-0001",
        "kind": "refund_only",
        "order": {
            "id": "SO-1001",
            "currency": "CNY",
            "paid_total": "398.00",
            "placed_at": "2024-02-20T10:00:00+00:00",
            "delivered_at": "2024-02-23T15:30:00+00:00",
            "payment": {"provider": "stripe", "reference": "pi_3N000000000000"},
        },
        "customer": {
            "id": "cust-1",
            "type": "consumer",
            "email": "li.wei@example.com",
            "phone": "+8613800000000",
            "locale": "zh-CN",
        },
        "lines": [line()],
        "reason": {"code": "changed_mind", "text": "no longer needed"},
        "requested_amount": "398.00",
        "requested_at": "2024-03-01T08:00:00+00:00",
    }
    body = copy.deepcopy(body)
    for key, value in overrides.items():
        target: Any = body
        *path, last = key.split(".")
        for part in path:
            target = target[int(part)] if part.isdigit() else target[part]
        index: Any = int(last) if isinstance(target, list) else last
        if value is DELETE:
            del target[index]
        else:
            target[index] = value
    return body


DELETE = object()


def make_request(**overrides: Any) -> NormalizedRefundRequest:
    return NormalizedRefundRequest.model_validate(request_body(**overrides))


def open_case(kind: str = "refund_only", refund_timing: str = "on_receipt",
              **overrides: Any) -> RefundCase:
    request = make_request(kind=kind, **overrides)
    return RefundCase.open(request, shop_id="acme", source="generic",
                           refund_timing=refund_timing, at=at(0), case_id="rc_test")


def approval(case: RefundCase, minute: int = 2, by: str = "rules") -> Decision:
    return Decision(Outcome.APPROVE, case.requested, (), by, at(minute))


def decision(outcome: Outcome, amount: Money, minute: int = 2) -> Decision:
    return Decision(outcome, amount, (), "rules", at(minute))


def inspection(line: int = 0, *, seal_intact: bool = True, condition: str = "as_new",
               passed: bool = True, quantity: int | None = None) -> Inspection:
    return Inspection(line=line, seal_intact=seal_intact, condition=condition,
                      inspector="qa:chen", passed=passed, quantity=quantity)
