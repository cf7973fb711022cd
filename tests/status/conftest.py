"""The status page's fixtures: the usual shop with a status-link key, and a second shop
(same connectors), whose customers' links must not open the first shop's cases."""

from __future__ import annotations

import email
import email.policy
import re
import secrets
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from pydantic import SecretStr
from redis import Redis
from sqlalchemy import Engine

from refundbridge.api.app import create_app
from refundbridge.bootstrap import Container, bootstrap
from refundbridge.demo import Mailbox
from tests.conftest import test_settings
from tests.factories import SHOP

OTHER_SHOP = "beta-health"
LINK_SECRET = "sl_" + secrets.token_hex(24)
PUBLIC = "http://testserver"
RETURN_ADDRESS = "爱康医疗 售后部\n上海市浦东新区张江路 88 号 3 楼\n200120"
LINK = re.compile(r"(https?://[^\s]+/status/[A-Za-z0-9._-]+)")


@pytest.fixture
def status_container(db: Engine, redis_conn: Redis, smtp_server: tuple[Controller, Mailbox],
                     database_url: str) -> Iterator[Container]:
    settings = test_settings(
        database_url, smtp_server[0].port,
        policy={"refund_timing": "on_receipt", "return_address": RETURN_ADDRESS,
                "auto_approve_limits": {"CNY": "500", "USD": "80"},
                "skus": {"IVD-REAGENT-COLD": {"cold_chain": True},
                         "DRESSING-STERILE-10": {"sterile": True}}})
    shops = dict(settings.shops)
    shops[OTHER_SHOP] = shops[SHOP].model_copy(update={"name": "Beta Health"})
    settings = settings.model_copy(update={
        "shops": shops, "status_link_secret": SecretStr(LINK_SECRET),
        "public_base_url": PUBLIC})
    container = bootstrap(settings, redis=redis_conn, engine=db)
    yield container
    container.close()


@pytest.fixture
def status_client(status_container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(status_container, dashboard=False),
                    base_url=PUBLIC) as client:
        yield client


def mails(box: Mailbox) -> list[EmailMessage]:
    return [email.message_from_bytes(m, policy=email.policy.default)  # type: ignore[misc]
            for m in box.messages]


def body_of(mail: EmailMessage) -> str:
    part = mail.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def link_in(mail: EmailMessage) -> str:
    found = LINK.search(body_of(mail))
    assert found, body_of(mail)
    return found.group(1)


def links_sent(box: Mailbox, kind: str) -> list[str]:
    return [link_in(m) for m in mails(box) if f".{kind}" in str(m["Message-ID"])]


def path_of(link: str) -> str:
    assert link.startswith(PUBLIC + "/status/"), link
    return link.removeprefix(PUBLIC)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def look_up(client: TestClient, order: str, address: str, shop: str = SHOP) -> Any:
    form = client.get(f"/status/{shop}/lookup")
    assert form.status_code == 200, form.text
    return client.post(f"/status/{shop}/lookup", data={
        "order": order, "email": address, "csrf_token": csrf_of(form.text)})
