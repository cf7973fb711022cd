"""Evidence packages: built from a case's chain, verified offline, and every kind of
tampering named: an edited event, an edited report, a removed or added file, a forged event
whose hash was recomputed."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

from refundbridge.core.audit import GENESIS, AuditEvent, chain_event
from refundbridge.core.evidence import (
    MANIFEST,
    REPORT,
    SUMS,
    CaseRecord,
    Scope,
    build_package,
    verify_package,
)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
NAMES = [("received", None, "received", "connector:generic"),
         ("start_evaluation", "received", "evaluating", "system"),
         ("send_to_review", "evaluating", "in_review", "rules"),
         ("claimed", "in_review", "in_review", "operator:li.na"),
         ("approve", "in_review", "approved", "operator:li.na"),
         ("start_refund", "approved", "refunding", "system")]


def chain(n: int = len(NAMES)) -> list[AuditEvent]:
    events: list[AuditEvent] = []
    seq, head = 0, GENESIS
    for index, (name, before, after, actor) in enumerate(NAMES[:n]):
        data: dict[str, Any] = {"note": "退货 ok", "amount": {"amount": "398.00",
                                                            "currency": "CNY"}}
        if name == "send_to_review":
            data["rules"] = [{"id": "R07", "outcome": "review",
                              "message": "no-reason return window: day 8 of 7"}]
        event = chain_event(seq, head, at=T0 + timedelta(minutes=index), actor=actor,
                            name=name, from_state=before, to_state=after, data=data)
        events.append(event)
        seq, head = event.seq, event.hash
    return events


def detail(case_id: str) -> dict[str, Any]:
    return {
        "id": case_id, "shop_id": "acme-medical", "state": "refunding", "kind": "refund_only",
        "order": {"id": "SO-1"}, "customer": {"id": "cust-1", "type": "consumer"},
        "reason": {"code": "changed_mind", "text": "不需要了 <b>"},
        "requested": {"amount": "398.00", "currency": "CNY"},
        "lines": [{"sku": "GLU-METER-01", "name": "血糖仪", "quantity": 2, "lot": "L2401",
                   "serial": None, "expiry_date": "2027-06-01", "udi": None,
                   "device_class": "II"}],
        "decisions": [{"outcome": "review", "decided_by": "rules", "at": T0.isoformat(),
                       "amount": {"amount": "398.00", "currency": "CNY"},
                       "rules": [{"id": "R07", "outcome": "review", "line": None,
                                  "message": "no-reason return window: day 8 of 7"}],
                       "internal_note": "", "customer_message": ""}],
        "dispositions": [{"line": 0, "sku": "GLU-METER-01", "disposition": "restock",
                          "rule": "R20", "lot": "L2401", "serial": None}],
        "obligations": [{"kind": "refund_deadline", "due": "2026-03-08",
                         "detail": "refund within 7 days of receipt", "rule": "R07"}],
        "inspections": [], "stock_moves": [], "refund_attempts": [], "notifications": [],
    }


def package(*case_ids: str) -> bytes:
    records = [CaseRecord(case_id, detail(case_id), chain()) for case_id in case_ids]
    scope = Scope.case(case_ids[0]) if len(case_ids) == 1 else Scope.for_lot("acme-medical",
                                                                            "L2401")
    return build_package(records, scope=scope, created_at=T0 + timedelta(hours=1),
                         created_by="operator:li.na")


def files_of(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def edited(data: bytes, path: str, old: bytes, new: bytes, count: int = 1) -> bytes:
    files = files_of(data)
    assert old in files[path]
    files[path] = files[path].replace(old, new, count)
    return zipped(files)


def test_a_package_verifies_and_holds_what_it_says() -> None:
    data = package("rc_1")
    result = verify_package(data)
    assert result.ok, result.problem
    assert result.events == len(NAMES)
    assert result.cases[0].head == chain()[-1].hash
    assert result.describe().startswith("verified: 1 cases, 6 events, heads rc_1 ")
    files = files_of(data)
    assert set(files) == {MANIFEST, SUMS, REPORT, "cases/rc_1/events.json",
                          "cases/rc_1/case.json"}
    events = json.loads(files["cases/rc_1/events.json"])
    assert [e["hash"] for e in events] == [e.hash for e in chain()]
    assert events[1]["prev_hash"] == events[0]["hash"]
    manifest = json.loads(files[MANIFEST])
    assert manifest["scope"] == {"kind": "case", "case_id": "rc_1"}
    assert manifest["created_by"] == "operator:li.na"
    assert manifest["cases"][0]["events"] == 6
    assert manifest["cases"][0]["head"] == chain()[-1].hash
    for entry in manifest["files"]:
        assert hashlib.sha256(files[entry["path"]]).hexdigest() == entry["sha256"]
    sums = files[SUMS].decode().splitlines()
    assert f"{hashlib.sha256(files[MANIFEST]).hexdigest()}  {MANIFEST}" in sums
    assert len(sums) == 4
    report = files[REPORT].decode()
    assert "<script" not in report and "src=" not in report and "http" not in report
    assert "no-reason return window: day 8 of 7" in report and "operator:li.na" in report
    assert "不需要了 &lt;b&gt;" in report  # escaped, never markup
    assert "refund_deadline" in report and "2026-03-08" in report and "restock" in report


def test_several_cases_verify_together() -> None:
    result = verify_package(package("rc_1", "rc_2"))
    assert result.ok and len(result.cases) == 2 and result.events == 12


def test_one_edited_byte_in_an_event_names_that_event() -> None:
    data = package("rc_1")
    tampered = edited(data, "cases/rc_1/events.json", b'"operator:li.na"', b'"operator:li.nb"')
    result = verify_package(tampered)
    assert not result.ok
    assert result.problem == ("cases/rc_1/events.json: event 4 (claimed): hash does not "
                              "match its content")
    assert result.describe().startswith("NOT verified: cases/rc_1/events.json: event 4")


def test_an_edited_amount_names_the_first_event_holding_it() -> None:
    tampered = edited(package("rc_1"), "cases/rc_1/events.json", b"398.00", b"998.00")
    assert verify_package(tampered).problem == (
        "cases/rc_1/events.json: event 1 (received): hash does not match its content")


def test_an_edited_report_names_the_file() -> None:
    tampered = edited(package("rc_1"), REPORT, b"no-reason return window",
                      b"no-reason return windoW")
    assert verify_package(tampered).problem == (
        "report.html: SHA-256 does not match manifest.json (the file was changed)")


def test_an_edited_case_file_names_it() -> None:
    tampered = edited(package("rc_1"), "cases/rc_1/case.json", b"L2401", b"L2402")
    assert verify_package(tampered).problem == (
        "cases/rc_1/case.json: SHA-256 does not match manifest.json (the file was changed)")


def test_a_removed_file_is_named() -> None:
    files = files_of(package("rc_1"))
    del files["cases/rc_1/case.json"]
    assert verify_package(zipped(files)).problem == "cases/rc_1/case.json: missing"
    files = files_of(package("rc_1"))
    del files["cases/rc_1/events.json"]
    assert verify_package(zipped(files)).problem == "cases/rc_1/events.json: missing"
    files = files_of(package("rc_1"))
    del files[SUMS]
    assert verify_package(zipped(files)).problem == "SHA256SUMS: missing"


def test_an_added_file_is_named() -> None:
    files = files_of(package("rc_1"))
    files["cases/rc_1/note.txt"] = b"trust me"
    assert verify_package(zipped(files)).problem == (
        "cases/rc_1/note.txt: extra file, not in manifest.json")


def test_a_rehashed_forged_event_fails_at_the_next_events_prev_hash() -> None:
    """The attacker changed who approved and recomputed that event's hash."""
    files = files_of(package("rc_1"))
    events = json.loads(files["cases/rc_1/events.json"])
    forged = events[4]
    forged["actor"] = "operator:someone.else"
    original = chain()[4]
    forged["hash"] = AuditEvent(original.seq, original.at, forged["actor"], original.name,
                                original.from_state, original.to_state, original.data,
                                original.prev_hash).computed_hash()
    files["cases/rc_1/events.json"] = json.dumps(events, ensure_ascii=False).encode()
    assert verify_package(zipped(files)).problem == (
        "cases/rc_1/events.json: event 6 (start_refund): prev_hash does not match "
        "event 5's hash")


def test_a_removed_event_is_named() -> None:
    files = files_of(package("rc_1"))
    events = json.loads(files["cases/rc_1/events.json"])
    del events[2]
    files["cases/rc_1/events.json"] = json.dumps(events).encode()
    assert verify_package(zipped(files)).problem == (
        "cases/rc_1/events.json: event 4 (claimed): expected seq 3 (an event is missing or "
        "was moved)")
    # The last event cut off: the chain still links, the manifest's count and head do not.
    events = json.loads(files_of(package("rc_1"))["cases/rc_1/events.json"])[:-1]
    files["cases/rc_1/events.json"] = json.dumps(events).encode()
    problem = verify_package(zipped(files)).problem
    assert problem is not None and problem.startswith(
        "cases/rc_1/events.json: 5 events, but manifest.json says 6")


def test_a_forged_manifest_is_caught_by_the_sums() -> None:
    tampered = edited(package("rc_1"), MANIFEST, b"operator:li.na", b"operator:zhao")
    assert verify_package(tampered).problem == (
        "manifest.json: SHA-256 does not match SHA256SUMS (the file was changed)")


def test_not_a_package() -> None:
    assert verify_package(b"PK\x03\x04 not really").problem == (
        "the file is not a ZIP archive (or is truncated)")
    assert verify_package(zipped({"x.txt": b"x"})).problem == "manifest.json: missing"
    broken = edited(package("rc_1"), "cases/rc_1/events.json", b"[", b"{")
    problem = verify_package(broken).problem
    assert problem is not None and problem.startswith("cases/rc_1/events.json: not valid JSON")


def test_a_byte_flipped_inside_the_zip_itself_is_refused() -> None:
    data = bytearray(package("rc_1"))
    start = data.index(b"cases/rc_1/events.json") + len("cases/rc_1/events.json") + 40
    data[start] ^= 0x01
    result = verify_package(bytes(data))
    assert not result.ok and result.problem
