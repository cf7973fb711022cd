"""Fixtures the recall-campaign tests share: a container on a sandbox ERP holding the
shipments a test gives, with status links and a clock the test moves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from pydantic import SecretStr
from redis import Redis
from sqlalchemy import Engine

from refundbridge.bootstrap import Container, bootstrap
from tests.conftest import Mailbox, test_settings

SECRET = "status-link-secret-for-tests-0123456789"


@dataclass
class Clock:
    """Real time plus an offset a test moves forward."""

    offset: timedelta = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def campaign_container(db: Engine, redis_conn: Redis,
                       smtp_server: tuple[Controller, Mailbox],
                       database_url: str, clock: Clock) -> Callable[..., Container]:
    def build(rows: list[dict[str, Any]], stock: list[dict[str, Any]] | None = None,
              **shop: Any) -> Container:
        settings = test_settings(database_url, smtp_server[0].port, erp="sandbox_erp",
                                 sandbox_erp={"shipments": rows, "stock": stock or []},
                                 **shop)
        settings = settings.model_copy(update={"status_link_secret": SecretStr(SECRET)})
        return bootstrap(settings, redis=redis_conn, engine=db, clock=clock)
    return build


