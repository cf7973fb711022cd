"""Opening a case from a new request (`uow.intake`, store/intake.py), on both stores: one
statement on PostgreSQL, the unit of work's own statements on SQLite. The same outcomes,
the same rows, one case per delivery however many copies race."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from redis import Redis
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from refundbridge.bootstrap import Container, bootstrap
from refundbridge.core import services
from refundbridge.core.errors import DuplicateDelivery, InvalidRequest
from refundbridge.core.model import RefundCase, Step
from refundbridge.core.ports import CaseOpened, CurrencyConflict, InboxEntry, KnownDelivery
from refundbridge.core.request import NormalizedRefundRequest
from refundbridge.store.db import make_engine, upgrade
from refundbridge.store.outbox import Work
from tests.conftest import TABLES, Mailbox, test_settings
from tests.factories import SHOP, request_body

AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
WRITTEN = ("cases", "case_units", "case_events", "inbox", "outbox")


@pytest.fixture(params=["postgresql", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Any, redis_conn: Redis,
          smtp_server: tuple[Controller, Mailbox]) -> Callable[..., Container]:
    """Containers on the real store of each kind (empty tables), optionally dispatching."""
    if request.param == "postgresql":
        engine: Engine = request.getfixturevalue("db")
        url = request.getfixturevalue("database_url")
    else:
        url = f"sqlite:///{tmp_path / 'rb.db'}"
        upgrade(url)
        engine = make_engine(url)

    def build(dispatch: Callable[[Any], None] | None = None) -> Container:
        settings = test_settings(url, smtp_server[0].port)
        return bootstrap(settings, redis=redis_conn, engine=engine, dispatch=dispatch)

    return build


@pytest.fixture
def container(store: Callable[..., Container]) -> Container:
    return store()


def _request(**overrides: Any) -> NormalizedRefundRequest:
    return NormalizedRefundRequest.model_validate(request_body(**overrides))


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {table: int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
                for table in WRITTEN}


def _open(container: Container, request: NormalizedRefundRequest,
          fingerprint: str | None = None) -> services.Received:
    return services.receive_request(container.api_services, SHOP, "generic", request,
                                    fingerprint)


# ------------------------------------------------------------------ outcomes


def test_a_new_request_opens_its_case_with_every_row(container: Container) -> None:
    request = _request(lines=[request_body()["lines"][0]] * 2,
                       **{"order.paid_total": "796.00"})
    received = _open(container, request)
    assert received.created
    assert _counts(container.engine) == {"cases": 1, "case_units": 2, "case_events": 1,
                                         "inbox": 1, "outbox": 1}
    with container.engine.connect() as conn:
        inbox = conn.execute(text("SELECT case_id, fingerprint FROM inbox")).one()
        work = conn.execute(text("SELECT case_id, step, dispatched_at, done_at FROM outbox")
                            ).one()
    assert tuple(inbox) == (received.case_id, request.fingerprint())
    assert tuple(work) == (received.case_id, Step.EVALUATE.value, None, None)
    with container.uow() as uow:
        case = uow.cases.get(received.case_id)
    assert case.request == request and case.version == 1
    with container.engine.connect() as conn:
        assert conn.execute(text("SELECT case_id, seq, name FROM case_events")).all() == [
            (received.case_id, 1, "received")]


@pytest.mark.parametrize(("second", "expected"), [
    ("same body", "the same case, not created"),
    ("other body", "409: the external id reused"),
    ("other body, other currency", "422 on order.currency: checked before the inbox"),
    ("new id, other currency", "422 on order.currency"),
    ("new id, same order", "a second case"),
])
def test_what_a_second_delivery_gets(container: Container, second: str,
                                     expected: str) -> None:
    first = _request()
    opened = _open(container, first)
    body = first.model_dump(mode="json")
    if "other body" in second:
        body["reason"]["text"] = "changed my mind after all"
    if "new id" in second:
        body["external_id"] = first.external_id + "-2"
    if "other currency" in second:
        body["order"]["currency"] = "USD"
    again = NormalizedRefundRequest.model_validate(body)
    before = _counts(container.engine)

    if expected.startswith("422"):
        with pytest.raises(InvalidRequest) as refused:
            _open(container, again)
        assert refused.value.field == "order.currency"
        assert "known in CNY" in refused.value.message
    elif expected.startswith("409"):
        with pytest.raises(DuplicateDelivery) as conflict:
            _open(container, again)
        assert (conflict.value.case_id, conflict.value.same_body) == (opened.case_id, False)
    elif expected == "a second case":
        received = _open(container, again)
        assert received.created and received.case_id != opened.case_id
        assert _counts(container.engine)["cases"] == 2
        return
    else:
        assert _open(container, again) == services.Received(opened.case_id, created=False)
    assert _counts(container.engine) == before  # nothing written


def test_the_port_says_what_it_did(container: Container) -> None:
    request = _request()
    fingerprint = request.fingerprint()

    def open_case(req: NormalizedRefundRequest) -> Any:
        case = RefundCase.open(req, shop_id=SHOP, source="generic", refund_timing="on_receipt",
                               at=AT)
        with container.api_services.uow() as uow:
            return case, uow.intake.open_case(case, "generic", req.external_id, fingerprint)

    case, outcome = open_case(request)
    assert outcome == CaseOpened()
    assert case.version == 1 and not case.new_events and not case.new_steps
    assert open_case(request)[1] == KnownDelivery(InboxEntry(case.id, fingerprint))
    other = _request(external_id="another", **{"order.id": request.order.id,
                                               "order.currency": "USD"})
    assert open_case(other)[1] == CurrencyConflict("CNY")


def test_a_dispatching_unit_of_work_hands_the_work_over_after_the_commit(
        store: Callable[..., Container]) -> None:
    handed: list[Work] = []
    container = store(dispatch=handed.extend)
    received = services.receive_request(container.services, SHOP, "generic", _request())
    with container.engine.connect() as conn:
        row = conn.execute(text("SELECT id, dispatched_at FROM outbox")).one()
    assert handed == [Work(int(row.id), received.case_id, Step.EVALUATE)]
    assert row.dispatched_at is not None


def test_a_failing_write_writes_nothing_and_the_next_one_works(container: Container) -> None:
    first = _request()
    opened = _open(container, first)
    clash = RefundCase.open(_request(), shop_id=SHOP, source="generic",
                            refund_timing="on_receipt", at=AT, case_id=opened.case_id)
    before = _counts(container.engine)
    with pytest.raises(IntegrityError), container.api_services.uow() as uow:
        uow.intake.open_case(clash, "generic", clash.request.external_id, "fp")
    assert _counts(container.engine) == before  # not even the inbox key
    assert _open(container, _request()).created  # the pool is fine


# ------------------------------------------------------------------ the same rows


def _rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every column as PostgreSQL's text, JSON as stored; but the write's own clock."""
    now_columns = {"cases": {"updated_at"}, "inbox": {"received_at"},
                   "outbox": {"created_at"}}
    keys = {"cases": "seq", "case_units": "case_id, line", "case_events": "case_id, seq",
            "inbox": "external_id", "outbox": "id"}
    rows = {}
    with engine.connect() as conn:
        for table in WRITTEN:
            columns = [c for c in conn.execute(text(
                "SELECT column_name FROM information_schema.columns WHERE table_name = :t "
                "ORDER BY ordinal_position"), {"t": table}).scalars()
                if c not in now_columns.get(table, set())]
            rows[table] = [tuple(r) for r in conn.execute(text(
                f"SELECT {', '.join(f'{c}::text' for c in columns)} FROM {table} "
                f"ORDER BY {keys[table]}"))]
    return rows


def test_the_one_statement_writes_what_the_unit_of_work_writes(db: Engine,
                                                               make_container: Any) -> None:
    container = make_container()
    request = _request(lines=[request_body()["lines"][0]] * 3,
                       **{"order.paid_total": "1194.00", "customer.phone": None})
    fingerprint = request.fingerprint()

    def case() -> RefundCase:
        return RefundCase.open(request, shop_id=SHOP, source="generic",
                               refund_timing="on_receipt", at=AT, case_id="rb_same_case")

    with container.api_services.uow() as uow:  # the unit of work's own statements
        uow.cases.add(case())
        uow.inbox.add(SHOP, "generic", request.external_id,
                      InboxEntry("rb_same_case", fingerprint))
        uow.commit()
    by_unit_of_work = _rows(db)
    with db.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY"))
    with container.api_services.uow() as uow:
        assert uow.intake.open_case(case(), "generic", request.external_id,
                                    fingerprint) == CaseOpened()
    assert _rows(db) == by_unit_of_work
    assert by_unit_of_work["case_units"] and by_unit_of_work["outbox"]


# ------------------------------------------------------------------ races


def test_copies_of_one_delivery_racing_open_one_case(make_container: Any, db: Engine) -> None:
    container = make_container()
    copies, rounds = 4, 15
    requests = [_request() for _ in range(rounds)]
    barrier = threading.Barrier(copies)
    results: list[services.Received] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            for request in requests:
                barrier.wait()
                results.append(_open(container, request))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(r.created for r in results) == rounds
    by_case: dict[str, int] = {}
    for r in results:
        by_case[r.case_id] = by_case.get(r.case_id, 0) + 1
    assert sorted(by_case.values()) == [copies] * rounds  # every copy named its one case
    assert _counts(db) == {"cases": rounds, "case_units": rounds, "case_events": rounds,
                           "inbox": rounds, "outbox": rounds}


def test_a_copy_waiting_on_the_key_of_one_committing_reads_the_winner(
        make_container: Any, db: Engine) -> None:
    """The statement's snapshot predates the winner's commit: the known entry is read again."""
    container = make_container()
    request = _request()
    fingerprint = request.fingerprint()
    outcome: list[Any] = []

    with db.connect() as winner:
        winner.execute(text(
            "INSERT INTO inbox (shop_id, connector, external_id, fingerprint, case_id, "
            "received_at) VALUES (:s, 'generic', :e, :f, 'rb_winner', now())"),
            {"s": SHOP, "e": request.external_id, "f": fingerprint})
        thread = threading.Thread(target=lambda: outcome.append(_open(container, request)))
        thread.start()
        deadline = time.monotonic() + 10
        while not _someone_waits_on_a_lock(db):
            assert time.monotonic() < deadline, "the copy never waited on the key"
            time.sleep(0.02)
        winner.commit()
    thread.join(10)
    assert outcome == [services.Received("rb_winner", created=False)]
    assert _counts(db)["cases"] == 0  # the winner's case is its own business


def _someone_waits_on_a_lock(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT EXISTS (SELECT FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock')"
        )).scalar())


# ------------------------------------------------------------------ the API's event loop


def test_the_api_awaits_the_one_statement_on_postgresql_and_takes_a_thread_on_sqlite(
        container: Container) -> None:
    from fastapi.testclient import TestClient

    from refundbridge.api.app import create_app
    from refundbridge.store.intake import AsyncPgIntakeWriter
    from tests.factories import signed

    postgresql = container.engine.dialect.name == "postgresql"
    with TestClient(create_app(container, dashboard=False)) as client:
        intake = client.app.state.intake  # type: ignore[attr-defined]
        assert isinstance(intake, AsyncPgIntakeWriter) if postgresql else intake is None
        body = request_body()
        first = client.post(f"/webhooks/{SHOP}/generic", content=signed(body)[0],
                            headers=signed(body)[1])
        again = client.post(f"/webhooks/{SHOP}/generic", content=signed(body)[0],
                            headers=signed(body)[1])
        body["reason"]["text"] = "another text"
        other = client.post(f"/webhooks/{SHOP}/generic", content=signed(body)[0],
                            headers=signed(body)[1])
        body["external_id"] += "-2"
        body["order"]["currency"] = "USD"
        currency = client.post(f"/webhooks/{SHOP}/generic", content=signed(body)[0],
                               headers=signed(body)[1])
    assert [first.status_code, again.status_code, other.status_code,
            currency.status_code] == [202, 200, 409, 422]
    assert again.json()["case_id"] == first.json()["case_id"]
    assert _counts(container.engine) == {"cases": 1, "case_units": 1, "case_events": 1,
                                         "inbox": 1, "outbox": 1}


def test_copies_racing_on_the_event_loop_open_one_case(make_container: Any,
                                                       db: Engine) -> None:
    container = make_container()
    request = _request()
    fingerprint = request.fingerprint()
    copies = [RefundCase.open(request, shop_id=SHOP, source="generic",
                              refund_timing="on_receipt", at=AT) for _ in range(6)]

    async def race() -> list[Any]:
        writer = container.async_intake()
        assert writer is not None
        try:
            outcomes = await asyncio.gather(*(
                writer.open_case(c, "generic", request.external_id, fingerprint)
                for c in copies))
            other = _request(external_id="other", **{"order.id": request.order.id,
                                                     "order.currency": "USD"})
            conflict = await writer.open_case(
                RefundCase.open(other, shop_id=SHOP, source="generic",
                                refund_timing="on_receipt", at=AT),
                "generic", other.external_id, other.fingerprint())
            return [*outcomes, conflict]
        finally:
            await writer.aclose()

    *outcomes, conflict = asyncio.run(race())
    winners = [c for c, o in zip(copies, outcomes, strict=True) if o == CaseOpened()]
    assert len(winners) == 1
    assert outcomes.count(KnownDelivery(InboxEntry(winners[0].id, fingerprint))) == 5
    assert conflict == CurrencyConflict("CNY")
    assert _counts(db) == {"cases": 1, "case_units": 1, "case_events": 1, "inbox": 1,
                           "outbox": 1}


# ------------------------------------------------------------------ group commit


def _opened(request: NormalizedRefundRequest, case_id: str | None = None) -> RefundCase:
    return RefundCase.open(request, shop_id=SHOP, source="generic",
                           refund_timing="on_receipt", at=AT, case_id=case_id)


def _store_together(engine: Engine, cases: list[RefundCase], size: int = 1,
                    connectors: list[str] | None = None) -> tuple[list[Any], int]:
    """Every case's request at once on one writer: the outcomes (an error as itself) and
    how many statements stored them."""
    from refundbridge.store.intake import AsyncPgIntakeWriter

    async def store() -> tuple[list[Any], int]:
        writer = AsyncPgIntakeWriter(engine, size)
        try:
            outcomes = await asyncio.gather(*(
                writer.open_case(c, connector, c.request.external_id,
                                 c.request.fingerprint())
                for c, connector in zip(cases, connectors or ["generic"] * len(cases),
                                        strict=True)), return_exceptions=True)
            return list(outcomes), writer.statements
        finally:
            await writer.aclose()

    return asyncio.run(store())


def test_requests_waiting_together_go_in_one_statement(db: Engine) -> None:
    cases = [_opened(_request()) for _ in range(12)]
    outcomes, statements = _store_together(db, cases)
    assert outcomes == [CaseOpened()] * 12
    assert statements == 1
    assert _counts(db) == {"cases": 12, "case_units": 12, "case_events": 12, "inbox": 12,
                           "outbox": 12}
    with db.connect() as conn:
        stored = dict(conn.execute(text("SELECT id, external_id FROM cases")).all())
        work = dict(conn.execute(text("SELECT case_id, step FROM outbox")).all())
    assert stored == {c.id: c.request.external_id for c in cases}
    assert work == {c.id: Step.EVALUATE.value for c in cases}


def test_a_batch_writes_what_the_unit_of_work_writes(db: Engine,
                                                     make_container: Any) -> None:
    container = make_container()
    requests = [_request(lines=[request_body()["lines"][0]] * 2,
                         **{"order.paid_total": "796.00", "customer.phone": None})
                for _ in range(3)]
    with container.api_services.uow() as uow:
        for n, request in enumerate(requests):
            uow.cases.add(_opened(request, f"rb_case_{n}"))
            uow.inbox.add(SHOP, "generic", request.external_id,
                          InboxEntry(f"rb_case_{n}", request.fingerprint()))
        uow.commit()
    by_unit_of_work = _rows(db)
    with db.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY"))
    outcomes, statements = _store_together(
        db, [_opened(r, f"rb_case_{n}") for n, r in enumerate(requests)])
    assert (outcomes, statements) == ([CaseOpened()] * 3, 1)
    assert _rows(db) == by_unit_of_work


def test_one_bad_request_in_a_batch_fails_alone(db: Engine) -> None:
    cases = [_opened(_request()) for _ in range(3)]
    # A connector name longer than the inbox's column: the whole statement fails, then
    # each request is stored on its own and only that one fails.
    outcomes, statements = _store_together(db, cases,
                                           connectors=["generic", "x" * 300, "generic"])
    assert outcomes[0] == outcomes[2] == CaseOpened()
    assert isinstance(outcomes[1], DBAPIError)
    assert statements == 2  # the two good ones; the failed batch and the bad one count not
    assert _counts(db) == {"cases": 2, "case_units": 2, "case_events": 2, "inbox": 2,
                           "outbox": 2}


def test_a_batch_keeps_the_currency_check_and_one_case_per_key(db: Engine) -> None:
    first = _request()
    assert _store_together(db, [_opened(first)])[0] == [CaseOpened()]
    in_dollars = _request(**{"order.id": first.order.id, "order.currency": "USD"})
    fresh, copy = _request(), _opened(first)
    outcomes, statements = _store_together(
        db, [_opened(in_dollars), _opened(fresh), copy, _opened(fresh)])
    assert statements == 2  # the batch, then the key read again for the second copy
    assert outcomes[0] == CurrencyConflict("CNY")
    assert outcomes[2] == KnownDelivery(InboxEntry(_stored_case(db, first), first.fingerprint()))
    # Two copies of one new request in the same batch: the first opens the case, the other
    # reads it from the key's own statement.
    assert outcomes[1] == CaseOpened()
    assert outcomes[3] == KnownDelivery(InboxEntry(_stored_case(db, fresh), fresh.fingerprint()))
    assert _counts(db)["cases"] == 2
    # Two new requests on one new order in two currencies, together: the first one's holds.
    order = _request()
    in_yen = _request(**{"order.id": order.order.id, "order.currency": "JPY",
                         "order.paid_total": "398", "requested_amount": "398",
                         "lines": [{**request_body()["lines"][0], "unit_price": "398"}]})
    outcomes, _ = _store_together(db, [_opened(order), _opened(in_yen)])
    assert outcomes == [CaseOpened(), CurrencyConflict("CNY")]


def _stored_case(engine: Engine, request: NormalizedRefundRequest) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SELECT case_id FROM inbox WHERE external_id = :e"),
                                {"e": request.external_id}).scalar_one())


def test_waves_of_requests_all_get_their_answer(db: Engine) -> None:
    """Requests arriving just as a storer finds nothing left to store start a storer of
    their own: none waits for ever."""
    from refundbridge.store.intake import AsyncPgIntakeWriter

    async def waves() -> list[Any]:
        writer = AsyncPgIntakeWriter(db, 2)
        outcomes: list[Any] = []
        try:
            for wave in range(30):
                cases = [_opened(_request()) for _ in range(1 + wave % 5)]
                outcomes += await asyncio.wait_for(asyncio.gather(*(
                    writer.open_case(c, "generic", c.request.external_id,
                                     c.request.fingerprint()) for c in cases)), 20)
                await asyncio.sleep(0.001 * (wave % 3))
        finally:
            await writer.aclose()
        return outcomes

    outcomes = asyncio.run(waves())
    assert outcomes == [CaseOpened()] * len(outcomes) and len(outcomes) == 90
    assert _counts(db)["cases"] == 90


def test_two_api_processes_batching_the_same_copies_open_one_case_each(
        db: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """Two writers (two API processes) store copies of the same deliveries at once, in
    opposite orders: each delivery opens one case, every other copy names it, and no
    batch fails (inbox keys go in in key order, so two batches never wait on each other
    in a cycle)."""
    from refundbridge.store.intake import AsyncPgIntakeWriter

    requests = [_request() for _ in range(8)]

    async def race() -> list[Any]:
        writers = [AsyncPgIntakeWriter(db, 1), AsyncPgIntakeWriter(db, 1)]
        try:
            calls = [writer.open_case(_opened(r), "generic", r.external_id, r.fingerprint())
                     for writer, order in zip(writers, (requests, requests[::-1]),
                                              strict=True)
                     for r in order]
            return list(await asyncio.wait_for(asyncio.gather(*calls), 30))
        finally:
            for writer in writers:
                await writer.aclose()

    with caplog.at_level(logging.WARNING, logger="refundbridge.store"):
        outcomes = asyncio.run(race())
    # No batch failed (a deadlock would have: PostgreSQL ends one of the two).
    assert not [r for r in caplog.records if "in one statement failed" in r.getMessage()]
    assert outcomes.count(CaseOpened()) == len(requests)
    stored = {r.external_id: _stored_case(db, r) for r in requests}
    assert sorted((o for o in outcomes if o != CaseOpened()), key=repr) == sorted(
        (KnownDelivery(InboxEntry(stored[r.external_id], r.fingerprint())) for r in requests),
        key=repr)
    assert _counts(db) == {"cases": 8, "case_units": 8, "case_events": 8, "inbox": 8,
                           "outbox": 8}
