"""`refundbridge demo`: the whole system in one process, on embedded defaults.

A SQLite file, an in-process Redis (fakeredis), an RQ worker thread, the real API under
uvicorn on 127.0.0.1, a real SMTP server (aiosmtpd) on 127.0.0.1 for the customer emails,
and the sandbox payment and ERP connectors (with latency and transient failures). A sandbox
shop sends signed requests through the real webhook path; the demo then plays the warehouse
(posting receipts) and the reviewer (deciding what the rules sent to a person).
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from aiosmtpd.controller import Controller
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from api.app import create_app
from config.settings import load_settings
from connectors.generic.webhooks import sign
from core.lifecycle import FINAL_STATES
from refundbridge.bootstrap import bootstrap
from store import queries
from store.db import upgrade
from workers import runtime
from workers.runner import drain, make_worker

SHOP = "demo-pharmacy"
PRODUCTS = [
    # sku, name, price CNY, class, sterile, cold chain
    ("GLU-METER-01", "血糖仪 Glucose meter", "199.00", "II", False, False),
    ("GLU-STRIP-50", "血糖试纸 50 strips", "89.00", "II", True, False),
    ("BP-CUFF-ARM", "上臂式电子血压计 BP monitor", "329.00", "II", False, False),
    ("DRESS-STER-10", "无菌敷贴 Sterile dressing x10", "35.50", "II", True, False),
    ("LENS-DAILY-30", "日抛隐形眼镜 Daily lenses 30", "159.00", "III", True, False),
    ("IVD-COVID-AG", "新冠抗原检测试剂 Antigen test", "45.00", "III", True, True),
]
CURRENCIES = {"CNY": Decimal("1"), "USD": Decimal("0.14"), "EUR": Decimal("0.13"),
              "JPY": Decimal("21")}
REASONS = ["changed_mind", "no_longer_needed", "defective", "damaged_on_arrival",
           "wrong_item", "ordered_by_mistake", "injury", "other"]


class Mailbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_requests(count: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    """Varied, realistic requests; a few deliberately re-use an order to exercise the
    over-refund guard."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    previous: dict[str, Any] | None = None
    for index in range(count):
        if previous is not None and index % 12 == 11:
            # A second request on an order that was already refunded in full.
            body = json.loads(json.dumps(previous))
            body["external_id"] = f"demo-{index:03d}"
            body["requested_at"] = now.isoformat()
            yield body
            continue
        currency = rng.choice(list(CURRENCIES))
        rate = CURRENCIES[currency]
        digits = 0 if currency == "JPY" else 2
        quantum = Decimal(1).scaleb(-digits)
        lines: list[dict[str, Any]] = []
        for sku, name, price, klass, sterile, cold in rng.sample(PRODUCTS, rng.randint(1, 2)):
            quantity = rng.randint(1, 3)
            unit = (Decimal(price) * rate).quantize(quantum)
            lines.append({
                "sku": sku, "name": name, "quantity": quantity, "unit_price": str(unit),
                "device_class": klass, "lot": f"L{rng.randint(2400, 2499)}",
                "expiry_date": (now + timedelta(days=rng.randint(60, 700))).date().isoformat(),
                "sterile": sterile, "package_opened": sterile and rng.random() < 0.3,
                "cold_chain": cold,
            })
        paid = sum((Decimal(li["unit_price"]) * li["quantity"] for li in lines), Decimal(0))
        requested = paid if rng.random() < 0.8 else (paid / 2).quantize(quantum)
        reason = rng.choice(REASONS)
        delivered = now - timedelta(days=rng.randint(1, 6))
        body = {
            "external_id": f"demo-{index:03d}",
            "kind": "return_and_refund" if rng.random() < 0.4 else "refund_only",
            "order": {
                "id": f"SO-{10000 + index}", "currency": currency, "paid_total": str(paid),
                "placed_at": (delivered - timedelta(days=2)).isoformat(),
                "delivered_at": delivered.isoformat(),
                "payment": {"provider": "sandbox_payment", "reference": f"pay_{index:05d}"},
            },
            "customer": {
                "id": f"cust-{rng.randint(1, 30)}", "type": "consumer",
                "email": f"customer{index}@example.com",
                "locale": rng.choice(["zh-CN", "en"]),
            },
            "lines": lines,
            "reason": {"code": reason,
                       "text": "使用后皮肤过敏" if reason == "injury" else "demo request"},
            "requested_amount": str(requested),
            "requested_at": now.isoformat(),
        }
        previous = body
        yield body


def run_demo(*, cases: int = 50, serve: bool = False, port: int = 0,
             database: str = "refundbridge-demo.db") -> int:
    console = Console()
    logging.getLogger("rq.worker").setLevel(logging.WARNING)
    db_path = Path(database)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{db_path}"
    upgrade(url)

    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=_free_port())
    smtp.start()
    shop_secret = secrets.token_hex(16)
    operator_token = secrets.token_urlsafe(24)
    settings = load_settings(
        None, demo=True, database_url=url, redis_url=None, operator_tokens=[operator_token],
        retry_initial_wait=0.01, retry_max_wait=0.05, stale_after_seconds=5,
        shops={SHOP: {
            "name": "Demo Pharmacy 演示药房",
            "storefront": "generic", "payment": "sandbox_payment", "erp": "sandbox_erp",
            "notifier": "smtp",
            "policy": {"refund_timing": "on_receipt",
                       "auto_approve_limits": {"CNY": "500", "USD": "70", "EUR": "70",
                                               "JPY": "10000"}},
            "generic": {"secret": shop_secret},
            "sandbox_payment": {"latency_ms": 5, "transient_failure_rate": 0.15, "seed": 1},
            "sandbox_erp": {"latency_ms": 5, "transient_failure_rate": 0.1, "seed": 2},
            "smtp": {"host": "127.0.0.1", "port": smtp.port,
                     "sender_email": "returns@demo-pharmacy.example.com",
                     "sender_name": "演示药房 售后"},
        }},
    )
    container = bootstrap(settings)
    runtime.install(container)
    app = create_app(container)
    port = port or _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, name="api", daemon=True).start()
    stop = threading.Event()
    worker = make_worker(container, threaded=True)

    def work() -> None:
        while not stop.is_set():
            drain(container, worker)
            stop.wait(0.05)

    threading.Thread(target=work, name="worker", daemon=True).start()
    while not server.started:
        time.sleep(0.02)

    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {operator_token}"}
    console.print(f"[bold]RefundBridge demo[/] API {base}", soft_wrap=True)
    sent: dict[str, str] = {}
    duplicates = 0
    started = time.monotonic()
    with httpx.Client(base_url=base, timeout=30) as http, Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console,
    ) as progress:
        task = progress.add_task("sending requests", total=cases)
        for index, body in enumerate(demo_requests(cases)):
            raw = json.dumps(body, ensure_ascii=False).encode()
            headers = {"Content-Type": "application/json",
                       "X-RefundBridge-Signature": sign(shop_secret, raw, int(time.time()))}
            answer = http.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
            answer.raise_for_status()
            sent[body["external_id"]] = answer.json()["case_id"]
            if index % 10 == 3:  # storefronts retry: a replay must not open a second case
                again = http.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
                duplicates += again.status_code == 200
            progress.advance(task)
        progress.update(task, description="cases finished")
        progress.update(task, completed=0)
        deadline = time.monotonic() + 180
        final = 0
        while time.monotonic() < deadline:
            final = _drive(http, auth, set(sent.values()))
            progress.update(task, completed=final)
            if final == len(sent):
                break
            time.sleep(0.2)

    elapsed = time.monotonic() - started
    stop.set()
    figures = queries.totals(container.engine)
    stuck = {s: n for s, n in figures["states"].items() if s not in FINAL_STATES}
    verified = sum(
        queries.case_evidence(container.engine, case_id)["verifies"] for case_id in sent.values())
    _print_summary(console, figures, len(sent), duplicates, len(mailbox.messages), verified,
                   elapsed)
    if stuck:
        console.print(f"[red]stuck cases: {stuck}[/]")
    if serve:
        console.print(f"API stays up: {base}/docs, RQ dashboard {base}/ops/rq/\n"
                      f"Authorization: Bearer {operator_token}\nCtrl-C to stop.",
                      soft_wrap=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    server.should_exit = True
    smtp.stop()
    container.close()
    return 1 if stuck else 0


def _drive(http: httpx.Client, auth: dict[str, str], case_ids: set[str]) -> int:
    """Play warehouse and reviewer for the cases that wait on a person; count final ones."""
    listing = http.get("/v1/cases", params={"limit": 500}, headers=auth).json()["items"]
    final = 0
    for case in listing:
        if case["id"] not in case_ids:
            continue
        state = case["state"]
        if state in FINAL_STATES:
            final += 1
        elif state == "awaiting_review":
            detail = http.get(f"/v1/cases/{case['id']}", headers=auth).json()
            injury = detail["reason"]["code"] == "injury"
            http.post(f"/v1/cases/{case['id']}/review", headers=auth, json={
                "decision": "deny" if injury else "approve", "reviewer": "reviewer.li",
                "note": "kept for adverse-event follow-up; refund handled by the manufacturer"
                        if injury else "amount checked against the order; approved"})
        elif state == "awaiting_return":
            detail = http.get(f"/v1/cases/{case['id']}", headers=auth).json()
            http.post(f"/v1/cases/{case['id']}/receipt", headers=auth, json={"lines": [
                {"line": i, "seal_intact": not line["package_opened"],
                 "condition": "used" if line["package_opened"] else "as_new",
                 "inspector": "warehouse.wang", "passed": not line["package_opened"]}
                for i, line in enumerate(detail["lines"])]})
        elif state == "failed":
            http.post(f"/v1/cases/{case['id']}/retry", headers=auth, json={"actor": "ops.zhao"})
    return final


def _print_summary(console: Console, figures: dict[str, Any], cases: int, duplicates: int,
                   emails: int, verified: int, elapsed: float) -> None:
    table = Table(title=f"RefundBridge demo: {cases} requests in {elapsed:.1f} s")
    table.add_column("what")
    table.add_column("figure", justify="right")
    for state, count in sorted(figures["states"].items()):
        table.add_row(f"cases {state}", str(count))
    for currency, money in sorted(figures["refunded"].items()):
        table.add_row(f"refunded {currency}", f"{money.amount}")
    for disposition, quantity in sorted(figures["stock_moves"].items()):
        table.add_row(f"stock moves: {disposition}", f"{quantity} units")
    table.add_row("emails received by SMTP", str(emails))
    table.add_row("duplicate webhooks answered 200", str(duplicates))
    table.add_row("audit chains verified", f"{verified}/{cases}")
    console.print(table)
