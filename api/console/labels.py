"""What the console calls the core's codes (states, dispositions, obligations, rules), in
English; `_()` turns each into the operator's language. One home, so every page says the
same thing for the same code."""

from __future__ import annotations

# What each disposition means at the bench, and how loud its badge is.
DISPOSITIONS: dict[str, tuple[str, str]] = {
    "restock": ("Back to stock", "ok"),
    "quarantine": ("Quarantine area", "warn"),
    "return_to_manufacturer": ("Set aside for the manufacturer", "warn"),
    "scrap": ("Destroy (scrap), never restock", "bad"),
    "keep_as_evidence": ("Keep as evidence, do not destroy", "bad"),
    "pending_inspection": ("Waiting for inspection", "info"),
    "not_returned": ("Stays with the customer", "info"),
}
# The rules that decide where a returned unit goes (core/compliance.py `_where`).
RULES: dict[str, str] = {
    "R01": "Shipment record", "R04": "Excluded from no-reason return", "R05": "Broken seal",
    "R06": "Quality complaint", "R08": "Inspection", "R09": "Expiry",
    "R10": "Sterile product", "R11": "Cold chain", "R12": "Condition and open box",
    "R13": "Recall", "R14": "Adverse event", "R16": "UDI check",
}
STATES: dict[str, str] = {
    "received": "Just received", "evaluating": "Being evaluated",
    "awaiting_review": "Waiting for a reviewer", "approved": "Approved",
    "denied": "Denied", "awaiting_return": "Waiting for the goods",
    "received_goods": "Goods received", "refunding": "Refund under way",
    "refunded": "Refunded", "replacing": "Replacement being ordered",
    "replaced": "Replacement ordered", "closed": "Closed", "failed": "Failed",
    "cancelled": "Cancelled",
}
OBLIGATIONS: dict[str, str] = {
    "adverse_event_report": "Adverse-event report", "recall_notice": "Recall notice",
    "refund_deadline": "Refund deadline",
}

BADGES: dict[str, dict[str, str]] = {
    "disposition": {code: badge for code, (_, badge) in DISPOSITIONS.items()},
}


def label(kind: str, code: str | None) -> str:
    """The English label of `code` (a state, disposition, obligation kind or rule id); the
    code itself when it has none."""
    if code is None:
        return "—"
    if kind == "disposition":
        return DISPOSITIONS.get(code, (code, ""))[0]
    table = {"state": STATES, "obligation": OBLIGATIONS, "rule": RULES}[kind]
    return table.get(code, code)


def badge(kind: str, code: str | None) -> str:
    return BADGES.get(kind, {}).get(code or "", "info")
