"""Scale benchmark: does a database holding years of cases slow the hot paths down?

Grows one PostgreSQL database (`refundbridge_bench_scale`, dropped and recreated) through
10k, 100k and 1M stored cases and measures the same figures at each size, printed as the
ratio to the figure at the first size measured in this same run (target: ≤ 1.5 at the
largest size).

What is loaded (COPY through psycopg, in batches, generated in a thread while the previous
batch is copied): cases over 5 shops (`bench-0`…`bench-4`), about 200k customers and two
years, with their request and details JSON exactly as `store/mapping.py` writes them (a
sample of every state is read back with `case_from_row`), about 11 audit events per settled
case, their outbox rows (done, except the open work of open cases), inbox keys, case_units
and case_rules rows. The business runs at the same rate at every size: the newest 10,000
cases (the last 180 days, where every open case and every deadline the console shows lives)
are the same at every size; growing adds older, settled history (180 days to two years
back, interleaved in time, `seq` still growing with time). So every figure below reads the
same recent rows at every size, and any growth is the cost of the stored history.

Measured at each size, after VACUUM (ANALYZE) and a CHECKPOINT (what autovacuum does in
production; a bulk load would otherwise be measured half-written):

  ingest       signed generic webhooks through the real handler in-process (HMAC,
               validation, inbox + case + event + outbox committed), serially, a fixed count
  evaluate     `core.services.decisions.evaluate` on new cases of customers with recent
               history (R19's read), the recall list, the order's held units and reserved money
  console      the case list's first page and a deep page (`store.console_reads.list_page`)
  review queue `store.review_queue.review_queue`
  reconciler   `store.outbox.open_work` and `store.outbox.idle_cases`
  KPIs         `store.kpis.kpi_report` over the last 30 days

The read figures are for an operator of four shops (`bench-0`…`bench-3`); the cases this
benchmark itself adds (ingest, evaluation) go to `bench-4`, so they do not change what the
reads read from one size to the next.

    .venv/bin/python -m bench.scale                          # 10k, 100k, 1M (see README)
    .venv/bin/python -m bench.scale --sizes 10000,100000     # quicker
    .venv/bin/python -m bench.scale --plans-stdout           # print the plans too
    .venv/bin/python -m bench.scale --revision 0012          # without migration 0013

EXPLAIN (ANALYZE, BUFFERS) of every statement the hot paths ran is written at the largest
size to bench/results/scale-plans.txt.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import queue
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import REPO, build_body, reset_postgres, signed_headers, timed

DB = "refundbridge_bench_scale"
URL = f"postgresql://postgres@127.0.0.1:5432/{DB}"
REDIS = "redis://127.0.0.1:6379/7"  # only configured: the bench never enqueues a job
SHOPS = [f"bench-{n}" for n in range(5)]
READ_SHOPS = frozenset(SHOPS[:4])  # what the reads see
INGEST_SHOP = SHOPS[4]  # where the cases this benchmark adds go
UNIVERSE = 1_000_000  # the largest history; k = 0 is the oldest case, k = UNIVERSE-1 the newest
RECENT = 10_000  # the newest cases, the same at every size
RECENT_DAYS = 180
HISTORY_DAYS = 730
CUSTOMERS = 200_000
TARGET = 1.5
RESULTS = REPO / "bench" / "results"

# State shares (of 100) in the recent segment and in the settled history.
RECENT_STATES = (["closed"] * 55 + ["denied"] * 8 + ["cancelled"] * 5
                 + ["awaiting_review"] * 8 + ["awaiting_return"] * 8 + ["refunding"] * 2
                 + ["refunded"] * 3 + ["received_goods"] * 3 + ["received"] * 2
                 + ["evaluating"] * 1 + ["approved"] * 2 + ["failed"] * 3)
HISTORY_STATES = ["closed"] * 860 + ["denied"] * 80 + ["cancelled"] * 58 + ["failed"] * 2
assert len(RECENT_STATES) == 100 and len(HISTORY_STATES) == 1000
MOVING = {"received", "evaluating", "refunding", "refunded", "received_goods"}
# The audit trail (event name, from, to) each state's cases went through, in order.
Trail = list[tuple[str, str | None, str | None]]
APPROVED_PATH: Trail = [("received", None, "received"),
                        ("start_evaluation", "received", "evaluating"),
                        ("approve", "evaluating", "approved")]
REFUND_PATH: Trail = [("start_refund", "approved", "refunding"),
               ("refund_started", None, None), ("confirm_refund", "refunding", "refunded"),
               ("notification_queued", None, None), ("notification_sent", None, None),
               ("write_back", None, None), ("stock_moved", None, None)]
TRAILS: dict[str, Trail] = {
    "received": APPROVED_PATH[:1],
    "evaluating": APPROVED_PATH[:2],
    "approved": APPROVED_PATH,
    "awaiting_review": [*APPROVED_PATH[:2], ("send_to_review", "evaluating", "awaiting_review"),
                        ("claimed", None, None)],
    "denied": [*APPROVED_PATH[:2], ("send_to_review", "evaluating", "awaiting_review"),
               ("deny", "awaiting_review", "denied"), ("notification_queued", None, None),
               ("notification_sent", None, None), ("write_back", None, None)],
    "cancelled": [*APPROVED_PATH[:2], ("send_to_review", "evaluating", "awaiting_review"),
                  ("cancel", "awaiting_review", "cancelled"),
                  ("notification_queued", None, None), ("notification_sent", None, None)],
    "awaiting_return": [*APPROVED_PATH, ("await_return", "approved", "awaiting_return"),
                        ("notification_queued", None, None), ("notification_sent", None, None)],
    "received_goods": [*APPROVED_PATH, ("await_return", "approved", "awaiting_return"),
                       ("receive_goods", "awaiting_return", "received_goods"),
                       ("inspected", None, None)],
    "refunding": [*APPROVED_PATH, *REFUND_PATH[:2]],
    "refunded": [*APPROVED_PATH, *REFUND_PATH[:3]],
    "closed": [*APPROVED_PATH, *REFUND_PATH, ("close", "refunded", "closed")],
    "failed": [*APPROVED_PATH, *REFUND_PATH[:2], ("fail", "refunding", "failed")],
}
# Outbox steps every case of a state ran (done), and the open one it waits on, if any.
STEPS: dict[str, tuple[list[str], str | None]] = {
    "received": ([], "evaluate"), "evaluating": ([], "evaluate"),
    "approved": (["evaluate"], "refund"), "awaiting_review": (["evaluate"], None),
    "denied": (["evaluate", "notify", "write_back"], None),
    "cancelled": (["evaluate", "notify"], None),
    "awaiting_return": (["evaluate", "notify"], None),
    "received_goods": (["evaluate", "notify"], "refund"),
    "refunding": (["evaluate"], "refund"), "refunded": (["evaluate", "refund"], "notify"),
    "closed": (["evaluate", "refund", "notify", "write_back", "stock"], None),
    "failed": (["evaluate"], None),
}

CASE_COLUMNS = ("seq", "id", "shop_id", "source", "external_id", "order_id", "customer_id",
                "kind", "state", "currency", "requested_minor", "approved_minor",
                "refunded_minor", "refund_timing", "refund_key", "refund_ref", "erp_reference",
                "request", "details", "version", "audit_seq", "audit_head", "created_at",
                "updated_at", "assignee", "due_on")
EVENT_COLUMNS = ("case_id", "seq", "at", "actor", "name", "from_state", "to_state", "data",
                 "prev_hash", "hash")
OUTBOX_COLUMNS = ("case_id", "step", "created_at", "dispatched_at", "dispatch_count", "done_at")
INBOX_COLUMNS = ("shop_id", "connector", "external_id", "fingerprint", "case_id", "received_at")
UNIT_COLUMNS = ("case_id", "line", "shop_id", "sku", "gtin", "lot", "serial")
RULE_COLUMNS = ("case_id", "rule_id", "outcome")
TABLES = {"cases": CASE_COLUMNS, "case_events": EVENT_COLUMNS, "outbox": OUTBOX_COLUMNS,
          "inbox": INBOX_COLUMNS, "case_units": UNIT_COLUMNS, "case_rules": RULE_COLUMNS}
NULL = "\\N"


# ---------------------------------------------------------------- configuration


def write_config(directory: Path) -> tuple[Path, str]:
    secret = hashlib.sha256(b"bench-scale").hexdigest()
    shops = "".join(f"""
[shops.{shop}]
name = "Bench Pharmacy {shop}"
storefront = "generic"
payment = "sandbox_payment"
erp = "sandbox_erp"
notifier = "sandbox_notifier"

[shops.{shop}.policy]
refund_timing = "on_receipt"
auto_approve_limits = {{ CNY = "500" }}

[shops.{shop}.generic]
secret = "{secret}"

[shops.{shop}.sandbox_payment]
latency_ms = 0
transient_failure_rate = 0

[shops.{shop}.sandbox_erp]
latency_ms = 0
transient_failure_rate = 0

[shops.{shop}.sandbox_notifier]
latency_ms = 0
transient_failure_rate = 0
""" for shop in SHOPS)
    path = directory / "scale.toml"
    path.write_text(f'database_url = "{URL}"\nredis_url = "{REDIS}"\n'
                    f'operator_tokens = ["{secret}"]\n{shops}', encoding="utf-8")
    return path, secret


# ---------------------------------------------------------------- generated rows


@dataclass(frozen=True)
class Template:
    """A request as the generic connector normalizes it, with markers for what differs."""

    kind: str
    request: str  # COPY-ready JSON text with the markers below
    lines: list[tuple[str, str, str]]  # sku, gtin, lot per line
    minor: int


MARKERS = ("@EXT@", "@ORDER@", "@CUST@", "@PAY@")


def request_templates(container: Any, secret: str) -> list[Template]:
    from refundbridge.api.routes.webhooks import receiver_for
    from refundbridge.core.ports import RefundRequested

    templates = []
    for shape in range(6):
        kind = "return_and_refund" if shape == 5 else "refund_only"
        body = json.loads(build_body(shape, "tpl", kind=kind, size=0))
        body["lines"] = body["lines"][: 1 + shape % 3]
        total = sum(float(li["unit_price"]) * li["quantity"] for li in body["lines"])
        body["order"]["paid_total"] = body["requested_amount"] = f"{total:.2f}"
        body["external_id"], body["order"]["id"] = MARKERS[0], MARKERS[1]
        body["customer"]["id"], body["order"]["payment"]["reference"] = MARKERS[2], MARKERS[3]
        raw = json.dumps(body, ensure_ascii=False).encode()
        event = receiver_for(container, SHOPS[0], "generic").parse_webhook(
            {k.lower(): v for k, v in signed_headers(secret, raw).items()}, raw,
            datetime.now(UTC))
        assert isinstance(event, RefundRequested)
        text = json.dumps(event.request.model_dump(mode="json"), ensure_ascii=False,
                          separators=(",", ":"))
        assert "\\" not in text and "\t" not in text and "\n" not in text
        lines = [(li.sku, li.gtin or "", li.lot or "") for li in event.request.lines]
        templates.append(Template(kind, text, lines, event.request.requested.minor))
    return templates


def _iso(at: datetime) -> str:
    return at.isoformat()


def _details(state: str, minor: int, created: datetime, due: date | None, k: int) -> str:
    amount = {"amount": f"{minor / 100:.2f}", "currency": "CNY"}
    review = state in ("awaiting_review", "denied", "cancelled")
    rules = [{"id": "G01", "outcome": "pass", "line": None, "message": ""},
             {"id": "R19" if k % 3 else "R14", "outcome": "review" if review else "pass",
              "line": None, "message": "此客户近期退款较多 Frequent refunds"}]
    decisions = []
    if state not in ("received", "evaluating"):
        decisions.append({"outcome": "review" if review else "approve", "amount": amount,
                          "rules": rules, "decided_by": "rules",
                          "at": _iso(created + timedelta(seconds=2)), "internal_note": "",
                          "customer_message": "", "lines": [],
                          "obligations": [] if due is None else [
                              {"kind": "refund_deadline", "due": due.isoformat(),
                               "detail": "refund within 15 days", "rule": "R20"}]})
        if state == "denied":
            decisions.append({**decisions[0], "outcome": "deny", "decided_by": "li.na",
                              "at": _iso(created + timedelta(hours=5))})
    paid = state in ("refunded", "closed")
    attempts = [] if state not in ("refunding", "refunded", "closed", "failed") else [
        {"number": 1, "key": f"rk_{k}_1", "amount": amount,
         "status": "succeeded" if paid else "started" if state == "refunding" else "failed",
         "provider_ref": f"pay_ref_{k}" if paid else None, "message": ""}]
    notes = [] if not decisions else [
        {"kind": "approved", "status": "sent", "attempts": 1, "last_error": None,
         "last_attempt_at": _iso(created + timedelta(minutes=1)), "waived_by": None,
         "waive_reason": None, "channel": "email", "state": "delivered",
         "provider_id": f"msg_{k}"}]
    obligations = decisions[0]["obligations"] if decisions else []
    data = {"decisions": decisions, "proposal": None, "dispositions": [],
            "obligations": obligations, "shipments": None, "writes_back": True,
            "write_backs": [], "attempts": attempts, "notifications": notes,
            "inspections": [], "stock_moves": [], "stock_booking": None, "revivals": 0,
            "failure": None if state != "failed" else {
                "step": "refund", "message": "provider refused", "resume_state": "approved",
                "code": "provider_refused"}}
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _ts(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S+00")


class Generator:
    """The rows of case k of the universe, as COPY text."""

    def __init__(self, templates: list[Template], now: datetime) -> None:
        self.templates = templates
        self.now = now
        self.recent_start = now - timedelta(days=RECENT_DAYS)
        self.recent_step = timedelta(days=RECENT_DAYS) / RECENT
        self.old_step = timedelta(days=HISTORY_DAYS - RECENT_DAYS) / (UNIVERSE - RECENT)
        self.details_cache: dict[tuple[str, int, int], str] = {}

    def created(self, k: int) -> datetime:
        if k >= UNIVERSE - RECENT:
            return self.recent_start + (k - (UNIVERSE - RECENT)) * self.recent_step
        return self.now - timedelta(days=HISTORY_DAYS) + k * self.old_step

    def rows(self, k: int, out: dict[str, list[str]]) -> None:
        recent = k >= UNIVERSE - RECENT
        state = (RECENT_STATES[(k * 37) % 100] if recent
                 else HISTORY_STATES[(k * 7919) % 1000])
        tpl = self.templates[k % len(self.templates)]
        shop = SHOPS[k % len(SHOPS)]
        case_id = "rc_" + hashlib.md5(b"%d" % k).hexdigest()  # random, like uuid4
        created = self.created(k)
        settled = state in ("closed", "denied", "cancelled", "failed")
        updated = created + (timedelta(days=3) if settled else timedelta(hours=1))
        customer = f"cust-{(k * 7919) % CUSTOMERS}"
        order = f"SO-{k - 5 if k % 10 == 7 else k}"  # a few orders have two cases
        approved = state not in ("received", "evaluating", "awaiting_review", "denied",
                                 "cancelled")
        due = (created + timedelta(days=15)).date() if approved or state == "awaiting_review" \
            else None
        key = (state, k % len(self.templates), (created.date() - date(2000, 1, 1)).days)
        details = self.details_cache.get(key)
        if details is None:  # one per state, shape and day: the JSON is the same
            details = _details(state, tpl.minor, created, due, k)
            if len(self.details_cache) < 200_000:
                self.details_cache[key] = details
        request = (tpl.request.replace("@EXT@", f"ext-{k}").replace("@ORDER@", order)
                   .replace("@CUST@", customer).replace("@PAY@", f"pay_{k}"))
        trail = TRAILS[state]
        heads = [hashlib.md5(b"%s%d" % (case_id.encode(), n)).hexdigest() * 2
                 for n in range(len(trail) + 1)]
        paid = state in ("refunded", "closed")
        out["cases"].append("\t".join((
            str(k + 1), case_id, shop, "generic", f"ext-{k}", order, customer, tpl.kind, state,
            "CNY", str(tpl.minor), str(tpl.minor) if approved else NULL,
            str(tpl.minor) if paid else "0", "on_receipt",
            f"rk_{k}_1" if paid or state in ("refunding", "failed") else NULL,
            f"pay_ref_{k}" if paid else NULL, f"ERP-{k}" if state == "closed" else NULL,
            request, details, str(len(trail)), str(len(trail)), heads[-1], _ts(created),
            _ts(updated), "li.na" if state == "awaiting_review" and k % 4 == 0 else NULL,
            due.isoformat() if due else NULL)))
        span = (updated - created) / max(1, len(trail))
        events = out["case_events"]
        for n, (name, before, after) in enumerate(trail):
            at = created + n * span
            actor = ("connector:generic" if n == 0 else "li.na" if name in ("deny", "cancel")
                     else "rules" if name in ("approve", "send_to_review") else "worker")
            data = ('{"attempt":1}' if name == "confirm_refund" else
                    '{"step":"refund"}' if name == "fail" else "{}")
            events.append("\t".join((case_id, str(n + 1), at.isoformat(), actor, name,
                                     before or NULL, after or NULL, data, heads[n],
                                     heads[n + 1])))
        done, open_step = STEPS[state]
        outbox = out["outbox"]
        for n, step in enumerate(done):
            began = _ts(created + n * span)
            outbox.append("\t".join((case_id, step, began, began, "1",
                                     _ts(created + (n + 1) * span))))
        # One moving case in five lost its outbox row: the reconciler's idle scan finds it.
        if open_step and not (state in MOVING and k % 5 == 0):
            began = _ts(updated)
            outbox.append("\t".join((case_id, open_step, began, began, "1", NULL)))
        out["inbox"].append("\t".join((shop, "generic", f"ext-{k}", heads[0], case_id,
                                       _ts(created))))
        for n, (sku, gtin, lot) in enumerate(tpl.lines):
            out["case_units"].append("\t".join((case_id, str(n), shop, sku, gtin, lot, "")))
        if state in ("awaiting_review", "denied", "cancelled"):
            out["case_rules"].append("\t".join((case_id, "R19" if k % 3 else "R14", "review")))


def stage_keys(previous: int, size: int) -> Iterator[int]:
    """The cases a database grown from `previous` to `size` cases gains: the recent segment
    first, then every n-th older case, so each size's history is spread over its years."""
    old = UNIVERSE - RECENT

    def history(n: int) -> set[int] | range:
        # The first n older cases in the order 0, s, 2s, …, 1, s+1, … (s = old // n).
        if n <= 0:
            return range(0)
        stride = max(1, old // n)
        return range(0, stride * n, stride) if stride * n <= old else range(n)

    if previous == 0:
        yield from range(old, UNIVERSE)
    have = set(history(previous - RECENT))
    for k in history(size - RECENT):
        if k not in have:
            yield k
    if size - RECENT > len(history(size - RECENT)):
        raise ValueError(size)


def load(keys: Iterator[int], gen: Generator, batch: int = 20_000) -> tuple[int, float]:
    """COPY the rows of `keys` in batches; a thread builds the next batch meanwhile."""
    import psycopg

    began = time.monotonic()
    batches: queue.Queue[dict[str, list[str]] | None] = queue.Queue(maxsize=2)

    def produce() -> None:
        out: dict[str, list[str]] = {name: [] for name in TABLES}
        for count, k in enumerate(keys, 1):
            gen.rows(k, out)
            if count % batch == 0:
                batches.put(out)
                out = {name: [] for name in TABLES}
        batches.put(out)
        batches.put(None)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    loaded = 0
    with psycopg.connect(URL) as conn:
        conn.execute("SET synchronous_commit = off")
        while (out := batches.get()) is not None:
            with conn.cursor() as cur:
                for table, columns in TABLES.items():
                    if not out[table]:
                        continue
                    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                        copy.write("\n".join(out[table]) + "\n")
            conn.commit()
            loaded += len(out["cases"])
        conn.execute("SELECT setval(pg_get_serial_sequence('cases', 'seq'), "
                     "greatest((SELECT max(seq) FROM cases), %s))", (UNIVERSE + 1,))
        conn.commit()
    thread.join()
    return loaded, time.monotonic() - began


def settle() -> float:
    """VACUUM (ANALYZE) and CHECKPOINT, as production's autovacuum would have by now."""
    import psycopg

    began = time.monotonic()
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")
    return time.monotonic() - began


def add_recalls(engine: Any) -> None:
    from refundbridge.core.recalls import Recall, RecallClass
    from refundbridge.store.recalls import SqlRecallRegister

    register = SqlRecallRegister(engine)
    for shop in SHOPS:  # a shop's recall list: dozens of entries, none of the bench's lots
        register.add(shop, [Recall(reference=f"NMPA-{shop}-{n}", recall_class=RecallClass("II"),
                                   notice_date=date(2026, 1, 1) + timedelta(days=n),
                                   gtin="06901234567892", lot=f"X{n:04d}")
                            for n in range(60)])


# ---------------------------------------------------------------- measuring


class Recorder:
    """Every statement a call runs (to EXPLAIN them afterwards)."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.statements: list[tuple[str, Any]] = []
        self.on = False

        def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                   executemany: bool) -> None:
            if self.on and not executemany and statement.lstrip().upper().startswith(
                    "SELECT"):
                self.statements.append((statement, parameters))

        event.listen(engine, "before_cursor_execute", before)

    def record(self, call: Callable[[], Any]) -> list[tuple[str, Any]]:
        self.statements, self.on = [], True
        try:
            call()
        finally:
            self.on = False
        return self.statements


def webhook_bodies(tag: str, count: int, customers: list[str]) -> list[bytes]:
    bodies = []
    for i in range(count):
        body = json.loads(build_body(i, tag, size=0))
        body["lines"] = body["lines"][:2]
        total = sum(float(li["unit_price"]) * li["quantity"] for li in body["lines"])
        body["order"]["paid_total"] = body["requested_amount"] = f"{total:.2f}"
        if customers:
            body["customer"]["id"] = customers[i % len(customers)]
        bodies.append(json.dumps(body, ensure_ascii=False).encode())
    return bodies


def measure(container: Any, secret: str, size: int, args: argparse.Namespace,
            recorder: Recorder, explain: bool) -> tuple[dict[str, float], dict[str, Any]]:
    from sqlalchemy import select, text

    from refundbridge.api.routes.webhooks import handle
    from refundbridge.core.services.decisions import evaluate
    from refundbridge.store import console_reads as reads
    from refundbridge.store import tables as t
    from refundbridge.store.kpis import kpi_report
    from refundbridge.store.outbox import idle_cases, open_work
    from refundbridge.store.review_queue import review_queue

    engine = container.engine
    now = datetime.now(UTC)
    today = now.date()
    with engine.connect() as conn:
        oldest = int(conn.execute(select(t.cases.c.seq).where(
            t.cases.c.shop_id.in_(sorted(READ_SHOPS))).order_by(t.cases.c.seq).limit(1)
            .offset(200)).scalar_one())
        # Customers of the ingest shop with a case in the last 30 days: R19 reads them.
        customers = list(conn.execute(text(
            "SELECT DISTINCT customer_id FROM cases WHERE shop_id = :s AND created_at > :since "
            "AND seq <= :top ORDER BY customer_id LIMIT 500"),
            {"s": INGEST_SHOP, "since": now - timedelta(days=29), "top": UNIVERSE}).scalars())
    stale = now - timedelta(seconds=300)
    reads_ = {
        "console first page": lambda: reads.list_page(
            engine, reads.CaseFilter(shops=READ_SHOPS), today=today),
        "console deep page": lambda: reads.list_page(
            engine, reads.CaseFilter(shops=READ_SHOPS), after=oldest, today=today),
        "console first page, awaiting_review": lambda: reads.list_page(
            engine, reads.CaseFilter(shops=READ_SHOPS, state="awaiting_review"), today=today),
        "console first page, overdue": lambda: reads.list_page(
            engine, reads.CaseFilter(shops=READ_SHOPS, overdue=True), today=today),
        "review queue": lambda: review_queue(
            engine, shops=READ_SHOPS, actor="li.na", today=lambda shop: today),
        "reconciler open_work": lambda: open_work(engine, stale),
        "reconciler idle_cases": lambda: idle_cases(engine, stale, stale),
        "KPIs, 30 days": lambda: kpi_report(engine, sorted(READ_SHOPS),
                                            today - timedelta(days=29), today, today),
    }
    figures: dict[str, float] = {}
    plans: dict[str, Any] = {}
    for name, call in reads_.items():
        figures[name] = timed(call, args.repeat)
        if explain:
            plans[name] = recorder.record(call)

    # Ingest: a fixed number of signed webhooks through the real handler, serially, after a
    # warm-up; the median of three rounds (one round can meet a checkpoint or autovacuum).
    tag = f"s{size}"
    warm, rounds = 200, 3
    bodies = webhook_bodies(tag, warm + args.ingest, customers)
    headers = [{k.lower(): v for k, v in signed_headers(secret, b).items()} for b in bodies]
    for i in range(warm):
        handle(container, INGEST_SHOP, "generic", headers[i], bodies[i])
    per_round = args.ingest // rounds
    costs = []
    for r in range(rounds):
        began = time.perf_counter()
        for i in range(warm + r * per_round, warm + (r + 1) * per_round):
            handle(container, INGEST_SHOP, "generic", headers[i], bodies[i])
        costs.append((time.perf_counter() - began) * 1000 / per_round)
    figures["ingest, ms per webhook"] = statistics.median(costs)

    # Evaluation of new cases (the ones just ingested) by the worker's service.
    with engine.connect() as conn:
        new = list(conn.execute(select(t.cases.c.id).where(
            t.cases.c.shop_id == INGEST_SHOP, t.cases.c.state == "received",
            t.cases.c.external_id.like(f"bench-{tag}-%")).order_by(t.cases.c.seq)
            .limit(args.evaluate + 20)).scalars())
    for case_id in new[:20]:
        evaluate(container.services, case_id)
    samples = []
    for case_id in new[20:]:
        began = time.perf_counter()
        evaluate(container.services, case_id)
        samples.append((time.perf_counter() - began) * 1000)
    figures["evaluate, ms per case"] = statistics.mean(samples)
    if explain and new:
        with engine.connect() as conn:
            extra = conn.execute(select(t.cases.c.id).where(
                t.cases.c.shop_id == INGEST_SHOP, t.cases.c.state == "received")
                .limit(1)).scalar()
        if extra:
            plans["evaluate"] = recorder.record(lambda: evaluate(container.services, extra))
    return figures, plans


def explain_plans(engine: Any, plans: dict[str, list[tuple[str, Any]]]) -> str:
    out = []
    with engine.connect() as conn:
        for name, statements in plans.items():
            seen = set()
            for statement, params in statements:
                if statement in seen or "FOR UPDATE" in statement:
                    continue
                seen.add(statement)
                cur = conn.connection.driver_connection.cursor()
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
                lines = [row[0] for row in cur.fetchall()]
                out.append(f"=== {name}\n{' '.join(statement.split())[:600]}\n"
                           + "\n".join(lines) + "\n")
    return "\n".join(out)


def sanity_check(engine: Any) -> int:
    """Every state's stored rows load as aggregates (what evaluation and the console do)."""
    from sqlalchemy import select, text

    from refundbridge.store import tables as t
    from refundbridge.store.mapping import case_from_row

    with engine.connect() as conn:
        ids = conn.execute(text("SELECT DISTINCT ON (state) id FROM cases ORDER BY state, seq"
                                )).scalars().all()
        rows = conn.execute(select(t.cases).where(t.cases.c.id.in_(ids))).all()
    for row in rows:
        case_from_row(row)
    return len(rows)


def db_size() -> str:
    import psycopg

    with psycopg.connect(URL) as conn:
        row = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()
    return str(row[0]) if row else "?"


def run(args: argparse.Namespace) -> dict[str, Any]:
    from refundbridge.bootstrap import bootstrap
    from refundbridge.config.settings import load_settings
    from refundbridge.store.db import upgrade

    started = time.monotonic()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if sizes[0] < RECENT or sizes[-1] > UNIVERSE:
        raise SystemExit(f"sizes must be within {RECENT:,} and {UNIVERSE:,}")
    reset_postgres(DB)
    upgrade(URL, args.revision)
    work = Path(tempfile.mkdtemp(prefix="rb-bench-scale-"))
    config, secret = write_config(work)
    # Worker services that hand work over to nobody: the outbox rows stay as a lost job's.
    container = bootstrap(load_settings(config), dispatch=lambda work: None)
    recorder = Recorder(container.engine)
    results: dict[str, Any] = {"sizes": {}}
    try:
        add_recalls(container.engine)
        gen = Generator(request_templates(container, secret), datetime.now(UTC))
        have = 0
        for size in sizes:
            loaded, seconds = load(stage_keys(have, size), gen)
            have = size
            settled = settle()
            checked = sanity_check(container.engine)
            print(f"{size:>9,} cases: loaded {loaded:,} in {seconds:.0f} s, vacuum + "
                  f"checkpoint {settled:.0f} s, {checked} states read back, "
                  f"database {db_size()}", flush=True)
            explain = size == sizes[-1]
            figures, plans = measure(container, secret, size, args, recorder, explain)
            results["sizes"][size] = {"figures": figures, "load_s": seconds,
                                      "settle_s": settled, "db_size": db_size()}
            if explain:
                text = explain_plans(container.engine, plans)
                RESULTS.mkdir(exist_ok=True)
                (RESULTS / args.plans_file).write_text(
                    f"EXPLAIN (ANALYZE, BUFFERS) at {size:,} cases\n\n{text}", encoding="utf-8")
                results["plans_file"] = str(RESULTS / args.plans_file)
                if args.plans_stdout:
                    print(text)
    finally:
        container.close()
    results["seconds"] = time.monotonic() - started
    return results


def print_table(results: dict[str, Any]) -> None:
    sizes = sorted(results["sizes"])
    base, top = sizes[0], sizes[-1]
    names = list(results["sizes"][base]["figures"])
    head = "".join(f"{f'{s:,}':>11}" for s in sizes)
    print(f"\nScale: median ms (ingest, evaluate: ms per item) and the ratio to {base:,} cases "
          f"({results['seconds']:.0f} s in all)")
    print(f"{'figure':<38}{head}{'ratio':>8}{'target':>9}")
    for name in names:
        values = [results["sizes"][s]["figures"][name] for s in sizes]
        ratio = values[-1] / values[0] if values[0] else float("nan")
        verdict = "met" if ratio <= TARGET else "not met"
        cells = "".join(f"{v:>11.2f}" for v in values)
        print(f"{name:<38}{cells}{ratio:>8.2f}{verdict:>9}")
    sizes_row = "".join(f"{results['sizes'][s]['db_size']:>11}" for s in sizes)
    print(f"{'database size':<38}{sizes_row}")
    print(f"target: each figure at {top:,} cases <= {TARGET}x its figure at {base:,}")
    if "plans_file" in results:
        print(f"plans: {results['plans_file']}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sizes", default="10000,100000,1000000",
                   help="stored cases at each measurement, comma-separated, growing")
    p.add_argument("--repeat", type=int, default=20, help="runs per read figure")
    p.add_argument("--ingest", type=int, default=600, help="webhooks per size")
    p.add_argument("--evaluate", type=int, default=150, help="evaluations per size")
    p.add_argument("--revision", default="head",
                   help="migrate the database to this revision only (0012: without the "
                        "open-work indexes of 0013, for comparison)")
    p.add_argument("--plans-stdout", action="store_true",
                   help="print the plans at the largest size too")
    p.add_argument("--plans-file", default="scale-plans.txt",
                   help="the plans' file name under bench/results/")
    p.add_argument("--json", type=Path, help="also write every figure to this file")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    args = p.parse_args()
    results = run(args)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
