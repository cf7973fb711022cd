"""Recall campaign benchmark: consignees per second from an opened notice to everyone told.

A campaign of N consignees (default 50,000), each one shipment row of the sandbox ERP (one
unit or a few of the recalled lot, an email address), the sandbox notifier at zero latency,
on PostgreSQL (its own database `refundbridge_bench_recall`, dropped and recreated) and Redis.
The real steps run with the worker code in this process, as `tests/conftest.py`'s `drain`
and `bench.pipeline --profile` do (`workers.runner.drain`: the relay, then an
`rq.SimpleWorker` in burst mode): the ERP walk a page of 200 at a time (`rc_identify`),
the quarantine, and the notices in batches of 100 (`rc_notify`), each batch its own job.
The clock runs from `open_campaign` to the campaign reaching `monitoring` (everyone told).

Baselines, measured in the same run, in the same process, for the same N:

- notifier: the sandbox notifier's `send` called in a loop for N messages built as the
  campaign builds them (`recall_message`, built before the clock starts) -- the cost of the
  notification itself, which no campaign can beat. The ratio printed is campaign rate /
  this rate.
- ERP walk: the sandbox ERP's `consignees` paged through in a loop (PAGE_SIZE rows a page),
  with nothing stored: what the ERP side alone costs (the sandbox reads its list in one
  pass, page by page, as a real ERP answers a keyset page by index).

Then the campaign's report is built from the 50,000 rows (CSV streamed, HTML rendered), as
`refundbridge recalls campaign report` does, rows per second.

    .venv/bin/python -m bench.recall_campaign [--consignees 50000] [--redis-db 12]
    .venv/bin/python -m bench.recall_campaign --consignees 2000   # quick: well under 1 min
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bench.common import REDIS_URL, SHOP, reset_postgres

DB = "refundbridge_bench_recall"
URL = f"postgresql://postgres@127.0.0.1:5432/{DB}"
SKU, LOT = "GLU-METER-01", "L2401"


def redis_url(db: int) -> str:
    # Never the default database, nor the test suite's usual one.
    if db in (0, 11):
        raise SystemExit(f"--redis-db {db}: pick another database (0 and 11 are not ours)")
    return REDIS_URL.rsplit("/", 1)[0] + f"/{db}"


def shipments(count: int) -> list[dict[str, Any]]:
    return [{"customer": f"C{i:06d}", "name": f"客户 {i}", "sku": SKU, "quantity": 1 + i % 3,
             "document": f"DN-{i:06d}", "lot": LOT, "order_id": f"SO-{i:06d}",
             "email": f"buyer{i}@example.com", "shipped_on": "2026-10-01"}
            for i in range(count)]


def build_container(count: int, redis: str) -> Any:
    from refundbridge.bootstrap import bootstrap
    from refundbridge.config.settings import load_settings

    zero = {"latency_ms": 0, "transient_failure_rate": 0}
    settings = load_settings(
        None, database_url=URL, redis_url=redis,
        operator_tokens=["op_" + secrets.token_hex(24)],
        status_link_secret=secrets.token_hex(32),
        shops={SHOP: {
            "name": "Bench Pharmacy", "storefront": "generic", "payment": "sandbox_payment",
            "erp": "sandbox_erp", "notifier": "sandbox_notifier",
            "generic": {"secret": secrets.token_hex(32)},
            "sandbox_payment": zero, "sandbox_notifier": zero,
            "sandbox_erp": {**zero, "shipments": shipments(count), "stock": [
                {"sku": SKU, "lot": LOT, "quantity": 12}]},
            "policy": {"refund_timing": "on_receipt"},
        }})
    return bootstrap(settings)


def notice() -> Any:
    from refundbridge.core.campaigns import RecallAction, RecallNotice
    from refundbridge.core.recalls import RecallClass

    return RecallNotice(reference=f"BENCH-{secrets.token_hex(4)}", recall_class=RecallClass.I,
                        notice_date=date(2026, 12, 1), sku=SKU, lots=(LOT,),
                        actions=(RecallAction.STOP_USE, RecallAction.RETURN),
                        instructions="Stop using meters of lot L2401; return them.")


def notifier_baseline(container: Any, count: int) -> dict[str, Any]:
    """The sandbox notifier's `send` in a loop, on messages shaped as the campaign's."""
    from refundbridge.core.campaigns import ConsigneeRecord, RecallCampaign
    from refundbridge.core.ports import ConsigneeUnits
    from refundbridge.core.services.campaigns import recall_message

    svc = container.services
    campaign = RecallCampaign.open(SHOP, notice(), actor="bench", at=datetime.now(UTC),
                                   can_quarantine=False)
    messages = [recall_message(svc, campaign, ConsigneeRecord(
        id=i + 1, campaign_id=campaign.id, key=f"C{i:06d}", name=f"客户 {i}",
        email=f"buyer{i}@example.com", phone=None, locale=None,
        units=[ConsigneeUnits(line_id=f"SBX-{i}", document=f"DN-{i:06d}", sku=SKU,
                              quantity=1 + i % 3, lot=LOT, serial=None, shipped_on=None,
                              order_id=f"SO-{i:06d}")])) for i in range(count)]
    notifier = svc.gateways(SHOP).notifier
    began = time.perf_counter()
    for message in messages:
        notifier.send(message)
    seconds = time.perf_counter() - began
    return {"messages": count, "seconds": seconds, "per_s": count / seconds}


def erp_walk_baseline(container: Any) -> dict[str, Any]:
    from refundbridge.core.campaigns import PAGE_SIZE

    lookup = container.services.gateways(SHOP).consignees
    scope = notice().scope
    began = time.perf_counter()
    cursor: str | None = None
    rows = pages = 0
    while True:
        page = lookup.consignees(scope, cursor, PAGE_SIZE)
        rows += len(page.consignees)
        pages += 1
        cursor = page.cursor
        if cursor is None:
            break
    seconds = time.perf_counter() - began
    return {"rows": rows, "pages": pages, "seconds": seconds, "per_s": rows / seconds}


def run_campaign(container: Any, count: int, timeout: float) -> dict[str, Any]:
    from sqlalchemy import text

    from refundbridge.core.campaigns import CampaignState
    from refundbridge.core.services.campaigns import open_campaign
    from refundbridge.workers.runner import drain, make_worker

    notifier = container.services.gateways(SHOP).notifier
    sent_before = len(notifier.sent)
    worker = make_worker(container)
    repo = container.campaigns
    began = time.perf_counter()
    opened = open_campaign(container.services, SHOP, notice(), "bench")
    deadline = began + timeout
    while True:
        # A few jobs at a time, so the run stays bounded in time as well as in count.
        drain(container, worker, max_jobs=20)
        campaign = repo.get(opened.campaign_id)
        if campaign.state is not CampaignState.IDENTIFYING and not repo.unnotified(
                campaign.id) and not container.dispatcher.queue.count:
            break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"campaign not done after {timeout:.0f} s: "
                               f"{repo.counts(campaign.id).notified} of {count} notified")
    drain(container, worker)  # whatever is left (the last batch's bookkeeping)
    seconds = time.perf_counter() - began
    campaign = repo.get(opened.campaign_id)
    counts = repo.counts(opened.campaign_id)
    if campaign.state is not CampaignState.MONITORING or counts.notified != count:
        raise RuntimeError(f"campaign ended {campaign.state.value} with {counts.notified} of "
                           f"{count} notified")
    sent = len(notifier.sent) - sent_before
    if sent != count:
        raise RuntimeError(f"{sent} notices sent for {count} consignees")
    with container.engine.connect() as conn:
        jobs = dict(conn.execute(text(
            "SELECT step, count(*) FROM outbox WHERE case_id = :c GROUP BY step"),
            {"c": campaign.id}).all())
    walk = (campaign.identified_at - campaign.opened_at).total_seconds() \
        if campaign.identified_at else None
    return {"campaign_id": campaign.id, "consignees": count, "seconds": seconds,
            "per_s": count / seconds, "jobs": {str(k): int(v) for k, v in jobs.items()},
            "walk_seconds": walk, "events": campaign.audit_seq,
            "units": counts.units_shipped, "quarantined": campaign.quarantined_units}


def report_figures(container: Any, campaign_id: str) -> dict[str, Any]:
    from refundbridge.core.campaign_report import (
        build_report,
        csv_chunks,
        html_chunks,
        iter_rows,
    )

    repo = container.campaigns
    began = time.perf_counter()
    csv_bytes = sum(len(chunk) for chunk in csv_chunks(iter_rows(repo, campaign_id)))
    csv_seconds = time.perf_counter() - began
    began = time.perf_counter()
    report = build_report(repo, campaign_id, at=datetime.now(UTC), by="bench")
    html_chars = sum(len(chunk) for chunk in html_chunks(report))
    html_seconds = time.perf_counter() - began
    if report.differences or not report.chain.verifies:
        raise RuntimeError(f"report: {report.differences} {report.chain}")
    rows = report.totals.consignees
    return {"rows": rows, "csv_seconds": csv_seconds, "csv_mb": csv_bytes / 1e6,
            "csv_rows_per_s": rows / csv_seconds, "html_seconds": html_seconds,
            "html_mb": html_chars / 1e6, "html_rows_per_s": rows / html_seconds,
            "events": report.chain.events}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from redis import Redis

    from refundbridge.store.db import upgrade

    logging.basicConfig(level=logging.WARNING, force=True)
    for handler in logging.getLogger().handlers:
        # rq sets its worker's logger to INFO on every `work()`; the root's handler is what
        # keeps a job line per batch off the terminal.
        handler.setLevel(logging.WARNING)
    redis = redis_url(args.redis_db)
    Redis.from_url(redis).flushdb()
    reset_postgres(DB)
    upgrade(URL)
    started = time.perf_counter()
    container = build_container(args.consignees, redis)
    try:
        print(f"recall campaign: {args.consignees:,} consignees (PostgreSQL {DB}, {redis})",
              flush=True)
        results: dict[str, Any] = {"consignees": args.consignees}
        results["notifier"] = notifier_baseline(container, args.consignees)
        print(f"  baseline notifier.send x{args.consignees:,}: "
              f"{results['notifier']['per_s']:,.0f}/s", flush=True)
        results["erp_walk"] = erp_walk_baseline(container)
        print(f"  baseline ERP walk: {results['erp_walk']['per_s']:,.0f} rows/s "
              f"({results['erp_walk']['seconds']:.2f} s)", flush=True)
        results["campaign"] = run_campaign(container, args.consignees, args.timeout)
        c = results["campaign"]
        c["ratio"] = c["per_s"] / results["notifier"]["per_s"]
        c["ratio_erp"] = c["per_s"] / results["erp_walk"]["per_s"]
        print(f"  campaign: {c['per_s']:,.0f} consignees/s ({c['seconds']:.2f} s)", flush=True)
        if not args.skip_report:
            results["report"] = report_figures(container, c["campaign_id"])
        results["seconds"] = time.perf_counter() - started
        return results
    finally:
        container.close()
        Redis.from_url(redis).flushdb()


def print_table(results: dict[str, Any]) -> None:
    n, erp, c = results["notifier"], results["erp_walk"], results["campaign"]
    print(f"\nRecall campaign of {results['consignees']:,} consignees "
          f"({results['seconds']:.0f} s in all; ratios against baselines of this run)")
    print(f"{'figure':<48}{'per s':>10}{'ratio':>9}{'seconds':>9}")
    print(f"{'baseline: sandbox notifier.send in a loop':<48}{n['per_s']:>10,.0f}"
          f"{1:>9.2f}{n['seconds']:>9.2f}")
    print(f"{'baseline: sandbox ERP walk alone, rows':<48}{erp['per_s']:>10,.0f}"
          f"{erp['per_s'] / n['per_s']:>9.3f}{erp['seconds']:>9.2f}")
    print(f"{'campaign: open -> everyone told, consignees':<48}{c['per_s']:>10,.0f}"
          f"{c['ratio']:>9.4f}{c['seconds']:>9.2f}")
    walk = c["walk_seconds"]
    print(f"  ERP walk finished {walk:.2f} s after opening; jobs by step {c['jobs']}; "
          f"{c['events']:,} audit events; {c['units']:,} units shipped, "
          f"{c['quarantined']} quarantined")
    print(f"  campaign / ERP walk alone: {c['ratio_erp']:.3f}")
    if "report" in results:
        r = results["report"]
        print(f"{'report: CSV streamed, rows':<48}{r['csv_rows_per_s']:>10,.0f}{'':>9}"
              f"{r['csv_seconds']:>9.2f}  ({r['csv_mb']:.1f} MB)")
        print(f"{'report: HTML built and rendered, rows':<48}{r['html_rows_per_s']:>10,.0f}"
              f"{'':>9}{r['html_seconds']:>9.2f}  ({r['html_mb']:.1f} MB)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--consignees", type=int, default=50_000)
    p.add_argument("--redis-db", type=int, default=int(REDIS_URL.rsplit("/", 1)[1]),
                   help="Redis database to use and flush (default: the benches' 12)")
    p.add_argument("--skip-report", action="store_true", help="do not time the report")
    p.add_argument("--timeout", type=float, default=3600,
                   help="seconds the campaign may take before the run gives up")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    args = p.parse_args()
    results = run(args)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
