"""Fixtures the recall-campaign tests share: a container on a sandbox ERP holding the
shipments a test gives, with status links and a clock the test moves."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from pydantic import SecretStr
from redis import Redis
from sqlalchemy import Engine

from refundbridge.bootstrap import Container, bootstrap
from refundbridge.core.errors import ConcurrencyConflict, TransientProviderError
from refundbridge.core.services import Services
from tests.conftest import Mailbox, test_settings

SECRET = "status-link-secret-for-tests-0123456789"

Step = Callable[[Services, str], None]


def race_workers(svc: Services, campaign_id: str, steps: Sequence[Step], rounds: int,
                 workers: int = 2) -> None:
    """`workers` threads start together and each runs `steps` on the campaign `rounds`
    times, as that many workers handed the same jobs would. A lost version race or a step
    another worker holds is what the queue would try again; any other error fails."""
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work() -> None:
        barrier.wait()
        try:
            for _ in range(rounds):
                for step in steps:
                    with contextlib.suppress(ConcurrencyConflict, TransientProviderError):
                        step(svc, campaign_id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


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


