"""The console's fixtures: two shops, operators made with the real directory (argon2, at
cheap parameters so that tests stay fast), and a logged-in TestClient per operator."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from redis import Redis
from sqlalchemy import Engine

from refundbridge.api.app import create_app
from refundbridge.bootstrap import Container, bootstrap
from refundbridge.core.access import OperatorRole
from refundbridge.demo import Mailbox
from refundbridge.store.operators import SqlOperatorDirectory
from tests.conftest import test_settings
from tests.factories import SHOP

OTHER_SHOP = "beta-health"
PASSWORD = "correct horse battery"
# RFC 9106's parameters cost 64 MiB and ~50 ms a hash; the tests check our use of argon2,
# not its strength.
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=256, parallelism=1)


@pytest.fixture
def console_container(db: Engine, redis_conn: Redis, smtp_server: tuple[Controller, Mailbox],
                      database_url: str) -> Iterator[Container]:
    """The usual shop, and a second one (same connectors) that its operators must not see."""
    settings = test_settings(database_url, smtp_server[0].port)
    shops = dict(settings.shops)
    shops[OTHER_SHOP] = shops[SHOP].model_copy()
    settings = settings.model_copy(update={"shops": shops})
    container = bootstrap(settings, redis=redis_conn, engine=db)
    container.operators = SqlOperatorDirectory(db, CHEAP_HASHER)
    yield container
    container.close()


@dataclass
class Session:
    client: TestClient
    name: str
    csrf: str

    def post(self, url: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """A form post with this session's CSRF token, as the page's form sends it."""
        return self.client.post(url, data={"csrf_token": self.csrf, **(data or {})},
                                follow_redirects=False, **kwargs)


CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF_INPUT.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def log_in(client: TestClient, name: str, password: str = PASSWORD,
           next_url: str = "/console/") -> Any:
    form = client.get("/console/login")
    return client.post("/console/login", data={
        "name": name, "password": password, "csrf_token": csrf_of(form.text),
        "next": next_url}, follow_redirects=False)


@pytest.fixture
def console_app(console_container: Container) -> Any:
    return create_app(console_container, dashboard=False)


@pytest.fixture
def login_as(console_container: Container, console_app: Any
             ) -> Iterator[Callable[..., Session]]:
    """`login_as("li.na", "reviewer")`: that operator (made if new) logged in."""
    clients: list[TestClient] = []

    def login(name: str, role: str = "reviewer", shops: tuple[str, ...] = (SHOP,)) -> Session:
        known = {a.name for a in console_container.operators.accounts()}
        if name not in known:
            console_container.operators.add(name, OperatorRole(role), list(shops), PASSWORD)
        client = TestClient(console_app, base_url="http://testserver")
        client.__enter__()
        clients.append(client)
        answer = log_in(client, name)
        assert answer.status_code == 303, answer.text
        page = client.get("/console/me")
        return Session(client, name, csrf_of(page.text))

    yield login
    for client in clients:
        client.__exit__(None, None, None)
