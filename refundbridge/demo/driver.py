"""The demo's driver: it sends the requests and plays the people the cases wait on.

It imports the recall list as CSV through `POST /v1/recalls`, previews two decisions with
`POST /v1/evaluate`, then sends signed requests through the real webhook path (replaying
some, as storefronts do). It plays the warehouse (receipts with inspections, UDI scans and
temperature records) and the reviewer (a decision with an internal note on every case the
rules sent to a person, and a message to the customer with a refusal), each through a token of
their own, so the audit trail names who did what. A second reviewer confirms the decisions
that take four eyes.

`--serve` then leaves the system running for a person: console accounts for the demo shop,
and `refundbridge demo send` (`send_request`) to send a new request the worker picks up.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from refundbridge.connectors.generic.webhooks import sign
from refundbridge.core.access import OperatorRole
from refundbridge.core.lifecycle import FINAL_STATES
from refundbridge.core.services.signals import run_signals
from refundbridge.demo.catalogue import CAMPAIGN_REFERENCE, SHOP, campaign_body, recall_csv
from refundbridge.demo.report import (
    DemoResult,
    findings,
    print_previews,
    print_report,
    review_rules,
)
from refundbridge.demo.scripted import Scenario, demo_requests, walk_in_request
from refundbridge.demo.stack import REVIEWER, SECOND_REVIEWER, WAREHOUSE, EmbeddedStack
from refundbridge.store import queries

INSPECTOR = WAREHOUSE  # who inspects the goods is who records the receipt
# The console accounts `--serve` makes for the demo shop (passwords new each run).
CONSOLE_ACCOUNTS: dict[str, OperatorRole] = {
    REVIEWER: OperatorRole.REVIEWER, WAREHOUSE: OperatorRole.WAREHOUSE,
    "auditor.sun": OperatorRole.AUDITOR, "quality.wu": OperatorRole.QUALITY,
    "admin.demo": OperatorRole.ADMIN}

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


def review_decision(detail: Mapping[str, Any]) -> dict[str, str]:
    """The reviewer's decision: an internal note on every case (why), and a message to the
    customer with a refusal."""
    rules = sorted(review_rules(detail))
    refused = [r for r in rules if r in DENY_NOTES]
    if refused:
        return {"decision": "deny",
                "internal_note": " ".join(DENY_NOTES[r] for r in refused),
                "customer_message": " ".join(DENY_MESSAGES[r] for r in refused)}
    notes = [REVIEW_NOTES.get(r, f"{r} checked.") for r in rules] or ["Checked; approved."]
    return {"decision": "approve", "internal_note": " ".join(notes)}


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


# ------------------------------------------------------------------ talking to the API


def _import_recalls(http: httpx.Client, auth: dict[str, str], today: date) -> tuple[int, int]:
    """Import the recall CSV twice: the second import must add nothing."""
    counts = []
    for _ in range(2):
        answer = http.post("/v1/recalls", params={"shop": SHOP},
                           content=recall_csv(today).encode(),
                           headers={**auth, "Content-Type": "text/csv; charset=utf-8"})
        counts.append(int(answer.raise_for_status().json()["added"]))
    return counts[0], counts[1]


def _run_campaign(http: httpx.Client, auth: dict[str, str], today: date, console: Console,
                  timeout: float = 120.0) -> dict[str, Any]:
    """Open the recall campaign of lot BP2403 (twice: the second open changes nothing) and
    follow it until every consignee is told and the stock on hand is quarantined."""
    body = campaign_body(today)
    opened = http.post("/v1/recall-campaigns", json=body, headers=auth).raise_for_status().json()
    again = http.post("/v1/recall-campaigns", json=body, headers=auth).raise_for_status().json()
    url = f"/v1/recall-campaigns/{opened['id']}"
    deadline = time.monotonic() + timeout
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task(f"recall campaign {body['reference']}: consignees told",
                                 total=None)
        while True:
            shown = http.get(url, headers=auth).raise_for_status().json()
            counts = shown["counts"]
            progress.update(task, total=counts["consignees"] or None,
                            completed=counts["notified"])
            # The quarantine runs beside the notices: every consignee can be told before the
            # ERP's move is recorded, and the demo's ERP always makes one.
            done = shown["state"] in {"monitoring", "closed"} and (
                shown["quarantine"]["document"] is not None)
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    return {**shown, "opened_again": not again["created"] and again["id"] == opened["id"]}


PREVIEWED = ("sc-recall", "sc-day8")


def _raise_signals(http: httpx.Client, auth: dict[str, str], stack: EmbeddedStack,
                   console: Console) -> list[dict[str, Any]]:
    """Run the quality-signal job (the reconciler's periodic run, here at once) twice over
    the finished returns: the first run raises what they cross, the second nothing again."""
    store = stack.container.services.signals
    assert store is not None
    first = run_signals(stack.container.services, store, [SHOP])
    second = run_signals(stack.container.services, store, [SHOP])
    listed = http.get("/v1/signals", params={"shop": SHOP}, headers=auth)
    signals = [
        {**s, "raised_again": len(second.raised),
         "verifies": http.get(f"/v1/signals/{s['id']}", headers=auth)
         .raise_for_status().json()["audit"]["verifies"]}
        for s in listed.raise_for_status().json()["signals"]]
    for s in signals:
        console.print(f"quality signal {s['id']}: {s['threshold']['name']} on {s['sku']} lot "
                      f"{s['lot']} ({s['count']} cases, {s['window_start']}–{s['window_end']}); "
                      f"quality contact told by email {s['notice']['email']}, "
                      f"SMS {s['notice']['sms']}", soft_wrap=True)
    console.print(f"signal job: first run raised {len(first.raised)}, "
                  f"the second {len(second.raised)}")
    return signals


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


@dataclass
class Sent:
    """What the webhook answered: a case per request, and how many replays it took as such."""

    cases: dict[str, str] = field(default_factory=dict)  # external id → case id
    scripted: dict[str, Scenario] = field(default_factory=dict)  # case id → its scenario
    duplicates: int = 0  # replays answered 200


def _send(http: httpx.Client, shop_secret: str,
          plan: Sequence[tuple[dict[str, Any], Scenario | None]],
          progress: Progress, task: TaskID) -> Sent:
    """Send every request as the storefront signs it."""
    sent = Sent()
    for index, (body, scenario) in enumerate(plan):
        raw = json.dumps(body, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json",
                   "X-RefundBridge-Signature": sign(shop_secret, raw, int(time.time()))}
        answer = http.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
        answer.raise_for_status()
        case_id = answer.json()["case_id"]
        sent.cases[body["external_id"]] = case_id
        if scenario is not None:
            sent.scripted[case_id] = scenario
        if index % 10 == 3:  # storefronts retry: a replay must not open a second case
            again = http.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
            sent.duplicates += again.status_code == 200
        progress.advance(task)
    return sent


@dataclass(frozen=True)
class People:
    """Who the driver plays, as the headers of their calls (`EmbeddedStack.auth`)."""

    reviewer: dict[str, str]
    second_reviewer: dict[str, str]
    warehouse: dict[str, str]

    @classmethod
    def of(cls, stack: EmbeddedStack) -> People:
        return cls(stack.auth(REVIEWER), stack.auth(SECOND_REVIEWER), stack.auth(WAREHOUSE))


SECOND_LOOK = "Second look at the case and the first reviewer's note: agreed."


def _decide(http: httpx.Client, people: People, url: str) -> None:
    """The reviewer decides; where four eyes apply, that only proposes, and the second
    reviewer confirms."""
    detail = http.get(url, headers=people.reviewer).raise_for_status().json()
    proposal = detail.get("pending_review")
    if proposal is None:
        http.post(f"{url}/review", headers=people.reviewer,
                  json=review_decision(detail)).raise_for_status()
    elif proposal["proposed_by"] != f"token:{SECOND_REVIEWER}":
        http.post(f"{url}/review/confirm", headers=people.second_reviewer,
                  json={"agree": True, "internal_note": SECOND_LOOK}).raise_for_status()


def _drive(http: httpx.Client, people: People, case_ids: set[str],
           scripted: Mapping[str, Scenario]) -> int:
    """Play warehouse and reviewer for the cases that wait on a person; count final ones."""
    final = 0
    for case in _all_cases(http, people.reviewer):
        if case["id"] not in case_ids:
            continue
        state = case["state"]
        url = f"/v1/cases/{case['id']}"
        if state in FINAL_STATES:
            final += 1
        elif state == "awaiting_review":
            _decide(http, people, url)
        elif state == "awaiting_return":
            detail = http.get(url, headers=people.warehouse).raise_for_status().json()
            http.post(f"{url}/receipt", headers=people.warehouse, json={"lines": inspections(
                detail, scripted.get(case["id"]))}).raise_for_status()
        elif state == "failed":
            http.post(f"{url}/retry", headers=people.reviewer).raise_for_status()
    return final


def _drive_until_final(http: httpx.Client, people: People, sent: Sent,
                       progress: Progress, task: TaskID) -> None:
    """Drive the cases until every one is final, for three minutes at the most."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        final = _drive(http, people, set(sent.cases.values()), sent.scripted)
        progress.update(task, completed=final)
        if final == len(sent.cases):
            break
        time.sleep(0.2)


def _all_cases(http: httpx.Client, auth: dict[str, str]) -> Iterator[dict[str, Any]]:
    """Every case, page by page: `--cases` may ask for more than one page holds."""
    params: dict[str, Any] = {"shop": SHOP, "limit": 500}
    while True:
        page = http.get("/v1/cases", params=params, headers=auth).raise_for_status().json()
        yield from page["items"]
        if page["next_cursor"] is None:
            return
        params["cursor"] = page["next_cursor"]


# ------------------------------------------------------------------ the run


def run_demo(*, cases: int = 50, serve: bool = False, port: int = 0,
             database: str = "refundbridge-demo.db") -> int:
    console = Console()
    result = run(cases=cases, serve=serve, port=port, database=database, console=console)
    return 1 if (result.stuck or result.unexpected or not result.campaign_done
                 or not result.signals_done) else 0


def run(*, cases: int = 50, serve: bool = False, port: int = 0,
        database: str = "refundbridge-demo.db", console: Console | None = None,
        stop: threading.Event | None = None) -> DemoResult:
    """The scripted run and its report; with `serve`, then the system stays up for a person
    until Ctrl-C (or `stop` is set)."""
    console = console or Console()
    logging.getLogger("rq.worker").setLevel(logging.WARNING)
    stack = EmbeddedStack(Path(database), port)
    try:
        result = _scripted_run(stack, cases, console, keep_worker=serve)
        print_report(console, result)
        if serve:
            _serve_until_interrupted(console, stack, stop or threading.Event())
    finally:
        stack.close()
    return result


def _scripted_run(stack: EmbeddedStack, cases: int, console: Console, *,
                  keep_worker: bool) -> DemoResult:
    auth = stack.auth()  # the shop's administrator: the recall list, the previews
    people = People.of(stack)
    console.print(f"[bold]RefundBridge demo[/] API {stack.base_url}", soft_wrap=True)
    now = datetime.now(UTC)
    plan = list(demo_requests(cases, now))
    started = time.monotonic()
    with httpx.Client(base_url=stack.base_url, timeout=30) as http:
        added, readded = _import_recalls(http, auth, now.date())
        console.print(f"recall list: {added} notices imported from CSV through POST /v1/recalls"
                      f" (importing the file again added {readded})")
        previews = _preview(http, auth, [s for _, s in plan if s is not None])
        print_previews(console, previews)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("sending requests", total=len(plan))
            sent = _send(http, stack.shop_secret, plan, progress, task)
            progress.update(task, description="cases finished")
            progress.update(task, completed=0)
            _drive_until_final(http, people, sent, progress, task)
        details = [http.get(f"/v1/cases/{case_id}", headers=auth).raise_for_status().json()
                   for case_id in sent.cases.values()]
        # Opened once the cases are done: the campaign's notice joins the recall list, and
        # the scripted requests were decided against the list as it stood.
        campaign = _run_campaign(http, auth, now.date(), console)
        signals = _raise_signals(http, auth, stack, console)

    elapsed = time.monotonic() - started
    if not keep_worker:
        stack.stop_worker()
    engine = stack.container.engine
    return DemoResult(
        cases=len(sent.cases), duplicates=sent.duplicates, emails=len(stack.mailbox.messages),
        sms=Counter(n.get("state") or n["status"] for case in details
                    for n in case["notifications"] if n.get("channel") == "sms"),
        verified=sum(queries.case_evidence(engine, case_id)["verifies"]
                     for case_id in sent.cases.values()),
        elapsed=elapsed, figures=queries.totals(engine),
        findings=findings(details, sent.scripted), recalls_added=added,
        recalls_readded=readded, previews=previews, campaign=campaign, signals=signals)


# ------------------------------------------------------------------ --serve: over to a person


def console_accounts(stack: EmbeddedStack) -> dict[str, tuple[OperatorRole, str]]:
    """Make the demo shop's console accounts, each with a new random password."""
    made = {}
    for name, role in CONSOLE_ACCOUNTS.items():
        password = secrets.token_urlsafe(12)
        stack.container.operators.add(name, role, [SHOP], password)
        made[name] = (role, password)
    return made


def _serve_until_interrupted(console: Console, stack: EmbeddedStack,
                             stop: threading.Event) -> None:
    stack.keep_serving()
    accounts = console_accounts(stack)
    url = stack.base_url
    console.print(f"\n[bold]Over to you.[/] The console: {url}/console/login", soft_wrap=True)
    for name, (role, password) in accounts.items():
        console.print(f"  login {name:<16} password {password}  ({role.value})",
                      soft_wrap=True, markup=False)
    console.print("Send a new request (a defective glucose meter: a reviewer decides it, the "
                  "warehouse receives it, then the money goes back):", soft_wrap=True)
    console.print(f"  refundbridge demo send --url {url} --secret {stack.shop_secret}",
                  soft_wrap=True, markup=False)
    newest = stack.container.reads.list_cases(shop=SHOP, state=None, limit=1, cursor=None)
    links = stack.container.api_services.status_links
    if newest["items"] and links is not None:
        case_id = newest["items"][0]["id"]
        console.print(f"A customer's status page (case {case_id}, the link in every email):",
                      soft_wrap=True)
        console.print(f"  {links.link_for(case_id, SHOP)}", soft_wrap=True, markup=False)
    campaign = stack.container.campaigns.by_reference(SHOP, CAMPAIGN_REFERENCE)
    if campaign is not None and links is not None:
        first = stack.container.campaigns.consignees(campaign.id, limit=1)
        if first:
            console.print(f"A consignee's recall acknowledgement page ({first[0].name}, the "
                          f"link in their notice), and the campaign: {url}/console/recalls/"
                          f"{campaign.id}", soft_wrap=True)
            console.print(f"  {links.recall_link_for(campaign.id, first[0].id, SHOP)}",
                          soft_wrap=True, markup=False)
    console.print(f"API: {url}/docs, RQ dashboard {url}/ops/rq/", soft_wrap=True)
    console.print(f"  Authorization: Bearer {stack.operator_token}  (every permission)",
                  soft_wrap=True, markup=False)
    for name, token in stack.tokens.items():
        console.print(f"  Authorization: Bearer {token}  (token:{name})", soft_wrap=True,
                      markup=False)
    console.print("The worker keeps running. Ctrl-C to stop.", soft_wrap=True)
    try:
        while not stop.wait(1):
            pass
    except KeyboardInterrupt:
        pass


def send_request(url: str, shop_secret: str, *, reason: str = "defective",
                 kind: str = "return_and_refund") -> dict[str, Any]:
    """Sign and send a new request to a running `demo --serve` as the storefront would;
    the webhook's answer (`case_id`)."""
    body = walk_in_request(datetime.now(UTC), reason=reason, kind=kind)
    raw = json.dumps(body, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json",
               "X-RefundBridge-Signature": sign(shop_secret, raw, int(time.time()))}
    answer = httpx.post(f"{url.rstrip('/')}/webhooks/{SHOP}/generic", content=raw,
                        headers=headers, timeout=30)
    answer.raise_for_status()
    result: dict[str, Any] = answer.json()
    return result
