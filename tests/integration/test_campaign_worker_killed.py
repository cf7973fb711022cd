"""A real `refundbridge worker` process killed in the middle of a recall campaign's notices.

The worker reads a settings file as a deployment's would (the sandbox ERP listing the
consignees, SMTP to a server this test runs on 127.0.0.1); it holds no test double. The SMTP
server takes one notice (250 after DATA, so it is delivered) and then never answers the
worker's QUIT: the process is stuck inside that consignee's send, after the message went out
and before it could record so. It is SIGKILLed there. Past the lease, the reconciler and a
worker in this process finish the campaign, and each consignee has exactly one email.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from redis import Redis
from sqlalchemy import Engine

from refundbridge.bootstrap import bootstrap
from refundbridge.config.settings import load_settings
from refundbridge.core.audit import verify_chain
from refundbridge.core.campaigns import (
    NOTICE_BATCH,
    CampaignState,
    NoticeState,
    RecallAction,
    RecallNotice,
)
from refundbridge.core.recalls import RecallClass
from refundbridge.core.services.campaigns import open_campaign
from refundbridge.workers.reconcile import reconcile
from tests.conftest import REDIS_URL, drain
from tests.factories import GENERIC_SECRET, OPERATOR_TOKEN, SHOP
from tests.integration.conftest import Clock

ROOT = Path(__file__).resolve().parents[2]
LOT = "L2409"
CONSIGNEES = 150
# The notice after which the SMTP server stops answering: inside the first batch, with
# consignees after that batch too.
STALL_AT = 40
WAIT = 60.0  # seconds any one wait may take on a loaded machine before the test fails


class StallingSink:
    """An aiosmtpd handler that keeps every message, by envelope recipient, and hangs the
    session that delivered message number `stall_at` before answering its QUIT."""

    def __init__(self, stall_at: int) -> None:
        self.stall_at = stall_at
        self.recipients: list[str] = []
        self.stalled = threading.Event()  # the stuck session is waiting for its 221
        self.released = threading.Event()
        self._stuck_session: Any = None
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.recipients.extend(envelope.rcpt_tos)
            if len(self.recipients) == self.stall_at:
                self._stuck_session = session
        return "250 OK"  # accepted: the message is delivered whatever happens next

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        if session is self._stuck_session:
            self.stalled.set()
            while not self.released.is_set():
                await asyncio.sleep(0.05)
        return "221 Bye"


@pytest.fixture
def sink() -> Iterator[tuple[StallingSink, int]]:
    handler = StallingSink(STALL_AT)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        handler.released.set()
        controller.stop()


def _shipments() -> list[dict[str, Any]]:
    return [{"customer": f"CUST-{i:04d}", "name": f"诊所 {i}" if i % 2 else f"Clinic {i}",
             "sku": "GLU-METER-01", "quantity": 1 + i % 3, "document": f"DN-{i:04d}",
             "lot": LOT, "order_id": f"SO-{i:04d}", "email": f"clinic{i}@example.com",
             "phone": f"+86138{i:08d}", "locale": "zh-CN" if i % 2 else "en",
             "shipped_on": "2026-10-01"} for i in range(CONSIGNEES)]


def _inline(row: dict[str, Any]) -> str:
    # JSON strings are TOML basic strings (same quotes and escapes).
    return "{ " + ", ".join(f"{k} = {json.dumps(v, ensure_ascii=False)}"
                            for k, v in row.items()) + " }"


def _toml(database_url: str, smtp_port: int) -> str:
    rows = ",\n  ".join(_inline(r) for r in _shipments())
    return f'''
database_url = "{database_url}"
redis_url = "{REDIS_URL}"
operator_tokens = ["{OPERATOR_TOKEN}"]
status_link_secret = "{secrets.token_hex(24)}"
# The process under test does nothing but work its queue: no reconciler of its own.
reconcile_interval_seconds = 0
retry_attempts = 2
retry_initial_wait = 0.0
retry_max_wait = 0.0

[shops.{SHOP}]
storefront = "generic"
payment = "sandbox_payment"
erp = "sandbox_erp"
notifier = "smtp"

[shops.{SHOP}.generic]
secret = "{GENERIC_SECRET}"

[shops.{SHOP}.smtp]
host = "127.0.0.1"
port = {smtp_port}
sender_email = "recalls@acme-medical.example.com"
# Longer than the test: the stuck QUIT must not time out (smtplib would then report success).
timeout = 300

[shops.{SHOP}.sandbox_erp]
shipments = [
  {rows},
]
'''


def _worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    # The `refundbridge worker` command itself, in a session of its own (so its process
    # group can be killed), its output in a file (a full pipe would stall it too).
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", "from refundbridge.cli import app; app()",
             "worker", "--config", str(config)],
            cwd=ROOT, start_new_session=True, stdout=out, stderr=subprocess.STDOUT)


def _notice() -> RecallNotice:
    return RecallNotice(
        reference="RC-2026-KILL", recall_class=RecallClass.II,
        notice_date=date(2026, 12, 1), sku="GLU-METER-01", lots=(LOT,),
        actions=(RecallAction.STOP_USE, RecallAction.RETURN),
        instructions="Stop using meters of lot L2409; they read high.")


def test_worker_killed_mid_send_every_consignee_gets_exactly_one_notice(
        tmp_path: Path, db: Engine, redis_conn: Redis, database_url: str,
        sink: tuple[StallingSink, int], clock: Clock) -> None:
    handler, port = sink
    config, log = tmp_path / "rb.toml", tmp_path / "worker.log"
    config.write_text(_toml(database_url, port), encoding="utf-8")
    # This process's container reads the same file; only its clock is the test's.
    container = bootstrap(load_settings(config), redis=redis_conn, engine=db, clock=clock)
    repo = container.campaigns
    campaign_id = open_campaign(container.services, SHOP, _notice(), "operator:qa").campaign_id

    worker = _worker(config, log)
    try:
        deadline = time.monotonic() + WAIT
        while not handler.stalled.wait(0.1):
            if worker.poll() is not None:
                raise AssertionError(f"worker exited early ({worker.returncode}): "
                                     f"{log.read_text(errors='replace')[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the worker did not reach notice {STALL_AT} within "
                                     f"{WAIT} s: {log.read_text(errors='replace')[-3000:]}")
        assert worker.poll() is None  # alive, and stuck in the send
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)

    # What the dead job left: the delivered notice in `sending`, the rest of its batch
    # claimed (nobody else may take them yet), and the consignees after the batch pending.
    stuck = handler.recipients[STALL_AT - 1]
    assert len(handler.recipients) == STALL_AT
    records = {str(r.email): r for r in repo.consignees(campaign_id, limit=1000)}
    assert len(records) == CONSIGNEES
    assert records[stuck].email_state is NoticeState.SENDING
    left = Counter(r.email_state for r in records.values())
    assert left == {NoticeState.SENT: STALL_AT - 1, NoticeState.SENDING: 1,
                    NoticeState.CLAIMED: NOTICE_BATCH - STALL_AT,
                    NoticeState.PENDING: CONSIGNEES - NOTICE_BATCH}
    assert repo.get(campaign_id).state is CampaignState.NOTIFYING

    # Later than any job may run (the claims' lease) and than the reconciler waits for a
    # job to show progress: it hands the dead job's work out again.
    clock.offset = max(container.services.booking_lease,
                       timedelta(seconds=container.settings.stale_after_seconds)
                       ) + timedelta(seconds=1)
    reconcile(container, now=clock())
    drain(container)

    sent = Counter(handler.recipients)
    assert sorted(sent) == sorted(records), "a consignee was missed or a stranger mailed"
    assert [who for who, n in sent.items() if n != 1] == [], "a consignee was mailed twice"
    campaign = repo.get(campaign_id)
    assert campaign.state is CampaignState.MONITORING
    assert repo.counts(campaign_id).notified == CONSIGNEES
    final = {str(r.email): r.email_state
             for r in repo.consignees(campaign_id, limit=1000)}
    # The send whose outcome the dead job never heard of is not repeated; it is recorded as
    # unknown, for the reminders and the console to follow up.
    assert final.pop(stuck) is NoticeState.UNCONFIRMED
    assert set(final.values()) == {NoticeState.SENT}
    assert verify_chain(repo.events(campaign_id)).verifies
