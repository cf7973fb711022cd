"""What the demo found, read back through `GET /v1/cases/{id}`, and the tables it prints."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from refundbridge.core.lifecycle import FINAL_STATES
from refundbridge.demo.scripted import Scenario


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
    # Who did what, as the audit trail names the callers: (actor, event) → events.
    acts: Counter[tuple[str, str]] = field(default_factory=Counter)


@dataclass
class DemoResult:
    cases: int
    duplicates: int
    emails: int
    sms: Counter[str]  # the customers' text messages (sandbox_sms), by delivery state
    verified: int
    elapsed: float
    figures: dict[str, Any]
    findings: Findings
    recalls_added: int
    recalls_readded: int
    previews: list[tuple[str, dict[str, Any]]]
    campaign: dict[str, Any] | None = None  # GET /v1/recall-campaigns/{id}, once all told
    signals: list[dict[str, Any]] | None = None  # GET /v1/signals, after two runs of the job

    @property
    def signals_done(self) -> bool:
        """At least one signal, raised once, its contact told and its trail verifying."""
        return self.signals is None or (bool(self.signals) and all(
            s["raised_again"] == 0 and s["verifies"] and s["notice"]["email"] == "sent"
            for s in self.signals))

    @property
    def campaign_done(self) -> bool:
        return self.campaign is None or (
            self.campaign["state"] == "monitoring" and self.campaign["audit"]["verifies"]
            and self.campaign["quarantine"]["document"] is not None
            and self.campaign["opened_again"])

    @property
    def stuck(self) -> dict[str, int]:
        return {s: n for s, n in self.figures["states"].items() if s not in FINAL_STATES}

    @property
    def unexpected(self) -> list[ScenarioResult]:
        return [r for r in self.findings.scenarios if not r.as_expected]


# ------------------------------------------------------------------ reading a case

PEOPLE = ("token:", "operator:")  # actors that are callers, not the system or the rules


def _rules_that(outcome: str, detail: Mapping[str, Any]) -> frozenset[str]:
    """The rules whose `outcome` the rules' decision of that outcome stood on."""
    return frozenset(
        rule["id"] for decision in detail["decisions"]
        if decision["decided_by"] == "rules" and decision["outcome"] == outcome
        for rule in decision["rules"] if rule["outcome"] == outcome)


def review_rules(detail: Mapping[str, Any]) -> frozenset[str]:
    """The rules that sent the case to a person."""
    return _rules_that("review", detail)


def deny_rules(detail: Mapping[str, Any]) -> frozenset[str]:
    """The rules whose deny the rules' decision stood on (a deny overruled by a recall or an
    adverse event does not count)."""
    return _rules_that("deny", detail)


def _path(detail: Mapping[str, Any]) -> str:
    """Who decided what: "approve" (the rules), or "review R06 R20 → approve" (a person)."""
    steps = []
    for decision in detail["decisions"]:
        outcome = decision["outcome"]
        if outcome == "review":
            outcome = " ".join(["review", *sorted(review_rules(detail))])
        steps.append(outcome)
    return " → ".join(steps)


def _count_goods_and_duties(found: Findings, detail: Mapping[str, Any]) -> None:
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


def findings(details: Sequence[Mapping[str, Any]], scripted: Mapping[str, Scenario]
             ) -> Findings:
    """What the cases show, and how each scripted case (`scripted`: by case id) ended."""
    found = Findings()
    for detail in details:
        for decision in detail["decisions"]:
            by = "rules" if decision["decided_by"] == "rules" else "reviewer"
            found.decisions[(by, decision["outcome"])] += 1
        found.acts.update((event["actor"], event["name"]) for event in detail["timeline"]
                          if event["actor"].startswith(PEOPLE))
        reviewed = review_rules(detail)
        found.review_rules.update(reviewed)
        found.deny_rules.update(deny_rules(detail))
        _count_goods_and_duties(found, detail)
        scenario = scripted.get(detail["id"])
        if scenario is not None:
            found.scenarios.append(ScenarioResult(
                scenario, detail["state"], reviewed, _path(detail),
                tuple(f"{d['disposition']} ({d['rule']})" for d in detail["dispositions"])
                if detail["state"] != "denied" else ()))
    order = {id(s): i for i, s in enumerate(scripted.values())}
    found.scenarios.sort(key=lambda r: order[id(r.scenario)])
    return found


# ------------------------------------------------------------------ the tables

RULE_NAMES = {
    "G01": "over-refund guard", "G02": "refunded through another provider",
    "G03": "units already returned or held", "R02": "no-reason window", "R03": "custom-made",
    "R04": "excluded, confirmed at purchase", "R05": "single-use seal broken",
    "R01": "unit not matched to the shipment", "R06": "quality claim",
    "R09": "near expiry", "R14": "possible adverse event", "R15": "buyer's qualification",
    "R16": "UDI does not parse or match", "R19": "frequent refunds",
    "R20": "over the auto-approval limit", "A00": "reason the rules cannot judge",
}


def print_previews(console: Console, previews: list[tuple[str, dict[str, Any]]]) -> None:
    for title, decision in previews:
        deciding = [r for r in decision["rules"] if r["outcome"] != "pass"]
        console.print(f"preview (POST /v1/evaluate, nothing stored) of '{title}': "
                      f"[bold]{decision['decision']}[/]", soft_wrap=True)
        for rule in deciding:
            console.print(f"  {rule['id']} {rule['outcome']}: {rule['message']}",
                          soft_wrap=True, markup=False)


def print_report(console: Console, result: DemoResult) -> None:
    """The scenarios' table, the summary, and what went otherwise than it should."""
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
    for (actor, event), count in sorted(found.acts.items()):
        table.add_row(f"by {actor}: {event}", str(count))
    table.add_section()
    table.add_row("emails received by SMTP", str(result.emails))
    table.add_row("SMS (sandbox_sms) by state",
                  ", ".join(f"{state} {n}" for state, n in sorted(result.sms.items())) or "none")
    table.add_row("duplicate webhooks answered 200", str(result.duplicates))
    table.add_row("audit chains verified", f"{result.verified}/{result.cases}")
    scenarios_ok = sum(r.as_expected for r in found.scenarios)
    table.add_row("scenarios as expected", f"{scenarios_ok}/{len(found.scenarios)}")
    if result.campaign is not None:
        _campaign_rows(table, result.campaign)
    for signal in result.signals or []:
        table.add_row(f"quality signal: {signal['threshold']['name']}",
                      f"{signal['sku']} lot {signal['lot']}: {signal['count']} cases in "
                      f"{signal['window_start']}–{signal['window_end']}")
        table.add_row("signal: quality contact told (email / SMS)",
                      f"{signal['notice']['email']} / {signal['notice']['sms']}")
        table.add_row("signal: raised again by a second run",
                      "no" if signal["raised_again"] == 0 else "YES")
        table.add_row("signal: audit chain", "verifies" if signal["verifies"] else "BROKEN")
    console.print(table)


def _campaign_rows(table: Table, campaign: dict[str, Any]) -> None:
    notice, counts = campaign["notice"], campaign["counts"]
    table.add_section()
    table.add_row(f"recall campaign {notice['reference']}",
                  f"class {notice['class']}, lot {', '.join(notice['lots'])}, "
                  f"{campaign['state']}")
    table.add_row("campaign: consignees found in the ERP", str(counts["consignees"]))
    table.add_row("campaign: consignees told (email and/or SMS)",
                  f"{counts['notified']}, by {campaign['notice_due']} (the class's deadline)")
    table.add_row("campaign: units shipped / quarantined on hand",
                  f"{counts['units_shipped']} / {campaign['quarantine']['units']}")
    table.add_row("campaign: opened twice, one campaign",
                  "yes" if campaign["opened_again"] else "NO")
    table.add_row("campaign: audit chain", "verifies" if campaign["audit"]["verifies"]
                  else "BROKEN")
