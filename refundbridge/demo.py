"""`refundbridge demo`: the whole system in one process, on embedded defaults.

A SQLite file, an in-process Redis (fakeredis), an RQ worker thread, the real API under
uvicorn on 127.0.0.1, a real SMTP server (aiosmtpd) on 127.0.0.1 for the customer emails,
and the sandbox payment and ERP connectors (with latency and transient failures).

The shop is a small medical-device pharmacy whose policy flags its awkward SKUs (a sterile
dressing excluded from no-reason return, a cold-chain IVD reagent, a custom-made orthosis,
an implantable screw). The demo imports a recall list as CSV through `POST /v1/recalls`,
previews two decisions with `POST /v1/evaluate`, then sends signed requests through the real
webhook path: scripted scenarios (`scenarios()`), each exercising part of the compliance
rules, mixed with ordinary requests. It plays the warehouse (receipts with inspections, UDI
scans and temperature records) and the reviewer (a decision with an internal note on every
case the rules sent to a person, and a message to the customer with a refusal). It exits
non-zero if a case is stuck or a scenario did not end where the rules say it should: the
demo doubles as an end-to-end check of the rule set.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import socket
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
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
from core.errors import ConfigError
from core.lifecycle import FINAL_STATES
from refundbridge.bootstrap import bootstrap
from store import queries
from store.db import upgrade
from workers import runtime
from workers.runner import drain, make_worker

SHOP = "demo-pharmacy"
INSPECTOR = "warehouse.wang"
REVIEWER = "reviewer.li"


# ------------------------------------------------------------------ the shop's catalogue


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    name: str
    price: str  # CNY
    device_class: str
    flags: Mapping[str, Any] = field(default_factory=dict)  # `[policy.skus.<sku>]`


# GS1 China (690–699) GTINs with valid check digits, so scans of them parse.
GTIN_METER = "06901234560015"
GTIN_BP = "06901234560039"
GTIN_DRESSING = "06901234560046"
GTIN_HBA1C = "06901234560060"
GTIN_SCREW = "06901234560077"

CATALOGUE = {p.sku: p for p in (
    Product("GLU-METER-01", "血糖仪 Glucose meter", "199.00", "II", {"gtin": GTIN_METER}),
    Product("GLU-STRIP-50", "血糖试纸 50 strips", "89.00", "II", {"shelf_life": True}),
    Product("BP-CUFF-ARM", "上臂式电子血压计 BP monitor", "329.00", "II", {"gtin": GTIN_BP}),
    # Opening the pack breaks the sterile barrier: excluded from no-reason return (R04).
    Product("DRESS-STER-10", "无菌敷贴 Sterile dressing x10", "35.50", "II",
            {"sterile": True, "single_use": True, "shelf_life": True,
             "no_reason_excluded": True, "gtin": GTIN_DRESSING}),
    Product("LENS-DAILY-30", "日抛隐形眼镜 Daily lenses 30", "159.00", "III",
            {"sterile": True, "single_use": True, "shelf_life": True}),
    Product("IVD-COVID-AG", "新冠抗原检测试剂 Antigen test", "45.00", "III",
            {"shelf_life": True}),
    # Sold to clinics: stored at 2–8 °C and run on a professional analyser.
    Product("IVD-HBA1C-20", "糖化血红蛋白检测试剂盒 HbA1c reagent kit (2-8 °C)", "420.00", "II",
            {"cold_chain": True, "shelf_life": True, "professional_only": True,
             "gtin": GTIN_HBA1C}),
    Product("ORTHO-KNEE-CM", "定制膝关节矫形器 Custom knee orthosis", "1880.00", "II",
            {"custom_made": True}),
    Product("IMPL-SCREW-45", "空心接骨螺钉 4.5 mm Cannulated bone screw", "260.00", "III",
            {"implantable": True, "sterile": True, "single_use": True, "shelf_life": True,
             "professional_only": True, "gtin": GTIN_SCREW}),
)}
# What ordinary shoppers buy; the special SKUs appear only in the scripted scenarios.
EVERYDAY = ("GLU-METER-01", "GLU-STRIP-50", "BP-CUFF-ARM", "DRESS-STER-10", "LENS-DAILY-30",
            "IVD-COVID-AG")
CURRENCIES = {"CNY": Decimal("1"), "USD": Decimal("0.14"), "EUR": Decimal("0.13"),
              "JPY": Decimal("21")}
REASON_TEXT = {
    "changed_mind": "不想要了 changed my mind",
    "no_longer_needed": "用不上了 no longer needed",
    "ordered_by_mistake": "买错了 ordered the wrong one",
    "defective": "开机无反应 does not switch on",
    "damaged_on_arrival": "收到时外包装破损 box crushed in transit",
    "wrong_item": "发错货 not what I ordered",
    "other": "其他原因 see chat",
}


def shop_policy() -> dict[str, Any]:
    """The shop's `[policy]` table, as it would stand in the TOML file."""
    return {
        "refund_timing": "on_receipt",
        "auto_approve_limits": {"CNY": "500", "USD": "70", "EUR": "70", "JPY": "10000"},
        "no_reason_window_days": 7,
        "frequent_refund_count": 3,
        "frequent_refund_days": 30,
        "jurisdiction": "CN",
        "timezone": "Asia/Shanghai",
        "skus": {p.sku: dict(p.flags) for p in CATALOGUE.values() if p.flags},
    }


def recall_csv(today: date) -> str:
    """The recall notices the shop received, as its spreadsheet exports them. The BP monitor
    row names the product by its GTIN-13, as printed on the notice."""
    return (
        "gtin,sku,lot,serial,class,notice_date,reference\n"
        f"{GTIN_BP[1:]},,BP2403,,II,{today - timedelta(days=10)},NMPA-RC-2025-0117\n"
        f",IVD-COVID-AG,AG2311,,III,{today - timedelta(days=60)},NMPA-RC-2025-0093\n"
        f",GLU-METER-01,GM2401,GM24010731,I,{today - timedelta(days=3)},NMPA-RC-2025-0131\n"
    )


# ------------------------------------------------------------------ requests


def _line(sku: str, quantity: int = 1, *, currency: str = "CNY", **extra: Any) -> dict[str, Any]:
    product = CATALOGUE[sku]
    digits = 0 if currency == "JPY" else 2
    unit = (Decimal(product.price) * CURRENCIES[currency]).quantize(Decimal(1).scaleb(-digits))
    return {"sku": sku, "name": product.name, "quantity": quantity, "unit_price": str(unit),
            "device_class": product.device_class, **extra}


def _request(external_id: str, now: datetime, *, kind: str, customer: dict[str, Any],
             lines: list[dict[str, Any]], reason: str, text: str | None = None,
             delivered_days_ago: int = 3, currency: str = "CNY",
             requested: Decimal | None = None) -> dict[str, Any]:
    paid = sum((Decimal(li["unit_price"]) * li["quantity"] for li in lines), Decimal(0))
    delivered = now - timedelta(days=delivered_days_ago)
    return {
        "external_id": external_id,
        "kind": kind,
        "order": {
            "id": f"SO-{external_id.upper()}", "currency": currency, "paid_total": str(paid),
            "placed_at": (delivered - timedelta(days=2)).isoformat(),
            "delivered_at": delivered.isoformat(),
            "payment": {"provider": "sandbox_payment", "reference": f"pay_{external_id}"},
        },
        "customer": {"type": "consumer", "locale": "zh-CN", **customer},
        "lines": lines,
        "reason": {"code": reason, "text": text or REASON_TEXT.get(reason, "")},
        "requested_amount": str(requested if requested is not None else paid),
        "requested_at": now.isoformat(),
    }


def _consumer(name: str, locale: str = "zh-CN") -> dict[str, Any]:
    return {"id": f"cust-{name}", "email": f"{name}@example.com", "locale": locale}


def _clinic(name: str, licence: str, expires: date) -> dict[str, Any]:
    return {"id": f"clinic-{name}", "type": "business", "email": f"purchasing@{name}.example.com",
            "locale": "zh-CN", "licence": {"number": licence, "expires_on": expires.isoformat(),
                                           "scope_classes": ["II", "III"]}}


def _hri(gtin: str, *, lot: str, serial: str, produced: date | None = None,
         expiry: date | None = None) -> str:
    """A GS1 human-readable interpretation, as a scanner app copies it off the label."""
    dates = ""
    if produced is not None:
        dates += f"(11){produced:%y%m%d}"
    if expiry is not None:
        dates += f"(17){expiry:%y%m%d}"
    return f"(01){gtin}{dates}(10){lot}(21){serial}"


@dataclass(frozen=True)
class Scenario:
    """One scripted request: what it shows, what the warehouse finds if goods come back, and
    where the rules (and the reviewer) must leave it."""

    title: str
    body: dict[str, Any]
    state: str  # the final state it must reach
    reviewed_for: frozenset[str] = frozenset()  # rules that must send it to a person
    # Per line, "<disposition> (<rule>)": where the units go, unless the case is denied.
    dispositions: tuple[str, ...] = ()
    receipt: tuple[Mapping[str, Any], ...] = ()  # per line: what the inspection finds


def scenarios(now: datetime) -> list[Scenario]:
    today = now.date()
    good_until = today + timedelta(days=400)
    meter_scan = _hri(GTIN_METER, lot="GM2405", serial="GM24050512",
                      produced=today - timedelta(days=200))
    # The BP monitor's label scans with a GTIN whose check digit is wrong (9 is right).
    bad_scan = _hri(GTIN_BP[:-1] + "0", lot="BP2407", serial="BPM7004417",
                    expiry=today + timedelta(days=900))
    return [
        Scenario(
            "recalled lot, asked on day 45",
            _request("sc-recall", now, kind="return_and_refund",
                     customer=_consumer("wu.min", "en"), reason="no_longer_needed",
                     delivered_days_ago=45,
                     lines=[_line("BP-CUFF-ARM", lot="BP2403", serial="BPM3001288")]),
            "closed", dispositions=("quarantine (R13)",)),
        Scenario(
            "adverse event in Chinese free text",
            _request("sc-adverse", now, kind="return_and_refund",
                     customer=_consumer("chen.jing"), reason="defective",
                     text="贴了两天后伤口红肿流脓，去医院急诊打了抗生素。",
                     lines=[_line("DRESS-STER-10", 2, lot="DS2409", package_opened=True,
                                  expiry_date=str(today + timedelta(days=500)))]),
            "closed", frozenset({"R14"}), ("keep_as_evidence (R14)",),
            ({"seal_intact": False, "condition": "used", "passed": False},)),
        Scenario(
            "no-reason return on day 8",
            _request("sc-day8", now, kind="return_and_refund",
                     customer=_consumer("liu.yang", "en"), reason="changed_mind",
                     delivered_days_ago=8,
                     lines=[_line("GLU-METER-01", lot="GM2405", serial="GM24050388")]),
            "denied"),
        Scenario(
            "no-reason on day 7, GS1 HRI scan",
            _request("sc-day7-udi", now, kind="return_and_refund",
                     customer=_consumer("zhou.xin"), reason="changed_mind",
                     delivered_days_ago=7,
                     lines=[_line("GLU-METER-01", lot="GM2405", serial="GM24050512")]),
            "closed", dispositions=("restock (R08)",), receipt=({"udi_scan": meter_scan},)),
        Scenario(
            "scan with a bad GTIN check digit",
            _request("sc-bad-udi", now, kind="return_and_refund",
                     customer=_consumer("sun.hao"), reason="damaged_on_arrival",
                     text="外壳裂了 housing cracked on arrival",
                     lines=[_line("BP-CUFF-ARM", lot="BP2407", serial="BPM7004417")]),
            "closed", dispositions=("quarantine (R16)",),
            receipt=({"udi_scan": bad_scan, "condition": "damaged", "passed": False},)),
        Scenario(
            "opened sterile pack, excl. confirmed",
            _request("sc-opened-sterile", now, kind="return_and_refund",
                     customer=_consumer("he.lan"), reason="changed_mind",
                     lines=[_line("DRESS-STER-10", lot="DS2409", package_opened=True,
                                  no_reason_exclusion_confirmed=True,
                                  expiry_date=str(today + timedelta(days=500)))]),
            "denied"),
        Scenario(
            "excluded sterile pack, unconfirmed",
            _request("sc-excluded-unconfirmed", now, kind="return_and_refund",
                     customer=_consumer("ma.li", "en"), reason="ordered_by_mistake",
                     lines=[_line("DRESS-STER-10", 2, lot="DS2409",
                                  expiry_date=str(today + timedelta(days=500)))]),
            "closed", dispositions=("scrap (R10)",)),
        Scenario(
            "custom-made orthosis, no reason",
            _request("sc-custom-noreason", now, kind="return_and_refund",
                     customer=_consumer("guo.feng"), reason="changed_mind",
                     lines=[_line("ORTHO-KNEE-CM", custom_made=True)]),
            "denied"),
        Scenario(
            "custom-made orthosis, defect",
            _request("sc-custom-defect", now, kind="return_and_refund",
                     customer=_consumer("guo.feng2"), reason="defective",
                     text="铰链用了一周就断了 hinge snapped after a week",
                     lines=[_line("ORTHO-KNEE-CM", custom_made=True)]),
            "closed", frozenset({"R06", "R20"}), ("return_to_manufacturer (R06)",),
            ({"condition": "damaged", "passed": False},)),
        Scenario(
            "clinic with an expired licence",
            _request("sc-licence-expired", now, kind="return_and_refund",
                     customer=_clinic("kangning", "粤穗食药监械经营许20190123号",
                                      today - timedelta(days=30)),
                     reason="wrong_item", text="规格发错：要 3.5 mm，收到 4.5 mm",
                     lines=[_line("IMPL-SCREW-45", 10, lot="SC2402",
                                  expiry_date=str(today + timedelta(days=1100)))]),
            "denied", frozenset({"R15", "R20"})),
        Scenario(
            "implant back from a licensed clinic",
            _request("sc-implant", now, kind="return_and_refund",
                     customer=_clinic("renhe", "沪浦食药监械经营许20210456号", good_until),
                     reason="wrong_item", text="多发了一枚 one screw too many",
                     lines=[_line("IMPL-SCREW-45", lot="SC2402", serial="SC2402-0091",
                                  expiry_date=str(today + timedelta(days=1100)))]),
            "closed", dispositions=("restock (R08)",)),
        Scenario(
            "cold chain with temperature record",
            _request("sc-cold-logged", now, kind="return_and_refund",
                     customer=_clinic("renhe", "沪浦食药监械经营许20210456号", good_until),
                     reason="wrong_item", text="要的是 40 人份 wanted the 40-test kit",
                     lines=[_line("IVD-HBA1C-20", lot="HB2408",
                                  expiry_date=str(today + timedelta(days=150)))]),
            "closed", dispositions=("restock (R08)",), receipt=({"temperature_log_ok": True},)),
        Scenario(
            "cold chain, no temperature record",
            _request("sc-cold-unlogged", now, kind="return_and_refund",
                     customer=_clinic("anhe", "京朝食药监械经营备20220789号", good_until),
                     reason="wrong_item",
                     lines=[_line("IVD-HBA1C-20", lot="HB2408",
                                  expiry_date=str(today + timedelta(days=150)))]),
            "closed", dispositions=("quarantine (R11)",)),
        # One customer, four requests in a few days: the fourth goes to a person (R19).
        Scenario(
            "frequent refunds 1/4",
            _request("sc-frequent-1", now, kind="refund_only", customer=_consumer("zhao.lei"),
                     reason="damaged_on_arrival", text="试纸瓶盖破损 strip vial cap broken",
                     lines=[_line("GLU-STRIP-50", 2, expiry_date=str(today + timedelta(
                         days=300)))]),
            "closed", dispositions=("not_returned (R08)",)),
        Scenario(
            "frequent refunds 2/4",
            _request("sc-frequent-2", now, kind="return_and_refund",
                     customer=_consumer("zhao.lei"), reason="ordered_by_mistake",
                     lines=[_line("IVD-COVID-AG", 2, lot="AG2405",
                                  expiry_date=str(today + timedelta(days=200)))]),
            "closed", dispositions=("restock (R08)",)),
        Scenario(
            "frequent refunds 3/4",
            _request("sc-frequent-3", now, kind="return_and_refund",
                     customer=_consumer("zhao.lei"), reason="changed_mind",
                     lines=[_line("LENS-DAILY-30", lot="LD2410",
                                  expiry_date=str(today + timedelta(days=700)))]),
            "closed", dispositions=("scrap (R10)",)),
        Scenario(
            "frequent refunds 4/4",
            _request("sc-frequent-4", now, kind="return_and_refund",
                     customer=_consumer("zhao.lei"), reason="no_longer_needed",
                     lines=[_line("GLU-STRIP-50", expiry_date=str(today + timedelta(
                         days=300)))]),
            "denied", frozenset({"R19"})),
    ]


def everyday_request(index: int, now: datetime, rng: random.Random) -> dict[str, Any]:
    """An ordinary request: a random basket, currency, reason and kind."""
    currency = rng.choice(list(CURRENCIES))
    lines: list[dict[str, Any]] = []
    for sku in rng.sample(EVERYDAY, rng.randint(1, 2)):
        sterile = bool(CATALOGUE[sku].flags.get("sterile"))
        lines.append(_line(
            sku, rng.randint(1, 3), currency=currency, lot=f"L{rng.randint(2400, 2499)}",
            expiry_date=(now + timedelta(days=rng.randint(60, 700))).date().isoformat(),
            package_opened=sterile and rng.random() < 0.3))
    body = _request(f"demo-{index:03d}", now,
                    kind="return_and_refund" if rng.random() < 0.4 else "refund_only",
                    customer=_consumer(f"shopper{rng.randint(100, 199)}",
                                       rng.choice(["zh-CN", "en"])),
                    lines=lines, reason=rng.choice(list(REASON_TEXT)),
                    delivered_days_ago=rng.randint(1, 6), currency=currency)
    if rng.random() >= 0.8:
        digits = 0 if currency == "JPY" else 2
        paid = Decimal(body["order"]["paid_total"])
        body["requested_amount"] = str((paid / 2).quantize(Decimal(1).scaleb(-digits)))
    return body


def demo_requests(count: int, now: datetime, seed: int = 7
                  ) -> Iterator[tuple[dict[str, Any], Scenario | None]]:
    """`count` requests: the scenarios, every third place, among everyday requests. Every
    twelfth everyday request repeats an earlier order that was already refunded in full, for
    the over-refund guard."""
    rng = random.Random(seed)
    scripted = scenarios(now)[:count]
    everyday = count - len(scripted)
    previous: dict[str, Any] | None = None
    made = 0
    for index in range(count):
        if scripted and (index % 3 == 1 or made >= everyday):
            yield scripted[0].body, scripted.pop(0)
            continue
        if previous is not None and made % 12 == 11:
            body = json.loads(json.dumps(previous))
            body["external_id"] = f"demo-{index:03d}"
        else:
            body = previous = everyday_request(index, now, rng)
        made += 1
        yield body, None


# ------------------------------------------------------------------ the run


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


@dataclass
class ScenarioResult:
    scenario: Scenario
    state: str
    reviewed_for: frozenset[str]
    path: str  # who decided what, e.g. "review R06 R20 → approve" (`_path`)
    dispositions: tuple[str, ...]  # "<disposition> (<rule>)" per line

    @property
    def as_expected(self) -> bool:
        s = self.scenario
        return (self.state == s.state and self.reviewed_for == s.reviewed_for
                and (not s.dispositions or self.dispositions == s.dispositions))


@dataclass
class Findings:
    """What the compliance engine did, read back through `GET /v1/cases/{id}`."""

    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (by, outcome)
    review_rules: Counter[str] = field(default_factory=Counter)  # cases per rule id
    deny_rules: Counter[str] = field(default_factory=Counter)  # cases per rule id
    disposition_units: Counter[str] = field(default_factory=Counter)
    disposition_lines: Counter[str] = field(default_factory=Counter)
    obligations: Counter[str] = field(default_factory=Counter)
    earliest_due: dict[str, str] = field(default_factory=dict)
    scenarios: list[ScenarioResult] = field(default_factory=list)


@dataclass
class DemoResult:
    cases: int
    duplicates: int
    emails: int
    verified: int
    elapsed: float
    figures: dict[str, Any]
    findings: Findings
    recalls_added: int
    recalls_readded: int
    previews: list[tuple[str, dict[str, Any]]]

    @property
    def stuck(self) -> dict[str, int]:
        return {s: n for s, n in self.figures["states"].items() if s not in FINAL_STATES}

    @property
    def unexpected(self) -> list[ScenarioResult]:
        return [r for r in self.findings.scenarios if not r.as_expected]


# SQLite's header field for the application that owns a file ("RBdm"): the demo deletes
# only a file that carries it, never a database someone made by other means.
DEMO_APPLICATION_ID = 0x5242646D


def is_demo_database(path: Path) -> bool:
    """The file is a SQLite database that `refundbridge demo` made (opened read-only)."""
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            (application_id,) = db.execute("PRAGMA application_id").fetchone()
    except sqlite3.Error:
        return False  # not a database at all, or one SQLite cannot read
    return bool(application_id == DEMO_APPLICATION_ID)


def forget_demo_database(path: Path) -> None:
    """Delete the previous demo's database, refusing (`ConfigError` naming `--database`)
    any other file: the demo starts afresh, but must not destroy what it did not make."""
    if not path.parent.is_dir():
        raise ConfigError("--database", f"no such directory: {path.parent}")
    if path.exists() and not (path.is_file() and is_demo_database(path)):
        raise ConfigError("--database", f"{path} exists and was not made by `refundbridge "
                                        "demo`; it is left alone (name another file, or move "
                                        "this one away yourself)")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _mark_demo_database(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA application_id = {DEMO_APPLICATION_ID}")
        db.commit()


def run_demo(*, cases: int = 50, serve: bool = False, port: int = 0,
             database: str = "refundbridge-demo.db") -> int:
    console = Console()
    result = run(cases=cases, serve=serve, port=port, database=database, console=console)
    return 1 if result.stuck or result.unexpected else 0


def run(*, cases: int = 50, serve: bool = False, port: int = 0,
        database: str = "refundbridge-demo.db", console: Console | None = None) -> DemoResult:
    console = console or Console()
    logging.getLogger("rq.worker").setLevel(logging.WARNING)
    db_path = Path(database)
    forget_demo_database(db_path)
    url = f"sqlite:///{db_path}"
    upgrade(url)
    _mark_demo_database(db_path)

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
            "policy": shop_policy(),
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
    api_thread = threading.Thread(target=server.run, name="api", daemon=True)
    api_thread.start()
    stop = threading.Event()
    worker = make_worker(container, threaded=True)

    def work() -> None:
        while not stop.is_set():
            drain(container, worker)
            stop.wait(0.05)

    worker_thread = threading.Thread(target=work, name="worker", daemon=True)
    worker_thread.start()
    while not server.started:
        time.sleep(0.02)

    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {operator_token}"}
    console.print(f"[bold]RefundBridge demo[/] API {base}", soft_wrap=True)
    now = datetime.now(UTC)
    plan = list(demo_requests(cases, now))
    sent: dict[str, str] = {}
    scripted: dict[str, Scenario] = {}
    duplicates = 0
    started = time.monotonic()
    with httpx.Client(base_url=base, timeout=30) as http:
        added, readded = _import_recalls(http, auth, now.date())
        console.print(f"recall list: {added} notices imported from CSV through POST /v1/recalls"
                      f" (importing the file again added {readded})")
        previews = _preview(http, auth, [s for _, s in plan if s is not None])
        _print_previews(console, previews)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("sending requests", total=len(plan))
            for index, (body, scenario) in enumerate(plan):
                raw = json.dumps(body, ensure_ascii=False).encode()
                headers = {"Content-Type": "application/json",
                           "X-RefundBridge-Signature": sign(shop_secret, raw, int(time.time()))}
                answer = http.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
                answer.raise_for_status()
                case_id = answer.json()["case_id"]
                sent[body["external_id"]] = case_id
                if scenario is not None:
                    scripted[case_id] = scenario
                if index % 10 == 3:  # storefronts retry: a replay must not open a second case
                    again = http.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
                    duplicates += again.status_code == 200
                progress.advance(task)
            progress.update(task, description="cases finished")
            progress.update(task, completed=0)
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                final = _drive(http, auth, set(sent.values()), scripted)
                progress.update(task, completed=final)
                if final == len(sent):
                    break
                time.sleep(0.2)
        details = [http.get(f"/v1/cases/{case_id}", headers=auth).raise_for_status().json()
                   for case_id in sent.values()]

    elapsed = time.monotonic() - started
    stop.set()
    worker_thread.join(timeout=30)
    result = DemoResult(
        cases=len(sent), duplicates=duplicates, emails=len(mailbox.messages),
        verified=sum(queries.case_evidence(container.engine, case_id)["verifies"]
                     for case_id in sent.values()),
        elapsed=elapsed, figures=queries.totals(container.engine),
        findings=findings(details, scripted), recalls_added=added, recalls_readded=readded,
        previews=previews)
    _print_scenarios(console, result.findings.scenarios)
    _print_summary(console, result)
    if result.stuck:
        console.print(f"[red]stuck cases: {result.stuck}[/]")
    for miss in result.unexpected:
        s = miss.scenario
        console.print(
            f"[red]scenario '{s.title}' ended {miss.state}, reviewed for "
            f"{sorted(miss.reviewed_for)}, dispositions {list(miss.dispositions)}; expected "
            f"{s.state}, {sorted(s.reviewed_for)}, {list(s.dispositions)}[/]", soft_wrap=True)
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
    api_thread.join(timeout=10)
    smtp.stop()
    container.close()
    return result


def _import_recalls(http: httpx.Client, auth: dict[str, str], today: date) -> tuple[int, int]:
    """Import the recall CSV twice: the second import must add nothing."""
    counts = []
    for _ in range(2):
        answer = http.post("/v1/recalls", params={"shop": SHOP},
                           content=recall_csv(today).encode(),
                           headers={**auth, "Content-Type": "text/csv; charset=utf-8"})
        counts.append(int(answer.raise_for_status().json()["added"]))
    return counts[0], counts[1]


PREVIEWED = ("sc-recall", "sc-day8")


def _preview(http: httpx.Client, auth: dict[str, str], scripted: Sequence[Scenario]
             ) -> list[tuple[str, dict[str, Any]]]:
    """What the rules would decide for two requests, before they are sent (stores nothing)."""
    previews = []
    for scenario in scripted:
        if scenario.body["external_id"] in PREVIEWED:
            answer = http.post("/v1/evaluate", params={"shop": SHOP}, headers=auth,
                               json=scenario.body)
            previews.append((scenario.title, answer.raise_for_status().json()))
    return previews


def _print_previews(console: Console, previews: list[tuple[str, dict[str, Any]]]) -> None:
    for title, decision in previews:
        deciding = [r for r in decision["rules"] if r["outcome"] != "pass"]
        console.print(f"preview (POST /v1/evaluate, nothing stored) of '{title}': "
                      f"[bold]{decision['decision']}[/]", soft_wrap=True)
        for rule in deciding:
            console.print(f"  {rule['id']} {rule['outcome']}: {rule['message']}",
                          soft_wrap=True, markup=False)


def _drive(http: httpx.Client, auth: dict[str, str], case_ids: set[str],
           scripted: Mapping[str, Scenario]) -> int:
    """Play warehouse and reviewer for the cases that wait on a person; count final ones."""
    final = 0
    for case in _all_cases(http, auth):
        if case["id"] not in case_ids:
            continue
        state = case["state"]
        url = f"/v1/cases/{case['id']}"
        if state in FINAL_STATES:
            final += 1
        elif state == "awaiting_review":
            detail = http.get(url, headers=auth).raise_for_status().json()
            http.post(f"{url}/review", headers=auth,
                      json=review_decision(detail)).raise_for_status()
        elif state == "awaiting_return":
            detail = http.get(url, headers=auth).raise_for_status().json()
            http.post(f"{url}/receipt", headers=auth, json={"lines": inspections(
                detail, scripted.get(case["id"]))}).raise_for_status()
        elif state == "failed":
            http.post(f"{url}/retry", headers=auth,
                      json={"actor": "ops.zhao"}).raise_for_status()
    return final


def _all_cases(http: httpx.Client, auth: dict[str, str]) -> Iterator[dict[str, Any]]:
    """Every case, page by page: `--cases` may ask for more than one page holds."""
    params: dict[str, Any] = {"shop": SHOP, "limit": 500}
    while True:
        page = http.get("/v1/cases", params=params, headers=auth).raise_for_status().json()
        yield from page["items"]
        if page["next_cursor"] is None:
            return
        params["cursor"] = page["next_cursor"]


# What the reviewer concludes about each kind of doubt. A licence that has lapsed, or a
# fourth request within a month, is refused; every other doubt is settled and approved.
REVIEW_NOTES: dict[str, str] = {
    "R01": "Checked the unit against the shipment by hand.",
    "R06": "Defect is plausible from the customer's photos; the unit goes back to the "
           "manufacturer.",
    "R09": "Near-expiry unit checked; it will not go back on the shelf.",
    "R14": "Possible adverse event logged for the vigilance report, unit kept as evidence; "
           "the refund does not wait for the investigation.",
    "R16": "Checked the label and the sales record by hand.",
    "R20": "Amount checked against the order and the payment.",
    "A00": "Read the customer's explanation; accepted.",
}
DENY_NOTES: dict[str, str] = {
    "R15": "The clinic's licence has lapsed: we take devices back only from a licensed buyer. "
           "Asked for the renewed licence; they may ask again with it.",
    "R19": "Fourth request within 30 days; refused, and offered an exchange instead.",
}
# What the customer reads of a refusal: the internal notes above stay with the shop.
DENY_MESSAGES: dict[str, str] = {
    "R15": "We can take devices back only from a licensed buyer. Please send us your renewed "
           "licence and ask again.",
    "R19": "We cannot take back another item this month, but we are glad to offer you an "
           "exchange.",
}


def _rules_that(outcome: str, detail: Mapping[str, Any]) -> frozenset[str]:
    """The rules whose `outcome` the rules' decision of that outcome stood on."""
    return frozenset(
        rule["id"] for decision in detail["decisions"]
        if decision["decided_by"] == "rules" and decision["outcome"] == outcome
        for rule in decision["rules"] if rule["outcome"] == outcome)


def review_rules(detail: Mapping[str, Any]) -> frozenset[str]:
    """The rules that sent the case to a person."""
    return _rules_that("review", detail)


def review_decision(detail: Mapping[str, Any]) -> dict[str, str]:
    """The reviewer's decision: an internal note on every case (why), and a message to the
    customer with a refusal."""
    rules = sorted(review_rules(detail))
    refused = [r for r in rules if r in DENY_NOTES]
    if refused:
        return {"decision": "deny", "reviewer": REVIEWER,
                "internal_note": " ".join(DENY_NOTES[r] for r in refused),
                "customer_message": " ".join(DENY_MESSAGES[r] for r in refused)}
    notes = [REVIEW_NOTES.get(r, f"{r} checked.") for r in rules] or ["Checked; approved."]
    return {"decision": "approve", "reviewer": REVIEWER, "internal_note": " ".join(notes)}


def inspections(detail: Mapping[str, Any], scenario: Scenario | None) -> list[dict[str, Any]]:
    """The warehouse's inspection of each returned line: an opened pack is used and fails,
    anything else looks new, unless the scenario says what the inspector found."""
    found: Sequence[Mapping[str, Any]] = scenario.receipt if scenario else ()
    result = []
    for index, line in enumerate(detail["lines"]):
        opened = bool(line.get("package_opened"))
        inspection: dict[str, Any] = {
            "line": index, "seal_intact": not opened,
            "condition": "used" if opened else "as_new", "inspector": INSPECTOR,
            "passed": not opened}
        if index < len(found):
            inspection.update(found[index])
        result.append(inspection)
    return result


def findings(details: Sequence[Mapping[str, Any]], scripted: Mapping[str, Scenario]
             ) -> Findings:
    found = Findings()
    for detail in details:
        for decision in detail["decisions"]:
            by = "rules" if decision["decided_by"] == "rules" else "reviewer"
            found.decisions[(by, decision["outcome"])] += 1
        reviewed = review_rules(detail)
        found.review_rules.update(reviewed)
        found.deny_rules.update(deny_rules(detail))
        # A denied case's goods stay with the customer: its planned dispositions never happen.
        lines = detail["lines"]
        if detail["state"] not in {"denied", "cancelled"}:
            for disposition in detail["dispositions"]:
                kind = disposition["disposition"]
                found.disposition_lines[kind] += 1
                found.disposition_units[kind] += int(lines[disposition["line"]]["quantity"])
        for obligation in detail["obligations"]:
            kind = obligation["kind"]
            if kind == "refund_deadline" and detail["state"] == "denied":
                continue  # nothing left to refund
            found.obligations[kind] += 1
            due = obligation["due"]
            if due is not None and (kind not in found.earliest_due
                                    or due < found.earliest_due[kind]):
                found.earliest_due[kind] = due
        scenario = scripted.get(detail["id"])
        if scenario is not None:
            found.scenarios.append(ScenarioResult(
                scenario, detail["state"], reviewed, _path(detail),
                tuple(f"{d['disposition']} ({d['rule']})" for d in detail["dispositions"])
                if detail["state"] != "denied" else ()))
    order = {id(s): i for i, s in enumerate(scripted.values())}
    found.scenarios.sort(key=lambda r: order[id(r.scenario)])
    return found


def _path(detail: Mapping[str, Any]) -> str:
    """Who decided what: "approve" (the rules), or "review R06 R20 → approve" (a person)."""
    steps = []
    for decision in detail["decisions"]:
        outcome = decision["outcome"]
        if outcome == "review":
            outcome = " ".join(["review", *sorted(review_rules(detail))])
        steps.append(outcome)
    return " → ".join(steps)


def deny_rules(detail: Mapping[str, Any]) -> frozenset[str]:
    """The rules whose deny the rules' decision stood on (a deny overruled by a recall or an
    adverse event does not count)."""
    return _rules_that("deny", detail)


# ------------------------------------------------------------------ the report

RULE_NAMES = {
    "G01": "over-refund guard", "R02": "no-reason window", "R03": "custom-made",
    "R04": "excluded, confirmed at purchase", "R05": "single-use seal broken",
    "R01": "unit not matched to the shipment", "R06": "quality claim",
    "R09": "near expiry", "R14": "possible adverse event", "R15": "buyer's qualification",
    "R16": "UDI does not parse or match", "R19": "frequent refunds",
    "R20": "over the auto-approval limit", "A00": "reason the rules cannot judge",
}


def _print_scenarios(console: Console, results: Sequence[ScenarioResult]) -> None:
    table = Table(title="Compliance scenarios (→: a reviewer's decision)")
    table.add_column("scenario")
    table.add_column("decision")
    table.add_column("goods")
    table.add_column("state")
    table.add_column("ok", justify="center")
    for r in results:
        table.add_row(r.scenario.title, r.path, ", ".join(r.dispositions) or "-", r.state,
                      "✓" if r.as_expected else "[red]✗[/]")
    console.print(table)


def _cases(count: int) -> str:
    return f"{count} case" if count == 1 else f"{count} cases"


def _lines(count: int) -> str:
    return f"{count} line" if count == 1 else f"{count} lines"


def _print_summary(console: Console, result: DemoResult) -> None:
    figures, found = result.figures, result.findings
    table = Table(title=f"RefundBridge demo: {result.cases} requests in {result.elapsed:.1f} s")
    table.add_column("what")
    table.add_column("figure", justify="right")
    for state, count in sorted(figures["states"].items()):
        table.add_row(f"cases {state}", str(count))
    table.add_section()
    for currency, money in sorted(figures["refunded"].items()):
        table.add_row(f"refunded {currency}", f"{money.amount}")
    table.add_section()
    for (by, outcome), count in sorted(found.decisions.items(),
                                       key=lambda item: (item[0][0] != "rules", item[0][1])):
        label = "sent to review by the rules" if outcome == "review" else (
            f"{outcome} by the {by}")
        table.add_row(f"decisions: {label}", str(count))
    for rule, count in sorted(found.review_rules.items()):
        table.add_row(f"to review by {rule}: {RULE_NAMES.get(rule, '')}", _cases(count))
    for rule, count in sorted(found.deny_rules.items()):
        table.add_row(f"denied by {rule}: {RULE_NAMES.get(rule, '')}", _cases(count))
    table.add_section()
    for kind, units in sorted(found.disposition_units.items()):
        table.add_row(f"disposition: {kind}",
                      f"{units} units, {_lines(found.disposition_lines[kind])}")
    for disposition, quantity in sorted(figures["stock_moves"].items()):
        table.add_row(f"stock moves: {disposition}", f"{quantity} units")
    table.add_section()
    for kind, count in sorted(found.obligations.items()):
        due = found.earliest_due.get(kind)
        table.add_row(f"obligation: {kind}",
                      f"{count}, earliest due {due}" if due else f"{count}, not yet due")
    table.add_row("recall notices imported (CSV)", str(result.recalls_added))
    table.add_section()
    table.add_row("emails received by SMTP", str(result.emails))
    table.add_row("duplicate webhooks answered 200", str(result.duplicates))
    table.add_row("audit chains verified", f"{result.verified}/{result.cases}")
    scenarios_ok = sum(r.as_expected for r in found.scenarios)
    table.add_row("scenarios as expected", f"{scenarios_ok}/{len(found.scenarios)}")
    console.print(table)
