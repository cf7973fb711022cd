"""Quality signals on PostgreSQL, from seeded case histories: one signal per lot and window,
a rate judged against the units the ERP (sandbox, ERPNext, Odoo fakes) says it shipped, two
workers racing to raise one signal, and the quality contact told once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import respx
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from refundbridge.api.app import create_app
from refundbridge.bootstrap import Container
from refundbridge.connectors.sandbox.connectors import SandboxNotifier
from refundbridge.connectors.sandbox.sms import SandboxSmsConnector
from refundbridge.core.audit import verify_chain
from refundbridge.core.services.signals import (
    SignalRunReport,
    notify_signal,
    raise_shop_signals,
)
from refundbridge.core.signals import NoticeState, ThresholdName, window_containing
from refundbridge.store.signals import SqlSignalStore
from refundbridge.workers.signals import run_signal_job
from tests.factories import SHOP, request_body, signed
from tests.fakes import odoo as odoo_fake
from tests.fakes.erpnext import ERPNextFake
from tests.fakes.odoo import OdooFake
from tests.fakes.stripe import StripeFake

MakeContainer = Callable[..., Container]
CONTACT = {"name": "Wu Quality", "email": "quality@acme-medical.example.com",
           "phone": "+8613900139000", "locale": "zh-CN"}
SIGNALS = {"quality_contact": CONTACT}
# A day well inside a 30-day window, so "now" and the cases sit in the same one.
WINDOW = window_containing(date(2026, 11, 16), 30)
NOW = datetime.combine(WINDOW.start + timedelta(days=20), datetime.min.time(),
                       tzinfo=UTC) + timedelta(hours=6)


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as mock:
        StripeFake().install(mock)
        yield mock


def sandbox_shop(make_container: MakeContainer, shipments: list[dict[str, Any]] | None = None,
                 **signals: Any) -> Container:
    return make_container(
        erp="sandbox_erp", notifier="sandbox_notifier", sms="sandbox_sms",
        sandbox_erp={"shipments": shipments or []},
        sandbox_sms={"callback_secret": "sandbox-callback-secret-0123456789"},
        policy={"auto_approve_limits": {"CNY": "500"}, "signals": {**SIGNALS, **signals}})


def seed(client: TestClient, engine: Engine, *, lot: str | None, code: str = "defective",
         sku: str = "GLU-METER-01", quantity: int = 1, at: datetime = NOW,
         text_: str = "屏幕不亮") -> str:
    """One case as a storefront sends it, opened at `at` (the history a shop has)."""
    body = request_body(**{"lines.0.lot": lot, "lines.0.sku": sku,
                           "lines.0.quantity": quantity,
                           "requested_amount": f"{199 * quantity}.00",
                           "reason": {"code": code, "text": text_}})
    raw, headers = signed(body)
    answer = client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
    assert answer.status_code == 202, answer.text
    case_id = str(answer.json()["case_id"])
    with engine.begin() as conn:
        conn.execute(text("UPDATE cases SET created_at = :at WHERE id = :id"),
                     {"at": at, "id": case_id})
    return case_id


def signal_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(
            "SELECT id, shop_id, sku, lot, threshold, case_count, shipped_units, rate, "
            "window_start, window_end, email_state, sms_state, raised_at "
            "FROM quality_signals ORDER BY threshold, lot")))


def sandbox_parts(container: Container) -> tuple[SandboxNotifier, SandboxSmsConnector]:
    gateways = container.services.gateways(SHOP)
    assert isinstance(gateways.notifier, SandboxNotifier)
    assert isinstance(gateways.sms, SandboxSmsConnector)
    return gateways.notifier, gateways.sms


# ------------------------------------------------------------------ counts and windows


def test_three_quality_returns_of_a_lot_raise_one_signal_once_and_tell_the_contact_once(
        make_container: MakeContainer, router: respx.MockRouter) -> None:
    container = sandbox_shop(make_container)
    with TestClient(create_app(container, dashboard=False)) as client:
        cases = [seed(client, container.engine, lot="L-BAD", at=NOW - timedelta(days=d))
                 for d in (1, 2, 3)]
        seed(client, container.engine, lot="L-GOOD")
        seed(client, container.engine, lot="L-BAD", code="changed_mind")  # not quality
        seed(client, container.engine, lot="L-BAD", code="wrong_item")  # the warehouse's

        first = run_signal_job(container, now=NOW)
        again = run_signal_job(container, now=NOW + timedelta(hours=1))

    assert len(first.raised) == 1 and again.raised == []
    assert again.seen == first.raised  # the same crossing, seen again, raised no more
    [row] = signal_rows(container.engine)
    assert (row.lot, row.threshold, row.case_count) == ("L-BAD", "quality_count", 3)
    assert (row.window_start, row.window_end) == (WINDOW.start, WINDOW.last_day)
    assert row.email_state == row.sms_state == NoticeState.SENT.value

    store = SqlSignalStore(container.engine)
    signal = store.get(row.id)
    assert set(signal.case_ids) == set(cases)
    notifier, sms = sandbox_parts(container)
    assert [a.signal_id for a in notifier.alerts.values()] == [row.id]
    assert notifier.alerts[f"{row.id}.quality-alert"].email == CONTACT["email"]
    assert "质量信号" in notifier.alerts[f"{row.id}.quality-alert"].subject
    assert [(a.signal_id, a.phone) for a, _ in sms.alerts] == [(row.id, CONTACT["phone"])]
    events = store.events(row.id)
    assert [(e.name, e.data.get("channel")) for e in events] == [
        ("raise", None), ("notify", "email"), ("notify", "sms")]
    assert events[0].data["case_ids"] == sorted(cases)
    assert verify_chain(events).verifies


def test_two_returns_raise_nothing_and_a_third_one_day_outside_the_window_neither(
        make_container: MakeContainer, router: respx.MockRouter) -> None:
    container = sandbox_shop(make_container)
    day_30 = datetime.combine(WINDOW.last_day, datetime.min.time(), tzinfo=UTC) + timedelta(
        hours=3)  # 11:00 in Shanghai on the window's last day
    with TestClient(create_app(container, dashboard=False)) as client:
        for d in (1, 2):
            seed(client, container.engine, lot="L-EDGE", at=NOW - timedelta(days=d))
        late = seed(client, container.engine, lot="L-EDGE", at=day_30 + timedelta(days=1))
        assert run_signal_job(container, now=day_30 + timedelta(days=1, hours=1)).raised == []
        # Moved back one day, the third return is in the window: three cross.
        with container.engine.begin() as conn:
            conn.execute(text("UPDATE cases SET created_at = :at WHERE id = :id"),
                         {"at": day_30, "id": late})
        report = run_signal_job(container, now=day_30 + timedelta(days=1, hours=2))
    assert len(report.raised) == 1
    assert [r.window_start for r in signal_rows(container.engine)] == [WINDOW.start]


def test_a_second_adverse_event_on_a_lot_raises_an_adverse_event_signal(
        make_container: MakeContainer, router: respx.MockRouter) -> None:
    container = sandbox_shop(make_container)
    with TestClient(create_app(container, dashboard=False)) as client:
        seed(client, container.engine, lot="L-AE", code="injury", text_="划伤了手")
        assert run_signal_job(container, now=NOW).raised == []
        seed(client, container.engine, lot="L-AE", code="malfunction_harm", text_="烫伤")
        report = run_signal_job(container, now=NOW)
    assert len(report.raised) == 1
    [row] = signal_rows(container.engine)
    assert (row.threshold, row.case_count) == ("adverse_event_count", 2)


# ------------------------------------------------------------------ rates


def test_a_rate_from_the_sandbox_erp_two_returns_of_a_small_lot_cross_of_a_big_one_not(
        make_container: MakeContainer, router: respx.MockRouter) -> None:
    shipped_on = (WINDOW.start - timedelta(days=40)).isoformat()
    shipments = [{"customer": f"C{i}", "name": f"Clinic {i}", "sku": "GLU-METER-01",
                  "quantity": quantity, "document": f"DN-{i}", "lot": lot,
                  "shipped_on": shipped_on}
                 for i, (lot, quantity) in enumerate([("L-SMALL", 60), ("L-BIG", 5000)])]
    container = sandbox_shop(make_container, shipments)
    with TestClient(create_app(container, dashboard=False)) as client:
        for lot in ("L-SMALL", "L-SMALL", "L-BIG", "L-BIG"):
            seed(client, container.engine, lot=lot)
        report = run_signal_job(container, now=NOW)
    assert len(report.raised) == 1
    [row] = signal_rows(container.engine)
    assert (row.lot, row.threshold, row.shipped_units, row.rate) == (
        "L-SMALL", ThresholdName.QUALITY_RATE.value, 60, "3.3333")


def test_erpnext_shipped_units_judge_the_rate_and_are_asked_once_per_lot(
        make_container: MakeContainer, router: respx.MockRouter) -> None:
    erp = ERPNextFake()
    erp.install(router)
    erp.add_item("GLU-METER-01", batched=True)
    posted = (WINDOW.start - timedelta(days=10)).isoformat()
    erp.add_delivery_note("SO-A", [("GLU-METER-01", 60, "199.00", {"batch_no": "L-SMALL"})],
                          posting_date=posted)
    bundle = erp.add_bundle("GLU-METER-01", [{"batch_no": "L-SMALL", "qty": 40},
                                             {"batch_no": "L-BIG", "qty": 4000}])
    erp.add_delivery_note("SO-B", [("GLU-METER-01", 4040, "199.00",
                                    {"serial_and_batch_bundle": bundle})], posting_date=posted)
    erp.add_delivery_note("SO-OLD", [("GLU-METER-01", 900, "199.00",
                                      {"batch_no": "L-SMALL"})], posting_date="2020-01-01")
    container = make_container(policy={"signals": SIGNALS}, notifier="sandbox_notifier")
    with TestClient(create_app(container, dashboard=False)) as client:
        for lot in ("L-SMALL", "L-SMALL", "L-SMALL", "L-BIG", "L-BIG"):
            seed(client, container.engine, lot=lot)
        report = run_signal_job(container, now=NOW)
        asked = len([r for r in erp.requests if "Delivery" in r.url.path])
        run_signal_job(container, now=NOW + timedelta(minutes=5))
        asked_again = len([r for r in erp.requests if "Delivery" in r.url.path])
    assert report.problems == []
    rows = {(r.lot, r.threshold): r for r in signal_rows(container.engine)}
    # 3 returns of 100 shipped (60 on a row, 40 in a bundle; 2020's are outside the year)
    rate = rows[("L-SMALL", "quality_rate")]
    assert (rate.shipped_units, rate.rate) == (100, "3.0000")
    assert ("L-SMALL", "quality_count") in rows  # three returns are also a count
    assert ("L-BIG", "quality_rate") not in rows  # 2 of 4000
    assert asked > 0 and asked_again == asked  # the cache answered the second run


def test_odoo_shipped_units_judge_the_rate(
        make_container: MakeContainer, router: respx.MockRouter) -> None:
    erp = OdooFake(version=17)
    erp.install(router)
    done_on = f"{(WINDOW.start - timedelta(days=5)).isoformat()} 10:00:00"
    erp.add_delivery([("GLU-METER-01", "L-SMALL", 80)], done_on=done_on)
    erp.add_delivery([("GLU-METER-01", "L-BIG", 3000)], done_on=done_on)
    erp.add_delivery([("GLU-METER-01", "L-SMALL", 500)], done_on=done_on, code="incoming",
                     source=odoo_fake.CUSTOMERS, destination=odoo_fake.STOCK)  # a return
    container = make_container(
        erp="odoo", notifier="sandbox_notifier", policy={"signals": SIGNALS},
        odoo={"base_url": odoo_fake.BASE, "database": odoo_fake.DATABASE,
              "username": odoo_fake.LOGIN, "api_key": odoo_fake.API_KEY})
    with TestClient(create_app(container, dashboard=False)) as client:
        for lot in ("L-SMALL", "L-SMALL", "L-BIG", "L-BIG"):
            seed(client, container.engine, lot=lot)
        report = run_signal_job(container, now=NOW)
    assert report.problems == []
    rows = signal_rows(container.engine)
    assert [(r.lot, r.threshold, r.shipped_units, r.rate) for r in rows] == [
        ("L-SMALL", "quality_rate", 80, "2.5000")]


# ------------------------------------------------------------------ races


def test_two_workers_racing_raise_one_signal_and_send_one_notice(
        make_container: MakeContainer, router: respx.MockRouter) -> None:
    container = sandbox_shop(make_container)
    with TestClient(create_app(container, dashboard=False)) as client:
        for d in (1, 2, 3):
            seed(client, container.engine, lot="L-RACE", at=NOW - timedelta(days=d))
    barrier = threading.Barrier(4)
    reports: list[Any] = []
    errors: list[BaseException] = []

    def work() -> None:
        barrier.wait()
        try:
            reports.append(run_signal_job(container, now=NOW))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(len(r.raised) for r in reports) == 1
    assert sum(len(r.notified) for r in reports) == 1
    [row] = signal_rows(container.engine)
    notifier, sms = sandbox_parts(container)
    assert len(notifier.alerts) == 1 and len(sms.alerts) == 1
    with container.engine.connect() as conn:
        names = list(conn.execute(text("SELECT name FROM signal_events WHERE signal_id = :id "
                                       "ORDER BY seq"), {"id": row.id}).scalars())
    assert names == ["raise", "notify", "notify"]


def test_a_notice_left_sending_by_a_dead_run_is_settled_unconfirmed_never_resent(
        make_container: MakeContainer, router: respx.MockRouter) -> None:
    container = sandbox_shop(make_container)
    with TestClient(create_app(container, dashboard=False)) as client:
        for d in (1, 2, 3):
            seed(client, container.engine, lot="L-DEAD", at=NOW - timedelta(days=d))
    store = SqlSignalStore(container.engine)
    report = SignalRunReport()
    raise_shop_signals(container.services, store, SHOP, NOW, report)  # raised, not yet told
    [signal_id] = report.raised
    claimed, stale = store.claim_notice(signal_id, NOW, NOW - timedelta(minutes=15))
    assert claimed is not None and not stale  # ... and the run dies here
    assert run_signal_job(container, now=NOW + timedelta(minutes=1)).notified == []
    later = run_signal_job(container, now=NOW + timedelta(minutes=20))
    assert later.notified == [signal_id]
    notifier, sms = sandbox_parts(container)
    assert notifier.alerts == {} and sms.alerts == []
    settled = store.get(signal_id)
    assert settled.email_state is settled.sms_state is NoticeState.UNCONFIRMED


# ------------------------------------------------------------------ the CLI and the job


def test_the_cli_runs_the_signal_job_and_lists_what_it_raised(
        make_container: MakeContainer, router: respx.MockRouter, database_url: str,
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from typer.testing import CliRunner

    from refundbridge.cli import app as cli
    from tests.factories import config_toml

    monkeypatch.delenv("REFUNDBRIDGE_CONFIG", raising=False)
    config = tmp_path / "refundbridge.toml"
    config.write_text(config_toml(database_url, sections=(
        f'[shops.{SHOP}.policy.signals.quality_contact]\n'
        'email = "quality@acme-medical.example.com"\n')), encoding="utf-8")
    container = sandbox_shop(make_container)
    with TestClient(create_app(container, dashboard=False)) as client:
        for d in (1, 2, 3):
            seed(client, container.engine, lot="L-CLI", at=NOW - timedelta(days=d))
    runner = CliRunner()
    first = runner.invoke(cli, ["signals", "run", "--config", str(config),
                                "--at", NOW.isoformat()])
    assert first.exit_code == 0, first.output
    raised = json.loads(first.output)["raised"]
    assert len(raised) == 1
    second = runner.invoke(cli, ["signals", "run", "--config", str(config),
                                 "--at", NOW.isoformat()])
    assert json.loads(second.output)["raised"] == []
    listed = runner.invoke(cli, ["signals", "list", "--config", str(config)])
    assert listed.exit_code == 0 and raised[0] in listed.output and "L-CLI" in listed.output
    unknown = runner.invoke(cli, ["signals", "run", "--config", str(config), "--shop", "nope"])
    assert unknown.exit_code == 2


def test_the_reconciler_enqueues_one_signal_run_per_interval_and_the_worker_runs_it(
        make_container: MakeContainer, router: respx.MockRouter) -> None:
    from rq import Queue

    from refundbridge.workers.reconcile import reconcile
    from refundbridge.workers.signals import SIGNAL_INTERVAL
    from tests.conftest import drain

    container = sandbox_shop(make_container)
    with TestClient(create_app(container, dashboard=False)) as client:
        for d in (1, 2, 3):
            seed(client, container.engine, lot="L-JOB",
                 at=datetime.now(UTC) - timedelta(hours=d))
    queue = Queue(container.settings.queue_name, connection=container.redis)
    reconcile(container, stale_after=3600)
    reconcile(container, stale_after=3600)
    assert [j for j in queue.job_ids if j.startswith("signals-")] != []
    assert len([j for j in queue.job_ids if j.startswith("signals-")]) == 1
    assert 0 < container.redis.ttl("refundbridge:signals:scheduled") <= SIGNAL_INTERVAL
    drain(container)
    rows = signal_rows(container.engine)
    assert [(r.lot, r.threshold) for r in rows] == [("L-JOB", "quality_count")]


def test_on_sqlite_the_count_the_rate_the_cache_and_the_once_only_insert_hold_too(
        tmp_path: Any, smtp_server: Any, router: respx.MockRouter) -> None:
    import fakeredis

    from refundbridge.bootstrap import bootstrap
    from refundbridge.store.db import make_engine, upgrade
    from tests.conftest import test_settings

    url = f"sqlite:///{tmp_path / 'signals.db'}"
    upgrade(url)
    engine = make_engine(url)
    shipments = [{"customer": "C", "name": "Clinic", "sku": "GLU-METER-01", "quantity": 60,
                  "document": "DN-1", "lot": "L-SMALL",
                  "shipped_on": (WINDOW.start - timedelta(days=3)).isoformat()}]
    settings = test_settings(url, smtp_server[0].port, erp="sandbox_erp",
                             notifier="sandbox_notifier",
                             sandbox_erp={"shipments": shipments},
                             policy={"signals": SIGNALS})
    container = bootstrap(settings, redis=fakeredis.FakeRedis(), engine=engine)
    try:
        with TestClient(create_app(container, dashboard=False)) as client:
            for lot in ("L-BAD", "L-BAD", "L-BAD", "L-SMALL", "L-SMALL"):
                seed(client, engine, lot=lot)
        first = run_signal_job(container, now=NOW)
        second = run_signal_job(container, now=NOW + timedelta(minutes=1))
        assert len(first.raised) == 2 and second.raised == []
        rows = {(r.lot, r.threshold): r for r in signal_rows(engine)}
        assert set(rows) == {("L-BAD", "quality_count"), ("L-SMALL", "quality_rate")}
        assert rows[("L-SMALL", "quality_rate")].rate == "3.3333"
        with engine.connect() as conn:
            cached = conn.execute(text("SELECT quantity FROM shipped_quantities "
                                       "WHERE lot = 'L-SMALL'")).scalars().all()
        assert cached == [60]
        notifier = container.services.gateways(SHOP).notifier
        assert isinstance(notifier, SandboxNotifier) and len(notifier.alerts) == 2
    finally:
        container.close()
        engine.dispose()


def test_the_quality_contact_gets_one_email_over_smtp_and_a_refusal_is_recorded(
        make_container: MakeContainer, router: respx.MockRouter, mailbox: Any) -> None:
    from email import message_from_bytes, policy

    container = make_container(erp="sandbox_erp", policy={"signals": SIGNALS})  # smtp
    with TestClient(create_app(container, dashboard=False)) as client:
        for lot in ("L-MAIL",) * 3 + ("L-REFUSED",) * 3:
            seed(client, container.engine, lot=lot)
    mailbox.refusal = None
    store = SqlSignalStore(container.engine)
    report = SignalRunReport()
    raise_shop_signals(container.services, store, SHOP, NOW, report)
    by_lot = {store.get(i).lot: i for i in report.raised}
    assert notify_signal(container.services, store, by_lot["L-MAIL"], NOW)
    mailbox.refusal = "550 mailbox unavailable"
    assert notify_signal(container.services, store, by_lot["L-REFUSED"], NOW)
    assert not notify_signal(container.services, store, by_lot["L-MAIL"], NOW)  # told once
    [raw] = mailbox.messages
    email = message_from_bytes(raw, policy=policy.default)
    assert email["To"] == CONTACT["email"]
    assert "质量信号" in str(email["Subject"]) and "L-MAIL" in str(email["Subject"])
    assert email["Message-ID"].strip("<>").startswith(by_lot["L-MAIL"])
    body = email.get_body(("plain",))
    assert body is not None and by_lot["L-MAIL"] in body.get_content()
    refused = store.get(by_lot["L-REFUSED"])
    assert refused.email_state is NoticeState.FAILED
    assert store.events(refused.id)[-2].data["outcome"] == "failed"
    assert store.get(by_lot["L-MAIL"]).email_state is NoticeState.SENT
