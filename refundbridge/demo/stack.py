"""The demo's embedded stack: the whole system in one process, on loopback.

A SQLite file that the demo marks as its own, an in-process Redis (fakeredis), an RQ worker
thread, the real API under uvicorn on 127.0.0.1, a real SMTP server (aiosmtpd) on 127.0.0.1
for the customer emails, and the sandbox payment and ERP connectors (with latency and
transient failures).

The demo's people call the API with tokens of their own (`DEMO_TOKENS`), so the audit trail
names who did what: `token:reviewer.li` decides, `token:warehouse.zhao` receives the goods.
"""

from __future__ import annotations

import logging
import secrets
import socket
import sqlite3
import threading
import time
from contextlib import closing
from datetime import date
from pathlib import Path
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller
from redis.exceptions import RedisError
from rq import SimpleWorker

from refundbridge.api.app import create_app
from refundbridge.bootstrap import Container, bootstrap
from refundbridge.config.settings import Settings, load_settings
from refundbridge.core.access import OperatorRole
from refundbridge.core.errors import ConfigError
from refundbridge.demo.catalogue import SHOP, campaign_shipments, campaign_stock, shop_policy
from refundbridge.store.db import DATABASE_ERROR, upgrade
from refundbridge.workers import runtime
from refundbridge.workers.runner import PeriodicReconciler, drain, make_worker

# SQLite's header field for the application that owns a file ("RBdm"): the demo deletes
# only a file that carries it, never a database someone made by other means.
DEMO_APPLICATION_ID = 0x5242646D

# The demo shop's people on the API, each a named token of the demo shop: the reviewer who
# decides, a second reviewer who confirms where four eyes apply, and the warehouse.
REVIEWER = "reviewer.li"
SECOND_REVIEWER = "reviewer.chen"
WAREHOUSE = "warehouse.zhao"
DEMO_TOKENS: dict[str, OperatorRole] = {REVIEWER: OperatorRole.REVIEWER,
                                        SECOND_REVIEWER: OperatorRole.REVIEWER,
                                        WAREHOUSE: OperatorRole.WAREHOUSE}
log = logging.getLogger(__name__)

# While `--serve` waits for a person, the reconciler looks for stalled cases this often.
SERVE_RECONCILE_SECONDS = 5.0


def is_demo_database(path: Path) -> bool:
    """The file is a SQLite database that `refundbridge demo` made (opened read-only)."""
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            (application_id,) = db.execute("PRAGMA application_id").fetchone()
    except sqlite3.Error:
        return False  # not a database at all, or one SQLite cannot read
    return bool(application_id == DEMO_APPLICATION_ID)


def forget_demo_database(path: Path) -> None:
    """Delete the previous demo's database, refusing (`ConfigError` naming `--database`)
    any other file: the demo starts afresh, but must not destroy what it did not make."""
    if not path.parent.is_dir():
        raise ConfigError("--database", f"no such directory: {path.parent}")
    if path.exists() and not (path.is_file() and is_demo_database(path)):
        raise ConfigError("--database", f"{path} exists and was not made by `refundbridge "
                                        "demo`; it is left alone (name another file, or move "
                                        "this one away yourself)")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _mark_demo_database(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA application_id = {DEMO_APPLICATION_ID}")
        db.commit()


class Mailbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.refusal: str | None = None  # an SMTP reply such as "550 …" to give every message

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refusal is not None:
            return self.refusal
        self.messages.append(envelope.content)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _demo_settings(url: str, operator_token: str, tokens: dict[str, str], shop_secret: str,
                   smtp_port: int, base_url: str) -> Settings:
    """Demo mode, the shop on the sandbox connectors, and retries quick enough to watch;
    `tokens`: each of `DEMO_TOKENS`'s secret."""
    return load_settings(
        None, demo=True, database_url=url, redis_url=None, operator_tokens=[operator_token],
        api_tokens=[{"name": name, "token": tokens[name], "role": role.value, "shops": [SHOP]}
                    for name, role in DEMO_TOKENS.items()],
        retry_initial_wait=0.01, retry_max_wait=0.05, stale_after_seconds=5,
        public_base_url=base_url,  # the customers' status links point at this demo
        shops={SHOP: {
            "name": "Demo Pharmacy 演示药房",
            "storefront": "generic", "payment": "sandbox_payment", "erp": "sandbox_erp",
            "notifier": "smtp", "sms": "sandbox_sms",
            "policy": shop_policy(),
            "generic": {"secret": shop_secret},
            "sandbox_payment": {"latency_ms": 5, "transient_failure_rate": 0.15, "seed": 1},
            "sandbox_erp": {"latency_ms": 5, "transient_failure_rate": 0.1, "seed": 2,
                            "shipments": campaign_shipments(date.today()),
                            "stock": campaign_stock()},
            "sandbox_sms": {"latency_ms": 2, "transient_failure_rate": 0.1, "seed": 3},
            "smtp": {"host": "127.0.0.1", "port": smtp_port,
                     "sender_email": "returns@demo-pharmacy.example.com",
                     "sender_name": "演示药房 售后"},
        }},
    )


class EmbeddedStack:
    """The running system, started when made: `stop_worker` once the cases are done (or
    `keep_serving` to leave the worker on for a person), then `close`."""

    def __init__(self, database: Path, port: int = 0) -> None:
        forget_demo_database(database)
        url = f"sqlite:///{database}"
        upgrade(url)
        _mark_demo_database(database)
        self.mailbox = Mailbox()
        self._smtp = Controller(self.mailbox, hostname="127.0.0.1", port=_free_port())
        self._smtp.start()
        self.shop_secret = secrets.token_hex(16)
        self.operator_token = secrets.token_urlsafe(24)
        self.tokens = {name: secrets.token_urlsafe(24) for name in DEMO_TOKENS}
        self.port = port or _free_port()
        self.container: Container = bootstrap(_demo_settings(
            url, self.operator_token, self.tokens, self.shop_secret, self._smtp.port,
            self.base_url))
        runtime.install(self.container)
        self._server = uvicorn.Server(uvicorn.Config(
            create_app(self.container), host="127.0.0.1", port=self.port, log_level="warning"))
        self._api = threading.Thread(target=self._server.run, name="api", daemon=True)
        self._api.start()
        self._stop = threading.Event()
        worker = make_worker(self.container, threaded=True)
        self._worker = threading.Thread(target=self._work, args=(worker,), name="worker",
                                        daemon=True)
        self._worker.start()
        self._reconciler: PeriodicReconciler | None = None
        while not self._server.started:
            time.sleep(0.02)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _work(self, worker: SimpleWorker) -> None:
        while not self._stop.is_set():
            try:
                drain(self.container, worker)
            except (DATABASE_ERROR, RedisError):
                # As the relay does: a locked or busy store must not end the demo's only worker,
                # or `--serve` would take new requests that nobody works.
                log.exception("demo worker: relaying or working failed; trying again")
                self._stop.wait(1.0)
            self._stop.wait(0.05)

    def auth(self, name: str | None = None) -> dict[str, str]:
        """The headers of a call with `name`'s token (one of `DEMO_TOKENS`), or with the
        operator token."""
        token = self.operator_token if name is None else self.tokens[name]
        return {"Authorization": f"Bearer {token}"}

    def keep_serving(self) -> None:
        """Leave the worker on and start the reconciler: new requests are worked to their
        end while a person follows them."""
        if self._reconciler is None:
            self._reconciler = PeriodicReconciler(self.container, SERVE_RECONCILE_SECONDS)
            self._reconciler.start()

    def stop_worker(self) -> None:
        if self._reconciler is not None:
            self._reconciler.stopped.set()
            self._reconciler.join(timeout=30)
        self._stop.set()
        self._worker.join(timeout=30)

    def close(self) -> None:
        self.stop_worker()
        self._server.should_exit = True
        self._api.join(timeout=10)
        self._smtp.stop()
        self.container.close()
