"""A recall campaign's report: one row per consignee, the totals of those rows, and whether the
campaign's audit trail verifies.

Three shapes of the same rows:

- CSV (`csv_chunks`), streamed page by page for 50,000 consignees: UTF-8 with a BOM so Excel
  opens the Chinese names, RFC 4180 quoting by the `csv` module, and every text cell that a
  spreadsheet would run as a formula (starting with = + - @, a tab or a CR) prefixed with an
  apostrophe (OWASP's CSV-injection advice).
- One HTML document (`html_chunks`, template `templates/campaign_report.html.j2`), printable
  and self-contained, with two sections: China's 召回计划实施情况报告 ([RECALL]
  医疗器械召回管理办法) and the FDA recall status report (21 CFR 7.53), labels in Chinese
  and English.

The totals are added up from the very rows the report lists, never taken from a separate
count, so what the document sums is what it shows. The database's own count
(`CampaignRepository.counts`) is read beside them as a cross-check: a difference (a consignee
acknowledging while the report was read) is printed, not hidden.

Part of the pure core: no SQL, no HTTP; the rows come through `ReportSource`, which the store
implements (`store.campaigns.SqlCampaignRepository`).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Protocol

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from refundbridge.core.audit import AuditEvent, verify_chain
from refundbridge.core.campaigns import (
    REMINDERS,
    CampaignCounts,
    CampaignState,
    ConsigneeRecord,
    NoticeState,
    RecallCampaign,
)
from refundbridge.core.money import Money

PAGE = 500  # consignees read (and CSV rows written) at a time
BOM = "\ufeff"
# What Excel, LibreOffice and Google Sheets take for the start of a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_TOLD = frozenset({NoticeState.SENT, NoticeState.UNCONFIRMED})
_UNREACHED = frozenset({NoticeState.FAILED, NoticeState.NONE})
_WAITING = frozenset({NoticeState.PENDING, NoticeState.CLAIMED, NoticeState.SENDING})


@dataclass(frozen=True, slots=True)
class CaseOutcome:
    """What a consignee's recall case came to, as far as the report needs it."""

    case_id: str
    state: str
    refunded: Money | None  # None: nothing paid back (yet)
    units_returned: int  # units the warehouse received on it (0: none yet)


class ReportSource(Protocol):
    """The reads the report is built from (store/campaigns.py)."""

    def get(self, campaign_id: str) -> RecallCampaign: ...

    def counts(self, campaign_id: str) -> CampaignCounts: ...

    def consignees(self, campaign_id: str, *, after: int = 0, limit: int = 100
                   ) -> list[ConsigneeRecord]: ...

    def events(self, campaign_id: str) -> list[AuditEvent]: ...

    def case_outcomes(self, case_ids: Sequence[str]) -> dict[str, CaseOutcome]: ...


# ------------------------------------------------------------------ rows


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One consignee, as the report lists them."""

    consignee_id: int
    key: str
    name: str
    email: str | None
    phone: str | None
    lots: str  # the lots (or serials) of the units they received
    units_shipped: int
    email_state: NoticeState
    sms_state: NoticeState
    notified_at: datetime | None
    reminders: int
    attempts: int
    delivery: str | None
    acknowledged_at: datetime | None
    stopped_use: bool | None  # None: no answer
    quantity_held: int | None
    wants_return: bool | None
    passed_on: bool | None
    note: str
    case_id: str | None
    case_state: str | None
    case_problem: str | None
    units_returned: int
    refunded: Money | None

    @property
    def methods(self) -> tuple[str, ...]:
        """The channels the notice went out on."""
        return tuple(name for name, state in (("email", self.email_state),
                                              ("sms", self.sms_state)) if state in _TOLD)

    @property
    def notified(self) -> bool:
        return bool(self.methods)

    @property
    def delivered(self) -> bool:
        # As `CampaignCounts.delivered`: an email accepted, or an SMS the carrier delivered.
        return self.email_state is NoticeState.SENT or self.delivery == "delivered"

    @property
    def unreached(self) -> bool:
        return self.email_state in _UNREACHED and self.sms_state in _UNREACHED

    @property
    def waiting(self) -> bool:
        return self.email_state in _WAITING or self.sms_state in _WAITING

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_at is not None


def report_row(record: ConsigneeRecord, outcome: CaseOutcome | None) -> ReportRow:
    ack = record.acknowledgement
    marks = sorted({u.serial or u.lot or "" for u in record.units} - {""})
    return ReportRow(
        consignee_id=record.id, key=record.key, name=record.name, email=record.email,
        phone=record.phone, lots=" ".join(marks), units_shipped=record.quantity,
        email_state=record.email_state, sms_state=record.sms_state,
        notified_at=record.notified_at, reminders=record.reminders, attempts=record.attempts,
        delivery=record.delivery, acknowledged_at=record.acknowledged_at,
        stopped_use=None if ack is None else ack.stopped_use,
        quantity_held=None if ack is None else ack.quantity_held,
        wants_return=None if ack is None else ack.wants_return,
        passed_on=None if ack is None else ack.passed_on,
        note="" if ack is None else ack.note, case_id=record.case_id,
        case_state=outcome.state if outcome else None, case_problem=record.case_problem,
        units_returned=outcome.units_returned if outcome else 0,
        refunded=outcome.refunded if outcome else None)


def iter_rows(source: ReportSource, campaign_id: str, page: int = PAGE
              ) -> Iterator[ReportRow]:
    """Every consignee of the campaign by id, a keyset page at a time, with their case."""
    after = 0
    while True:
        records = source.consignees(campaign_id, after=after, limit=page)
        if not records:
            return
        outcomes = source.case_outcomes([r.case_id for r in records if r.case_id])
        for record in records:
            yield report_row(record, outcomes.get(record.case_id or ""))
        if len(records) < page:
            return
        after = records[-1].id


# ------------------------------------------------------------------ totals


@dataclass(slots=True)
class ReportTotals:
    """The sums of the listed rows. Add rows with `add`; nothing else changes it."""

    consignees: int = 0
    notified: int = 0
    by_email: int = 0
    by_sms: int = 0
    delivered: int = 0
    unreached: int = 0  # every channel failed, or none was there: a person follows up
    waiting: int = 0  # a notice not yet sent on some channel
    acknowledged: int = 0
    stopped_use: int = 0
    passed_on: int = 0
    reminders: int = 0
    units_shipped: int = 0
    units_held: int = 0  # on hand when they answered, as acknowledged
    units_to_return: int = 0
    units_returned: int = 0
    cases: int = 0
    case_problems: int = 0  # a refund a person must arrange
    refunds_paid: int = 0
    refunded: dict[str, Money] = field(default_factory=dict)
    first_notified: datetime | None = None
    last_notified: datetime | None = None

    def add(self, row: ReportRow) -> None:
        self.consignees += 1
        self.notified += row.notified
        self.by_email += "email" in row.methods
        self.by_sms += "sms" in row.methods
        self.delivered += row.delivered
        self.unreached += row.unreached
        self.waiting += row.waiting
        self.acknowledged += row.acknowledged
        self.stopped_use += bool(row.stopped_use)
        self.passed_on += bool(row.passed_on)
        self.reminders += row.reminders
        self.units_shipped += row.units_shipped
        self.units_held += row.quantity_held or 0
        self.units_to_return += (row.quantity_held or 0) if row.wants_return else 0
        self.units_returned += row.units_returned
        self.cases += row.case_id is not None
        self.case_problems += row.case_problem is not None
        if row.refunded is not None and row.refunded.is_positive():
            self.refunds_paid += 1
            known = self.refunded.get(row.refunded.currency)
            self.refunded[row.refunded.currency] = (
                row.refunded if known is None else known + row.refunded)
        if row.notified_at is not None:
            if self.first_notified is None or row.notified_at < self.first_notified:
                self.first_notified = row.notified_at
            if self.last_notified is None or row.notified_at > self.last_notified:
                self.last_notified = row.notified_at

    @property
    def no_response(self) -> int:
        """Consignees told who have not answered."""
        return self.notified - min(self.acknowledged, self.notified)

    def share(self, part: int, whole: int | None = None) -> str:
        whole = self.consignees if whole is None else whole
        return "-" if not whole else f"{100 * part / whole:.1f} %"

    def refunded_text(self) -> str:
        return ", ".join(str(m) for _, m in sorted(self.refunded.items())) or "0"

    def differences(self, counts: CampaignCounts) -> list[tuple[str, int | str, int | str]]:
        """(figure, these rows, the database's count) wherever they differ."""
        mine: dict[str, int | str] = {
            "consignees": self.consignees, "notified": self.notified,
            "delivered": self.delivered, "failed": self.unreached,
            "acknowledged": self.acknowledged, "units_shipped": self.units_shipped,
            "units_held": self.units_held, "units_to_return": self.units_to_return,
            "units_returned": self.units_returned, "cases": self.cases,
            "refunds_paid": self.refunds_paid,
            "refunded": ", ".join(f"{c} {m.amount}" for c, m in sorted(self.refunded.items()))}
        theirs = counts.as_json()
        theirs["refunded"] = ", ".join(f"{c} {a}" for c, a in sorted(counts.refunded.items()))
        return [(name, value, theirs[name]) for name, value in mine.items()
                if value != theirs[name]]


# ------------------------------------------------------------------ the report


@dataclass(frozen=True, slots=True)
class ChainStatus:
    verifies: bool
    events: int
    head: str | None
    problem: str | None


def chain_status(campaign: RecallCampaign, events: list[AuditEvent]) -> ChainStatus:
    """The trail recomputed, and the campaign's own head found in it (a trail cut short
    after the campaign was read would recompute cleanly and still be wrong)."""
    check = verify_chain(events)
    head = events[-1].hash if events else None
    if not check.verifies:
        return ChainStatus(False, len(events), head,
                           f"event {check.first_broken_seq}: {check.problem}")
    if campaign.audit_seq > len(events) or (
            campaign.audit_seq and events[campaign.audit_seq - 1].hash != campaign.audit_head):
        return ChainStatus(False, len(events), head,
                           f"the campaign's head (event {campaign.audit_seq}) is not in the "
                           "trail")
    return ChainStatus(True, len(events), head, None)


@dataclass(frozen=True, slots=True)
class CampaignReport:
    campaign: RecallCampaign
    rows: list[ReportRow]
    totals: ReportTotals
    counts: CampaignCounts  # the database's count, read after the rows
    chain: ChainStatus
    generated_at: datetime
    generated_by: str

    @property
    def differences(self) -> list[tuple[str, int | str, int | str]]:
        return self.totals.differences(self.counts)

    @property
    def expected_completion(self) -> datetime | None:
        """Closed: when it closed. Open: when the last reminder to the last consignee told
        falls due (our schedule by class); after it only the effectiveness check is left."""
        if self.campaign.closed_at is not None:
            return self.campaign.closed_at
        every, most = REMINDERS[self.campaign.notice.recall_class]
        anchor = self.totals.last_notified
        return None if anchor is None else anchor + every * most


def build_report(source: ReportSource, campaign_id: str, *, at: datetime, by: str,
                 page: int = PAGE) -> CampaignReport:
    """Read the campaign, its rows and trail; the rows are kept for the HTML table."""
    campaign = source.get(campaign_id)
    totals = ReportTotals()
    rows: list[ReportRow] = []
    for row in iter_rows(source, campaign_id, page):
        totals.add(row)
        rows.append(row)
    counts = source.counts(campaign_id)
    chain = chain_status(campaign, source.events(campaign_id))
    return CampaignReport(campaign, rows, totals, counts, chain, at, by)


# ------------------------------------------------------------------ CSV


CSV_COLUMNS = (
    "consignee_id", "consignee_key", "name", "email", "phone", "lots_or_serials",
    "units_shipped", "methods", "email_state", "sms_state", "notified_at", "reminders",
    "attempts", "delivery", "acknowledged_at", "stopped_use", "quantity_held",
    "wants_return", "passed_on", "note", "case_id", "case_state", "case_problem",
    "units_returned", "refunded_amount", "refunded_currency",
)


def safe_cell(value: object) -> str:
    """The cell's text, with a formula's start neutralised: a spreadsheet shows
    `'=HYPERLINK(…)` as text instead of running it."""
    text = "" if value is None else value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value is not None else ""


def _yes(value: bool | None) -> str:
    return "" if value is None else "yes" if value else "no"


def csv_cells(row: ReportRow) -> list[str]:
    return [safe_cell(v) for v in (
        row.consignee_id, row.key, row.name, row.email, row.phone, row.lots,
        row.units_shipped, "+".join(row.methods), row.email_state.value, row.sms_state.value,
        _when(row.notified_at), row.reminders, row.attempts, row.delivery,
        _when(row.acknowledged_at), _yes(row.stopped_use),
        "" if row.quantity_held is None else row.quantity_held, _yes(row.wants_return),
        _yes(row.passed_on), row.note, row.case_id, row.case_state, row.case_problem,
        row.units_returned, row.refunded.amount if row.refunded else "",
        row.refunded.currency if row.refunded else "")]


def csv_chunks(rows: Iterator[ReportRow], *, every: int = PAGE) -> Iterator[bytes]:
    """The CSV, UTF-8 with a BOM, in chunks of `every` rows: the header first, then one
    line per consignee (CRLF, as RFC 4180 has it)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # the excel dialect: RFC 4180 quoting, CRLF
    buffer.write(BOM)
    writer.writerow(CSV_COLUMNS)
    for written, row in enumerate(rows, start=1):
        writer.writerow(csv_cells(row))
        if written % every == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


# ------------------------------------------------------------------ HTML


TEMPLATES = Path(__file__).resolve().parent / "templates"


def _utc(value: datetime | None, pattern: str) -> str:
    return value.astimezone(UTC).strftime(pattern) if value is not None else "-"


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else "是 yes" if value else "否 no"


@cache
def _environment() -> Environment:
    # Built on first use, not at import. Autoescape on for every template whatever its
    # name: a consignee's name comes from the ERP and is printed as text, whatever it holds.
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = lambda v: _utc(v, "%Y-%m-%d %H:%M UTC")
    env.filters["day"] = lambda v: _utc(v, "%Y-%m-%d")
    env.filters["yes"] = _yes_no
    return env


def html_chunks(report: CampaignReport, *, size: int = 1 << 16) -> Iterator[str]:
    """The HTML document as the template renders it, in pieces of about `size` characters
    (the template's own pieces are a few bytes each: too many to stream one by one)."""
    pending: list[str] = []
    held = 0
    for piece in _render(report):
        pending.append(piece)
        held += len(piece)
        if held >= size:
            yield "".join(pending)
            pending, held = [], 0
    if pending:
        yield "".join(pending)


def _render(report: CampaignReport) -> Iterator[str]:
    template = _environment().get_template("campaign_report.html.j2")
    notice = report.campaign.notice
    return template.generate(
        r=report, c=report.campaign, n=notice, t=report.totals,
        closed=report.campaign.state is CampaignState.CLOSED,
        scope=", ".join(notice.serials or notice.lots) or "all lots / 全部批次",
        product=" / ".join(v for v in (notice.sku, notice.gtin) if v))
