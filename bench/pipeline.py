"""Pipeline benchmark: cases per second from signed webhook to `closed`.

One file on purpose (a little over 500 lines): the baseline and the measured run are set up,
timed and reported side by side, so what differs between them is visible in one read.

(a) Baseline: N no-op jobs (bench.noop.noop) drained by 2 `rq worker` processes of the class
    RefundBridge uses (rq.SimpleWorker, see workers/runner.py) -> jobs/s. Optionally the
    same with the default forking rq.Worker (smaller N), to show why we don't use it.
(b) RefundBridge: `refundbridge serve` plus 2 `refundbridge worker` processes (SimpleWorker)
    on PostgreSQL + Redis db 12, sandbox connectors at zero latency. N signed webhooks
    (90 % refund_only, 10 % return_and_refund whose goods this script "receives" through the
    operator API as soon as they wait for them), all within the auto-approval limit; the clock
    runs from the first webhook sent to the last case's commit to `closed`.

In both the workers are started first and idle (process start-up is not measured), the work
is then produced, and the run ends when all of it is done: jobs/s and cases/s are comparable
and their ratio is printed. Bounded: N is fixed and every wait has a deadline.

--profile then runs the same case workload once more with ONE SimpleWorker in this process
under cProfile and prints where its time goes.

    .venv/bin/python -m bench.pipeline [--jobs 2000] [--cases 300] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import pstats
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.common import (
    BIN,
    PG_URL,
    REDIS_URL,
    REFUNDBRIDGE,
    REPO,
    WEBHOOK_PATH,
    BenchConfig,
    Proc,
    analyze_postgres,
    build_body,
    cpu_by_comm,
    cpu_delta,
    cpu_seconds,
    flush_redis,
    free_port,
    migrate,
    redis_client,
    reset_postgres,
    signed_headers,
    wait_http,
    write_config,
)

TARGET_RATIO = 0.2
NOOP_QUEUE = "bench-noop"


# ---------------------------------------------------------------- helpers


def wait_workers(queue_name: str, count: int, procs: list[Proc], timeout: float = 60) -> None:
    from rq import Queue, Worker

    redis = redis_client()
    queue = Queue(queue_name, connection=redis)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited early:\n{proc.tail()}")
        if Worker.count(connection=redis, queue=queue) >= count:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{count} workers did not register on '{queue_name}' in {timeout} s")


def worker_stats(queue_name: str) -> tuple[int, int]:
    """(successful, failed) job counts over the workers listening on `queue_name`."""
    from rq import Queue, Worker

    redis = redis_client()
    workers = Worker.all(connection=redis, queue=Queue(queue_name, connection=redis))
    return (sum(w.successful_job_count for w in workers),
            sum(w.failed_job_count for w in workers))


def snapshot_cpu(procs: list[Proc]) -> dict[str, Any]:
    return {
        "procs": {p.name: cpu_seconds(p.pid) or 0.0 for p in procs},
        "postgres": cpu_by_comm("postgres"),
        "redis": cpu_by_comm("redis-server"),
    }


def cpu_used(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    used: dict[str, float] = {}
    for name, value in after["procs"].items():
        group = name.rstrip("0123456789-")
        used[group] = used.get(group, 0.0) + value - before["procs"].get(name, 0.0)
    used["postgres"] = cpu_delta(before["postgres"], after["postgres"])
    used["redis-server"] = cpu_delta(before["redis"], after["redis"])
    return used


# ---------------------------------------------------------------- (a) no-op baseline


def noop_baseline(jobs: int, worker_class: str, workers: int, work: Path) -> dict[str, Any]:
    from rq import Queue

    flush_redis()
    redis = redis_client()
    tag = worker_class.rsplit(".", 1)[-1].lower()
    procs = [Proc(f"noop-{tag}-{i}", [str(BIN / "rq"), "worker", "-u", REDIS_URL, "-w",
                                       worker_class, "-P", str(REPO), NOOP_QUEUE],
                  work / f"noop-{tag}-{i}.log") for i in range(workers)]
    try:
        wait_workers(NOOP_QUEUE, workers, procs)
        queue = Queue(NOOP_QUEUE, connection=redis)
        # The same job options RefundBridge's dispatcher uses.
        data = [Queue.prepare_data("bench.noop.noop", job_id=f"noop-{uuid.uuid4().hex}",
                                   timeout=120, result_ttl=0, failure_ttl=7 * 24 * 3600)
                for _ in range(jobs)]
        before = snapshot_cpu(procs)
        started = time.perf_counter()
        for chunk in range(0, jobs, 500):  # enqueue_many writes one pipeline per call
            queue.enqueue_many(data[chunk:chunk + 500])
        enqueued = time.perf_counter() - started
        deadline = started + max(60.0, jobs / 20)
        done = failed = 0
        while time.perf_counter() < deadline:
            done, failed = worker_stats(NOOP_QUEUE)
            if done + failed >= jobs:
                break
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        after = snapshot_cpu(procs)
    finally:
        for proc in procs:
            proc.stop()
    flush_redis()
    if done + failed < jobs:
        raise RuntimeError(f"no-op baseline ({worker_class}): only {done}/{jobs} jobs done")
    return {"worker_class": worker_class, "workers": workers, "jobs": jobs, "failed": failed,
            "seconds": elapsed, "enqueue_seconds": enqueued, "jobs_per_s": jobs / elapsed,
            "cpu_s": cpu_used(before, after)}


# ---------------------------------------------------------------- (b) RefundBridge


def case_bodies(cases: int, returns: float) -> list[bytes]:
    tag = uuid.uuid4().hex[:8]
    every = round(1 / returns) if returns > 0 else 0
    return [build_body(i, tag, kind="return_and_refund"
                       if every and i % every == every - 1 else "refund_only")
            for i in range(cases)]


def send_webhooks(base: str, config: BenchConfig, bodies: list[bytes],
                  concurrency: int = 8) -> Counter[int]:
    statuses: Counter[int] = Counter()
    local = threading.local()

    def post(body: bytes) -> int:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base, timeout=30)
        answer = local.client.post(WEBHOOK_PATH, content=body,
                                   headers=signed_headers(config.secret, body))
        return answer.status_code

    with ThreadPoolExecutor(concurrency) as pool:
        for status in pool.map(post, bodies):
            statuses[status] += 1
    return statuses


class CaseWatcher:
    """Counts cases by state in the database and plays the warehouse for returns."""

    def __init__(self, base: str, config: BenchConfig) -> None:
        from sqlalchemy import create_engine

        from refundbridge.store.db import normalize_url

        self.engine = create_engine(normalize_url(config.database_url))
        self.http = httpx.Client(base_url=base, timeout=30,
                                 headers={"Authorization": f"Bearer {config.operator_token}"})
        self.received: set[str] = set()

    def states(self) -> Counter[str]:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT state, count(*) FROM cases GROUP BY state"))
            return Counter({state: int(n) for state, n in rows})

    def receive_goods(self) -> int:
        """POST a passed inspection for every case waiting for its goods."""
        from sqlalchemy import text

        with self.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT id, request FROM cases WHERE state = 'awaiting_return'")).all()
        posted = 0
        for case_id, request in rows:
            if case_id in self.received:
                continue
            lines = request["lines"] if isinstance(request, dict) else json.loads(request)[
                "lines"]
            answer = self.http.post(f"/v1/cases/{case_id}/receipt", json={"lines": [
                {"line": i, "seal_intact": True, "condition": "as_new",
                 "inspector": "bench.warehouse", "passed": True}
                for i in range(len(lines))]})
            if answer.status_code < 300:
                self.received.add(case_id)
                posted += 1
        return posted

    def last_closed_at(self) -> datetime:
        from sqlalchemy import text

        with self.engine.connect() as conn:
            value = conn.execute(text(
                "SELECT max(updated_at) FROM cases WHERE state = 'closed'")).scalar_one()
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    def wait_closed(self, total: int, deadline: float, on_tick: Any = None) -> Counter[str]:
        states: Counter[str] = Counter()
        while time.monotonic() < deadline:
            states = self.states()
            if states.get("closed", 0) >= total:
                break
            if states.get("awaiting_return"):
                self.receive_goods()
            if on_tick is not None:
                on_tick()
            # The finish is read from the cases' own times (`last_closed_at`), so a slower
            # poll costs no accuracy, and its count, a scan of every case, stays off the
            # CPU the workers and PostgreSQL share.
            time.sleep(0.25)
        return states

    def close(self) -> None:
        self.http.close()
        self.engine.dispose()


def setup_refundbridge(work: Path, name: str) -> BenchConfig:
    flush_redis()
    reset_postgres()
    config = write_config(work, name, PG_URL)
    migrate(config, work / f"{name}.log")
    return config


def refundbridge_pipeline(cases: int, returns: float, workers: int, work: Path,
                          timeout: float, warmup: int = 60) -> dict[str, Any]:
    config = setup_refundbridge(work, "pipeline")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = Proc("api", [REFUNDBRIDGE, "serve", "--config", str(config.path), "--port",
                       str(port)], work / "pipeline-api.log")
    procs = [api]
    watcher: CaseWatcher | None = None
    try:
        wait_http(f"{base}/healthz", api)
        procs += [Proc(f"worker-{i}", [REFUNDBRIDGE, "worker", "--config", str(config.path)],
                       work / f"pipeline-worker-{i}.log") for i in range(workers)]
        wait_workers("refundbridge", workers, procs)
        watcher = CaseWatcher(base, config)
        # A first batch to its end, then the ANALYZE autovacuum would run (off on this
        # machine): the measured cases meet plans made for tables that hold cases.
        send_webhooks(base, config, case_bodies(warmup, returns))
        watcher.wait_closed(warmup, time.monotonic() + timeout)
        analyze_postgres()
        done_before, _ = worker_stats("refundbridge")
        bodies = case_bodies(cases, returns)
        before = snapshot_cpu(procs)
        started_wall = datetime.now(UTC)
        started = time.perf_counter()
        statuses = send_webhooks(base, config, bodies)
        sent = time.perf_counter() - started
        states = watcher.wait_closed(warmup + cases, time.monotonic() + timeout)
        after = snapshot_cpu(procs)
        polled = time.perf_counter() - started
        states["closed"] -= min(warmup, states.get("closed", 0))
        closed = states.get("closed", 0)
        finished = watcher.last_closed_at() if closed else None
        done, failed = worker_stats("refundbridge")
        done -= done_before
    finally:
        if watcher is not None:
            watcher.close()
        for proc in procs:
            proc.stop()
    flush_redis()
    if closed < cases:
        raise RuntimeError(f"only {closed}/{cases} cases closed within {timeout} s: "
                           f"{dict(states)}; see {work}")
    assert finished is not None
    elapsed = (finished - started_wall).total_seconds()
    return {"cases": cases, "returns": returns, "workers": workers,
            "webhook_status": {str(k): v for k, v in statuses.items()},
            "send_seconds": sent, "seconds": elapsed, "seconds_polled": polled,
            "cases_per_s": cases / elapsed, "jobs": done, "failed_jobs": failed,
            "jobs_per_case": done / cases, "states": dict(states),
            "cpu_s": cpu_used(before, after)}


# ---------------------------------------------------------------- profile


BUCKETS = [
    ("psycopg (incl. waiting for PostgreSQL)", ("/psycopg/", "psycopg_binary")),
    ("sqlalchemy", ("/sqlalchemy/",)),
    ("rq", ("/rq/",)),
    ("redis-py (incl. waiting for Redis)", ("/redis/",)),
    ("pydantic / email-validator", ("/pydantic", "email_validator")),
    ("babel", ("/babel/",)),
    ("tenacity", ("/tenacity/",)),
    ("refundbridge code", ("/work/main/core/", "/work/main/store/", "/work/main/workers/",
                           "/work/main/connectors/", "/work/main/refundbridge/")),
    ("logging", ("/logging/",)),
    ("json / hashlib / uuid / datetime", ("/json/", "hashlib", "uuid", "_strptime")),
]


def bucket_of(filename: str, funcname: str) -> str:
    for name, needles in BUCKETS:
        if any(n in filename or n in funcname for n in needles):
            return name
    if filename == "~":
        if "psycopg" in funcname or "select" in funcname or "poll" in funcname:
            return "psycopg (incl. waiting for PostgreSQL)"
        if "socket" in funcname:
            return "socket I/O (Redis, PostgreSQL)"
        return "builtins (other)"
    return "other"


def print_profile(profile: cProfile.Profile, top: int = 10) -> dict[str, Any]:
    stats = pstats.Stats(profile)
    total = stats.total_tt  # type: ignore[attr-defined]
    buckets: Counter[str] = Counter()
    steps: dict[str, tuple[int, float]] = {}
    for (filename, _line, funcname), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        buckets[bucket_of(filename, funcname)] += tt
        if filename.endswith("core/services.py") and funcname in {
                "evaluate", "issue_refund", "adjust_stock", "send_notifications"}:
            steps[funcname] = (nc, ct)
        if filename.endswith("rq/worker/base.py") and funcname == "perform_job":
            steps["(rq perform_job, all jobs)"] = (nc, ct)
        if filename.endswith("rq/worker/base.py") and funcname == "execute_job":
            steps["(rq execute_job, all jobs)"] = (nc, ct)
    print(f"\nprofile: {total:.2f} s of profiled wall time (self time by package)")
    for name, seconds in buckets.most_common():
        print(f"  {name:<42}{seconds:7.2f} s {seconds / total * 100:5.1f} %")
    print("\nper step (calls, cumulative s, ms per call):")
    for name, (calls, seconds) in sorted(steps.items(), key=lambda kv: -kv[1][1]):
        print(f"  {name:<32}{calls:6d}{seconds:8.2f}{seconds / max(calls, 1) * 1000:8.2f}")
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(order).print_stats(
            top if order == "tottime" else 2 * top)
        text = out.getvalue()
        print(f"\ntop {top if order == 'tottime' else 2 * top} by {order}:")
        print(text[text.index("   ncalls"):].rstrip())
    return {"total_s": total, "buckets": dict(buckets), "steps": steps}


def profile_pipeline(cases: int, returns: float, work: Path, timeout: float,
                     top: int) -> dict[str, Any]:
    """Webhooks first (through the API, no worker running), then one in-process SimpleWorker
    under cProfile relays and drains everything; between bursts this script receives
    returned goods."""
    from refundbridge.bootstrap import bootstrap
    from refundbridge.config.settings import load_settings
    from refundbridge.workers import runtime
    from refundbridge.workers.runner import drain, make_worker

    config = setup_refundbridge(work, "profile")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    api = Proc("api", [REFUNDBRIDGE, "serve", "--config", str(config.path), "--port",
                       str(port)], work / "profile-api.log")
    watcher: CaseWatcher | None = None
    try:
        wait_http(f"{base}/healthz", api)
        watcher = CaseWatcher(base, config)
        statuses = send_webhooks(base, config, case_bodies(cases, returns))
        # As `refundbridge worker` does: INFO logging on the root logger (here to a file).
        logging.basicConfig(level=logging.INFO, filename=str(work / "profile-worker.log"),
                            force=True)
        container = bootstrap(load_settings(config.path))
        runtime.install(container)
        worker = make_worker(container)
        profile = cProfile.Profile()
        deadline = time.monotonic() + timeout
        busy = 0.0
        states: Counter[str] = Counter()
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            profile.enable()
            drain(container, worker)  # relay the API's outbox rows, then work the queue
            profile.disable()
            busy += time.perf_counter() - t0
            states = watcher.states()
            if states.get("closed", 0) >= cases:
                break
            if not watcher.receive_goods():
                time.sleep(0.05)
        container.close()
    finally:
        if watcher is not None:
            watcher.close()
        api.stop()
        logging.basicConfig(level=logging.WARNING, force=True)
    flush_redis()
    closed = states.get("closed", 0)
    print(f"\nprofile run: {cases} webhooks ({dict(statuses)}), {closed} closed by ONE "
          f"in-process SimpleWorker in {busy:.2f} s under cProfile "
          f"({closed / busy:.0f} cases/s, inflated by the profiler)")
    result = print_profile(profile, top)
    result.update({"cases": cases, "closed": closed, "busy_s": busy})
    return result


# ---------------------------------------------------------------- entry points


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="rb-bench-pipeline-"))
    results: dict[str, Any] = {"work_dir": str(work)}
    try:
        print(f"pipeline: {args.jobs} no-op jobs, {args.cases} cases, {args.workers} workers "
              f"(logs in {work})", flush=True)
        results["noop"] = noop_baseline(args.jobs, "rq.SimpleWorker", args.workers, work)
        print(f"  no-op SimpleWorker x{args.workers}: {results['noop']['jobs_per_s']:,.0f} "
              "jobs/s", flush=True)
        if args.forking_jobs:
            results["noop_forking"] = noop_baseline(args.forking_jobs, "rq.Worker",
                                                    args.workers, work)
            print(f"  no-op forking Worker x{args.workers}: "
                  f"{results['noop_forking']['jobs_per_s']:,.0f} jobs/s", flush=True)
        results["refundbridge"] = refundbridge_pipeline(args.cases, args.returns, args.workers,
                                                        work, args.timeout)
        rb = results["refundbridge"]
        print(f"  RefundBridge x{args.workers}: {rb['cases_per_s']:,.1f} cases/s", flush=True)
        # The machine's speed drifts within minutes (a shared host): the baseline is
        # measured again after RefundBridge and the ratio uses the mean of the two.
        again = noop_baseline(args.jobs, "rq.SimpleWorker", args.workers, work)
        noop = results["noop"]
        noop["jobs_per_s_before_after"] = [noop["jobs_per_s"], again["jobs_per_s"]]
        noop["jobs_per_s"] = (noop["jobs_per_s"] + again["jobs_per_s"]) / 2
        print(f"  no-op SimpleWorker x{args.workers} again: {again['jobs_per_s']:,.0f} "
              "jobs/s", flush=True)
        rb["ratio"] = rb["cases_per_s"] / noop["jobs_per_s"]
        if args.profile:
            results["profile"] = profile_pipeline(args.profile_cases or args.cases,
                                                  args.returns, work, args.timeout, args.top)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return results


def print_table(results: dict[str, Any]) -> None:
    noop, rb = results["noop"], results["refundbridge"]
    print()
    print(f"{'pipeline':<34}{'per s':>9}{'ratio':>8}{'seconds':>9}")
    print(f"{'no-op jobs, SimpleWorker x' + str(noop['workers']):<34}"
          f"{noop['jobs_per_s']:>9,.0f}{1:>8.2f}{noop['seconds']:>9.2f}")
    print("  CPU ms per no-op job: " + ", ".join(
        f"{name} {seconds / noop['jobs'] * 1000:.2f}" for name, seconds in noop["cpu_s"].items()
        if name != "postgres"))
    forking = results.get("noop_forking")
    if forking:
        print(f"{'no-op jobs, forking Worker x' + str(forking['workers']):<34}"
              f"{forking['jobs_per_s']:>9,.0f}{forking['jobs_per_s'] / noop['jobs_per_s']:>8.2f}"
              f"{forking['seconds']:>9.2f}")
    print(f"{'RefundBridge cases to closed x' + str(rb['workers']):<34}"
          f"{rb['cases_per_s']:>9,.1f}{rb['ratio']:>8.3f}{rb['seconds']:>9.2f}")
    print(f"  {rb['jobs']} jobs for {rb['cases']} cases ({rb['jobs_per_case']:.1f} per case, "
          f"{rb['jobs'] / rb['seconds']:.0f} jobs/s), {rb['failed_jobs']} failed; "
          f"webhooks {rb['webhook_status']} sent in {rb['send_seconds']:.2f} s")
    cpu = rb["cpu_s"]
    print("  CPU ms per case: " + ", ".join(
        f"{name} {seconds / rb['cases'] * 1000:.1f}" for name, seconds in cpu.items()))
    met = "met" if rb["ratio"] >= TARGET_RATIO else "NOT met"
    print(f"target: ratio >= {TARGET_RATIO} -> {met}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", type=int, default=2000, help="no-op jobs for the baseline")
    p.add_argument("--forking-jobs", type=int, default=400,
                   help="no-op jobs for the forking-Worker comparison (0: skip)")
    p.add_argument("--cases", type=int, default=300)
    p.add_argument("--returns", type=float, default=0.1,
                   help="share of return_and_refund requests (goods received by the script)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=180, help="seconds before giving up")
    p.add_argument("--profile", action="store_true",
                   help="also profile one in-process worker over the same workload")
    p.add_argument("--profile-cases", type=int, default=0, help="default: --cases")
    p.add_argument("--top", type=int, default=10, help="profile entries to print")
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs, configs)")


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
