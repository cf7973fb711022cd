"""Evidence packages: one ZIP an auditor can check offline, with no database.

For each case it holds the audit trail as JSON (`cases/<id>/events.json`, every event with
its `hash` and `prev_hash`), the case as the operator API shows it (`cases/<id>/case.json`),
a recall campaign of the lot the same way (`campaigns/<id>/events.json` and
`campaigns/<id>/campaign.json`: its own hash-chained trail, listed under `campaigns` in the
manifest), and, for the whole package, `report.html` (readable, self-contained: no script,
no external file), `manifest.json` (what, for whom, made by whom and when; per case the
number of events and the chain's head; every other file's SHA-256) and `SHA256SUMS` (the
same sums and the manifest's, as `sha256sum -c` reads them).

`verify_package` recomputes every chain with `core.audit` (each event's hash from its
content and the hash before it) and every file's sum, and names the first problem it finds.
A package made by someone who rewrote an event *and* its hash fails at the next event,
whose `prev_hash` still names the original; one who rewrote the whole chain from there on
(and the manifest, and the sums) can only be caught by comparing the head with the live
system's (`GET /v1/cases/{id}/evidence`), which is why the report and `evidence verify`
print the heads.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, Undefined
from markupsafe import Markup, escape

from refundbridge.core.audit import GENESIS, AuditEvent

TEMPLATES = Path(__file__).resolve().parent / "templates"
FORMAT = "refundbridge-evidence/1"
MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
REPORT = "report.html"
EXPORT_EVENT = "evidence_exported"
# Case ids are ours (`rc_` + hex); anything else in a package's manifest is refused, so a
# forged manifest cannot point the verifier outside `cases/`.
CASE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# What a package may unpack to: a zip bomb is refused before it fills the memory.
MAX_UNPACKED = 1024 * 2**20
EVENT_FIELDS = ("seq", "at", "actor", "name", "from_state", "to_state", "data", "prev_hash",
                "hash")


@dataclass(frozen=True, slots=True)
class CaseRecord:
    """What a package holds of one case: its detail (`store.queries.case_detail`) and its
    audit trail in order."""

    case_id: str
    detail: Mapping[str, Any]
    events: Sequence[AuditEvent]


@dataclass(frozen=True, slots=True)
class CampaignRecord:
    """What a package holds of a recall campaign of the lot: its summary (the operator
    API's `GET /v1/recall-campaigns/{id}` without the trail) and its audit trail."""

    campaign_id: str
    detail: Mapping[str, Any]
    events: Sequence[AuditEvent]


@dataclass(frozen=True, slots=True)
class Scope:
    """What was exported: one case, or every case of a shop touching a lot."""

    kind: str  # "case" or "lot"
    case_id: str | None = None
    shop_id: str | None = None
    lot: str | None = None

    @classmethod
    def case(cls, case_id: str) -> Scope:
        return cls("case", case_id=case_id)

    @classmethod
    def for_lot(cls, shop_id: str, lot: str) -> Scope:
        return cls("lot", shop_id=shop_id, lot=lot)

    def as_json(self) -> dict[str, Any]:
        if self.kind == "case":
            return {"kind": "case", "case_id": self.case_id}
        return {"kind": "lot", "shop_id": self.shop_id, "lot": self.lot}

    def describe(self) -> str:
        if self.kind == "case":
            return f"case {self.case_id}"
        return f"lot {self.lot} of shop {self.shop_id}"


@dataclass(frozen=True, slots=True)
class CaseSummary:
    case_id: str
    events: int
    head: str


@dataclass(frozen=True, slots=True)
class VerificationResult:
    """`problem`: the first thing that does not check out, naming the file (and the event);
    None when everything does."""

    ok: bool
    problem: str | None = None
    cases: tuple[CaseSummary, ...] = field(default_factory=tuple)

    @property
    def events(self) -> int:
        return sum(c.events for c in self.cases)

    def describe(self) -> str:
        if not self.ok:
            return f"NOT verified: {self.problem}"
        heads = ", ".join(f"{c.case_id} {c.head}" for c in self.cases)
        campaigns = sum(c.case_id.startswith("rcp_") for c in self.cases)
        signals = sum(c.case_id.startswith("sig_") for c in self.cases)
        counted = f"{len(self.cases) - campaigns - signals} cases" + (
            f", {campaigns} recall campaigns" if campaigns else "") + (
            f", {signals} quality signals" if signals else "")
        return f"verified: {counted}, {self.events} events, heads {heads}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str)
            + "\n").encode()


def events_path(case_id: str) -> str:
    return f"cases/{case_id}/events.json"


def case_path(case_id: str) -> str:
    return f"cases/{case_id}/case.json"


def campaign_events_path(campaign_id: str) -> str:
    return f"campaigns/{campaign_id}/events.json"


def campaign_path(campaign_id: str) -> str:
    return f"campaigns/{campaign_id}/campaign.json"


# A quality signal on the lot (core/signals.py): its evidence and its own trail, as a
# campaign's (`CampaignRecord` holds any such owner of a trail).
def signal_events_path(signal_id: str) -> str:
    return f"signals/{signal_id}/events.json"


def signal_path(signal_id: str) -> str:
    return f"signals/{signal_id}/signal.json"


# ---- building ---------------------------------------------------------------------------

def build_package(cases: Sequence[CaseRecord], *, scope: Scope, created_at: datetime,
                  created_by: str, campaigns: Sequence[CampaignRecord] = (),
                  signals: Sequence[CampaignRecord] = ()) -> bytes:
    """The ZIP for `cases` (in the order given) and the lot's recall `campaigns`, made by
    `created_by` at `created_at`."""
    files: dict[str, bytes] = {}
    case_entries: list[dict[str, Any]] = []
    campaign_entries: list[dict[str, Any]] = []
    for campaign in campaigns:
        if not CASE_ID.match(campaign.campaign_id):
            raise ValueError(f"not a campaign id: {campaign.campaign_id!r}")
        files[campaign_events_path(campaign.campaign_id)] = _json_bytes(
            [e.as_json() for e in campaign.events])
        files[campaign_path(campaign.campaign_id)] = _json_bytes(dict(campaign.detail))
        campaign_entries.append({
            "campaign_id": campaign.campaign_id,
            "shop_id": campaign.detail.get("shop"),
            "state": campaign.detail.get("state"),
            "events": len(campaign.events),
            "head": campaign.events[-1].hash if campaign.events else GENESIS,
            "verified_at_export": check_chain(campaign.events) is None,
        })
    signal_entries: list[dict[str, Any]] = []
    for signal in signals:
        if not CASE_ID.match(signal.campaign_id):
            raise ValueError(f"not a signal id: {signal.campaign_id!r}")
        files[signal_events_path(signal.campaign_id)] = _json_bytes(
            [e.as_json() for e in signal.events])
        files[signal_path(signal.campaign_id)] = _json_bytes(dict(signal.detail))
        signal_entries.append({
            "signal_id": signal.campaign_id, "shop_id": signal.detail.get("shop"),
            "state": signal.detail.get("state"), "events": len(signal.events),
            "head": signal.events[-1].hash if signal.events else GENESIS,
            "verified_at_export": check_chain(signal.events) is None,
        })
    for record in cases:
        if not CASE_ID.match(record.case_id):
            raise ValueError(f"not a case id: {record.case_id!r}")
        files[events_path(record.case_id)] = _json_bytes([e.as_json() for e in record.events])
        files[case_path(record.case_id)] = _json_bytes(dict(record.detail))
        check = check_chain(record.events)
        case_entries.append({
            "case_id": record.case_id,
            "shop_id": record.detail.get("shop_id"),
            "state": record.detail.get("state"),
            "events": len(record.events),
            "head": record.events[-1].hash if record.events else GENESIS,
            "verified_at_export": check is None,
        })
    files[REPORT] = render_report(cases, scope=scope, created_at=created_at,
                                  created_by=created_by, campaigns=campaigns,
                                  signals=signals).encode()
    manifest = {
        "format": FORMAT,
        "what": "RefundBridge evidence package",
        "scope": scope.as_json(),
        "created_at": created_at.isoformat(),
        "created_by": created_by,
        "cases": case_entries,
        "campaigns": campaign_entries,
        "signals": signal_entries,
        "files": [{"path": path, "sha256": sha256(data), "bytes": len(data)}
                  for path, data in sorted(files.items())],
    }
    files[MANIFEST] = _json_bytes(manifest)
    files[SUMS] = "".join(f"{sha256(data)}  {path}\n"
                          for path, data in sorted(files.items())).encode()
    buffer = io.BytesIO()
    stamp = created_at.timetuple()[:6]
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in (MANIFEST, SUMS, REPORT,
                     *sorted(p for p in files
                             if p.startswith(("cases/", "campaigns/", "signals/")))):
            info = zipfile.ZipInfo(path, date_time=(max(stamp[0], 1980), *stamp[1:]))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[path])
    return buffer.getvalue()


# ---- verifying --------------------------------------------------------------------------

class _Problem(Exception):
    pass


def check_chain(events: Sequence[AuditEvent], where: str = "") -> str | None:
    """The first broken link of a chain, named precisely, or None."""
    prefix = f"{where}: " if where else ""
    prev_hash = GENESIS
    prev_seq = 0
    for index, event in enumerate(events, start=1):
        label = f"{prefix}event {event.seq} ({event.name})"
        if event.seq != index:
            return f"{label}: expected seq {index} (an event is missing or was moved)"
        if event.prev_hash != prev_hash:
            before = f"event {prev_seq}'s hash" if prev_seq else "the chain's start (genesis)"
            return f"{label}: prev_hash does not match {before}"
        if event.computed_hash() != event.hash:
            return f"{label}: hash does not match its content"
        prev_hash, prev_seq = event.hash, event.seq
    return None


def _event(raw: object, where: str, index: int) -> AuditEvent:
    if not isinstance(raw, dict):
        raise _Problem(f"{where}: entry {index} is not an event object")
    label = f"{where}: event {raw.get('seq', f'#{index}')} ({raw.get('name', '?')})"
    missing = [f for f in EVENT_FIELDS if f not in raw]
    if missing:
        raise _Problem(f"{label}: missing {', '.join(missing)}")
    extra = sorted(set(raw) - set(EVENT_FIELDS))
    if extra:
        raise _Problem(f"{label}: unexpected field {', '.join(extra)}")
    kinds: dict[str, tuple[type, ...]] = {
        "seq": (int,), "at": (str,), "actor": (str,), "name": (str,),
        "from_state": (str, type(None)), "to_state": (str, type(None)), "data": (dict,),
        "prev_hash": (str,), "hash": (str,)}
    for name, allowed in kinds.items():
        value = raw[name]
        if not isinstance(value, allowed) or (name == "seq" and isinstance(value, bool)):
            raise _Problem(f"{label}: {name} has the wrong type")
    try:
        at = datetime.fromisoformat(raw["at"])
    except ValueError:
        raise _Problem(f"{label}: at is not a timestamp") from None
    if at.isoformat() != raw["at"]:
        raise _Problem(f"{label}: hash does not match its content (at is not as written)")
    return AuditEvent(raw["seq"], at, raw["actor"], raw["name"], raw["from_state"],
                      raw["to_state"], raw["data"], raw["prev_hash"], raw["hash"])


def _load_json(data: bytes, path: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise _Problem(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise _Problem(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                       f"{exc.msg})") from None


def read_events(data: bytes, path: str) -> list[AuditEvent]:
    raw = _load_json(data, path)
    if not isinstance(raw, list):
        raise _Problem(f"{path}: not a list of events")
    return [_event(item, path, index) for index, item in enumerate(raw, start=1)]


def _read_zip(data: bytes) -> dict[str, bytes]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise _Problem("the file is not a ZIP archive (or is truncated)") from None
    files: dict[str, bytes] = {}
    total = 0
    with archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            if info.filename in files:
                raise _Problem(f"{info.filename}: appears twice in the archive")
            total += info.file_size
            if total > MAX_UNPACKED:
                raise _Problem(f"{info.filename}: the package unpacks to more than "
                               f"{MAX_UNPACKED // 2**20} MiB; not a package of ours")
            try:
                files[info.filename] = archive.read(info)
            except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError,
                    NotImplementedError) as exc:
                # A changed byte inside a compressed member fails its CRC here.
                raise _Problem(f"{info.filename}: unreadable or altered in the archive "
                               f"({exc})") from None
    return files


def _parse_sums(data: bytes) -> dict[str, str]:
    sums: dict[str, str] = {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _Problem(f"{SUMS}: not UTF-8 text") from None
    for number, line in enumerate(text.splitlines(), start=1):
        found = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line)
        if not found:
            raise _Problem(f"{SUMS}: line {number} is not '<sha256>  <file>'")
        sums[found.group(2)] = found.group(1)
    return sums


def _manifest(files: Mapping[str, bytes]) -> tuple[
        dict[str, str], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    if MANIFEST not in files:
        raise _Problem(f"{MANIFEST}: missing")
    manifest = _load_json(files[MANIFEST], MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _Problem(f"{MANIFEST}: not a {FORMAT} manifest")
    listed: dict[str, str] = {}
    for entry in manifest.get("files") or []:
        if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)
                and isinstance(entry.get("sha256"), str)):
            raise _Problem(f"{MANIFEST}: a files entry without path and sha256")
        listed[entry["path"]] = entry["sha256"]
    cases = manifest.get("cases")
    campaigns = manifest.get("campaigns", [])
    if not isinstance(campaigns, list):
        raise _Problem(f"{MANIFEST}: campaigns is not a list")
    signals = manifest.get("signals", [])
    if not isinstance(signals, list):
        raise _Problem(f"{MANIFEST}: signals is not a list")
    for entry in signals:
        if not (isinstance(entry, dict) and isinstance(entry.get("signal_id"), str)
                and CASE_ID.match(entry["signal_id"])):
            raise _Problem(f"{MANIFEST}: a signals entry without a valid signal_id")
    if not isinstance(cases, list) or not (cases or campaigns or signals):
        raise _Problem(f"{MANIFEST}: lists no cases")
    for entry in cases:
        if not (isinstance(entry, dict) and isinstance(entry.get("case_id"), str)
                and CASE_ID.match(entry["case_id"])):
            raise _Problem(f"{MANIFEST}: a cases entry without a valid case_id")
    for entry in campaigns:
        if not (isinstance(entry, dict) and isinstance(entry.get("campaign_id"), str)
                and CASE_ID.match(entry["campaign_id"])):
            raise _Problem(f"{MANIFEST}: a campaigns entry without a valid campaign_id")
    return listed, cases, campaigns, signals


def _verify(files: Mapping[str, bytes]) -> tuple[CaseSummary, ...]:
    listed, cases, campaigns, signals = _manifest(files)
    summaries: list[CaseSummary] = []
    chains = [(e, e["case_id"], events_path(e["case_id"])) for e in cases] + [
        (e, e["campaign_id"], campaign_events_path(e["campaign_id"])) for e in campaigns] + [
        (e, e["signal_id"], signal_events_path(e["signal_id"])) for e in signals]
    # The chains first: an edited event is named as such, not only as a file whose sum differs.
    for entry, case_id, path in chains:
        if path not in files:
            raise _Problem(f"{path}: missing")
        events = read_events(files[path], path)
        problem = check_chain(events, path)
        if problem:
            raise _Problem(problem)
        head = events[-1].hash if events else GENESIS
        if entry.get("events") != len(events):
            raise _Problem(f"{path}: {len(events)} events, but {MANIFEST} says "
                           f"{entry.get('events')} (an event was removed or added at the end)")
        if entry.get("head") != head:
            raise _Problem(f"{path}: the chain ends at {head}, but {MANIFEST} says "
                           f"{entry.get('head')}")
        summaries.append(CaseSummary(case_id, len(events), head))
    if SUMS not in files:
        raise _Problem(f"{SUMS}: missing")
    sums = _parse_sums(files[SUMS])
    for path, expected in sorted(listed.items()):
        if path not in files:
            raise _Problem(f"{path}: missing")
        if sha256(files[path]) != expected:
            raise _Problem(f"{path}: SHA-256 does not match {MANIFEST} (the file was changed)")
    for path, expected in sorted(sums.items()):
        if path not in files:
            raise _Problem(f"{path}: missing (listed in {SUMS})")
        if sha256(files[path]) != expected:
            raise _Problem(f"{path}: SHA-256 does not match {SUMS} (the file was changed)")
    for path in sorted(files):
        if path not in listed and path not in {MANIFEST, SUMS}:
            raise _Problem(f"{path}: extra file, not in {MANIFEST}")
        if path != SUMS and path not in sums:
            raise _Problem(f"{path}: not listed in {SUMS}")
    for path in sorted(listed):
        if path not in sums:
            raise _Problem(f"{path}: in {MANIFEST} but not in {SUMS}")
    expected_cases = {f"cases/{e['case_id']}/" for e in cases}
    expected_campaigns = {f"campaigns/{e['campaign_id']}/" for e in campaigns}
    expected_signals = {f"signals/{e['signal_id']}/" for e in signals}
    for path in sorted(files):
        if path.startswith("cases/") and not any(path.startswith(p) for p in expected_cases):
            raise _Problem(f"{path}: belongs to no case of {MANIFEST}")
        if path.startswith("campaigns/") and not any(path.startswith(p)
                                                     for p in expected_campaigns):
            raise _Problem(f"{path}: belongs to no campaign of {MANIFEST}")
        if path.startswith("signals/") and not any(path.startswith(p)
                                                   for p in expected_signals):
            raise _Problem(f"{path}: belongs to no signal of {MANIFEST}")
    return tuple(summaries)


def verify_package(data: bytes) -> VerificationResult:
    """Check a package offline: every chain, every file's sum, nothing missing or added."""
    try:
        files = _read_zip(data)
        return VerificationResult(True, None, _verify(files))
    except _Problem as problem:
        return VerificationResult(False, str(problem))


# ---- the report -------------------------------------------------------------------------

REPORT_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI","PingFang SC","Microsoft YaHei",
sans-serif;margin:2rem;color:#1b1f24;max-width:75rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;border-top:2px solid #1b1f24;padding-top:1rem;
margin-top:2.5rem}h3{font-size:1rem;margin-top:1.5rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border:1px solid #c9ced6;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f1f3f5}code,.hash{font-family:ui-monospace,Menlo,Consolas,monospace;
font-size:.85em;word-break:break-all}.muted{color:#5b6470}
.ok{color:#146c2e;font-weight:600}.bad{color:#b42318;font-weight:600}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{font-weight:600}
dd{margin:0}table.trail td:last-child{width:22rem}
table.trail tr.data td{border-top:0;background:#fafbfc}
@media print{body{margin:0}h2{break-before:page}}
"""


def show(value: Any) -> Markup:
    """How the report prints a value: a dash for nothing, money as amount and currency,
    structures as compact JSON, everything escaped."""
    if value is None or value == "" or isinstance(value, Undefined):
        return Markup("—")
    if isinstance(value, dict) and set(value) == {"amount", "currency"}:
        return escape(f"{value['amount']} {value['currency']}")
    if isinstance(value, (dict, list)):
        return Markup("<code>%s</code>") % json.dumps(value, ensure_ascii=False, default=str)
    return escape(str(value))


def _items(detail: Mapping[str, Any], key: str) -> list[Any]:
    value = detail.get(key)
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _mapping(detail: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = detail.get(key)
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class _CaseView:
    """One case as the report's template reads it: what needs more than a field look-up."""

    record: CaseRecord

    @property
    def id(self) -> str:
        return self.record.case_id

    @property
    def detail(self) -> Mapping[str, Any]:
        return self.record.detail

    @property
    def events(self) -> Sequence[AuditEvent]:
        return self.record.events

    @property
    def head(self) -> str:
        return self.events[-1].hash if self.events else GENESIS

    @property
    def chain(self) -> Markup:
        problem = check_chain(self.events)
        verdict = (Markup('<span class="ok">verifies</span>') if problem is None
                   else Markup('<span class="bad">BROKEN: %s</span>') % problem)
        return Markup('%s, %d events, head <span class="hash">%s</span>') % (
            verdict, len(self.events), self.head)

    @property
    def index_row(self) -> tuple[Markup, ...]:
        return (Markup('<a href="#%s">%s</a>') % (self.id, show(self.id)),
                show(self.detail.get("shop_id")), show(self.detail.get("state")),
                show(len(self.events)), Markup('<span class="hash">%s</span>') % self.head)

    @property
    def customer(self) -> Markup:
        customer = _mapping(self.detail, "customer")
        return Markup("%s (%s)") % (show(customer.get("id")), show(customer.get("type")))

    @property
    def reason(self) -> Markup:
        reason = _mapping(self.detail, "reason")
        return Markup("%s: %s") % (show(reason.get("code")), show(reason.get("text")))

    def items(self, key: str) -> list[Any]:
        return _items(self.detail, key)

    @staticmethod
    def rows(items: Iterable[Any], keys: Sequence[str]) -> list[tuple[Markup, ...]]:
        return [tuple(show(item.get(k)) for k in keys) for item in items
                if isinstance(item, dict)]

    def line_rows(self) -> list[tuple[Markup, ...]]:
        where = {d.get("line"): d for d in self.items("dispositions")}
        rows = []
        for index, line in enumerate(self.items("lines")):
            d = where.get(index, {})
            rows.append(tuple(show(v) for v in (
                index, line.get("sku"), line.get("name"), line.get("quantity"),
                line.get("device_class"), d.get("lot") or line.get("lot"),
                d.get("serial") or line.get("serial"), line.get("expiry_date"),
                line.get("udi"), d.get("disposition"), d.get("rule"))))
        return rows

    def obligation_rows(self) -> list[tuple[Markup, ...]]:
        return [tuple(show(v) for v in (o.get("kind"), o.get("due") or "clock not started",
                                          o.get("detail"), o.get("rule")))
                for o in self.items("obligations")]


@dataclass(frozen=True)
class _CampaignView:
    record: CampaignRecord

    @property
    def id(self) -> str:
        return self.record.campaign_id

    @property
    def detail(self) -> Mapping[str, Any]:
        return self.record.detail

    @property
    def events(self) -> Sequence[AuditEvent]:
        return self.record.events


@cache
def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True)
    env.filters["show"] = show
    env.filters["show_row"] = lambda pair: (show(pair[0]), show(pair[1]))
    return env


def render_report(cases: Sequence[CaseRecord], *, scope: Scope, created_at: datetime,
                  created_by: str, campaigns: Sequence[CampaignRecord] = (),
                  signals: Sequence[CampaignRecord] = ()) -> str:
    """The package's report.html (`templates/evidence_report.html.j2`)."""
    return _environment().get_template("evidence_report.html.j2").render(
        scope=scope.describe(), style=Markup(REPORT_STYLE), created_at=created_at.isoformat(),
        created_by=created_by, cases=[_CaseView(r) for r in cases],
        campaigns=[_CampaignView(c) for c in campaigns],
        signals=[_CampaignView(c) for c in signals]) + "\n"
