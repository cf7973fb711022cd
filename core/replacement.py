"""An exchange's replacement as the case keeps it: the key, the claim, the ERP's documents.

Like a refund attempt, the replacement is reserved on the case (its idempotency key, derived
from the case, and a claim) and committed before the ERP is first called. Like the stock
booking, the claim is held for a lease: while it runs no other job calls the ERP for this
case, and a claim taken after it ran out (its job died) asks the ERP for the replacement
made under the key first (`find_replacement`) instead of ordering again.

This module is the record only (the `RefundCase` aggregate holds one); the decision's
side (the price difference, the lots a replacement must avoid) is in core/exchanges.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class ReplacementTiming(StrEnum):
    """When an approved exchange's replacement is ordered (the shop's policy)."""

    # Once the returned unit is back and inspected: nothing ships twice for one complaint.
    ON_RECEIPT = "on_receipt"
    # At once on approval (advance replacement): a patient is not left without a meter
    # while the faulty one travels back.
    ON_APPROVAL = "on_approval"


class ReplacementProgress(StrEnum):
    """How far the replacement has got, as the case knows it."""

    CLAIMED = "claimed"  # key reserved and claim committed; the ERP may be being called
    ORDERED = "ordered"  # the ERP has the order (ERPNext Sales Order, Odoo sale.order)
    SHIPPED = "shipped"  # the delivery is done (Delivery Note, stock.picking)


@dataclass(slots=True)
class CaseReplacement:
    idempotency_key: str
    claims: int
    claimed_at: datetime
    progress: ReplacementProgress = ReplacementProgress.CLAIMED
    # False once the claiming job's ERP call ended without an order: a retry may claim it.
    held: bool = True
    document: str | None = None
    delivery: str | None = None
    # Lots the rules recalled on the returned lines: the ERP must not pick the
    # replacement from them.
    avoid_lots: tuple[str, ...] = field(default_factory=tuple)
    message: str | None = None

    @property
    def ordered(self) -> bool:
        return self.progress is not ReplacementProgress.CLAIMED

    def as_json(self) -> dict[str, Any]:
        return {"key": self.idempotency_key, "claims": self.claims,
                "claimed_at": self.claimed_at.isoformat(), "progress": self.progress.value,
                "held": self.held, "document": self.document, "delivery": self.delivery,
                "avoid_lots": list(self.avoid_lots), "message": self.message}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CaseReplacement:
        return cls(data["key"], data["claims"], datetime.fromisoformat(data["claimed_at"]),
                   ReplacementProgress(data["progress"]), data.get("held", True),
                   data.get("document"), data.get("delivery"),
                   tuple(data.get("avoid_lots", ())), data.get("message"))


def replacement_key(case_id: str) -> str:
    """The one key a case's replacement is ordered under: a case ships one replacement."""
    return f"{case_id}-replacement"
