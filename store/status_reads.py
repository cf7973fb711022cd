"""The customer status page's one query of its own: which case of an order an email address
may have a fresh link for (its look-up form). The page itself reads `queries.case_detail`."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select

from refundbridge.store import tables as t

ORDER_CASES_MAX = 50  # an order with more requests than this is not a customer's


@dataclass(frozen=True, slots=True)
class LinkTarget:
    case_id: str
    email: str  # as the request gave it: where the link goes
    locale: str


def _same_address(a: str, b: str) -> bool:
    # The domain is case-insensitive everywhere; the local part is in practice too.
    return a.strip().casefold() == b.strip().casefold()


def link_target(engine: Engine, shop_id: str, order_id: str, email: str) -> LinkTarget | None:
    """The newest case of this shop's order whose customer gave this email address; None if
    there is no such order, or the address is not the one on file."""
    c = t.cases.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(c.id, c.request).where(c.shop_id == shop_id, c.order_id == order_id)
            .order_by(c.seq.desc()).limit(ORDER_CASES_MAX)).all()
    for row in rows:
        customer = row.request.get("customer") or {}
        on_file = customer.get("email")
        if isinstance(on_file, str) and _same_address(on_file, email):
            return LinkTarget(row.id, on_file, str(customer.get("locale") or "en"))
    return None
