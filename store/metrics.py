"""Gauges read from the database when Prometheus scrapes: open cases by shop and state,
and the outbox's open work (how much, and how long the oldest has waited).

Each query reads only what is still open (final cases and done outbox rows, which only grow,
are left out by the indexes they use), so a scrape costs the same with years of history.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from refundbridge.core.lifecycle import FINAL_STATES, CaseState
from refundbridge.store import tables as t
from refundbridge.store.mapping import aware

log = logging.getLogger("refundbridge.metrics")

OPEN_STATES = tuple(sorted(s.value for s in CaseState if s not in FINAL_STATES))


class StoreGauges(Collector):
    def __init__(self, engine: Engine, shop_ids: Sequence[str],
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._shops = list(shop_ids)
        self._clock = clock

    def describe(self) -> list[Metric]:
        return []  # no describe at registration: that would query the database

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("refundbridge_store_up", "1 if the scrape could read the "
                               "database, 0 if not (the gauges below are then missing)")
        try:
            metrics = self._read()
        except SQLAlchemyError as exc:
            log.warning("metrics: cannot read the database: %s",
                        str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from metrics

    def _read(self) -> list[Metric]:
        c, o = t.cases.c, t.outbox.c
        cases = GaugeMetricFamily("refundbridge_cases", "Cases not yet final (closed, denied, "
                                  "cancelled), by shop and state", labels=["shop", "state"])
        open_work = GaugeMetricFamily("refundbridge_outbox_open", "Steps committed and not "
                                      "yet done, by step", labels=["step"])
        oldest = GaugeMetricFamily("refundbridge_outbox_oldest_open_seconds", "How long the "
                                   "oldest step not yet done has waited (0: none open)")
        with self._engine.connect() as conn:
            counts = {(r.shop_id, r.state): int(r.n) for r in conn.execute(
                select(c.shop_id, c.state, func.count().label("n"))
                .where(c.shop_id.in_(self._shops), c.state.in_(OPEN_STATES))
                .group_by(c.shop_id, c.state))} if self._shops else {}
            steps = conn.execute(select(o.step, func.count().label("n"))
                                 .where(o.done_at.is_(None)).group_by(o.step)).all()
            first = conn.execute(select(func.min(o.created_at))
                                 .where(o.done_at.is_(None))).scalar()
        for shop in self._shops:
            for state in OPEN_STATES:  # every pair, zeros too: a state that empties shows 0
                cases.add_metric([shop, state], counts.get((shop, state), 0))
        for row in steps:
            open_work.add_metric([row.step], int(row.n))
        waited = (self._clock() - aware(first)).total_seconds() if first is not None else 0.0
        oldest.add_metric([], max(0.0, waited))
        return [cases, open_work, oldest]
