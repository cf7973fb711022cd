"""Shared fixtures: a real PostgreSQL database and Redis, a real SMTP server, and respx
routers for the third-party HTTP APIs (and only those).

The test command (`make test`) starts PostgreSQL and Redis when they are not running.
Each test gets empty tables and an empty Redis database; the servers are shared.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
import respx
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from redis import Redis
from sqlalchemy import Engine, text

from refundbridge.api.app import create_app
from refundbridge.bootstrap import Container, bootstrap
from refundbridge.config.settings import load_settings
from refundbridge.demo import Mailbox
from refundbridge.store.db import make_engine, upgrade
from refundbridge.workers.runner import drain as run_until_idle
from tests.factories import (
    GENERIC_SECRET,
    OPERATOR_TOKEN,
    REVIEWER,
    REVIEWER_TOKEN,
    SHOP,
    request_body,
    signed,
)
from tests.fakes.erpnext import BASE as ERP_BASE
from tests.fakes.erpnext import ERPNextFake
from tests.fakes.stripe import BASE as STRIPE_BASE
from tests.fakes.stripe import StripeFake

PG_ADMIN = os.environ.get("REFUNDBRIDGE_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_DATABASE = os.environ.get("REFUNDBRIDGE_TEST_PG_DB", f"refundbridge_test_{os.getpid()}")
REDIS_URL = os.environ.get("REFUNDBRIDGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
STRIPE_KEY = "sk_test_" + secrets.token_hex(16)
STRIPE_WEBHOOK_SECRET = "whsec_" + secrets.token_hex(16)
TABLES = ("cases", "case_events", "inbox", "outbox", "orders", "recalls", "external_refunds",
          "operators", "console_sessions", "case_units", "case_rules", "sms_opt_outs",
          "sms_sends", "recall_campaigns", "campaign_events", "campaign_consignees",
          "capa_records", "capa_events", "capa_cases", "capa_lots",
          "quality_signals", "signal_events", "shipped_quantities")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{PG_DATABASE}"
    upgrade(url)  # the Alembic migrations, as production runs them
    yield url
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db(engine: Engine) -> Engine:
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY"))
    return engine


@pytest.fixture
def redis_conn() -> Iterator[Redis]:
    conn = Redis.from_url(REDIS_URL)
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


_MAILBOXES: list[Mailbox] = []


@pytest.fixture(autouse=True)
def _smtp_accepts_again() -> Iterator[None]:
    """The session's SMTP server takes mail again after a test that made it refuse: a
    refusal left behind would fail every later test's messages."""
    yield
    for mailbox in _MAILBOXES:
        mailbox.refusal = None


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[Controller, Mailbox]]:
    mailbox = Mailbox()
    _MAILBOXES.append(mailbox)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield controller, mailbox
    controller.stop()


@pytest.fixture
def mailbox(smtp_server: tuple[Controller, Mailbox]) -> Mailbox:
    smtp_server[1].messages.clear()
    smtp_server[1].refusal = None
    return smtp_server[1]


@pytest.fixture
def providers() -> Iterator[tuple[respx.MockRouter, StripeFake, ERPNextFake]]:
    """respx fakes of Stripe and ERPNext; any other outbound HTTP fails the test."""
    stripe_fake, erp_fake = StripeFake(), ERPNextFake()
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        stripe_fake.install(router)
        erp_fake.install(router)
        yield router, stripe_fake, erp_fake


def shop_config(smtp_port: int, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": "Acme Medical 爱康医疗",
        "storefront": "generic", "payment": "stripe", "erp": "erpnext", "notifier": "smtp",
        "policy": {"refund_timing": "on_receipt",
                   "auto_approve_limits": {"CNY": "500", "USD": "80"}},
        "generic": {"secret": GENERIC_SECRET},
        "stripe": {"api_key": STRIPE_KEY, "webhook_secret": STRIPE_WEBHOOK_SECRET,
                   "base_url": STRIPE_BASE},
        "erpnext": {"base_url": ERP_BASE, "api_key": "k_" + secrets.token_hex(8),
                    "api_secret": "s_" + secrets.token_hex(12)},
        "smtp": {"host": "127.0.0.1", "port": smtp_port,
                 "sender_email": "returns@acme-medical.example.com",
                 "sender_name": "爱康医疗售后"},
        "sandbox_erp": {}, "sandbox_notifier": {}, "sandbox_payment": {},
    }
    config.update(overrides)
    return config


def test_settings(database_url: str, smtp_port: int, **shop_overrides: Any) -> Any:
    return load_settings(
        None, database_url=database_url, redis_url=REDIS_URL,
        operator_tokens=[OPERATOR_TOKEN, "op_rotated_" + secrets.token_hex(8)],
        api_tokens=[{"name": REVIEWER, "token": REVIEWER_TOKEN, "role": "reviewer",
                     "shops": ["*"]}],
        retry_attempts=4, retry_initial_wait=0.0, retry_max_wait=0.0,
        shops={SHOP: shop_config(smtp_port, **shop_overrides)},
    )


test_settings.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture
def make_container(db: Engine, redis_conn: Redis, smtp_server: tuple[Controller, Mailbox],
                   database_url: str) -> Iterator[Callable[..., Container]]:
    built: list[Container] = []

    def build(**shop_overrides: Any) -> Container:
        settings = test_settings(database_url, smtp_server[0].port, **shop_overrides)
        container = bootstrap(settings, redis=redis_conn, engine=db)
        built.append(container)
        return container

    yield build
    for container in built:
        for shop in container.shops.values():
            for connector in shop.by_name.values():
                close = getattr(connector, "close", None)
                if callable(close):
                    close()


@pytest.fixture
def container(make_container: Callable[..., Container]) -> Container:
    return make_container()


@pytest.fixture
def client(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container)) as test_client:
        yield test_client


def drain(container: Container, max_jobs: int | None = None) -> None:
    """Relay the outbox and run the jobs in this process, with the worker class and code
    production uses, until nothing is left (or `max_jobs` ran)."""
    run_until_idle(container, max_jobs=max_jobs)


def open_case(client: TestClient, erp: ERPNextFake, **overrides: Any) -> tuple[str, dict[str, Any]]:
    """Send a signed request whose order the ERP knows; return the new case's id and body."""
    body = request_body(**overrides)
    erp.add_invoice(body["order"]["id"], [("GLU-METER-01", 2, "199.00")])
    raw, headers = signed(body)
    answer = client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["case_id"]), body


def case_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM cases")).scalar_one())


def stored_rows(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
                for t in TABLES}
