"""Odoo connector against a stateful fake of Odoo's JSON-RPC and /json/2 APIs, at the HTTP
transport with respx (no network, no sleeps)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest

from refundbridge.connectors.base import ConnectorContext
from refundbridge.connectors.odoo import OdooConnector, OdooSettings
from refundbridge.connectors.odoo.transformers import ERROR_KINDS, ErrorKind, Locations, classify
from refundbridge.connectors.registry import check_connector_class
from refundbridge.core.errors import (
    ConfigError,
    NotSupported,
    PermanentProviderError,
    TransientProviderError,
)
from refundbridge.core.model import Disposition, StockMove
from refundbridge.core.money import Money
from refundbridge.core.ports import ReturnBooking, ShippedUnit, StatusOutcome, StatusUpdate
from refundbridge.core.request import NormalizedRefundRequest
from tests.connectors.helpers import FAST, add_devices, device_request, in_turn
from tests.fakes.common import installed
from tests.fakes.odoo import (
    API_KEY,
    BASE,
    CUSTOMERS,
    DATABASE,
    EVIDENCE,
    LOGIN,
    QUARANTINE,
    SCRAP,
    STOCK,
    UID,
    OdooFake,
)

CASE = "rc_0f3c9a7e5d2b4c1a8e6f0a9b8c7d6e5f"
PRICES = {"BPM-200": "100.00", "GLU-STRIP-50": "59.00", "THERM-10": "20.00"}
SHIP = [("BPM-200", "SN-0041", 1), ("BPM-200", "SN-0042", 1), ("GLU-STRIP-50", "B77", 1),
        ("THERM-10", None, 3)]


def settings(**changes: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"base_url": BASE + "/", "database": DATABASE, "username": LOGIN,
                           "api_key": API_KEY}
    raw.update(changes)
    return raw


def make_request(kind: str = "return_and_refund", amount: str = "259.00"
                 ) -> NormalizedRefundRequest:
    return device_request("SO-1001", kind=kind, strips=1, amount=amount, paid_total="319.00",
                          external_id="ret-1001", payment_reference="pi_123")


MOVES = (
    StockMove(line=0, sku="BPM-200", quantity=1, disposition=Disposition.RESTOCK,
              serial="SN-0041"),
    StockMove(line=0, sku="BPM-200", quantity=1, disposition=Disposition.KEEP_AS_EVIDENCE,
              serial="SN-0042"),
    StockMove(line=1, sku="GLU-STRIP-50", quantity=1, disposition=Disposition.SCRAP),
)


def booking(moves: tuple[StockMove, ...] = MOVES, amount: str = "259.00",
            kind: str = "return_and_refund") -> ReturnBooking:
    return ReturnBooking(case_id=CASE, order_id="SO-1001", amount=Money.parse(amount, "CNY"),
                         moves=moves, request=make_request(kind, amount))


@pytest.fixture
def ctx() -> ConnectorContext:
    return ConnectorContext(shop_id="s1", retry=FAST)


@pytest.fixture
def fake() -> Iterator[OdooFake]:
    odoo = add_devices(OdooFake(version=17))
    with installed(odoo):
        yield odoo


@pytest.fixture
def make(ctx: ConnectorContext) -> Iterator[Callable[..., OdooConnector]]:
    built: list[OdooConnector] = []

    def build(**changes: Any) -> OdooConnector:
        connector = OdooConnector.from_config(settings(**changes), ctx)
        built.append(connector)
        return connector

    yield build
    for connector in built:
        connector.close()


@pytest.fixture
def odoo(fake: OdooFake, make: Callable[..., OdooConnector]) -> OdooConnector:
    fake.add_order("SO-1001", SHIP, PRICES)
    return make()


def rpc_bodies(fake: OdooFake) -> list[dict[str, Any]]:
    return [json.loads(r.content) for r in fake.requests if r.url.path == "/jsonrpc"]


def fail(fake: OdooFake, phase: str, model: str, method: str, *answers: httpx.Response
         ) -> None:
    """Answer the next calls of model.method with `answers` (before or after Odoo did it)."""
    next_answer = in_turn(*answers)

    def hook(at: str, called_model: str, called_method: str) -> httpx.Response | None:
        if (at, called_model, called_method) == (phase, model, method):
            return next_answer()
        return None

    fake.hooks.append(hook)


def rpc_error(name: str, message: str) -> httpx.Response:
    return httpx.Response(200, json={"jsonrpc": "2.0", "id": 1, "error": {
        "code": 200, "message": "Odoo Server Error",
        "data": {"name": name, "message": message, "arguments": [message], "context": {},
                 "debug": "Traceback (most recent call last): ..."}}})


# ------------------------------------------------------------------ the JSON-RPC transport


def test_jsonrpc_envelopes(fake: OdooFake, odoo: OdooConnector) -> None:
    odoo.shipped_units("SO-1001")

    bodies = rpc_bodies(fake)
    assert all(b["jsonrpc"] == "2.0" and b["method"] == "call" for b in bodies)
    assert len({b["id"] for b in bodies}) == len(bodies)
    first = bodies[0]["params"]
    assert first == {"service": "common", "method": "authenticate",
                     "args": [DATABASE, LOGIN, API_KEY, {}]}
    executes = [b["params"] for b in bodies if b["params"]["method"] == "execute_kw"]
    assert all(p["service"] == "object" for p in executes)
    db, uid, key, model, method, args, kwargs = executes[0]["args"]
    assert (db, uid, key, model, method) == (DATABASE, UID, API_KEY, "sale.order", "search_read")
    assert args == [[["client_order_ref", "=", "SO-1001"],
                     ["state", "not in", ["draft", "sent", "cancel"]]]]
    assert kwargs == {"fields": ["name", "picking_ids", "invoice_ids"], "limit": 2}
    # The uid is asked once and cached.
    assert [b["params"]["method"] for b in bodies].count("authenticate") == 1


def test_reauthenticates_once_on_access_denied(fake: OdooFake, odoo: OdooConnector) -> None:
    odoo.shipped_units("SO-1001")
    fail(fake, "before", "sale.order", "search_read",
         rpc_error("odoo.exceptions.AccessDenied", "Access Denied"))

    assert len(odoo.shipped_units("SO-1001")) == 4
    methods = [b["params"]["method"] for b in rpc_bodies(fake)]
    assert methods.count("authenticate") == 2


def test_a_wrong_key_is_a_permanent_error_that_does_not_show_the_key(
        fake: OdooFake, make: Callable[..., OdooConnector],
        caplog: pytest.LogCaptureFixture) -> None:
    fake.add_order("SO-1001", SHIP, PRICES)
    wrong = "0123456789abcdef0123456789abcdef"
    with caplog.at_level(logging.DEBUG), pytest.raises(PermanentProviderError) as caught:
        make(api_key=wrong).shipped_units("SO-1001")
    assert caught.value.code == "AccessDenied"
    assert wrong not in str(caught.value) and wrong not in caplog.text
    assert fake.executed() == []  # nothing was asked with a refused login


def test_a_configured_uid_skips_authenticate_and_gives_up_on_access_denied(
        fake: OdooFake, make: Callable[..., OdooConnector]) -> None:
    fake.add_order("SO-1001", SHIP, PRICES)
    odoo = make(username=None, uid=UID + 1)
    with pytest.raises(PermanentProviderError, match="Access Denied"):
        odoo.shipped_units("SO-1001")
    assert all(b["params"]["method"] != "authenticate" for b in rpc_bodies(fake))
    assert len(fake.executed()) == 1


def test_the_api_key_is_never_logged(fake: OdooFake, odoo: OdooConnector,
                                     caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        odoo.book_return(booking())
    assert "execute_kw" in caplog.text  # the calls are logged ...
    assert API_KEY not in caplog.text  # ... without their arguments
    assert API_KEY not in repr(odoo.settings)


# ------------------------------------------------------------------ the /json/2 transport


def test_json2_headers_and_bodies(make: Callable[..., OdooConnector]) -> None:
    fake = OdooFake(version=19)
    fake.add_product("BPM-200", tracking="serial")
    fake.add_product("GLU-STRIP-50", tracking="lot")
    with installed(fake):
        fake.add_order("SO-1001", SHIP, PRICES)
        reference = make(api="json2", username=None).book_return(booking())

    assert reference.startswith("RINV/2026/")
    assert all(r.url.path.startswith("/json/2/") for r in fake.requests)
    assert all(r.method == "POST" for r in fake.requests)
    for request in fake.requests:
        assert request.headers["Authorization"] == f"bearer {API_KEY}"
        assert request.headers["X-Odoo-Database"] == DATABASE
        assert request.headers["Content-Type"] == "application/json"
    bodies = {(c.model, c.method): c.kwargs for c in fake.calls}
    assert bodies[("sale.order", "search_read")] == {
        "domain": [["client_order_ref", "=", "SO-1001"],
                   ["state", "not in", ["draft", "sent", "cancel"]]],
        "fields": ["name", "picking_ids", "invoice_ids"], "limit": 2}
    wizard = bodies[("stock.return.picking", "create")]
    assert wizard["context"]["active_model"] == "stock.picking"
    assert list(wizard) == ["vals_list", "context"] and len(wizard["vals_list"]) == 1
    assert set(bodies[("stock.return.picking", "action_create_returns")]) == {"ids", "context"}
    assert bodies[("stock.picking", "button_validate")]["context"]["skip_expired"] is True
    assert set(bodies[("account.move", "action_post")]) == {"ids"}
    # 19 names the return button action_create_returns, and /json/2 says nothing of version.
    assert ("stock.return.picking", "create_returns") not in bodies
    assert len(fake.return_pickings()) == 3


def test_json2_errors_are_mapped_by_status(make: Callable[..., OdooConnector]) -> None:
    fake = OdooFake(version=19)
    with installed(fake):
        fake.add_order("SO-1001", SHIP, PRICES)
        with pytest.raises(PermanentProviderError) as refused:
            make(api="json2", api_key="ffffffffffffffffffffffff").shipped_units("SO-1001")
        fail(fake, "before", "sale.order", "search_read",
             httpx.Response(422, json="The order is locked."),
             httpx.Response(503, text="busy"), httpx.Response(503, text="busy"),
             httpx.Response(503, text="busy"))
        odoo = make(api="json2")
        with pytest.raises(PermanentProviderError, match="The order is locked"):
            odoo.shipped_units("SO-1001")
        with pytest.raises(TransientProviderError):
            odoo.shipped_units("SO-1001")
    assert refused.value.message.endswith("Invalid apikey")
    assert refused.value.code == "Unauthorized"


# ------------------------------------------------------------------ shipped units


def test_shipped_units_with_lots_expiry_and_serials(odoo: OdooConnector) -> None:
    assert odoo.shipped_units("SO-1001") == [
        ShippedUnit("BPM-200", 1, serial="SN-0041", gtin="06901234567892"),
        ShippedUnit("BPM-200", 1, serial="SN-0042", gtin="06901234567892"),
        ShippedUnit("GLU-STRIP-50", 1, lot="B77", expiry_date=date(2027, 3, 31)),
        ShippedUnit("THERM-10", 3),
    ]


def test_shipped_units_without_product_expiry_on_odoo_16(
        make: Callable[..., OdooConnector]) -> None:
    fake = OdooFake(version=16, product_expiry=False)
    fake.add_product("GLU-STRIP-50", tracking="lot")
    with installed(fake):
        fake.add_order("SO-1001", [("GLU-STRIP-50", "B77", 2)], PRICES)
        units = make().shipped_units("SO-1001")
    assert units == [ShippedUnit("GLU-STRIP-50", 2, lot="B77")]
    move_lines = [c for c in fake.calls if c.model == "stock.move.line"]
    assert move_lines[0].kwargs["fields"][-1] == "qty_done"


def test_shipped_units_by_order_name(fake: OdooFake, make: Callable[..., OdooConnector]
                                     ) -> None:
    fake.add_order("web-77", [("THERM-10", None, 1)], PRICES, name="S00777")
    assert make(order_field="name").shipped_units("S00777") == [ShippedUnit("THERM-10", 1)]


def test_an_unknown_order_is_permanent(odoo: OdooConnector) -> None:
    with pytest.raises(PermanentProviderError) as caught:
        odoo.shipped_units("SO-404")
    assert caught.value.code == "order_not_found"


# ------------------------------------------------------------------ book_return


def test_books_one_return_picking_per_destination(fake: OdooFake, odoo: OdooConnector) -> None:
    reference = odoo.book_return(booking())

    returns = fake.return_pickings()
    assert reference == f"RINV/2026/00001 ({', '.join(p['name'] for p in returns)})"
    assert [(p["location_dest_id"], p["state"]) for p in returns] == [
        (STOCK, "done"), (QUARANTINE, "done"), (SCRAP, "done")]
    assert all(p["origin"] == f"Return of WH/OUT/00001 (RefundBridge case {CASE})"
               for p in returns)
    lots = {lot["id"]: lot["name"] for lot in fake.of("stock.lot")}
    booked = [(lots[line["lot_id"]], line["quantity"], line["location_id"],
               line["location_dest_id"]) for p in returns for line in fake.move_lines_of(p["id"])]
    assert booked == [("SN-0041", 1, CUSTOMERS, STOCK), ("SN-0042", 1, CUSTOMERS, QUARANTINE),
                      ("B77", 1, CUSTOMERS, SCRAP)]
    # Each return move is linked to the delivered move it returns (so the SO's returned
    # quantities update).
    moves = [m for p in returns for m in fake.of("stock.move", picking_id=p["id"])]
    assert all(m["origin_returned_move_id"] for m in moves)
    # The wizard was opened on the delivery, as the Odoo UI does.
    create = next(c for c in fake.calls if (c.model, c.method) == ("stock.return.picking",
                                                                     "create"))
    assert create.kwargs["context"] == {"active_model": "stock.picking",
                                        "active_id": returns[0]["return_id"],
                                        "active_ids": [returns[0]["return_id"]]}


def test_separate_locations_for_evidence_and_manufacturer(
        fake: OdooFake, make: Callable[..., OdooConnector]) -> None:
    fake.add_order("SO-1001", SHIP, PRICES)
    odoo = make(evidence_location="WH/Evidence", stock_location=STOCK)
    odoo.book_return(booking())
    assert [p["location_dest_id"] for p in fake.return_pickings()] == [STOCK, EVIDENCE, SCRAP]


def test_a_hold_location_that_is_the_stock_location_is_refused(
        fake: OdooFake, make: Callable[..., OdooConnector]) -> None:
    # By id here, by name for stock_location: compared once both are resolved.
    fake.add_order("SO-1001", SHIP, PRICES)
    with pytest.raises(PermanentProviderError) as caught:
        make(evidence_location=STOCK).book_return(booking())
    assert caught.value.code == "location_sellable"
    assert "evidence_location" in caught.value.message
    assert fake.return_pickings() == [] and fake.credit_notes() == []


def test_nothing_is_opened_until_used(fake: OdooFake, make: Callable[..., OdooConnector]
                                      ) -> None:
    odoo = make()
    assert odoo._client is None and fake.requests == []
    odoo.close()  # closing what was never opened is fine


def test_an_expired_lot_is_returned_without_asking(fake: OdooFake,
                                                   make: Callable[..., OdooConnector]) -> None:
    fake.add_lot("GLU-STRIP-50", "B12", expiry=date(2025, 1, 31))
    fake.add_order("SO-1001", [("GLU-STRIP-50", "B12", 1)], PRICES)
    moves = (StockMove(line=1, sku="GLU-STRIP-50", quantity=1,
                       disposition=Disposition.SCRAP, lot="B12"),)
    make().book_return(booking(moves, amount="59.00"))
    assert [p["state"] for p in fake.return_pickings()] == ["done"]


def test_a_lot_that_was_not_shipped_is_refused(odoo: OdooConnector, fake: OdooFake) -> None:
    moves = (StockMove(line=1, sku="GLU-STRIP-50", quantity=1,
                       disposition=Disposition.RESTOCK, lot="B99"),)
    with pytest.raises(PermanentProviderError, match="B99"):
        odoo.book_return(booking(moves, amount="59.00"))
    assert fake.return_pickings() == [] and fake.credit_notes() == []


def test_refund_only_books_a_credit_note_without_stock(fake: OdooFake,
                                                       odoo: OdooConnector) -> None:
    reference = odoo.book_return(booking((), kind="refund_only"))
    assert reference == "RINV/2026/00001"
    assert fake.return_pickings() == []
    (note,) = fake.credit_notes()
    assert note["state"] == "posted" and note["amount_total"] == Decimal("259.00")


def test_odoo_16_uses_create_returns_reverse_moves_and_qty_done(
        make: Callable[..., OdooConnector]) -> None:
    fake = OdooFake(version=16)
    fake.add_product("BPM-200", tracking="serial")
    with installed(fake):
        fake.add_order("SO-1001", SHIP, PRICES)
        make().book_return(booking())
    called = fake.executed()
    assert ("stock.return.picking", "create_returns") in called
    assert ("account.move.reversal", "reverse_moves") in called
    reversal = next(c for c in fake.calls if (c.model, c.method) == ("account.move.reversal",
                                                                       "create"))
    assert reversal.args[0]["refund_method"] == "refund"
    writes = [c.args[1] for c in fake.calls if (c.model, c.method) == ("stock.move", "write")]
    assert all("qty_done" in cmd[2] for w in writes for cmd in w["move_line_ids"]
               if cmd[0] == 0)
    assert all("picked" not in w for w in writes)


# ------------------------------------------------------------------ idempotency and retries


def test_a_second_booking_books_nothing(fake: OdooFake, odoo: OdooConnector) -> None:
    first = odoo.book_return(booking())
    before = len(fake.calls)

    assert odoo.book_return(booking()) == first
    again = [(c.model, c.method) for c in fake.calls[before:]]
    assert {method for _, method in again} <= {"search_read", "read", "fields_get"}
    assert len(fake.return_pickings()) == 3 and len(fake.credit_notes()) == 1


def test_503_after_the_return_was_stored_books_one_picking(fake: OdooFake,
                                                           odoo: OdooConnector) -> None:
    fail(fake, "after", "stock.return.picking", "create_returns",
         httpx.Response(503, text="<html>upstream busy</html>"))
    moves = (MOVES[2],)

    odoo.book_return(booking(moves, amount="59.00"))

    assert [c.method for c in fake.calls].count("create_returns") == 1
    (picking,) = fake.return_pickings()
    assert picking["state"] == "done" and CASE in picking["origin"]


def test_timeout_after_the_reversal_books_one_credit_note(fake: OdooFake,
                                                          odoo: OdooConnector) -> None:
    def committed_then_timed_out(at: str, model: str, method: str) -> httpx.Response | None:
        if (at, model, method) == ("after", "account.move.reversal", "refund_moves"):
            fake.hooks.remove(committed_then_timed_out)
            raise httpx.ReadTimeout("read timed out")
        return None

    fake.hooks.append(committed_then_timed_out)
    odoo.book_return(booking((), kind="refund_only"))
    assert len(fake.credit_notes()) == 1
    assert fake.credit_notes()[0]["state"] == "posted"


def test_a_transient_failure_before_the_call_is_retried(fake: OdooFake,
                                                        odoo: OdooConnector) -> None:
    fail(fake, "before", "stock.picking", "button_validate",
         httpx.Response(502), httpx.Response(429, headers={"Retry-After": "0"}))
    odoo.book_return(booking((MOVES[0],), amount="100.00"))
    assert [c.method for c in fake.calls].count("button_validate") == 1  # 2 never reached Odoo
    assert [p["state"] for p in fake.return_pickings()] == ["done"]


def test_a_draft_credit_note_left_behind_is_finished(fake: OdooFake,
                                                     odoo: OdooConnector) -> None:
    fail(fake, "before", "account.move", "action_post",
         rpc_error("odoo.exceptions.UserError", "The journal is locked."))
    with pytest.raises(PermanentProviderError, match="journal is locked"):
        odoo.book_return(booking((), kind="refund_only", amount="59.00"))
    assert [n["state"] for n in fake.credit_notes()] == ["draft"]

    assert odoo.book_return(booking((), kind="refund_only", amount="59.00")).startswith("RINV")
    (note,) = fake.credit_notes()
    assert note["state"] == "posted" and note["amount_total"] == Decimal("59.00")


# ------------------------------------------------------------------ credit note amounts


def test_a_partial_refund_credits_only_the_returned_lines(fake: OdooFake,
                                                          odoo: OdooConnector) -> None:
    odoo.book_return(booking((MOVES[2],), amount="59.00"))
    (note,) = fake.credit_notes()
    assert note["amount_total"] == Decimal("59.00")
    skus = {p["id"]: p["default_code"] for p in fake.of("product.product")}
    assert [(skus[line["product_id"]], line["quantity"]) for line in fake.lines_of(note["id"])
            ] == [("GLU-STRIP-50", 1)]


def test_a_refund_below_the_goods_worth_lowers_the_prices(fake: OdooFake,
                                                          make: Callable[..., OdooConnector]
                                                          ) -> None:
    fake.add_order("SO-1001", SHIP, PRICES, tax_percent=13)
    odoo = make()
    odoo.book_return(booking(MOVES, amount="250.00"))
    (note,) = fake.credit_notes()
    assert note["state"] == "posted"
    assert note["amount_total"] == Decimal("250.00")  # not the invoice's 420.27
    assert len(fake.lines_of(note["id"])) == 2


def test_a_full_refund_reverses_the_whole_invoice(fake: OdooFake, make: Callable[...,
                                                                                  OdooConnector]
                                                  ) -> None:
    fake.add_order("SO-1001", [("GLU-STRIP-50", "B77", 1)], PRICES)
    make().book_return(booking((), kind="refund_only", amount="59.00"))
    (note,) = fake.credit_notes()
    assert note["amount_total"] == Decimal("59.00")
    writes = [c for c in fake.calls if (c.model, c.method) == ("account.move", "write")]
    assert writes == []  # nothing to adjust


def test_a_refund_in_another_currency_is_refused(fake: OdooFake,
                                                 make: Callable[..., OdooConnector]) -> None:
    fake.add_order("SO-1001", SHIP, PRICES, currency="USD")
    with pytest.raises(PermanentProviderError) as caught:
        make().book_return(booking((), kind="refund_only"))
    assert caught.value.code == "currency_mismatch"
    assert fake.credit_notes() == []


# ------------------------------------------------------------------ error mapping


@pytest.mark.parametrize(("answer", "error", "code"), [
    (rpc_error("odoo.exceptions.AccessError", "You are not allowed to access 'Sales Order'"),
     PermanentProviderError, "AccessError"),
    (rpc_error("odoo.exceptions.UserError", "The order is locked."), PermanentProviderError,
     "UserError"),
    (rpc_error("odoo.exceptions.ValidationError", "Wrong lot"), PermanentProviderError,
     "ValidationError"),
    (rpc_error("odoo.exceptions.MissingError", "Record does not exist"),
     PermanentProviderError, "MissingError"),
    (rpc_error("psycopg2.errors.SerializationFailure",
               "could not serialize access due to concurrent update"),
     TransientProviderError, None),
    (rpc_error("builtins.Exception", "could not serialize access due to concurrent update"),
     TransientProviderError, None),
    (httpx.Response(503, text="busy"), TransientProviderError, None),
    (httpx.Response(429), TransientProviderError, None),
    (httpx.Response(404, text="<html>no such page</html>"), PermanentProviderError, "404"),
    (httpx.Response(200, text="<html>login</html>"), PermanentProviderError,
     "invalid_response"),
])
def test_jsonrpc_errors_are_mapped(fake: OdooFake, odoo: OdooConnector, answer: httpx.Response,
                                   error: type[Exception], code: str | None) -> None:
    fail(fake, "before", "sale.order", "search_read", answer, answer, answer)
    with pytest.raises(error) as caught:
        odoo.shipped_units("SO-1001")
    if code is not None:
        assert getattr(caught.value, "code", None) == code
    searched = [c for c in fake.requests if c.url.path == "/jsonrpc"
                and "sale.order" in c.content.decode()]
    assert len(searched) == (3 if error is TransientProviderError else 1)


def test_a_serialization_failure_then_success_is_retried(fake: OdooFake,
                                                         odoo: OdooConnector) -> None:
    fail(fake, "before", "sale.order", "search_read",
         rpc_error("psycopg2.errors.SerializationFailure", "could not serialize access"))
    assert len(odoo.shipped_units("SO-1001")) == 4


ERROR_TABLE = {
    "odoo.exceptions.AccessDenied": ErrorKind.ACCESS_DENIED,
    "werkzeug.exceptions.Unauthorized": ErrorKind.ACCESS_DENIED,
    "odoo.exceptions.AccessError": ErrorKind.PERMANENT,
    "odoo.exceptions.UserError": ErrorKind.PERMANENT,
    "odoo.exceptions.ValidationError": ErrorKind.PERMANENT,
    "odoo.exceptions.MissingError": ErrorKind.PERMANENT,
    "odoo.exceptions.RedirectWarning": ErrorKind.PERMANENT,
    "psycopg2.errors.SerializationFailure": ErrorKind.TRANSIENT,
    "psycopg2.errors.DeadlockDetected": ErrorKind.TRANSIENT,
    "psycopg2.errors.LockNotAvailable": ErrorKind.TRANSIENT,
    "psycopg2.extensions.TransactionRollbackError": ErrorKind.TRANSIENT,
    "psycopg2.OperationalError": ErrorKind.TRANSIENT,
    "builtins.KeyError": ErrorKind.PERMANENT,
}


@pytest.mark.parametrize(("name", "kind"), ERROR_TABLE.items())
def test_error_classification_table(name: str, kind: ErrorKind) -> None:
    assert classify(name, "") is kind


def test_the_error_table_names_every_mapped_exception() -> None:
    assert set(ERROR_KINDS) <= set(ERROR_TABLE)


# ------------------------------------------------------------------ mapping and settings


LOCATION_BY_DISPOSITION = {
    Disposition.RESTOCK: 1,
    Disposition.QUARANTINE: 2,
    Disposition.PENDING_INSPECTION: 2,
    Disposition.RETURN_TO_MANUFACTURER: 4,
    Disposition.KEEP_AS_EVIDENCE: 5,
    Disposition.SCRAP: 3,
}


@pytest.mark.parametrize(("disposition", "location"), LOCATION_BY_DISPOSITION.items())
def test_every_disposition_has_a_location(disposition: Disposition, location: int) -> None:
    assert Locations(1, 2, 3, 4, 5).for_disposition(disposition) == location


@pytest.mark.parametrize("disposition", [Disposition.RETURN_TO_MANUFACTURER,
                                         Disposition.KEEP_AS_EVIDENCE,
                                         Disposition.PENDING_INSPECTION])
def test_nothing_that_may_not_be_sold_goes_to_stock_by_default(disposition: Disposition
                                                               ) -> None:
    assert Locations(1, 2, 3).for_disposition(disposition) == 2


def test_the_disposition_table_covers_every_returnable_disposition() -> None:
    assert set(LOCATION_BY_DISPOSITION) == set(Disposition) - {
        d for d in Disposition if d.value == "not_returned"}


def test_settings_defaults_and_validation(ctx: ConnectorContext) -> None:
    parsed = OdooSettings.model_validate(settings())
    assert (parsed.api, parsed.order_field, parsed.base_url) == ("jsonrpc", "client_order_ref",
                                                                 BASE)
    with pytest.raises(ConfigError) as no_user:
        OdooConnector.from_config(settings(username=None), ctx)
    assert no_user.value.key.startswith("shops.s1.odoo")
    with pytest.raises(ConfigError) as placeholder:
        OdooConnector.from_config(settings(api_key="changeme"), ctx)
    assert placeholder.value.key == "shops.s1.odoo.api_key"
    # /json/2 needs no login.
    OdooConnector.from_config(settings(api="json2", username=None), ctx)


def test_the_connector_keeps_the_contract(odoo: OdooConnector) -> None:
    check_connector_class("odoo", OdooConnector)
    with pytest.raises(NotSupported):
        odoo.lookup_order("SO-1001")
    with pytest.raises(NotSupported):
        odoo.write_back(StatusUpdate(CASE, "SO-1001", "ret-1", StatusOutcome.APPROVED))


def test_503_after_a_committed_write_rebuilds_its_commands(fake: OdooFake,
                                                           odoo: OdooConnector) -> None:
    # The move-line write deleted Odoo's reserved line; the retry must not delete it again.
    fail(fake, "after", "stock.move", "write", httpx.Response(503, text="busy"))
    fail(fake, "after", "account.move", "write", httpx.Response(503, text="busy"))

    odoo.book_return(booking((MOVES[2],), amount="59.00"))

    (picking,) = fake.return_pickings()
    assert picking["state"] == "done"
    assert [line["quantity"] for line in fake.move_lines_of(picking["id"])] == [1]
    (note,) = fake.credit_notes()
    assert note["state"] == "posted" and note["amount_total"] == Decimal("59.00")
