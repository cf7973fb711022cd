"""An HTTP/1.1 load generator for signed webhooks (run as its own process): closed loop by
default, open loop at a fixed rate with `--rate`.

Every request is built before the load starts: a unique ~2 KB body, signed with the shop
secret and a fresh timestamp (well inside the 300 s tolerance for the length of a run), and
rendered to raw bytes. During the run each of `--connections` keep-alive connections writes
one request and reads one response at a time (uvloop, no HTTP library on the hot path), so
the generator costs a few microseconds per request and the server is what saturates. The
same generator and the same pool shape are used for the bare endpoint, which is what makes
the ratio meaningful.

Prints one JSON object: requests/s, p50/p90/p99 (ms), status counts, the generator's own CPU
use, and the CPU seconds per request of watched processes during the measured window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    build_body,
    cpu_by_comm,
    cpu_delta,
    cpu_seconds,
    signed_headers,
)


def build_pool(count: int, host: str, port: int, path: str, secret: str, tag: str,
               size: int) -> list[bytes]:
    pool = []
    ts = int(time.time())
    for index in range(count):
        body = build_body(index, tag, size=size)
        headers = signed_headers(secret, body, ts)
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: {headers['Content-Type']}\r\n"
                f"X-RefundBridge-Signature: {headers['X-RefundBridge-Signature']}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        pool.append(head + body)
    return pool


class Run:
    def __init__(self, pool: list[bytes], unique: bool, warmup: float, duration: float,
                 watch_pids: list[int], watch_comms: list[str], rate: float = 0.0) -> None:
        self.pool = pool
        self.rate = rate
        self.unique = unique
        self.next = 0
        self.exhausted = False
        self.start = 0.0
        self.measure_from = 0.0
        self.measure_to = 0.0
        self.warmup = warmup
        self.duration = duration
        self.latencies: list[float] = []
        self.status: Counter[int] = Counter()
        self.status_all: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.last_done = 0.0
        self.watch_pids = watch_pids
        self.watch_comms = watch_comms
        self.cpu_before: dict[str, float] = {}
        self.cpu_after: dict[str, float] = {}
        self._snap_before: dict[str, object] = {}
        self.gen_cpu_before = 0.0
        self.gen_cpu_after = 0.0

    def take(self) -> bytes | None:
        if self.unique and self.next >= len(self.pool):
            self.exhausted = True
            return None
        request = self.pool[self.next % len(self.pool)]
        self.next += 1
        return request

    def snapshot(self) -> dict[str, object]:
        snap: dict[str, object] = {}
        for pid in self.watch_pids:
            snap[f"pid:{pid}"] = cpu_seconds(pid) or 0.0
        for comm in self.watch_comms:
            snap[f"comm:{comm}"] = cpu_by_comm(comm)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        snap["self"] = usage.ru_utime + usage.ru_stime
        return snap


async def connection(run: Run, host: str, port: int) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        run.errors[f"connect: {exc}"] += 1
        return
    now = time.perf_counter
    try:
        while True:
            if run.rate:
                # Open loop: request n is due at start + n / rate whether or not the
                # earlier ones were answered, and its latency counts from then, so a
                # server that falls behind shows its queue (no coordinated omission).
                t0 = run.start + run.next / run.rate
                if t0 >= run.measure_to:
                    break
                request = run.take()
                if request is None:
                    break
                if t0 > now():
                    await asyncio.sleep(t0 - now())
            else:
                t0 = now()
                if t0 >= run.measure_to:
                    break
                request = run.take()
                if request is None:
                    break
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            lowered = head.lower()
            at = lowered.find(b"content-length:")
            if at < 0:
                run.errors["no content-length"] += 1
                break
            length = int(lowered[at + 15:lowered.find(b"\r\n", at)])
            if length:
                await reader.readexactly(length)
            t1 = now()
            run.last_done = t1
            run.status_all[status] += 1
            if run.measure_from <= t1 < run.measure_to:
                run.latencies.append(t1 - t0)
                run.status[status] += 1
    except (OSError, asyncio.IncompleteReadError) as exc:
        run.errors[type(exc).__name__] += 1
    finally:
        writer.close()


async def drive(run: Run, host: str, port: int, connections: int) -> None:
    run.start = time.perf_counter()
    run.measure_from = run.start + run.warmup
    run.measure_to = run.measure_from + run.duration
    loop = asyncio.get_running_loop()
    snap_at_start = loop.call_at(loop.time() + run.warmup,
                                 lambda: run._snap_before.update(run.snapshot()))
    tasks = [asyncio.create_task(connection(run, host, port)) for _ in range(connections)]
    await asyncio.gather(*tasks)
    snap_at_start.cancel()
    run.cpu_after_snap = run.snapshot()  # type: ignore[attr-defined]


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def cpu_use(run: Run, measured: int, window: float
            ) -> tuple[dict[str, float | None], float | None]:
    """CPU ms per request of each watched process, and the cores this generator used."""
    before = run._snap_before
    after = run.cpu_after_snap  # type: ignore[attr-defined]
    cpu: dict[str, float | None] = {}
    if before and measured:
        for key, value in after.items():
            if key == "self":
                continue
            old = before.get(key)
            if isinstance(value, dict):
                delta = cpu_delta(old if isinstance(old, dict) else {}, value)
            else:
                delta = float(value) - float(old or 0.0)  # type: ignore[arg-type]
            cpu[key] = delta / measured * 1000
    gen_cpu = (float(after["self"]) - float(before.get("self", 0.0))) / window if before else None  # type: ignore[arg-type]
    return cpu, gen_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/webhooks/bench/generic")
    parser.add_argument("--secret", required=True)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--pool", type=int, default=50_000,
                        help="requests built before the run (the cap when --unique)")
    parser.add_argument("--unique", action="store_true",
                        help="never send a body twice (stop early if the pool runs out)")
    parser.add_argument("--size", type=int, default=2048, help="body size in bytes")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="requests/s offered, open loop (0: closed loop, as fast as "
                             "the server answers)")
    parser.add_argument("--watch-pid", type=int, action="append", default=[])
    parser.add_argument("--watch-comm", action="append", default=[])
    args = parser.parse_args()

    try:
        import uvloop
        uvloop.install()
        loop_name = "uvloop"
    except ImportError:  # pragma: no cover
        loop_name = "asyncio"

    built = time.perf_counter()
    pool = build_pool(args.pool, args.host, args.port, args.path, args.secret,
                      uuid.uuid4().hex[:8], args.size)
    build_seconds = time.perf_counter() - built
    run = Run(pool, args.unique, args.warmup, args.duration, args.watch_pid, args.watch_comm,
              args.rate)
    asyncio.run(drive(run, args.host, args.port, args.connections))

    end = min(run.measure_to, run.last_done) if run.exhausted else run.measure_to
    window = max(1e-9, end - run.measure_from)
    latencies = sorted(run.latencies)
    measured = len(latencies)
    cpu, gen_cpu = cpu_use(run, measured, window)
    result = {
        "loop": loop_name,
        "connections": args.connections,
        "offered_rps": args.rate or None,
        "body_bytes": len(pool[0].split(b"\r\n\r\n", 1)[1]) if pool else 0,
        "pool": len(pool),
        "pool_build_s": round(build_seconds, 2),
        "exhausted": run.exhausted,
        "window_s": round(window, 3),
        "requests": measured,
        "rps": measured / window,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p90_ms": percentile(latencies, 0.90) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": (latencies[-1] * 1000) if latencies else float("nan"),
        "status": {str(k): v for k, v in sorted(run.status.items())},
        "status_all": {str(k): v for k, v in sorted(run.status_all.items())},
        "errors": dict(run.errors),
        "loadgen_cpu": gen_cpu,  # cores used by this generator while measuring
        "cpu_ms_per_request": cpu,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
