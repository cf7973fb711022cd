"""Run both benchmarks and print one compact table of figures and ratios.

    .venv/bin/python -m bench            # same as: python -m bench.run_all
    .venv/bin/python -m bench --quick    # shorter runs (smoke test)
    .venv/bin/python -m bench --profile  # plus the ingest and pipeline profiles

Bounded: about 2 minutes by default (3 servers x 13 s of load, 2,000 + 400 no-op jobs,
300 cases), every wait has a deadline.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from bench import ingest, pipeline


def module_args(module: Any, argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    module.add_arguments(p)
    return p.parse_args(argv)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short runs, for a smoke test")
    p.add_argument("--profile", action="store_true", help="print both profiles too")
    p.add_argument("--skip-ingest", action="store_true")
    p.add_argument("--skip-pipeline", action="store_true")
    p.add_argument("--json", type=Path, help="also write every figure to this file")
    args = p.parse_args()

    extra = ["--profile"] if args.profile else []
    ingest_argv = (["--warmup", "1", "--duration", "3"] if args.quick else []) + extra
    pipeline_argv = (["--jobs", "500", "--forking-jobs", "100", "--cases", "60"]
                     if args.quick else []) + extra
    started = time.monotonic()
    results: dict[str, Any] = {"machine": f"{platform.node()} {platform.machine()}",
                               "python": platform.python_version()}
    if not args.skip_ingest:
        results["ingest"] = ingest.run(module_args(ingest, ingest_argv))
        ingest.print_table(results["ingest"])
    if not args.skip_pipeline:
        results["pipeline"] = pipeline.run(module_args(pipeline, pipeline_argv))
        pipeline.print_table(results["pipeline"])

    print(f"\nRefundBridge benchmarks ({time.monotonic() - started:.0f} s; ratios are against "
          "baselines measured in this same run)")
    print(f"{'figure':<46}{'value':>12}{'ratio':>9}{'target':>10}")
    if "ingest" in results:
        r = results["ingest"]
        bare = r["bare"]
        print(f"{'ingest bare FastAPI endpoint, req/s':<46}{bare['rps']:>12,.0f}{1:>9.2f}")
        workers = [k for k in r if k.startswith("rb-pg-w")]
        for key, label in (("rb-pg", "ingest RefundBridge + PostgreSQL, req/s"),
                           *((k, f"  the same, serve --workers {k[7:]}, req/s")
                             for k in workers),
                           ("rb-sqlite", "ingest RefundBridge + SQLite, req/s")):
            if key in r:
                target = ">= 0.25" if key == "rb-pg" else ""
                print(f"{label:<46}{r[key]['rps']:>12,.0f}{r[key]['ratio']:>9.3f}{target:>10}")
        for key in ("bare", "rb-pg", *workers, "rb-sqlite"):
            if key in r:
                print(f"{'  ' + key + ' p50 / p99 ms (closed loop)':<46}"
                      f"{r[key]['p50_ms']:>5.1f} /{r[key]['p99_ms']:>6.1f}")
        steady = r.get("rb-pg", {}).get("open_loop")
        if steady:
            label = f"  rb-pg p50 / p99 ms at a steady {steady['offered_rps']:,.0f} req/s"
            print(f"{label:<46}{steady['p50_ms']:>5.1f} /{steady['p99_ms']:>6.1f}"
                  f"{'':>9}{'<= 50':>10}")
    if "pipeline" in results:
        r = results["pipeline"]
        noop, rb = r["noop"], r["refundbridge"]
        print(f"{'no-op RQ jobs/s, SimpleWorker x2':<46}{noop['jobs_per_s']:>12,.0f}{1:>9.2f}")
        if "noop_forking" in r:
            f = r["noop_forking"]
            print(f"{'no-op RQ jobs/s, forking Worker x2':<46}{f['jobs_per_s']:>12,.0f}"
                  f"{f['jobs_per_s'] / noop['jobs_per_s']:>9.2f}")
        print(f"{'pipeline RefundBridge cases/s to closed x2':<46}{rb['cases_per_s']:>12,.1f}"
              f"{rb['ratio']:>9.3f}{'>= 0.2':>10}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
