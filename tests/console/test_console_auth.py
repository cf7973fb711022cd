"""Logging in: accounts, sessions, CSRF, the throttle, security headers, and shops."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from refundbridge.bootstrap import Container
from refundbridge.core.access import OperatorRole
from refundbridge.core.errors import InvalidRequest
from tests.console.conftest import PASSWORD, Session, csrf_of, log_in
from tests.factories import SHOP


def test_a_page_needs_a_login_and_comes_back_after_it(console_container: Container,
                                                      console_app: Any) -> None:
    console_container.operators.add("li.na", OperatorRole.REVIEWER, [SHOP], PASSWORD)
    with TestClient(console_app) as client:
        away = client.get("/console/me?x=1", follow_redirects=False)
        assert away.status_code == 303
        assert away.headers["location"] == "/console/login?next=%2Fconsole%2Fme%3Fx%3D1"
        answer = log_in(client, "li.na", next_url="/console/me?x=1")
        assert answer.status_code == 303 and answer.headers["location"] == "/console/me?x=1"
        cookie = answer.headers["set-cookie"]
        assert "rb_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
        assert "Max-Age=36000" in cookie and "Secure" not in cookie
        assert "li.na" in client.get("/console/me").text


def test_the_cookie_is_secure_over_https(console_container: Container, console_app: Any) -> None:
    console_container.operators.add("li.na", OperatorRole.REVIEWER, [SHOP], PASSWORD)
    with TestClient(console_app, base_url="https://testserver") as client:
        answer = log_in(client, "li.na")
        assert "Secure" in answer.headers["set-cookie"]


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/v1/cases",
                                    "/console\\@evil", "javascript:alert(1)"])
def test_login_goes_only_to_a_console_page(console_container: Container, console_app: Any,
                                           target: str) -> None:
    console_container.operators.add("li.na", OperatorRole.REVIEWER, [SHOP], PASSWORD)
    with TestClient(console_app) as client:
        assert log_in(client, "li.na", next_url=target).headers["location"] == "/console/"


def test_wrong_passwords_are_throttled_per_name(console_container: Container,
                                               console_app: Any) -> None:
    console_container.operators.add("li.na", OperatorRole.REVIEWER, [SHOP], PASSWORD)
    with TestClient(console_app) as client:
        for _ in range(5):
            assert log_in(client, "li.na", "wrong password!").status_code == 401
        # The right password no longer helps until the window has passed.
        refused = log_in(client, "li.na")
        assert refused.status_code == 429 and "rb_session" not in refused.headers.get(
            "set-cookie", "")
        # Another name from the same address still may.
        console_container.operators.add("zhao", OperatorRole.WAREHOUSE, [SHOP], PASSWORD)
        assert log_in(client, "zhao").status_code == 303


def test_an_unknown_name_reads_like_a_wrong_password(console_app: Any) -> None:
    with TestClient(console_app) as client:
        answer = log_in(client, "nobody")
        assert answer.status_code == 401 and "Wrong name or password" in answer.text


def test_login_without_its_form_token_is_refused(console_container: Container,
                                                 console_app: Any) -> None:
    console_container.operators.add("li.na", OperatorRole.REVIEWER, [SHOP], PASSWORD)
    with TestClient(console_app) as client:
        answer = client.post("/console/login", data={"name": "li.na", "password": PASSWORD},
                             follow_redirects=False)
        assert answer.status_code == 403 and "rb_session" not in answer.headers.get(
            "set-cookie", "")


def test_a_post_without_the_csrf_token_is_refused(login_as: Callable[..., Session]) -> None:
    session = login_as("li.na")
    bare = session.client.post("/console/logout", follow_redirects=False)
    assert bare.status_code == 403 and "csrf_token" in bare.text
    forged = session.client.post("/console/logout", data={"csrf_token": "x" * 43},
                                 follow_redirects=False)
    assert forged.status_code == 403
    assert session.client.get("/console/me").status_code == 200  # still logged in
    assert session.post("/console/logout").status_code == 303
    assert session.client.get("/console/me", follow_redirects=False).status_code == 303


def test_logout_ends_the_session_on_the_server(login_as: Callable[..., Session],
                                               console_app: Any) -> None:
    session = login_as("li.na")
    stolen = session.client.cookies.get("rb_session")
    session.post("/console/logout")
    with TestClient(console_app, cookies={"rb_session": stolen}) as thief:
        assert thief.get("/console/me", follow_redirects=False).status_code == 303


def test_login_rotates_the_session(login_as: Callable[..., Session]) -> None:
    session = login_as("li.na")
    before = session.client.cookies.get("rb_session")
    log_in(session.client, "li.na")
    after = session.client.cookies.get("rb_session")
    assert after and after != before
    session.client.cookies.set("rb_session", before)
    assert session.client.get("/console/me", follow_redirects=False).status_code == 303


def test_a_disabled_account_stops_working_at_once(login_as: Callable[..., Session],
                                                  console_container: Container) -> None:
    session = login_as("li.na")
    console_container.operators.disable("li.na")
    assert session.client.get("/console/me", follow_redirects=False).status_code == 303
    assert log_in(session.client, "li.na").status_code == 401
    console_container.operators.enable("li.na")
    assert log_in(session.client, "li.na").status_code == 303


def test_a_password_reset_ends_the_old_sessions(login_as: Callable[..., Session],
                                                console_container: Container) -> None:
    session = login_as("li.na")
    console_container.operators.reset_password("li.na", "a brand new password")
    assert session.client.get("/console/me", follow_redirects=False).status_code == 303
    assert log_in(session.client, "li.na").status_code == 401
    assert log_in(session.client, "li.na", "a brand new password").status_code == 303


def test_every_console_page_has_the_security_headers(login_as: Callable[..., Session]) -> None:
    session = login_as("li.na")
    for url in ("/console/login", "/console/me", "/console/nowhere"):
        headers = session.client.get(url).headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
        assert headers["cache-control"] == "no-store"


def test_the_pages_carry_no_inline_script(login_as: Callable[..., Session]) -> None:
    html = login_as("li.na").client.get("/console/me").text
    assert "<script>" not in html and "onclick" not in html and " style=" not in html


def test_errors_are_pages_in_the_operators_language(login_as: Callable[..., Session]) -> None:
    session = login_as("li.na")
    session.client.get("/console/language/zh-CN", follow_redirects=False)
    missing = session.client.get("/console/nowhere")
    assert missing.status_code == 404 and "text/html" in missing.headers["content-type"]
    assert "未找到" in missing.text
    assert "审核员" in session.client.get("/console/me").text


@pytest.mark.parametrize(("name", "role", "shops", "password", "field"), [
    ("x", OperatorRole.REVIEWER, [SHOP], PASSWORD, "name"),
    ("li na", OperatorRole.REVIEWER, [SHOP], PASSWORD, "name"),
    ("li.na", OperatorRole.REVIEWER, [SHOP], "short", "password"),
    ("li.na", OperatorRole.REVIEWER, [], PASSWORD, "shops"),
])
def test_bad_accounts_are_refused_naming_the_field(console_container: Container, name: str,
                                                   role: OperatorRole, shops: list[str],
                                                   password: str, field: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        console_container.operators.add(name, role, shops, password)
    assert refused.value.field == field
    assert console_container.operators.accounts() == []


def test_a_name_is_taken_once(console_container: Container) -> None:
    console_container.operators.add("li.na", OperatorRole.REVIEWER, [SHOP], PASSWORD)
    with pytest.raises(InvalidRequest, match="exists already"):
        console_container.operators.add("li.na", OperatorRole.ADMIN, [], PASSWORD)


def test_passwords_are_stored_as_argon2id(console_container: Container) -> None:
    from sqlalchemy import text

    console_container.operators.add("li.na", OperatorRole.REVIEWER, [SHOP], PASSWORD)
    with console_container.engine.connect() as conn:
        stored = conn.execute(text("SELECT password_hash FROM operators")).scalar_one()
        sessions = conn.execute(text("SELECT count(*) FROM console_sessions")).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert sessions == 0


def test_the_page_csrf_token_is_the_sessions(login_as: Callable[..., Session]) -> None:
    session = login_as("li.na")
    assert csrf_of(session.client.get("/console/me").text) == session.csrf
