"""The console in a real browser (Debian's Chromium, driven by Playwright), every request
off this machine refused. Screenshots go to $REFUNDBRIDGE_SCREENSHOTS (docs/console/ when
`scripts/screenshots.sh` runs them), else to the test's tmp_path."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from refundbridge.bootstrap import Container
from refundbridge.core.access import OperatorRole
from tests.browser import chromium, needs_chromium, offline_page, serve, shot
from tests.console.conftest import PASSWORD
from tests.factories import SHOP

pytestmark = needs_chromium
REFUNDBRIDGE = str(Path(sys.executable).with_name("refundbridge"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def base_url(console_app: Any) -> Iterator[str]:
    with serve(console_app) as url:
        yield url


def log_in(page: Page, base_url: str, name: str, password: str = PASSWORD) -> None:
    page.goto(f"{base_url}/console/login")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def test_log_in_and_out(browser: Browser, base_url: str, console_container: Container,
                        tmp_path: Path) -> None:
    console_container.operators.add("li.na", OperatorRole.REVIEWER, [SHOP], PASSWORD)
    elsewhere: list[str] = []
    errors: list[str] = []
    page = offline_page(browser, base_url, elsewhere, width=1024, height=768)
    page.on("pageerror", lambda error: errors.append(str(error)))
    # A page's own status (a 401 for a wrong password) is the test's business; a script,
    # style or image that fails to load is a broken page.
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and r.request.resource_type != "document" else None)
    page.goto(f"{base_url}/console/me")
    assert "/console/login" in page.url
    shot(page, tmp_path, "login.png")
    log_in(page, base_url, "li.na", "not the password")
    assert "Wrong name or password" in page.content()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Name").fill("li.na")
    page.get_by_role("button", name="Log in").click()
    page.goto(f"{base_url}/console/me")
    assert page.get_by_test_id("who").inner_text().startswith("li.na")
    page.get_by_role("link", name="中文").click()
    assert "审核员" in page.get_by_test_id("who").inner_text()
    page.get_by_role("button", name="退出").click()
    assert "/console/login" in page.url
    assert elsewhere == [] and errors == []


def test_a_form_posted_without_its_csrf_token_is_refused(
        browser: Browser, base_url: str, console_container: Container) -> None:
    console_container.operators.add("li.na", OperatorRole.REVIEWER, [SHOP], PASSWORD)
    page = offline_page(browser, base_url, [])
    log_in(page, base_url, "li.na")
    # The browser's own cookies, but a form without the token (as another site would post).
    refused = page.context.request.post(f"{base_url}/console/logout", form={},
                                        max_redirects=0)
    assert refused.status == 403 and "csrf_token" in refused.text()
    page.goto(f"{base_url}/console/me")
    assert "/console/me" in page.url  # still logged in


def test_a_disabled_accounts_session_stops_working(
        browser: Browser, base_url: str, console_container: Container) -> None:
    console_container.operators.add("li.na", OperatorRole.REVIEWER, [SHOP], PASSWORD)
    page = offline_page(browser, base_url, [])
    log_in(page, base_url, "li.na")
    page.goto(f"{base_url}/console/me")
    assert "/console/me" in page.url
    console_container.operators.disable("li.na")
    page.reload()
    assert "/console/login" in page.url


def test_an_auditor_exports_a_case_and_one_edited_byte_fails_verification(
        browser: Browser, base_url: str, console_container: Container, console_app: Any,
        providers: Any, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from refundbridge.core.evidence import verify_package
    from tests.conftest import drain, open_case

    _, _, erp = providers
    with TestClient(console_app) as client:
        case_id, _ = open_case(client, erp)
    drain(console_container)
    console_container.operators.add("wu.audit", OperatorRole.AUDITOR, [SHOP], PASSWORD)
    page = offline_page(browser, base_url, [], width=1280, height=1000)
    log_in(page, base_url, "wu.audit")
    page.goto(f"{base_url}/console/cases/{case_id}")
    assert page.get_by_test_id("retry").count() == 0  # an auditor reads and exports only
    shot(page, tmp_path, "case.png", full_page=True)
    with page.expect_download() as download:
        page.get_by_test_id("export").click()
    package = Path(download.value.path()).read_bytes()
    assert verify_package(package).ok
    good = tmp_path / "case.zip"
    good.write_bytes(package)
    bad = tmp_path / "tampered.zip"
    bad.write_bytes(_edit_one_byte(package, f"cases/{case_id}/events.json"))
    ok = subprocess.run([REFUNDBRIDGE, "evidence", "verify", str(good)], capture_output=True,
                        text=True, check=False)
    assert ok.returncode == 0 and ok.stdout.startswith("verified: 1 cases"), ok.stdout
    refused = subprocess.run([REFUNDBRIDGE, "evidence", "verify", str(bad)],
                             capture_output=True, text=True, check=False)
    assert refused.returncode == 1
    assert f"cases/{case_id}/events.json: event" in refused.stdout + refused.stderr


def _edit_one_byte(package: bytes, name: str) -> bytes:
    """The package with one byte of one file changed (and zipped again, as a forger would:
    a byte flipped inside the ZIP itself is caught by the ZIP's own checksum)."""
    source = zipfile.ZipFile(io.BytesIO(package))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == name:
                at = data.index(b'"approve"') + 7
                data = data[:at] + b"f" + data[at + 1:]
            target.writestr(info, data)
    return out.getvalue()


def test_a_reviewer_approves_a_case_from_the_queue_and_it_reaches_refunded(
        browser: Browser, base_url: str, console_container: Container, console_app: Any,
        providers: Any, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from tests.conftest import drain
    from tests.console.test_review import ONE_REVIEWER, open_request

    with TestClient(console_app) as client:
        case_id = open_request(client, providers[2], **ONE_REVIEWER)
    drain(console_container)
    console_container.operators.add("li.na", OperatorRole.REVIEWER, [SHOP], PASSWORD)
    page = offline_page(browser, base_url, [], width=1180, height=820)  # a landscape tablet
    log_in(page, base_url, "li.na")
    assert page.url.endswith("/console/review")
    row = page.get_by_test_id("review-queue").locator("tr", has_text=case_id[:12])
    assert "R20" in row.inner_text()  # above the shop's auto-approval limit
    shot(page, tmp_path, "review.png")
    row.get_by_role("link", name="Decide").click()
    page.get_by_label("Approve the refund").check()
    page.get_by_label("Internal note").fill("Customer called; the meter reads 20 % high.")
    page.get_by_label("Message to the customer").fill("We refund your meter in full.")
    shot(page, tmp_path, "review-decide.png", full_page=True)
    page.get_by_role("button", name="Record the decision").click()
    assert "/console/review" in page.url
    assert case_id[:12] in page.get_by_test_id("notice").inner_text()
    drain(console_container)  # the worker pays the refund
    page.goto(f"{base_url}/console/cases/{case_id}")
    assert page.get_by_test_id("state").inner_text() in {"Refunded", "Closed"}
    timeline = page.locator("ol.timeline").inner_text()
    assert "li.na" in timeline


def test_the_lists_jobs_and_kpis_render_without_a_blocked_resource(
        browser: Browser, base_url: str, console_container: Container, console_app: Any,
        providers: Any, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from tests.conftest import drain, open_case
    from tests.console.test_jobs import failed_job
    from tests.console.test_review import ONE_REVIEWER, open_request

    with TestClient(console_app) as client:
        opened = [open_case(client, providers[2])[0] for _ in range(3)]
        open_request(client, providers[2], **ONE_REVIEWER)
    drain(console_container)
    failed_job(console_container, opened[0])
    console_container.operators.add("root", OperatorRole.ADMIN, [], PASSWORD)
    elsewhere: list[str] = []
    problems: list[str] = []
    page = offline_page(browser, base_url, elsewhere, width=1280, height=900)
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    log_in(page, base_url, "root")
    for path, name, expect in (("/console/cases", "cases.png", "closed"),
                               ("/console/jobs", "jobs.png", "did not answer"),
                               ("/console/kpis", "kpis.png", "Auto-approval")):
        page.goto(f"{base_url}{path}")
        assert expect.lower() in page.content().lower(), path
        for image in page.locator("img").all():  # every chart loaded and drew
            assert image.evaluate("i => i.complete && i.naturalWidth > 0"), path
        shot(page, tmp_path, name, full_page=name in {"kpis.png", "jobs.png"})
    page.goto(f"{base_url}/console/language/zh-CN?next=/console/review")
    assert "审核队列" in page.content()
    shot(page, tmp_path, "review-zh.png")
    # A warehouse tablet held upright.
    page.set_viewport_size({"width": 800, "height": 1200})
    page.goto(f"{base_url}/console/cases")
    shot(page, tmp_path, "cases-tablet-zh.png")
    assert elsewhere == [] and problems == [], (elsewhere, problems)


def test_a_reviewer_of_one_shop_cannot_open_another_shops_case(
        browser: Browser, base_url: str, console_container: Container, console_app: Any,
        providers: Any) -> None:
    from fastapi.testclient import TestClient

    from tests.console.conftest import OTHER_SHOP
    from tests.console.test_case_page import open_in

    with TestClient(console_app) as client:
        theirs = open_in(client, providers[2], OTHER_SHOP)
        ours = open_in(client, providers[2], SHOP)
    console_container.operators.add("li.na", OperatorRole.REVIEWER, [SHOP], PASSWORD)
    page = offline_page(browser, base_url, [])
    log_in(page, base_url, "li.na")
    assert page.goto(f"{base_url}/console/cases/{ours}").status == 200
    for path in (f"/console/cases/{theirs}", f"/console/review/{theirs}",
                 f"/console/receive/{theirs}"):
        answer = page.goto(f"{base_url}{path}")
        assert answer is not None and answer.status == 404, path
        assert OTHER_SHOP not in page.content()  # nothing of the case, not even its shop
    listed = page.goto(f"{base_url}/console/cases")
    assert listed is not None and ours in page.content() and theirs not in page.content()
