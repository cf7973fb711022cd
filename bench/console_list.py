"""Console case-list benchmark: the list's queries at a large table, as ratios to `SELECT 1`.

Fills the `cases` table of its own PostgreSQL database (`refundbridge_bench_console`,
dropped and recreated) with generated rows (default 200,000 over a year, one every 158 s;
two shops, every state, due
dates, a few percent with rules that spoke up in `case_rules`), ANALYZEs, then times each
query the Cases page runs (`store.console_reads.list_page`, the very code the page calls)
against a baseline measured in the same run: `SELECT 1` through the same engine, so the
round trip and SQLAlchemy's overhead are in both. A keyset page should cost about the same
at the first page and at the last one; OFFSET paging would grow with the depth.

Also printed: the plan's first line for each (informational; the planner's choice depends
on the data and the machine, so nothing is asserted on it).

    .venv/bin/python -m bench.console_list [--cases 200000] [--repeat 30]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bench.common import reset_postgres, timed

DB = "refundbridge_bench_console"
URL = f"postgresql://postgres@127.0.0.1:5432/{DB}"
SHOP, OTHER = "bench", "bench-other"

# One INSERT … SELECT: the rows are made by PostgreSQL itself, in seconds.
FILL_CASES = """
INSERT INTO cases (id, shop_id, source, external_id, order_id, customer_id, kind, state,
                   currency, requested_minor, approved_minor, refunded_minor, refund_timing,
                   request, details, version, audit_seq, audit_head, created_at, updated_at,
                   assignee, due_on)
SELECT 'rc_' || md5(n::text),
       CASE WHEN n % 2 = 0 THEN :shop ELSE :other END,
       'generic', 'ext-' || n, 'SO-' || (n / 2), 'cust-' || (n % 5000), 'refund_only',
       (ARRAY['closed','closed','closed','closed','closed','closed','closed','denied',
              'awaiting_review','awaiting_return','refunding','failed','cancelled',
              'received_goods','refunded'])[1 + n % 15],
       CASE WHEN n % 7 = 0 THEN 'USD' ELSE 'CNY' END,
       1000 + n % 90000, 1000 + n % 90000, 0, 'on_receipt',
       '{}'::json, '{"decisions": []}'::json, 1, 1, repeat('0', 64),
       :start + n * interval '158 seconds', :start + n * interval '158 seconds',
       CASE WHEN n % 9 = 0 THEN 'li.na' END,
       CASE WHEN n % 4 = 0 THEN (:start + n * interval '158 seconds')::date + 7 END
FROM generate_series(1, :count) AS n
"""
FILL_RULES = """
INSERT INTO case_rules (case_id, rule_id, outcome)
SELECT 'rc_' || md5(n::text),
       (ARRAY['R14','R20','R06','R19','R02'])[1 + (n / 15) % 5],
       CASE WHEN n % 5 = 4 THEN 'deny' ELSE 'review' END
FROM generate_series(1, :count) AS n
WHERE n % 15 IN (7, 8)
"""


def fill(engine: Any, count: int) -> dict[str, Any]:
    from sqlalchemy import text

    start = datetime(2025, 1, 1, tzinfo=UTC)
    began = time.monotonic()
    with engine.begin() as conn:
        conn.execute(text(FILL_CASES), {"shop": SHOP, "other": OTHER, "start": start,
                                        "count": count})
        conn.execute(text(FILL_RULES), {"count": count})
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("ANALYZE cases"))
        conn.execute(text("ANALYZE case_rules"))
        oldest = conn.execute(text("SELECT min(seq) FROM cases WHERE shop_id = :s"),
                              {"s": SHOP}).scalar_one()
        sample = conn.execute(text("SELECT order_id FROM cases WHERE shop_id = :s "
                                   "ORDER BY seq LIMIT 1 OFFSET :o"),
                              {"s": SHOP, "o": count // 4}).scalar_one()
    return {"seconds": time.monotonic() - began, "oldest_seq": int(oldest), "order": sample,
            "start": start}


def plan_of(engine: Any, query: Any) -> str:
    from sqlalchemy import text
    from sqlalchemy.dialects import postgresql

    compiled = query.compile(dialect=postgresql.dialect(),
                             compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        rows = conn.execute(text(f"EXPLAIN {compiled}")).scalars().all()
    return " / ".join(str(line).strip() for line in rows[:4])


def run(args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import select, text

    from refundbridge.store import console_reads as reads
    from refundbridge.store import tables as t
    from refundbridge.store.db import make_engine, upgrade

    reset_postgres(DB)
    upgrade(URL)
    engine = make_engine(URL)
    try:
        filled = fill(engine, args.cases)
        print(f"filled {args.cases:,} cases in {filled['seconds']:.1f} s")
        mine = frozenset({SHOP})
        today = date(2026, 12, 2)

        def page(f: reads.CaseFilter, **kwargs: Any) -> Callable[[], Any]:
            return lambda: reads.list_page(engine, f, today=today, **kwargs)

        # The deepest page: the cursor just above the shop's 50 oldest cases.
        deep_after = filled["oldest_seq"] + 2 * 50
        first_day = filled["start"].date() + timedelta(days=3)
        figures: dict[str, Callable[[], Any]] = {
            "first page, my shops": page(reads.CaseFilter(shops=mine)),
            "deepest page, my shops": page(reads.CaseFilter(shops=mine), after=deep_after),
            "first page, state=awaiting_review": page(
                reads.CaseFilter(shops=mine, state="awaiting_review")),
            "deep page, state=awaiting_review": page(
                reads.CaseFilter(shops=mine, state="awaiting_review"), after=deep_after),
            "first page, failed only": page(reads.CaseFilter(shops=mine, failed=True)),
            "first page, rule=R14": page(reads.CaseFilter(shops=mine, rule="R14")),
            "deep page, rule=R14": page(reads.CaseFilter(shops=mine, rule="R14"),
                                        after=deep_after + 5000),
            "first page, overdue": page(reads.CaseFilter(shops=mine, overdue=True)),
            "first page, created on one day": page(reads.CaseFilter(
                shops=mine, created_from=first_day, created_to=first_day)),
            "deep page, created in one month": page(reads.CaseFilter(
                shops=mine, created_from=first_day, created_to=first_day + timedelta(days=30)),
                after=deep_after + 20_000),
            "first page, created since a day": page(reads.CaseFilter(
                shops=mine, created_from=first_day)),
            "first page, created up to a month in": page(reads.CaseFilter(
                shops=mine, created_to=first_day + timedelta(days=30))),
            "first page, created in the first half year": page(reads.CaseFilter(
                shops=mine, created_from=first_day, created_to=first_day + timedelta(days=180))),
            "search by order id": page(reads.CaseFilter(shops=mine, search=filled["order"])),
            "back from the deepest page": page(reads.CaseFilter(shops=mine),
                                               before=deep_after),
        }

        def baseline() -> None:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1")).scalar_one()

        base_ms = timed(baseline, args.repeat)
        results: dict[str, Any] = {"cases": args.cases, "baseline_ms": base_ms, "queries": {}}
        for name, call in figures.items():
            ms = timed(call, args.repeat)
            rows = len(call().rows)
            results["queries"][name] = {"ms": ms, "ratio": ms / base_ms, "rows": rows}
        # OFFSET for comparison: what the deepest page would cost without a cursor.
        offset_query = (select(*reads.LIST_COLUMNS).where(t.cases.c.shop_id == SHOP)
                        .order_by(t.cases.c.seq.desc()).limit(51)
                        .offset(args.cases // 2 - 100))

        def by_offset() -> None:
            with engine.connect() as conn:
                conn.execute(offset_query).all()

        ms = timed(by_offset, max(3, args.repeat // 5))
        results["queries"]["(OFFSET, for comparison) deepest page"] = {
            "ms": ms, "ratio": ms / base_ms, "rows": 51}
        if args.plans:
            sample = reads._filtered(select(*reads.LIST_COLUMNS),
                                     reads.CaseFilter(shops=mine, rule="R14"), today)
            assert sample is not None
            results["plan_rule"] = plan_of(engine, sample.order_by(
                t.cases.c.seq.desc()).limit(51))
        return results
    finally:
        engine.dispose()


def print_table(results: dict[str, Any]) -> None:
    print(f"\nConsole case list at {results['cases']:,} cases "
          f"(baseline SELECT 1: {results['baseline_ms']:.2f} ms)")
    print(f"{'query':<44}{'median ms':>11}{'ratio':>9}{'rows':>6}")
    for name, figure in results["queries"].items():
        print(f"{name:<44}{figure['ms']:>11.2f}{figure['ratio']:>9.1f}{figure['rows']:>6}")
    if "plan_rule" in results:
        print(f"plan (rule=R14): {results['plan_rule']}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cases", type=int, default=200_000)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--plans", action="store_true", help="print a plan too")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    print_table(run(p.parse_args()))


if __name__ == "__main__":
    main()
