"""The receiving bench's look-up: which case a returned parcel or unit belongs to.

The warehouse has in hand either a reference (our case id, the storefront's return/RMA id,
the order number) or a unit with a UDI label. A reference is matched exactly
(`cases_for_reference`). A scanned UDI is matched through `case_units`, the devices each
case is about, one row per request line (`cases_for_unit`):

- the device identifier: the line's GTIN (stored as sent, GTIN-8/12/13/14, so every
  zero-padded form of the scanned GTIN-14 is looked for); for a line without a GTIN, the
  shop's policy GTIN of its SKU (`policy_skus`) or the DI of the UDI printed in the sales
  record (`lines[i].udi`, how an MA code is known), or else nothing;
- then the serial if both the scan and the line have one, else the lot if both have one.

A known device identifier that differs rules a line out, and so does a differing serial
or lot. A line whose device identifier is unknown matches only on an equal serial or lot.
Of the lines left, those of cases awaiting their goods are preferred, and among them the
ones that agree on the most (identifier, serial, lot): the bench wants the one parcel on the
table, not every sale of that product.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine, and_, false, or_, select

from refundbridge.core.errors import InvalidUdi
from refundbridge.core.lifecycle import CaseState
from refundbridge.core.udi import UdiData, UdiScheme, parse_udi
from refundbridge.store import tables as t
from refundbridge.store.mapping import aware

LIMIT = 50  # matches shown at most; the bench needs one
_CANDIDATES = 500  # rows read at most before they are ranked

_DI = 4  # weights of what a match agrees on
_SERIAL = 2
_LOT = 1


@dataclass(frozen=True, slots=True)
class ReceivingMatch:
    """A case that may be the parcel on the bench. `line`/`sku`: the request line a UDI
    matched (None for a match on a reference); `matched_on`: what agreed, e.g.
    ``("gtin", "serial")`` or ``("external_id",)``."""

    case_id: str
    shop_id: str
    external_id: str
    order_id: str
    kind: str
    state: str
    created_at: datetime
    line: int | None
    sku: str | None
    matched_on: tuple[str, ...]

    @property
    def awaiting_goods(self) -> bool:
        return self.state == CaseState.AWAITING_RETURN.value


def _shop_filter(shops: Collection[str] | None) -> Any:
    if shops is None:
        return None
    return t.cases.c.shop_id.in_(sorted(shops)) if shops else false()


def _awaiting_first(matches: list[ReceivingMatch]) -> list[ReceivingMatch]:
    """Only the cases awaiting their goods when there are any, else all; newest first."""
    waiting = [m for m in matches if m.awaiting_goods]
    chosen = waiting or matches
    return sorted(chosen, key=lambda m: m.created_at, reverse=True)[:LIMIT]


def cases_for_reference(engine: Engine, text: str, shops: Collection[str] | None
                        ) -> list[ReceivingMatch]:
    """The cases whose id, storefront (RMA/return) id or order id is `text`, in `shops`
    (None: every shop)."""
    text = text.strip()
    if not text or len(text) > 255:
        return []
    c = t.cases.c
    clauses = [c.id == text, c.external_id == text]
    if len(text) <= 128:
        clauses.append(c.order_id == text)
    query = (select(c.id, c.shop_id, c.external_id, c.order_id, c.kind, c.state,
                    c.created_at)
             .where(or_(*clauses)).order_by(c.seq.desc()).limit(_CANDIDATES))
    visible = _shop_filter(shops)
    if visible is not None:
        query = query.where(visible)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    matches = []
    for row in rows:
        on = tuple(name for name, value in (("case_id", row.id), ("external_id",
                   row.external_id), ("order_id", row.order_id)) if value == text)
        matches.append(ReceivingMatch(row.id, row.shop_id, row.external_id, row.order_id,
                                      row.kind, row.state, aware(row.created_at), None, None,
                                      on or ("external_id",)))
    return _awaiting_first(matches)


def gtin_forms(gtin14: str) -> list[str]:
    """Every way a sales record may hold this GTIN-14: as it is, and as the GTIN-13, -12
    and -8 that it pads with zeros."""
    forms = [gtin14]
    for length in (13, 12, 8):
        if gtin14[:14 - length].strip("0") == "":
            forms.append(gtin14[14 - length:])
    return forms


def _line_di(request: Mapping[str, Any], line: int, today: date) -> str | None:
    """The device identifier of the UDI the sales record printed for this line, if any."""
    lines = request.get("lines") or []
    raw = lines[line].get("udi") if 0 <= line < len(lines) else None
    if not raw:
        return None
    try:
        return parse_udi(raw, today=today).gtin
    except InvalidUdi:
        return None


def cases_for_unit(engine: Engine, udi: UdiData, shops: Collection[str] | None, *,
                   today: date, policy_skus: Mapping[str, Collection[str]] | None = None
                   ) -> list[ReceivingMatch]:
    """The cases about the unit `udi` describes, in `shops` (None: every shop), best first
    (module docstring). `policy_skus`: shop → the SKUs whose policy GTIN is this unit's
    device identifier; `today` reads the dates of UDIs printed in sales records."""
    u = t.case_units.c
    c = t.cases.c
    skus = {shop: set(values) for shop, values in (policy_skus or {}).items() if values}
    by_reference = [u.lot == udi.lot] if udi.lot else []
    if udi.serial:
        by_reference.append(u.serial == udi.serial)
    unknown_di = [and_(u.gtin == "", or_(*by_reference))] if by_reference else []
    by_policy = [and_(u.gtin == "", u.shop_id == shop, u.sku.in_(sorted(values)))
                 for shop, values in skus.items()]
    gs1 = [u.gtin.in_(gtin_forms(udi.gtin))] if udi.scheme is UdiScheme.GS1 else []
    clauses = gs1 + unknown_di + by_policy
    if not clauses:
        return []
    query = (select(u.case_id, u.line, u.sku, u.gtin, u.lot, u.serial, c.shop_id,
                    c.external_id, c.order_id, c.kind, c.state, c.created_at)
             .join(t.cases, c.id == u.case_id)
             .where(or_(*clauses)).order_by(c.seq.desc()).limit(_CANDIDATES))
    if shops is not None:
        query = query.where(u.shop_id.in_(sorted(shops)) if shops else false())
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        # Only a line without a GTIN needs its sales record's printed UDI.
        unknown = sorted({r.case_id for r in rows
                          if not r.gtin and r.sku not in skus.get(r.shop_id, ())})
        requests = dict(conn.execute(select(c.id, c.request).where(c.id.in_(unknown))).all()
                        ) if unknown else {}

    scored: list[tuple[int, ReceivingMatch]] = []
    for row in rows:
        if row.gtin:
            di_known, di_equal = True, udi.scheme is UdiScheme.GS1 and (
                row.gtin in gtin_forms(udi.gtin))
        elif row.sku in skus.get(row.shop_id, ()):
            di_known, di_equal = True, True
        else:
            printed = _line_di(requests[row.case_id], row.line, today)
            di_known, di_equal = printed is not None, printed == udi.gtin
        if di_known and not di_equal:
            continue
        on: list[str] = ["gtin"] if di_known else []
        score = _DI if di_known else 0
        if udi.serial and row.serial:
            if udi.serial != row.serial:
                continue
            on.append("serial")
            score += _SERIAL
        elif udi.lot and row.lot:
            if udi.lot != row.lot:
                continue
            on.append("lot")
            score += _LOT
        if not di_known and score == 0:
            continue
        scored.append((score, ReceivingMatch(
            row.case_id, row.shop_id, row.external_id, row.order_id, row.kind, row.state,
            aware(row.created_at), row.line, row.sku, tuple(on))))

    waiting = [(s, m) for s, m in scored if m.awaiting_goods]
    chosen = waiting or scored
    best = max((s for s, _ in chosen), default=0)
    return _awaiting_first([m for s, m in chosen if s == best])


class ReceivingReads:
    """The look-ups above, bound to one database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def cases_for_reference(self, text: str, shops: Collection[str] | None
                            ) -> list[ReceivingMatch]:
        return cases_for_reference(self._engine, text, shops)

    def cases_for_unit(self, udi: UdiData, shops: Collection[str] | None, *, today: date,
                       policy_skus: Mapping[str, Collection[str]] | None = None
                       ) -> list[ReceivingMatch]:
        return cases_for_unit(self._engine, udi, shops, today=today, policy_skus=policy_skus)
