"""The intake limits (core/request.py) and the database's columns (store/tables.py) agree, and
the published schema says the same: what the API accepts, a worker can store."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import BigInteger, String

from refundbridge.core import request as r
from refundbridge.core.errors import InvalidRequest
from refundbridge.core.money import Money
from refundbridge.core.request import NormalizedRefundRequest, loads_strict, parse_amount_text
from refundbridge.store import tables as t


def _length(column: object) -> int:
    kind = column.type  # type: ignore[attr-defined]
    assert isinstance(kind, String)
    assert kind.length is not None
    return int(kind.length)


@pytest.mark.parametrize(
    ("limit", "columns"),
    [
        (r.EXTERNAL_ID_MAX, [t.cases.c.external_id, t.inbox.c.external_id,
                             t.external_refunds.c.external_id]),
        (r.ORDER_ID_MAX, [t.cases.c.order_id, t.orders.c.order_id,
                          t.external_refunds.c.order_id]),
        (r.CUSTOMER_ID_MAX, [t.cases.c.customer_id]),
        (r.PROVIDER_REF_MAX, [t.cases.c.refund_ref]),
        (r.REFUND_KEY_MAX, [t.cases.c.refund_key]),
        (r.ACTOR_MAX, [t.case_events.c.actor]),
    ],
)
def test_every_string_limit_is_its_columns_length(limit: int, columns: list[object]) -> None:
    assert {_length(column) for column in columns} == {limit}


def test_the_published_schema_has_the_same_limits() -> None:
    schema = NormalizedRefundRequest.model_json_schema()
    defs = schema["$defs"]
    assert schema["properties"]["external_id"]["maxLength"] == r.EXTERNAL_ID_MAX
    assert defs["OrderInfo"]["properties"]["id"]["maxLength"] == r.ORDER_ID_MAX
    assert defs["CustomerInfo"]["properties"]["id"]["maxLength"] == r.CUSTOMER_ID_MAX
    assert schema["properties"]["requested_amount"]["pattern"] == r.AMOUNT_PATTERN
    assert defs["OrderInfo"]["properties"]["paid_total"]["pattern"] == r.AMOUNT_PATTERN
    assert schema["properties"]["lines"]["maxItems"] == r.MAX_LINES


@pytest.mark.parametrize("currency", ["JPY", "CNY", "KWD", "CLF"])  # 0, 2, 3 and 4 decimals
def test_the_largest_amount_fits_every_bigint_column(currency: str) -> None:
    for column in (t.cases.c.requested_minor, t.cases.c.approved_minor,
                   t.cases.c.refunded_minor, t.orders.c.paid_minor,
                   t.external_refunds.c.amount_minor):
        assert isinstance(column.type, BigInteger)
    largest = "9" * r.AMOUNT_INTEGER_DIGITS
    assert Money.parse(parse_amount_text(largest), currency).minor <= r.BIGINT_MAX
    with pytest.raises(ValueError):
        parse_amount_text("1" + "0" * r.AMOUNT_INTEGER_DIGITS)


@pytest.mark.parametrize("text", ["1_0.00", "١٠.٠٠", " 10.00", "10.00 ", "10.00\n", "1e3",
                                  "+1", "-1", ".5", "5.", "0x10", "1,000.00", "١"])
def test_only_the_documented_amount_pattern_parses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_amount_text(text)


def test_documented_amounts_parse_exactly() -> None:
    assert parse_amount_text("0") == Decimal("0")
    assert parse_amount_text("12.5") == Decimal("12.5")
    assert parse_amount_text("1000.000000", r.WIRE_FRACTION_DIGITS) == Decimal("1000")


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"a": 1, "a": 2}', "a"),
        (b'{"order": {"paid_total": "1", "paid_total": "90"}}', "order.paid_total"),
        (b'{"lines": [{"sku": "x", "sku": "y"}]}', "lines.0.sku"),
        (b'{"a": NaN}', "body"),
        (b'{"a": -Infinity}', "body"),
        (b"[" * 33 + b"]" * 33, "body"),
        (b"[" * 100_000 + b"]" * 100_000, "body"),
        (b"\xff", "body"),
        (b'{"a": ', "body"),
    ],
)
def test_strict_json_names_what_it_refuses(raw: bytes, field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        loads_strict(raw)
    assert caught.value.field == field


def test_strict_json_reads_what_plain_json_reads() -> None:
    assert loads_strict(b'{"a": [1, {"b": "c"}], "d": null}') == {"a": [1, {"b": "c"}],
                                                                   "d": None}
