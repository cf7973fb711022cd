"""Exactly-once money when workers die and queues forget."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import respx
from rq import Queue

from refundbridge.workers.reconcile import reconcile
from tests.conftest import REDIS_URL, STRIPE_KEY, STRIPE_WEBHOOK_SECRET, drain
from tests.factories import AUTH, SHOP, config_toml, request_body, signed
from tests.fakes.stripe import BASE as STRIPE_BASE
from tests.fakes.stripe import StripeFake

ROOT = Path(__file__).resolve().parents[2]


def _toml(database_url: str) -> str:
    return config_toml(
        database_url, payment="stripe",
        header=f'''redis_url = "{REDIS_URL}"
retry_attempts = 2
retry_initial_wait = 0.0
retry_max_wait = 0.0
''',
        sections=f'''
[shops.{SHOP}.stripe]
api_key = "{STRIPE_KEY}"
webhook_secret = "{STRIPE_WEBHOOK_SECRET}"
base_url = "{STRIPE_BASE}"
''')


def _worker(config: Path, state: Path, marker: Path, *, hang: bool) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "tests.integration.worker_process", str(config), str(state),
            str(marker)] + (["--hang"] if hang else [])
    return subprocess.Popen(args, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for(path: Path, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"worker exited early: {process.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {seconds} s")
        time.sleep(0.05)


def test_worker_killed_mid_refund_pays_once_and_the_case_closes(
        tmp_path, make_container, database_url):
    container = make_container(erp="sandbox_erp", notifier="sandbox_notifier")
    config, state, marker = tmp_path / "rb.toml", tmp_path / "stripe.json", tmp_path / "paid"
    config.write_text(_toml(database_url))
    from fastapi.testclient import TestClient

    from refundbridge.api.app import create_app

    with TestClient(create_app(container, dashboard=False)) as client:
        case_id = client.post(f"/webhooks/{SHOP}/generic",
                              content=(s := signed(request_body()))[0], headers=s[1]).json()[
            "case_id"]

        first = _worker(config, state, marker, hang=True)
        try:
            _wait_for(marker, first)  # Stripe has paid; the worker never hears back
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
        assert client.get(f"/v1/cases/{case_id}", headers=AUTH).json()["state"] == "refunding"

        report = reconcile(container, stale_after=0)
        assert any(job.startswith(f"refund-{case_id}") for job in report.requeued)
        second = _worker(config, state, marker, hang=False)
        assert second.wait(60) == 0, second.stderr.read().decode()[-2000:]

        case = client.get(f"/v1/cases/{case_id}", headers=AUTH).json()
    stripe = StripeFake(state)
    stripe._load()
    assert case["state"] == "closed", case
    assert len(stripe.paid()) == 1
    # The successor asked Stripe for the refund under the stored key before calling again,
    # found it, and so never POSTed a second time.
    assert stripe.keys_log == [f"{case_id}-refund-1"]
    assert case["refund_attempts"][0]["provider_ref"] == stripe.paid()[0]["id"]


def test_redis_flushed_with_cases_in_flight_reconcile_finishes_every_case(
        make_container, redis_conn):
    container = make_container(erp="sandbox_erp", notifier="sandbox_notifier")
    stripe_fake = StripeFake()
    from fastapi.testclient import TestClient

    from refundbridge.api.app import create_app

    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router, TestClient(
            create_app(container, dashboard=False)) as client:
        stripe_fake.install(router)
        case_ids = [client.post(f"/webhooks/{SHOP}/generic",
                                content=(s := signed(request_body()))[0],
                                headers=s[1]).json()["case_id"] for _ in range(6)]
        drain(container, max_jobs=3)  # some cases part-way, some not started
        states = {client.get(f"/v1/cases/{c}", headers=AUTH).json()["state"] for c in case_ids}
        assert states != {"closed"}

        redis_conn.flushdb()  # every queued job is gone
        assert Queue(container.settings.queue_name, connection=redis_conn).count == 0

        report = reconcile(container, stale_after=0)
        assert report.requeued
        drain(container)

        cases = [client.get(f"/v1/cases/{c}", headers=AUTH).json() for c in case_ids]
    assert [c["state"] for c in cases] == ["closed"] * 6
    keys = stripe_fake.keys_posted()
    assert len(stripe_fake.paid()) == 6
    assert sorted(set(keys)) == sorted(f"{c}-refund-1" for c in case_ids)


def test_two_worker_processes_share_the_work_without_failures_or_double_payment(
        tmp_path, make_container, database_url, redis_conn):
    from fastapi.testclient import TestClient
    from rq.registry import FailedJobRegistry

    from refundbridge.api.app import create_app

    container = make_container(erp="sandbox_erp", notifier="sandbox_notifier")
    config, state = tmp_path / "rb.toml", tmp_path / "stripe.json"
    config.write_text(_toml(database_url))
    with TestClient(create_app(container, dashboard=False)) as client:
        case_ids = [client.post(f"/webhooks/{SHOP}/generic",
                                content=(s := signed(request_body()))[0],
                                headers=s[1]).json()["case_id"] for _ in range(40)]
        workers = [_worker(config, state, tmp_path / "unused", hang=False) for _ in range(2)]
        for worker in workers:
            assert worker.wait(120) == 0, worker.stderr.read().decode()[-2000:]
        failed = FailedJobRegistry(container.settings.queue_name, connection=redis_conn)
        assert failed.get_job_ids() == []  # no deadlock, no conflict escaped a job
        drain(container)  # a burst worker may stop while the other still queues work
        states = {client.get(f"/v1/cases/{c}", headers=AUTH).json()["state"] for c in case_ids}
    assert states == {"closed"}
    stripe = StripeFake(state)
    assert sorted(r["metadata"]["idempotency_key"] for r in stripe.paid()) == sorted(
        f"{c}-refund-1" for c in case_ids)
