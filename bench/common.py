"""Shared helpers: services, configuration, processes, signed payloads, CPU accounting."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REFUNDBRIDGE = str(BIN / "refundbridge")
PYTHON = sys.executable

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DB = "refundbridge_bench"
PG_URL = f"postgresql://postgres@127.0.0.1:5432/{PG_DB}"
REDIS_URL = "redis://127.0.0.1:6379/12"  # never db 0 or 11
SHOP = "bench"
CONNECTOR = "generic"
WEBHOOK_PATH = f"/webhooks/{SHOP}/{CONNECTOR}"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- services


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def reset_postgres(dbname: str = PG_DB) -> None:
    """Drop and recreate the benchmark database (never any other)."""
    import psycopg

    assert dbname.startswith("refundbridge_bench"), dbname
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{dbname}"')


def analyze_postgres(dbname: str = PG_DB) -> None:
    """What autovacuum's first ANALYZE does on a production server: the planner learns the
    tables' sizes and columns, and the statements prepared on empty tables are planned again.
    This machine's PostgreSQL runs with autovacuum off, so the benchmarks do it themselves,
    once, after their warm-up (see README, "A fresh database's plans")."""
    import psycopg

    assert dbname.startswith("refundbridge_bench"), dbname
    with psycopg.connect(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{dbname}",
                         autocommit=True) as conn:
        conn.execute("ANALYZE")


def flush_redis() -> None:
    from redis import Redis

    redis = Redis.from_url(REDIS_URL)
    assert redis.connection_pool.connection_kwargs.get("db") == 12
    redis.flushdb()
    redis.close()


def redis_client() -> Any:
    from redis import Redis

    return Redis.from_url(REDIS_URL)


# ---------------------------------------------------------------- configuration


@dataclass(frozen=True)
class BenchConfig:
    path: Path
    database_url: str
    secret: str
    operator_token: str


def write_config(directory: Path, name: str, database_url: str) -> BenchConfig:
    """A production-shaped TOML file: long random secrets, sandbox connectors at zero latency,
    auto-approval limits that every benchmark request fits in."""
    secret = secrets.token_hex(32)
    token = secrets.token_hex(32)
    text = f"""\
database_url = "{database_url}"
redis_url = "{REDIS_URL}"
operator_tokens = ["{token}"]

[shops.{SHOP}]
name = "Bench Pharmacy"
storefront = "generic"
payment = "sandbox_payment"
erp = "sandbox_erp"
notifier = "sandbox_notifier"

[shops.{SHOP}.policy]
refund_timing = "on_receipt"
auto_approve_limits = {{ CNY = "500", USD = "80", EUR = "80", JPY = "10000" }}

[shops.{SHOP}.generic]
secret = "{secret}"

[shops.{SHOP}.sandbox_payment]
latency_ms = 0
transient_failure_rate = 0

[shops.{SHOP}.sandbox_erp]
latency_ms = 0
transient_failure_rate = 0

[shops.{SHOP}.sandbox_notifier]
latency_ms = 0
transient_failure_rate = 0
"""
    path = directory / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return BenchConfig(path, database_url, secret, token)


def migrate(config: BenchConfig, log: Path) -> None:
    with log.open("ab") as out:
        subprocess.run([REFUNDBRIDGE, "db", "upgrade", "--config", str(config.path)],
                       check=True, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


# ---------------------------------------------------------------- processes


class Proc:
    """A subprocess we started; stopped by its own pid only."""

    def __init__(self, name: str, cmd: Sequence[str], log: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log = log
        self._out = log.open("ab")
        self.popen = subprocess.Popen(list(cmd), stdout=self._out, stderr=subprocess.STDOUT,
                                      cwd=REPO, env={**os.environ, **(env or {})})

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._out.close()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_http(url: str, proc: Proc, timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.tail()}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not answer {url} within {timeout} s:\n{proc.tail()}")


# ---------------------------------------------------------------- payloads

LINES = [
    # sku, name, unit price CNY, class, sterile
    ("GLU-STRIP-50", "血糖试纸 Glucose test strips, 50 pcs", "39.00", "II", True),
    ("DRESS-STER-10", "无菌敷贴 Sterile wound dressing 10x10 cm, box of 10", "35.50", "II", True),
    ("BP-CUFF-ARM-M", "上臂式电子血压计袖带 Upper-arm BP cuff, size M", "29.90", "II", False),
    ("THERM-IR-01", "红外额温枪 Infrared forehead thermometer", "59.00", "II", False),
    ("MASK-N95-20", "医用防护口罩 Medical protective masks N95, 20 pcs", "25.00", "II", False),
]
# Reasons the rules may approve without a person (a defect goes to review, R06).
REASONS = ["changed_mind", "no_longer_needed", "ordered_by_mistake", "damaged_on_arrival",
           "wrong_item", "changed_mind"]
GTIN = "06901234567892"  # a valid GTIN-14: a scan with a bad check digit goes to review (R16)


SHAPES = 6  # bodies differ by reason code and quantities in 6 shapes; ids make each unique


def build_body(index: int, tag: str, *, kind: str = "refund_only", size: int = 2048) -> bytes:
    """A realistic generic webhook body of about `size` bytes that the rules approve on
    their own (amount within the CNY limit, a reason that needs no person), on its own
    order (the over-refund guard never denies it) and with its own external id."""
    template = _template(index % SHAPES, tag, kind, size)
    return template.replace(b"~~~~~~~", b"%07d" % (index % 10_000_000))


_TEMPLATES: dict[tuple[int, str, str, int], bytes] = {}


def _template(shape: int, tag: str, kind: str, size: int) -> bytes:
    key = (shape, tag, kind, size)
    if key in _TEMPLATES:
        return _TEMPLATES[key]
    now = datetime.now(UTC)
    delivered = now - timedelta(days=2)
    lines: list[dict[str, Any]] = []
    expiry = (now + timedelta(days=400)).date()
    for n, (sku, name, price, klass, sterile) in enumerate(LINES):
        lines.append({
            "sku": sku, "name": name, "quantity": 1 + (shape + n) % 2, "unit_price": price,
            "device_class": klass, "lot": f"L24{shape}{n}",
            "expiry_date": expiry.isoformat(),
            "udi": f"(01){GTIN}(17){expiry:%y%m%d}(10)L24{shape}{n}(21)S~~~~~~~",
            "sterile": sterile, "package_opened": False, "cold_chain": False,
        })
    amount = str(sum(li["quantity"] * Decimal(li["unit_price"]) for li in lines))
    body: dict[str, Any] = {
        "external_id": f"bench-{tag}-~~~~~~~",
        "kind": kind,
        "order": {
            "id": f"SO-{tag}-~~~~~~~", "currency": "CNY", "paid_total": amount,
            "placed_at": (delivered - timedelta(days=2)).isoformat(),
            "delivered_at": delivered.isoformat(),
            "payment": {"provider": "sandbox_payment", "reference": f"pay_{tag}_~~~~~~~"},
        },
        # A customer per request, so the frequent-refund rule (R19) stays quiet.
        "customer": {"id": f"cust-{shape}-~~~~~~~", "type": "consumer",
                     "email": "customer~~~~~~~@example.com",
                     "locale": "zh-CN"},
        "lines": lines,
        "reason": {"code": REASONS[shape % len(REASONS)], "text": ""},
        "requested_amount": amount,
        "requested_at": now.isoformat(),
    }
    raw = json.dumps(body, ensure_ascii=False).encode()
    body["reason"]["text"] = "x" * max(0, size - len(raw))  # pad the free text
    _TEMPLATES[key] = json.dumps(body, ensure_ascii=False).encode()
    return _TEMPLATES[key]


def signed_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    from refundbridge.connectors.generic.webhooks import sign

    return {"Content-Type": "application/json",
            "X-RefundBridge-Signature": sign(secret, body, timestamp or int(time.time()))}


# ---------------------------------------------------------------- CPU accounting


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of one process, in seconds (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_by_comm(comm: str) -> dict[int, float]:
    """CPU seconds of every process named `comm` (e.g. postgres, redis-server)."""
    found: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm", "rb") as f:
                if f.read().strip() != comm.encode():
                    continue
        except OSError:
            continue
        value = cpu_seconds(int(entry))
        if value is not None:
            found[int(entry)] = value
    return found


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


def fmt(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def timed(call: Callable[[], Any], repeat: int) -> float:
    """The median of `repeat` runs, in ms, after two warm-up runs."""
    for _ in range(2):
        call()
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)
