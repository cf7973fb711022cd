"""The case page: one timeline with who did what, the actions each role may take, and
evidence packages (per case and per lot) that verify offline and record their export."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from refundbridge.api.console import case as case_page
from refundbridge.api.console.web import HERE, catalog
from refundbridge.bootstrap import Container
from refundbridge.core.evidence import verify_package
from tests.conftest import drain, open_case
from tests.console.conftest import OTHER_SHOP, Session
from tests.factories import request_body, signed

Login = Callable[..., Session]


def open_in(client: TestClient, erp: Any, shop: str, **overrides: Any) -> str:
    """A signed request to `shop`'s generic storefront (the other shop shares its secret)."""
    body = request_body(**overrides)
    erp.add_invoice(body["order"]["id"], [("GLU-METER-01", 2, "199.00")])
    raw, headers = signed(body)
    answer = client.post(f"/webhooks/{shop}/generic", content=raw, headers=headers)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["case_id"])


def package_files(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def events_in(data: bytes, case_id: str) -> list[dict[str, Any]]:
    return list(json.loads(package_files(data)[f"cases/{case_id}/events.json"]))


def failed_refund(stripe_fake: Any) -> None:
    refusal = httpx.Response(400, json={"error": {
        "type": "invalid_request_error", "code": "charge_disputed",
        "message": "Charge ch_123 has been charged back; cannot issue a refund."}})
    stripe_fake.before_post.append(lambda request: refusal)


def test_the_timeline_shows_the_rules_decision_and_the_operators_action_by_name(
        login_as: Login, console_container: Container, providers: Any) -> None:
    _, _, erp = providers
    li = login_as("li.na", "reviewer")
    case_id, _ = open_case(li.client, erp, **{"reason.code": "other"})
    drain(console_container)
    detail = console_container.reads.case_detail(case_id)
    assert detail["state"] == "awaiting_review"
    rule_messages = [r["message"] for r in detail["decisions"][0]["rules"]
                     if r["outcome"] == "review"]
    assert rule_messages

    page = li.client.get(f"/console/cases/{case_id}")
    assert page.status_code == 200
    html = page.text
    assert "Request received (webhook)" in html and "Sent to review" in html
    for message in rule_messages:
        assert message in html
    assert 'data-testid="cancel"' in html and 'data-testid="retry"' not in html

    cancelled = li.post(f"/console/cases/{case_id}/cancel",
                        {"reason": "Customer withdrew the request by phone"})
    assert cancelled.status_code == 303
    assert cancelled.headers["location"] == f"/console/cases/{case_id}?done=cancelled"
    html = li.client.get(cancelled.headers["location"]).text
    assert "The case is cancelled." in html
    timeline = html[html.index('data-testid="timeline"'):]
    cancel_entry = timeline[timeline.index("<strong>Cancelled</strong>"):]
    cancel_entry = cancel_entry[:cancel_entry.index("</li>")]
    assert '<strong data-testid="operator">li.na</strong>' in cancel_entry
    assert "Customer withdrew the request by phone" in cancel_entry
    # Time order: the webhook first, the operator's cancel last.
    assert timeline.index("Request received (webhook)") < timeline.index("Sent to review") \
        < timeline.index("<strong>Cancelled</strong>")
    assert console_container.reads.case_detail(case_id)["timeline"][-1]["actor"] == (
        "operator:li.na")


def test_a_cancel_needs_a_reason(login_as: Login, console_container: Container,
                                 providers: Any) -> None:
    _, _, erp = providers
    li = login_as("li.na", "reviewer")
    case_id, _ = open_case(li.client, erp, **{"reason.code": "other"})
    drain(console_container)
    refused = li.post(f"/console/cases/{case_id}/cancel", {"reason": "   "})
    assert refused.status_code == 422 and "Say why the case is cancelled." in refused.text
    assert console_container.reads.case_detail(case_id)["state"] == "awaiting_review"


def test_a_failed_case_is_retried_from_the_page_and_the_retry_names_the_operator(
        login_as: Login, console_container: Container, providers: Any) -> None:
    _, stripe_fake, erp = providers
    li = login_as("li.na", "reviewer")
    failed_refund(stripe_fake)
    case_id, _ = open_case(li.client, erp)
    drain(console_container)

    html = li.client.get(f"/console/cases/{case_id}").text
    assert 'data-testid="failure"' in html and "charged back" in html
    assert 'data-testid="retry"' in html
    assert "Refund attempt reserved" in html and "Failed" in html

    stripe_fake.before_post.clear()
    answer = li.post(f"/console/cases/{case_id}/retry")
    assert answer.status_code == 303
    drain(console_container)

    detail = console_container.reads.case_detail(case_id)
    assert detail["state"] == "closed"
    retries = [e for e in detail["timeline"] if e["name"] == "retry"]
    assert [e["actor"] for e in retries] == ["operator:li.na"]
    html = li.client.get(f"/console/cases/{case_id}").text
    assert "Retried" in html and "Refund confirmed by the provider" in html
    assert "Message sent" in html
    assert 'data-testid="retry"' not in html  # nothing left to retry
    # A second retry of a case that no longer failed is refused, not recorded.
    again = li.post(f"/console/cases/{case_id}/retry")
    assert again.status_code == 409


def test_an_export_downloads_a_package_that_verifies_and_records_the_export(
        login_as: Login, console_container: Container, providers: Any,
        tmp_path: Path) -> None:
    _, _, erp = providers
    audit = login_as("qian.audit", "auditor")
    case_id, _ = open_case(audit.client, erp)
    drain(console_container)

    page = audit.client.get(f"/console/cases/{case_id}").text
    assert 'data-testid="export"' in page
    assert 'data-testid="retry"' not in page and 'data-testid="cancel"' not in page
    answer = audit.post(f"/console/cases/{case_id}/evidence.zip")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/zip"
    assert answer.headers["content-disposition"] == (
        f'attachment; filename="evidence-{case_id}.zip"')
    result = verify_package(answer.content)
    assert result.ok, result.problem
    assert [c.case_id for c in result.cases] == [case_id]

    events = events_in(answer.content, case_id)
    assert events[-1]["name"] == "evidence_exported"
    assert events[-1]["actor"] == "operator:qian.audit"
    assert events[-1]["data"]["kind"] == "case"
    files = package_files(answer.content)
    manifest = json.loads(files["manifest.json"])
    assert manifest["created_by"] == "operator:qian.audit"
    assert manifest["cases"][0]["head"] == events[-1]["hash"]
    assert "Evidence exported" not in files["report.html"].decode()  # raw names there
    assert "evidence_exported" in files["report.html"].decode()

    # The live chain holds the export too, and still verifies; its head is the package's.
    live = console_container.reads.case_evidence(case_id)
    assert live["verifies"] and live["head"] == events[-1]["hash"]
    page = audit.client.get(f"/console/cases/{case_id}").text
    assert "Evidence exported" in page and '<strong data-testid="operator">qian.audit' in page

    # One edited byte in an event, and the package no longer verifies, naming the event.
    tampered = io.BytesIO()
    with zipfile.ZipFile(tampered, "w") as archive:
        for name, content in files.items():
            if name.endswith("events.json"):
                content = content.replace(b"qian.audit", b"qian.audiT", 1)
            archive.writestr(name, content)
    problem = verify_package(tampered.getvalue()).problem
    assert problem is not None and re.fullmatch(
        rf"cases/{case_id}/events\.json: event \d+ \(evidence_exported\): hash does not "
        r"match its content", problem), problem


def test_a_lot_export_holds_exactly_the_cases_touching_the_lot(
        login_as: Login, console_container: Container, providers: Any) -> None:
    _, _, erp = providers
    li = login_as("li.na", "reviewer")
    client = li.client
    in_lot = [open_in(client, erp, "acme-medical", **{"lines.0.lot": "LOT-A7"})
              for _ in range(2)]
    other_lot = open_in(client, erp, "acme-medical", **{"lines.0.lot": "LOT-B2"})
    other_shop = open_in(client, erp, OTHER_SHOP, **{"lines.0.lot": "LOT-A7"})
    drain(console_container)

    form = client.get("/console/evidence")
    assert form.status_code == 200 and OTHER_SHOP not in form.text
    answer = li.post("/console/evidence/lot", {"shop": "acme-medical", "lot": "LOT-A7"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-disposition"] == (
        'attachment; filename="evidence-acme-medical-lot-LOT-A7.zip"')
    result = verify_package(answer.content)
    assert result.ok, result.problem
    assert sorted(c.case_id for c in result.cases) == sorted(in_lot)
    manifest = json.loads(package_files(answer.content)["manifest.json"])
    assert manifest["scope"] == {"kind": "lot", "shop_id": "acme-medical", "lot": "LOT-A7"}
    for case_id in in_lot:
        assert events_in(answer.content, case_id)[-1]["name"] == "evidence_exported"
    for untouched in (other_lot, other_shop):
        names = [e["name"] for e in console_container.reads.case_detail(untouched)["timeline"]]
        assert "evidence_exported" not in names

    # Another shop's lot is not this operator's to export; an unknown lot has no cases.
    refused = li.post("/console/evidence/lot", {"shop": OTHER_SHOP, "lot": "LOT-A7"})
    assert refused.status_code == 422
    assert li.post("/console/evidence/lot",
                   {"shop": "acme-medical", "lot": "NO-SUCH"}).status_code == 404
    # The case page offers the lot's export.
    page = client.get(f"/console/cases/{in_lot[0]}").text
    assert "Export every case of lot LOT-A7" in page


def test_another_shops_case_is_a_404_for_every_action(
        login_as: Login, console_container: Container, providers: Any) -> None:
    _, stripe_fake, erp = providers
    li = login_as("li.na", "reviewer")
    failed_refund(stripe_fake)
    theirs = open_in(li.client, erp, OTHER_SHOP)
    drain(console_container)
    assert console_container.reads.case_detail(theirs)["state"] == "failed"

    assert li.client.get(f"/console/cases/{theirs}").status_code == 404
    assert li.client.get("/console/cases/rc_nosuchcase").status_code == 404
    for action in ("retry", "evidence.zip", "notifications/received/resend"):
        assert li.post(f"/console/cases/{theirs}/{action}").status_code == 404, action
    assert li.post(f"/console/cases/{theirs}/cancel", {"reason": "x"}).status_code == 404
    names = [e["name"] for e in console_container.reads.case_detail(theirs)["timeline"]]
    assert "retry" not in names and "evidence_exported" not in names
    # An admin of every shop sees it.
    assert login_as("root", "admin", ()).client.get(
        f"/console/cases/{theirs}").status_code == 200


def test_roles_an_auditor_exports_but_may_not_retry_and_warehouse_may_not_export(
        login_as: Login, console_container: Container, providers: Any) -> None:
    _, stripe_fake, erp = providers
    audit = login_as("qian.audit", "auditor")
    failed_refund(stripe_fake)
    case_id, _ = open_case(audit.client, erp)
    drain(console_container)

    page = audit.client.get(f"/console/cases/{case_id}").text
    assert 'data-testid="retry"' not in page and 'data-testid="cancel"' not in page
    assert audit.post(f"/console/cases/{case_id}/retry").status_code == 403
    assert audit.post(f"/console/cases/{case_id}/cancel", {"reason": "no"}).status_code == 403
    assert console_container.reads.case_detail(case_id)["state"] == "failed"
    assert audit.post(f"/console/cases/{case_id}/evidence.zip").status_code == 200

    wang = login_as("wang.fang", "warehouse")
    page = wang.client.get(f"/console/cases/{case_id}").text
    assert 'data-testid="export"' not in page and 'data-testid="retry"' not in page
    assert wang.post(f"/console/cases/{case_id}/evidence.zip").status_code == 403
    assert wang.post("/console/evidence/lot",
                     {"shop": "acme-medical", "lot": "L2401"}).status_code == 403
    assert wang.client.get("/console/evidence").status_code == 403


def test_the_warehouse_is_sent_to_record_a_receipt(
        login_as: Login, console_container: Container, providers: Any) -> None:
    _, _, erp = providers
    wang = login_as("wang.fang", "warehouse")
    case_id, _ = open_case(wang.client, erp, kind="return_and_refund")
    drain(console_container)
    assert console_container.reads.case_detail(case_id)["state"] == "awaiting_return"
    page = wang.client.get(f"/console/cases/{case_id}").text
    assert f'href="/console/receive?case={case_id}"' in page


def test_actions_need_the_sessions_csrf_token(
        login_as: Login, console_container: Container, providers: Any) -> None:
    _, stripe_fake, erp = providers
    li = login_as("li.na", "reviewer")
    failed_refund(stripe_fake)
    case_id, _ = open_case(li.client, erp)
    drain(console_container)
    for action in ("retry", "evidence.zip"):
        bare = li.client.post(f"/console/cases/{case_id}/{action}", follow_redirects=False)
        assert bare.status_code == 403, action
        wrong = li.client.post(f"/console/cases/{case_id}/{action}",
                               data={"csrf_token": "x" * 43}, follow_redirects=False)
        assert wrong.status_code == 403, action
    lot = li.client.post("/console/evidence/lot", data={"shop": "acme-medical",
                                                       "lot": "L2401"})
    assert lot.status_code == 403
    names = [e["name"] for e in console_container.reads.case_detail(case_id)["timeline"]]
    assert "retry" not in names and "evidence_exported" not in names


def test_a_failed_message_can_be_resent(login_as: Login, console_container: Container,
                                        providers: Any, mailbox: Any) -> None:
    _, _, erp = providers
    li = login_as("li.na", "reviewer")
    mailbox.refusal = "550 mailbox unavailable"
    case_id, _ = open_case(li.client, erp, **{"reason.code": "other"})
    drain(console_container)
    mailbox.refusal = None
    detail = console_container.reads.case_detail(case_id)
    assert {n["kind"]: n["status"] for n in detail["notifications"]} == {"received": "failed"}
    page = li.client.get(f"/console/cases/{case_id}").text
    assert 'data-testid="resend-received"' in page and "550 mailbox unavailable" in page
    answer = li.post(f"/console/cases/{case_id}/notifications/received/resend")
    assert answer.status_code == 303
    drain(console_container)
    detail = console_container.reads.case_detail(case_id)
    received = next(n for n in detail["notifications"] if n["kind"] == "received")
    assert received["status"] == "sent"
    resend = [e for e in detail["timeline"] if e["name"] == "notification_resend_requested"]
    assert [e["actor"] for e in resend] == ["operator:li.na"]


def test_the_page_speaks_chinese(login_as: Login, console_container: Container,
                                 providers: Any) -> None:
    _, _, erp = providers
    li = login_as("li.na", "reviewer")
    case_id, _ = open_case(li.client, erp, **{"reason.code": "other"})
    drain(console_container)
    li.client.cookies.set("rb_lang", "zh-CN")
    html = li.client.get(f"/console/cases/{case_id}").text
    for text in ("时间线", "审计链", "送交人工审核", "导出证据包（ZIP）"):
        assert text in html, text


TEXT = re.compile(r"""_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")


def test_every_text_of_the_page_has_a_chinese_entry() -> None:
    texts: set[str] = set()
    for name in ("case.html", "evidence.html"):
        source = (HERE / "templates" / name).read_text(encoding="utf-8")
        texts.update(a or b for a, b in TEXT.findall(source))
    texts.update(title for title, _ in case_page.EVENTS.values())
    texts.update(kind for _, kind in case_page.EVENTS.values())
    texts.update(label for _, label in case_page.FACTS)
    texts.update(case_page.NOTICES.values())
    texts.update({"Amount", "Scope", "Say why the case is cancelled.",
                  "Choose one of your shops and type a lot number."})
    missing = sorted(t for t in texts if t not in catalog())
    assert missing == []


def test_a_lot_named_in_chinese_exports_under_a_plain_file_name(
        login_as: Login, console_container: Container, providers: Any) -> None:
    _, _, erp = providers
    li = login_as("li.na", "reviewer")
    case_id = open_in(li.client, erp, "acme-medical", **{"lines.0.lot": "批号A7"})
    drain(console_container)
    answer = li.post("/console/evidence/lot", {"shop": "acme-medical", "lot": "批号A7"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-disposition"] == (
        'attachment; filename="evidence-acme-medical-lot-__A7.zip"')
    result = verify_package(answer.content)
    assert result.ok and [c.case_id for c in result.cases] == [case_id]
