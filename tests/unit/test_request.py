"""The normalized refund request: validation, field names in errors, and its fingerprint."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from refundbridge.core.errors import InvalidRequest
from refundbridge.core.request import (
    NormalizedRefundRequest,
    RequestKind,
    _canonical,
    parse_request,
)
from tests.unit.builders import DELETE, line, request_body


def _validate(**overrides: Any) -> NormalizedRefundRequest:
    return NormalizedRefundRequest.model_validate(request_body(**overrides))


def _errors(**overrides: Any) -> list[tuple[str, str]]:
    raw = json.dumps(request_body(**overrides)).encode()
    with pytest.raises(InvalidRequest) as caught:
        parse_request(raw)
    return caught.value.errors


def _fields(**overrides: Any) -> list[str]:
    return [field for field, _ in _errors(**overrides)]


def _message_for(field: str, errors: list[tuple[str, str]]) -> str:
    return next(message for name, message in errors if name == field)


def test_a_valid_body_passes() -> None:
    request = _validate()
    assert request.kind is RequestKind.REFUND_ONLY
    assert request.currency == "CNY"
    assert request.requested_amount == Decimal("398.00")
    assert request.requested.minor == 39800
    assert request.paid.minor == 39800


def test_a_valid_body_passes_through_the_generic_webhook_parser() -> None:
    body = request_body()
    parsed = parse_request(json.dumps(body).encode())
    assert parsed == NormalizedRefundRequest.model_validate(body)


def test_lower_case_currency_is_normalised() -> None:
    assert _validate(**{"order.currency": "usd"}).currency == "USD"


def test_amounts_serialise_back_as_strings() -> None:
    dumped = _validate().model_dump(mode="json")
    assert dumped["requested_amount"] == "398.00"
    assert dumped["order"]["paid_total"] == "398.00"
    assert dumped["lines"][0]["unit_price"] == "199.00"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("order.paid_total", 398),
        ("order.paid_total", 398.0),
        ("lines.0.unit_price", 199),
        ("requested_amount", 398.0),
        ("requested_amount", True),
    ],
)
def test_amounts_as_json_numbers_are_refused_naming_the_field(key: str, value: object) -> None:
    errors = _errors(**{key: value})
    assert [field for field, _ in errors] == [key]
    assert "not JSON numbers" in errors[0][1]
    with pytest.raises(ValidationError) as caught:
        _validate(**{key: value})
    locs = [".".join(str(p) for p in e["loc"]) for e in caught.value.errors()]
    assert locs == [key]


@pytest.mark.parametrize("key", ["order.paid_total", "lines.0.unit_price", "requested_amount"])
def test_negative_amounts_are_refused(key: str) -> None:
    errors = _errors(**{key: "-1.00"})
    assert errors[0][0] == key
    assert "negative" in errors[0][1]


@pytest.mark.parametrize("value", ["abc", "", "12,00", "NaN", "Infinity"])
@pytest.mark.parametrize("key", ["order.paid_total", "lines.0.unit_price", "requested_amount"])
def test_non_numeric_amounts_are_refused(key: str, value: str) -> None:
    assert _fields(**{key: value}) == [key]


@pytest.mark.parametrize("code", ["XXY", "US", "EURO", "", "12$"])
def test_unknown_currency_names_order_currency(code: str) -> None:
    errors = _errors(**{"order.currency": code})
    assert errors[0][0] == "order.currency"


def test_zero_requested_amount_is_refused() -> None:
    errors = _errors(requested_amount="0.00")
    assert errors == [("requested_amount", "must be greater than zero")]


def test_requested_amount_above_paid_total_is_refused() -> None:
    errors = _errors(requested_amount="398.01")
    assert [field for field, _ in errors] == ["requested_amount"]
    assert "paid_total" in errors[0][1]
    with pytest.raises(ValidationError, match="requested_amount"):
        _validate(requested_amount="398.01")


def test_requested_amount_equal_to_paid_total_and_lines_passes() -> None:
    assert _validate(requested_amount="398.00").requested.minor == 39800


def test_requested_amount_above_what_the_lines_are_worth_is_refused() -> None:
    # Paid 500 (shipping, say) but the lines are 2 x 199.00 = 398.00.
    errors = _errors(**{"order.paid_total": "500.00", "requested_amount": "398.01"})
    assert [field for field, _ in errors] == ["requested_amount"]
    assert "lines" in errors[0][1]


def test_lines_worth_counts_quantity_and_every_line() -> None:
    lines = [line(quantity=3, unit_price="10.00"), line(sku="STRIPS-50", unit_price="5.50",
                                                        quantity=1)]
    body = {"lines": lines, "order.paid_total": "100.00"}
    assert _validate(**body, requested_amount="35.50").requested.minor == 3550
    assert _fields(**body, requested_amount="35.51") == ["requested_amount"]


@pytest.mark.parametrize(
    ("currency", "key", "value"),
    [
        ("CNY", "requested_amount", "1.001"),
        ("CNY", "order.paid_total", "398.001"),
        ("CNY", "lines.0.unit_price", "199.001"),
        ("JPY", "requested_amount", "1.5"),
        ("JPY", "order.paid_total", "398.0"),
        ("KWD", "requested_amount", "1.0001"),
    ],
)
def test_more_decimals_than_the_currency_allows_names_the_field(
    currency: str, key: str, value: str
) -> None:
    whole = {"order.paid_total": "398", "lines.0.unit_price": "199", "requested_amount": "398"}
    errors = _errors(**{**whole, "order.currency": currency, key: value})
    assert [field for field, _ in errors] == [key]
    assert "decimal places" in errors[0][1]


def test_jpy_amounts_without_decimals_pass() -> None:
    request = _validate(**{"order.currency": "JPY", "order.paid_total": "3980",
                           "lines.0.unit_price": "1990", "requested_amount": "3980"})
    assert request.requested.minor == 3980


@pytest.mark.parametrize(
    "key", ["surprise", "order.surprise", "customer.surprise", "lines.0.surprise",
            "reason.surprise", "order.payment.surprise"],
)
def test_extra_fields_are_refused(key: str) -> None:
    errors = _errors(**{key: "x"})
    assert errors[0][0] == key
    with pytest.raises(ValidationError):
        _validate(**{key: "x"})


@pytest.mark.parametrize(
    "key", ["external_id", "kind", "order.currency", "order.payment", "lines", "reason.code",
            "requested_amount"],
)
def test_missing_required_fields_are_named(key: str) -> None:
    assert key in _fields(**{key: DELETE})


def test_empty_lines_are_refused() -> None:
    assert _fields(lines=[]) == ["lines"]


@pytest.mark.parametrize(
    "raw", [b"{not json", b"", b'{"external_id": "x",', b"\xff\xfe"],
)
def test_malformed_json_is_reported_as_body(raw: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_request(raw)
    assert caught.value.field == "body"
    assert caught.value.errors[0][0] == "body"


def test_every_failing_field_is_listed() -> None:
    errors = _errors(**{"order.paid_total": 1, "lines.0.unit_price": 2, "kind": "gift"})
    assert {field for field, _ in errors} == {"order.paid_total", "lines.0.unit_price", "kind"}


# ------------------------------------------------------------------ fingerprint


def test_fingerprint_is_equal_for_equal_content() -> None:
    assert _validate().fingerprint() == _validate().fingerprint()
    # Key order in the JSON does not matter either.
    body = request_body()
    reordered = dict(reversed(list(body.items())))
    assert (NormalizedRefundRequest.model_validate(reordered).fingerprint()
            == _validate().fingerprint())


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("external_id", "ext-0002"),
        ("kind", "return_and_refund"),
        ("order.id", "SO-1002"),
        ("order.paid_total", "398.50"),
        ("order.placed_at", "2024-02-20T10:00:01+00:00"),
        ("order.delivered_at", None),
        ("order.payment.reference", "pi_other"),
        ("customer.id", "cust-2"),
        ("customer.email", "other@example.com"),
        ("customer.locale", "en"),
        ("lines.0.sku", "GLU-METER-02"),
        ("lines.0.quantity", 3),
        ("lines.0.lot", "L2402"),
        ("lines.0.sterile", True),
        ("lines.0.package_opened", True),
        ("reason.code", "defective"),
        ("reason.text", "broken"),
        ("requested_amount", "100.00"),
        ("requested_at", "2024-03-01T08:00:01+00:00"),
    ],
)
def test_fingerprint_changes_when_any_field_changes(key: str, value: object) -> None:
    assert _validate(**{key: value}).fingerprint() != _validate().fingerprint()


@pytest.mark.parametrize(
    ("key", "first", "second"),
    [
        ("requested_amount", "59.00", "59.0"),
        ("order.paid_total", "398.00", "398"),
        ("requested_at", "2026-11-20T10:00:00+00:00", "2026-11-20T18:00:00+08:00"),
        ("requested_at", "2026-11-20T10:00:00+00:00", "2026-11-20T10:00:00Z"),
    ],
)
def test_fingerprint_ignores_how_an_equal_value_is_written(key: str, first: str,
                                                            second: str) -> None:
    """A storefront that resends "59.0" for "59.00" is replaying, not changing the request."""
    a = NormalizedRefundRequest.model_validate(request_body(**{key: first}))
    b = NormalizedRefundRequest.model_validate(request_body(**{key: second}))
    assert a.fingerprint() == b.fingerprint()


def test_a_request_knows_its_fingerprint_in_both_forms_and_no_other_requests() -> None:
    """The inbox may hold the fingerprint's first form (before 2026-12): json.dumps' text,
    keys sorted, the same canonical values."""
    request = _validate(**{"reason.text": "包装破损"})
    fields = request.model_dump(mode="python", exclude={"replacements"})
    first_form = hashlib.sha256(json.dumps(fields, sort_keys=True, default=_canonical,
                                           ensure_ascii=False).encode()).hexdigest()
    assert first_form != request.fingerprint()
    assert request.has_fingerprint(first_form) and request.has_fingerprint(
        request.fingerprint())
    other = _validate(**{"reason.text": "包装破损了"})
    assert not other.has_fingerprint(first_form)
    assert not other.has_fingerprint(request.fingerprint())
