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
import html
import io
import json
import re
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from refundbridge.core.audit import GENESIS, AuditEvent

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
        counted = f"{len(self.cases) - campaigns} cases" + (
            f", {campaigns} recall campaigns" if campaigns else "")
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


# ---- building ---------------------------------------------------------------------------

def build_package(cases: Sequence[CaseRecord], *, scope: Scope, created_at: datetime,
                  created_by: str, campaigns: Sequence[CampaignRecord] = ()) -> bytes:
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
                                  created_by=created_by, campaigns=campaigns).encode()
    manifest = {
        "format": FORMAT,
        "what": "RefundBridge evidence package",
        "scope": scope.as_json(),
        "created_at": created_at.isoformat(),
        "created_by": created_by,
        "cases": case_entries,
        "campaigns": campaign_entries,
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
                     *sorted(p for p in files if p.startswith(("cases/", "campaigns/")))):
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


def _manifest(files: Mapping[str, bytes]
              ) -> tuple[dict[str, str], list[dict[str, Any]], list[dict[str, Any]]]:
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
    if not isinstance(cases, list) or not (cases or campaigns):
        raise _Problem(f"{MANIFEST}: lists no cases")
    for entry in cases:
        if not (isinstance(entry, dict) and isinstance(entry.get("case_id"), str)
                and CASE_ID.match(entry["case_id"])):
            raise _Problem(f"{MANIFEST}: a cases entry without a valid case_id")
    for entry in campaigns:
        if not (isinstance(entry, dict) and isinstance(entry.get("campaign_id"), str)
                and CASE_ID.match(entry["campaign_id"])):
            raise _Problem(f"{MANIFEST}: a campaigns entry without a valid campaign_id")
    return listed, cases, campaigns


def _verify(files: Mapping[str, bytes]) -> tuple[CaseSummary, ...]:
    listed, cases, campaigns = _manifest(files)
    summaries: list[CaseSummary] = []
    chains = [(e, e["case_id"], events_path(e["case_id"])) for e in cases] + [
        (e, e["campaign_id"], campaign_events_path(e["campaign_id"])) for e in campaigns]
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
    for path in sorted(files):
        if path.startswith("cases/") and not any(path.startswith(p) for p in expected_cases):
            raise _Problem(f"{path}: belongs to no case of {MANIFEST}")
        if path.startswith("campaigns/") and not any(path.startswith(p)
                                                     for p in expected_campaigns):
            raise _Problem(f"{path}: belongs to no campaign of {MANIFEST}")
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


def _e(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, dict) and set(value) == {"amount", "currency"}:
        return html.escape(f"{value['amount']} {value['currency']}")
    if isinstance(value, (dict, list)):
        return f"<code>{html.escape(json.dumps(value, ensure_ascii=False, default=str))}</code>"
    return html.escape(str(value))


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], empty: str) -> str:
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
                   for row in rows)
    if not body:
        return f'<p class="muted">{html.escape(empty)}</p>'
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _list(detail: Mapping[str, Any], key: str) -> list[Any]:
    value = detail.get(key)
    return list(value) if isinstance(value, list) else []


def _mapping(detail: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = detail.get(key)
    return value if isinstance(value, dict) else {}


def _decisions(detail: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for number, d in enumerate(_list(detail, "decisions"), start=1):
        rules = _table(
            ("Rule", "Outcome", "Line", "Message"),
            ((_e(r.get("id")), _e(r.get("outcome")), _e(r.get("line")), _e(r.get("message")))
             for r in d.get("rules", [])),
            "No rule fired.")
        parts.append(
            f"<h3>Decision {number}: {_e(d.get('outcome'))}</h3><dl>"
            f"<dt>Decided by</dt><dd>{_e(d.get('decided_by'))}</dd>"
            f"<dt>At</dt><dd>{_e(d.get('at'))}</dd>"
            f"<dt>Amount</dt><dd>{_e(d.get('amount'))}</dd>"
            f"<dt>Internal note</dt><dd>{_e(d.get('internal_note'))}</dd>"
            f"<dt>Message to the customer</dt><dd>{_e(d.get('customer_message'))}</dd>"
            f"</dl><h4>Reasons (rules)</h4>{rules}")
    return "".join(parts) or '<p class="muted">No decision yet.</p>'


def _lines(detail: Mapping[str, Any]) -> str:
    where = {d.get("line"): d for d in _list(detail, "dispositions") if isinstance(d, dict)}
    rows = []
    for index, line in enumerate(_list(detail, "lines")):
        disposition = where.get(index, {})
        rows.append((_e(index), _e(line.get("sku")), _e(line.get("name")),
                     _e(line.get("quantity")), _e(line.get("device_class")),
                     _e(disposition.get("lot") or line.get("lot")),
                     _e(disposition.get("serial") or line.get("serial")),
                     _e(line.get("expiry_date")), _e(line.get("udi")),
                     _e(disposition.get("disposition")), _e(disposition.get("rule"))))
    return _table(("Line", "SKU", "Name", "Qty", "Class", "Lot", "Serial", "Expiry", "UDI",
                   "Disposition", "By rule"), rows, "No lines.")


def _trail(events: Sequence[AuditEvent]) -> str:
    """Every event: who, what, when, the states, its hash and the one before; its data
    below it, in full."""
    if not events:
        return '<p class="muted">No events.</p>'
    rows = []
    for e in events:
        rows.append(
            f'<tr id="event-{e.seq}"><td>{e.seq}</td><td>{_e(e.at.isoformat())}</td>'
            f"<td>{_e(e.actor)}</td><td><strong>{_e(e.name)}</strong></td>"
            f"<td>{_e(e.from_state)} → {_e(e.to_state)}</td>"
            f'<td><span class="hash">{html.escape(e.hash)}</span><br><span class="muted">'
            f'prev <span class="hash">{html.escape(e.prev_hash)}</span></span></td></tr>')
        if e.data:
            rows.append(f'<tr class="data"><td></td><td colspan="5">{_e(e.data)}</td></tr>')
    head = "".join(f"<th>{h}</th>" for h in ("#", "At", "Who", "What", "State", "Hash"))
    return (f'<table class="trail"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _case_section(record: CaseRecord) -> str:
    d = record.detail
    problem = check_chain(record.events)
    head = record.events[-1].hash if record.events else GENESIS
    chain = ('<span class="ok">verifies</span>' if problem is None
             else f'<span class="bad">BROKEN: {html.escape(problem)}</span>')
    inspections = _table(
        ("Line", "Inspector", "Seal intact", "Condition", "Temperature record", "UDI scan",
         "Quantity", "Passed"),
        ((_e(i.get("line")), _e(i.get("inspector")), _e(i.get("seal_intact")),
          _e(i.get("condition")), _e(i.get("temperature_log_ok")), _e(i.get("udi_scan")),
          _e(i.get("quantity")), _e(i.get("passed"))) for i in _list(d, "inspections")),
        "No goods received.")
    moves = _table(
        ("Line", "SKU", "Qty", "Disposition", "Lot", "Serial"),
        ((_e(m.get("line")), _e(m.get("sku")), _e(m.get("quantity")),
          _e(m.get("disposition")), _e(m.get("lot")), _e(m.get("serial")))
         for m in _list(d, "stock_moves")),
        "No stock booked.")
    obligations = _table(
        ("Obligation", "Due", "Detail", "Rule"),
        ((_e(o.get("kind")), _e(o.get("due") or "clock not started"), _e(o.get("detail")),
          _e(o.get("rule"))) for o in _list(d, "obligations")),
        "No obligations.")
    attempts = _table(
        ("Attempt", "Amount", "Status", "Provider reference", "Provider's answer"),
        ((_e(a.get("number")), _e(a.get("amount")), _e(a.get("status")),
          _e(a.get("provider_ref")), _e(a.get("message"))) for a in _list(d, "refund_attempts")),
        "No refund attempted.")
    messages = _table(
        ("Message", "Status", "Attempts", "Last error"),
        ((_e(n.get("kind")), _e(n.get("status")), _e(n.get("attempts")),
          _e(n.get("last_error"))) for n in _list(d, "notifications")),
        "No messages.")
    trail = _trail(record.events)
    customer = _mapping(d, "customer")
    reason = _mapping(d, "reason")
    return (
        f'<section id="{html.escape(record.case_id)}"><h2>Case {_e(record.case_id)}</h2><dl>'
        f"<dt>Shop</dt><dd>{_e(d.get('shop_id'))}</dd>"
        f"<dt>Order</dt><dd>{_e(_mapping(d, 'order').get('id'))}</dd>"
        f"<dt>Kind</dt><dd>{_e(d.get('kind'))}</dd>"
        f"<dt>State</dt><dd>{_e(d.get('state'))}</dd>"
        f"<dt>Customer</dt><dd>{_e(customer.get('id'))} ({_e(customer.get('type'))})</dd>"
        f"<dt>Reason</dt><dd>{_e(reason.get('code'))}: {_e(reason.get('text'))}</dd>"
        f"<dt>Requested</dt><dd>{_e(d.get('requested'))}</dd>"
        f"<dt>Approved</dt><dd>{_e(d.get('approved'))}</dd>"
        f"<dt>Refunded</dt><dd>{_e(d.get('refunded'))}</dd>"
        f"<dt>ERP reference</dt><dd>{_e(d.get('erp_reference'))}</dd>"
        f"<dt>Audit chain</dt><dd>{chain}, {len(record.events)} events, head "
        f'<span class="hash">{html.escape(head)}</span></dd></dl>'
        f"<h3>Decisions and their reasons</h3>{_decisions(d)}"
        f"<h3>Lines, units and where each goes</h3>{_lines(d)}"
        f"<h3>Inspections</h3>{inspections}"
        f"<h3>Stock moves</h3>{moves}"
        f"<h3>Obligations</h3>{obligations}"
        f"<h3>Refund attempts</h3>{attempts}"
        f"<h3>Messages to the customer</h3>{messages}"
        f"<h3>Who did what, when (audit trail)</h3>{trail}</section>")


def _campaign_section(record: CampaignRecord) -> str:
    d = record.detail
    notice = _mapping(d, "notice")
    counts = _mapping(d, "counts")
    facts = "".join(f"<dt>{_e(label)}</dt><dd>{_e(value)}</dd>" for label, value in (
        ("Reference", notice.get("reference")), ("Class", notice.get("class")),
        ("Notice date", notice.get("notice_date")), ("Notify by", d.get("notice_due")),
        ("Product", notice.get("sku") or notice.get("gtin")),
        ("Lots", ", ".join(notice.get("lots") or []) or "every lot"),
        ("Serials", ", ".join(notice.get("serials") or []) or "—"),
        ("State", d.get("state")),
        ("Quarantine", _mapping(d, "quarantine").get("document") or "—")))
    figures = _table(("What", "Count"), ((_e(k), _e(v)) for k, v in counts.items()),
                     "No figures.")
    return (f'<section id="{html.escape(record.campaign_id)}"><h2>Recall campaign '
            f"{_e(notice.get('reference'))}</h2><dl>{facts}</dl>{figures}"
            f"<h3>Who did what, when (the campaign's audit trail)</h3>"
            f"{_trail(record.events)}</section>")


def render_report(cases: Sequence[CaseRecord], *, scope: Scope, created_at: datetime,
                  created_by: str, campaigns: Sequence[CampaignRecord] = ()) -> str:
    """The package's report.html: one page, its style inline, no script, nothing fetched."""
    index = _table(
        ("Case", "Shop", "State", "Events", "Chain head"),
        ((f'<a href="#{html.escape(r.case_id)}">{_e(r.case_id)}</a>', _e(r.detail.get("shop_id")),
          _e(r.detail.get("state")), _e(len(r.events)),
          f'<span class="hash">{html.escape(r.events[-1].hash if r.events else GENESIS)}</span>')
         for r in cases),
        "No cases.")
    body = "".join(_campaign_section(c) for c in campaigns) + "".join(
        _case_section(r) for r in cases)
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>Evidence: {html.escape(scope.describe())}</title>"
        f"<style>{REPORT_STYLE}</style></head><body>"
        f"<h1>RefundBridge evidence: {html.escape(scope.describe())}</h1><dl>"
        f"<dt>Exported at</dt><dd>{_e(created_at.isoformat())}</dd>"
        f"<dt>Exported by</dt><dd>{_e(created_by)}</dd>"
        f"<dt>Cases</dt><dd>{len(cases)}</dd>"
        f"<dt>Recall campaigns</dt><dd>{len(campaigns)}</dd></dl>"
        "<p class=\"muted\">Check this package with <code>refundbridge evidence verify "
        "FILE.zip</code> (no database needed), or with <code>sha256sum -c SHA256SUMS</code> "
        "for the files alone; compare each chain head with the live system's.</p>"
        f"{index}{body}</body></html>\n")
