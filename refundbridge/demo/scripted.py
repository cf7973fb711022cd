"""What the demo sends: the scripted compliance scenarios, as data, among everyday requests.

Each `Script` is one request that exercises part of the compliance rules, written relative to
the day the demo runs (days since delivery, days to expiry, a licence that lapsed a month ago);
`scenarios(now)` dates them and builds the generic storefront's webhook bodies.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from refundbridge.demo.catalogue import (
    CATALOGUE,
    CURRENCIES,
    EVERYDAY,
    GTIN_BP,
    GTIN_METER,
    REASON_TEXT,
)


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


# ------------------------------------------------------------------ the parts of a request


@dataclass(frozen=True, slots=True)
class Consumer:
    name: str
    locale: str = "zh-CN"

    def customer(self, today: date) -> dict[str, Any]:
        # A mainland mobile number of the shop's own country, written the way a person
        # types it: intake stores it as E.164, and the demo's SMS go to it.
        digits = int(hashlib.sha256(self.name.encode()).hexdigest(), 16) % 10**8
        return {"id": f"cust-{self.name}", "email": f"{self.name}@example.com",
                "phone": f"138 {digits // 10**4:04d} {digits % 10**4:04d}",
                "locale": self.locale}


@dataclass(frozen=True, slots=True)
class Clinic:
    """A business buyer, with its medical-device trading licence."""

    name: str
    licence: str
    licence_valid_days: int  # from the day of the run; negative: it has lapsed

    def customer(self, today: date) -> dict[str, Any]:
        expires = today + timedelta(days=self.licence_valid_days)
        return {"id": f"clinic-{self.name}", "type": "business",
                "email": f"purchasing@{self.name}.example.com", "locale": "zh-CN",
                "licence": {"number": self.licence, "expires_on": expires.isoformat(),
                            "scope_classes": ["II", "III"]}}


@dataclass(frozen=True, slots=True)
class Item:
    """One line of a scripted request; `facts` are the line's own fields (lot, serial, …)."""

    sku: str
    quantity: int = 1
    expires_in_days: int | None = None  # the label's expiry date, from the day of the run
    facts: Mapping[str, Any] = field(default_factory=dict)


def item(sku: str, quantity: int = 1, *, expires_in: int | None = None, **facts: Any) -> Item:
    return Item(sku, quantity, expires_in, facts)


@dataclass(frozen=True, slots=True)
class Scan:
    """A label's GS1 human-readable interpretation, as a scanner app copies it off the label."""

    gtin: str
    lot: str
    serial: str
    produced_days_ago: int | None = None  # the dates the label carries, from the day of the run
    expires_in_days: int | None = None

    def text(self, today: date) -> str:
        dates = ""
        if self.produced_days_ago is not None:
            dates += f"(11){today - timedelta(days=self.produced_days_ago):%y%m%d}"
        if self.expires_in_days is not None:
            dates += f"(17){today + timedelta(days=self.expires_in_days):%y%m%d}"
        return f"(01){self.gtin}{dates}(10){self.lot}(21){self.serial}"


def _line(sku: str, quantity: int = 1, *, currency: str = "CNY", **extra: Any) -> dict[str, Any]:
    product = CATALOGUE[sku]
    digits = 0 if currency == "JPY" else 2
    unit = (Decimal(product.price) * CURRENCIES[currency]).quantize(Decimal(1).scaleb(-digits))
    return {"sku": sku, "name": product.name, "quantity": quantity, "unit_price": str(unit),
            "device_class": product.device_class, **extra}


def _request(external_id: str, now: datetime, *, kind: str, customer: dict[str, Any],
             lines: list[dict[str, Any]], reason: str, text: str | None = None,
             delivered_days_ago: int = 3, currency: str = "CNY") -> dict[str, Any]:
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
        "requested_amount": str(paid),
        "requested_at": now.isoformat(),
    }


# ------------------------------------------------------------------ the scripts


@dataclass(frozen=True, slots=True)
class Script:
    """A scenario before it is dated: `scenario(now)` makes the request of it."""

    title: str
    external_id: str
    customer: Consumer | Clinic
    reason: str
    items: tuple[Item, ...]
    state: str  # where it must end; the other fields after it are `Scenario`'s
    reviewed_for: frozenset[str] = frozenset()
    dispositions: tuple[str, ...] = ()
    receipt: tuple[Mapping[str, Any], ...] = ()
    scan: Scan | None = None  # what the warehouse scans off the first line's label
    text: str | None = None  # the customer's words, if not the reason's stock text
    delivered_days_ago: int = 3
    kind: str = "return_and_refund"
    # An exchange's: what goes out instead (it asks back the price difference).
    replacements: tuple[Item, ...] = ()

    def scenario(self, now: datetime) -> Scenario:
        today = now.date()
        lines = [_line(i.sku, i.quantity, **i.facts, **(
            {} if i.expires_in_days is None
            else {"expiry_date": str(today + timedelta(days=i.expires_in_days))}))
            for i in self.items]
        body = _request(self.external_id, now, kind=self.kind,
                        customer=self.customer.customer(today), lines=lines,
                        reason=self.reason, text=self.text,
                        delivered_days_ago=self.delivered_days_ago)
        if self.replacements:
            out = [{key: line[key] for key in ("sku", "name", "quantity", "unit_price")}
                   for line in (_line(i.sku, i.quantity) for i in self.replacements)]
            body["replacements"] = [{**r, "replaces_sku": self.items[0].sku} for r in out]
            value = sum((Decimal(r["unit_price"]) * r["quantity"] for r in out), Decimal(0))
            body["requested_amount"] = str(max(Decimal(body["requested_amount"]) - value,
                                               Decimal(0)))
        return Scenario(self.title, body, self.state, self.reviewed_for, self.dispositions,
                        self._receipt(today))

    def _receipt(self, today: date) -> tuple[Mapping[str, Any], ...]:
        if self.scan is None:
            return self.receipt
        first, *rest = self.receipt or ({},)
        return ({"udi_scan": self.scan.text(today), **first}, *rest)


RENHE = Clinic("renhe", "沪浦食药监械经营许20210456号", licence_valid_days=400)
# One customer, four requests in a few days: the fourth goes to a person (R19).
ZHAO = Consumer("zhao.lei")

SCRIPTS: tuple[Script, ...] = (
    Script("recalled lot, asked on day 45", "sc-recall", Consumer("wu.min", "en"),
           "no_longer_needed", (item("BP-CUFF-ARM", lot="BP2403", serial="BPM3001288"),),
           "closed", dispositions=("quarantine (R13)",), delivered_days_ago=45),
    Script("adverse event in Chinese free text", "sc-adverse", Consumer("chen.jing"),
           "defective", (item("DRESS-STER-10", 2, lot="DS2409", package_opened=True,
                              expires_in=500),),
           "closed", frozenset({"R14"}), ("keep_as_evidence (R14)",),
           ({"seal_intact": False, "condition": "used", "passed": False},),
           text="贴了两天后伤口红肿流脓，去医院急诊打了抗生素。"),
    Script("no-reason return on day 8", "sc-day8", Consumer("liu.yang", "en"), "changed_mind",
           (item("GLU-METER-01", lot="GM2405", serial="GM24050388"),), "denied",
           delivered_days_ago=8),
    Script("no-reason on day 7, GS1 HRI scan", "sc-day7-udi", Consumer("zhou.xin"),
           "changed_mind", (item("GLU-METER-01", lot="GM2405", serial="GM24050512"),),
           "closed", dispositions=("restock (R08)",), delivered_days_ago=7,
           scan=Scan(GTIN_METER, "GM2405", "GM24050512", produced_days_ago=200)),
    # The BP monitor's label scans with a GTIN whose check digit is wrong (9 is right).
    Script("scan with a bad GTIN check digit", "sc-bad-udi", Consumer("sun.hao"),
           "damaged_on_arrival", (item("BP-CUFF-ARM", lot="BP2407", serial="BPM7004417"),),
           "closed", dispositions=("quarantine (R16)",),
           receipt=({"condition": "damaged", "passed": False},),
           scan=Scan(GTIN_BP[:-1] + "0", "BP2407", "BPM7004417", expires_in_days=900),
           text="外壳裂了 housing cracked on arrival"),
    Script("opened sterile pack, excl. confirmed", "sc-opened-sterile", Consumer("he.lan"),
           "changed_mind", (item("DRESS-STER-10", lot="DS2409", package_opened=True,
                                 no_reason_exclusion_confirmed=True, expires_in=500),),
           "denied"),
    Script("excluded sterile pack, unconfirmed", "sc-excluded-unconfirmed",
           Consumer("ma.li", "en"), "ordered_by_mistake",
           (item("DRESS-STER-10", 2, lot="DS2409", expires_in=500),),
           "closed", dispositions=("scrap (R10)",)),
    Script("custom-made orthosis, no reason", "sc-custom-noreason", Consumer("guo.feng"),
           "changed_mind", (item("ORTHO-KNEE-CM", custom_made=True),), "denied"),
    Script("custom-made orthosis, defect", "sc-custom-defect", Consumer("guo.feng2"),
           "defective", (item("ORTHO-KNEE-CM", custom_made=True),),
           "closed", frozenset({"R06", "R20"}), ("return_to_manufacturer (R06)",),
           ({"condition": "damaged", "passed": False},),
           text="铰链用了一周就断了 hinge snapped after a week"),
    Script("clinic with an expired licence", "sc-licence-expired",
           Clinic("kangning", "粤穗食药监械经营许20190123号", licence_valid_days=-30),
           "wrong_item", (item("IMPL-SCREW-45", 10, lot="SC2402", expires_in=1100),),
           "denied", frozenset({"R15", "R20"}), text="规格发错：要 3.5 mm，收到 4.5 mm"),
    Script("implant back from a licensed clinic", "sc-implant", RENHE, "wrong_item",
           (item("IMPL-SCREW-45", lot="SC2402", serial="SC2402-0091", expires_in=1100),),
           "closed", dispositions=("restock (R08)",), text="多发了一枚 one screw too many"),
    Script("cold chain with temperature record", "sc-cold-logged", RENHE, "wrong_item",
           (item("IVD-HBA1C-20", lot="HB2408", expires_in=150),), "closed",
           dispositions=("restock (R08)",), receipt=({"temperature_log_ok": True},),
           text="要的是 40 人份 wanted the 40-test kit"),
    Script("cold chain, no temperature record", "sc-cold-unlogged",
           Clinic("anhe", "京朝食药监械经营备20220789号", licence_valid_days=400), "wrong_item",
           (item("IVD-HBA1C-20", lot="HB2408", expires_in=150),), "closed",
           dispositions=("quarantine (R11)",)),
    Script("frequent refunds 1/4", "sc-frequent-1", ZHAO, "damaged_on_arrival",
           (item("GLU-STRIP-50", 2, expires_in=300),), "closed",
           dispositions=("not_returned (R08)",), text="试纸瓶盖破损 strip vial cap broken",
           kind="refund_only"),
    Script("frequent refunds 2/4", "sc-frequent-2", ZHAO, "ordered_by_mistake",
           (item("IVD-COVID-AG", 2, lot="AG2405", expires_in=200),), "closed",
           dispositions=("restock (R08)",)),
    Script("frequent refunds 3/4", "sc-frequent-3", ZHAO, "changed_mind",
           (item("LENS-DAILY-30", lot="LD2410", expires_in=700),), "closed",
           dispositions=("scrap (R10)",)),
    Script("frequent refunds 4/4", "sc-frequent-4", ZHAO, "no_longer_needed",
           (item("GLU-STRIP-50", expires_in=300),), "denied", frozenset({"R19"})),
    # The meter comes back and its successor goes out from the sandbox ERP, once; the
    # 20.00 price difference is refunded.
    Script("exchange for the next model", "sc-exchange", Consumer("lin.na"), "wrong_item",
           (item("GLU-METER-01", lot="GM2405", serial="GM24050777"),), "closed",
           dispositions=("restock (R08)",), kind="exchange",
           replacements=(item("GLU-METER-02"),), text="想要蓝牙款 wanted the Bluetooth one"),
)


def scenarios(now: datetime) -> list[Scenario]:
    return [script.scenario(now) for script in SCRIPTS]


# ------------------------------------------------------------------ the plan


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
                    customer=Consumer(f"shopper{rng.randint(100, 199)}",
                                      rng.choice(["zh-CN", "en"])).customer(now.date()),
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


def walk_in_request(now: datetime, reason: str = "defective",
                    kind: str = "return_and_refund") -> dict[str, Any]:
    """A request a person sends while `demo --serve` runs (`refundbridge demo send`): one
    glucose meter, on a new order from a new customer each time. A defect goes to a
    reviewer (R06), then the goods come back, then the money."""
    tag = secrets.token_hex(4)
    line = _line("GLU-METER-01", lot="L2450",
                 expiry_date=(now + timedelta(days=400)).date().isoformat())
    return _request(f"walk-in-{tag}", now, kind=kind,
                    customer=Consumer(f"visitor.{tag}").customer(now.date()), lines=[line],
                    reason=reason)
