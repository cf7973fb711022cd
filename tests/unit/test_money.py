"""Money: exact decimal amounts in one currency, to that currency's minor unit."""

from __future__ import annotations

import operator
from decimal import Decimal

import pytest

from refundbridge.core.errors import CurrencyMismatch, InvalidRequest
from refundbridge.core.money import Money, check_currency, minor_units


@pytest.mark.parametrize(
    ("currency", "digits"),
    [("JPY", 0), ("CNY", 2), ("USD", 2), ("EUR", 2), ("KWD", 3)],
)
def test_minor_units_per_currency(currency: str, digits: int) -> None:
    assert minor_units(currency) == digits


@pytest.mark.parametrize(
    ("text", "currency", "expected"),
    [
        ("12.50", "USD", Decimal("12.50")),
        ("12.5", "USD", Decimal("12.50")),
        ("12", "USD", Decimal("12.00")),
        (" 7.05 ", "EUR", Decimal("7.05")),
        ("1500", "JPY", Decimal("1500")),
        ("1.234", "KWD", Decimal("1.234")),
        ("0.01", "CNY", Decimal("0.01")),
        ("123456789012.34", "USD", Decimal("123456789012.34")),
    ],
)
def test_parse_is_exact_and_padded_to_the_minor_unit(
    text: str, currency: str, expected: Decimal
) -> None:
    money = Money.parse(text, currency)
    assert money.amount == expected
    assert money.amount.as_tuple().exponent == -minor_units(currency)
    assert money.currency == currency


def test_parse_accepts_decimal_and_int() -> None:
    assert Money.parse(Decimal("3.10"), "USD").minor == 310
    assert Money.parse(3, "USD").minor == 300


@pytest.mark.parametrize(
    ("text", "currency"),
    [("12.505", "USD"), ("0.001", "CNY"), ("1.5", "JPY"), ("1.00", "JPY"), ("1.2345", "KWD")],
)
def test_parse_refuses_more_decimals_than_the_currency_has(text: str, currency: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        Money.parse(text, currency, field="requested_amount")
    assert caught.value.field == "requested_amount"
    assert "decimal places" in caught.value.message


def test_parse_refuses_floats() -> None:
    with pytest.raises(InvalidRequest) as caught:
        Money.parse(12.5, "USD")  # type: ignore[arg-type]
    assert "float" in caught.value.message


@pytest.mark.parametrize("text", ["NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf"])
def test_parse_refuses_non_finite_values(text: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        Money.parse(text, "USD", field="order.paid_total")
    assert caught.value.field == "order.paid_total"


@pytest.mark.parametrize("text", ["", "   ", "abc", "12,50", "1.2.3", "$5", "12 50", "0x10"])
def test_parse_refuses_junk(text: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        Money.parse(text, "USD")
    assert caught.value.field == "amount"


@pytest.mark.parametrize("code", ["XXY", "US", "USDD", "", "U$D", "123", "ABC"])
def test_unknown_currency_codes_are_refused(code: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_currency(code)
    assert caught.value.field == "currency"
    with pytest.raises(InvalidRequest):
        Money.parse("1.00", code)


@pytest.mark.parametrize(("code", "expected"), [("usd", "USD"), ("Eur", "EUR"), ("JPY", "JPY")])
def test_currency_codes_are_normalised_to_upper_case(code: str, expected: str) -> None:
    assert check_currency(code) == expected
    assert Money.parse("1", code).currency == expected
    assert Money(Decimal("1"), code).currency == expected


def test_money_refuses_a_float_amount() -> None:
    with pytest.raises(TypeError):
        Money(1.5, "USD")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "combine",
    [operator.add, operator.sub, operator.lt, operator.le, operator.gt, operator.ge],
    ids=["add", "sub", "lt", "le", "gt", "ge"],
)
def test_combining_two_currencies_raises(combine: object) -> None:
    usd = Money.parse("10.00", "USD")
    eur = Money.parse("10.00", "EUR")
    with pytest.raises(CurrencyMismatch):
        combine(usd, eur)  # type: ignore[operator]
    with pytest.raises(CurrencyMismatch):
        combine(eur, usd)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("left", "right", "currency", "total", "difference"),
    [
        ("0.10", "0.20", "USD", "0.30", "-0.10"),
        ("100", "1", "JPY", "101", "99"),
        ("1.001", "0.999", "KWD", "2.000", "0.002"),
    ],
)
def test_arithmetic_is_exact(left: str, right: str, currency: str, total: str,
                             difference: str) -> None:
    a, b = Money.parse(left, currency), Money.parse(right, currency)
    assert (a + b).amount == Decimal(total)
    assert (a - b).amount == Decimal(difference)
    assert (a + b).currency == currency


def test_comparisons_in_one_currency() -> None:
    low, high = Money.parse("9.99", "CNY"), Money.parse("10.00", "CNY")
    assert low < high and low <= high and high > low and high >= low
    assert not (high < low) and not (low > high)
    assert low <= Money.parse("9.99", "CNY") and low >= Money.parse("9.99", "CNY")


@pytest.mark.parametrize(
    ("minor", "currency", "amount"),
    [
        (0, "USD", "0.00"),
        (1, "USD", "0.01"),
        (12345, "EUR", "123.45"),
        (1500, "JPY", "1500"),
        (1, "KWD", "0.001"),
        (-250, "CNY", "-2.50"),
    ],
)
def test_from_minor_and_minor_round_trip(minor: int, currency: str, amount: str) -> None:
    money = Money.from_minor(minor, currency)
    assert money.amount == Decimal(amount)
    assert money.minor == minor
    assert Money.parse(amount, currency).minor == minor


def test_zero_has_the_currency_exponent() -> None:
    assert Money.zero("KWD").amount.as_tuple().exponent == -3
    assert not Money.zero("USD").is_positive()
    assert Money.from_minor(1, "USD").is_positive()


def test_as_json_and_str() -> None:
    money = Money.parse("5", "CNY")
    assert money.as_json() == {"amount": "5.00", "currency": "CNY"}
    assert str(money) == "5.00 CNY"


@pytest.mark.parametrize("text", ["0", "12.5", "12.50", "1E+2", "-3.07", "0.001", "12.345",
                                  "99999999999.99", "7.000"])
@pytest.mark.parametrize("currency", ["CNY", "JPY", "KWD", "usd"])
def test_minor_of_is_parse_then_minor(text: str, currency: str) -> None:
    """The lines' sum skips building a Money per line: the same figure, the same refusal."""
    try:
        expected: int | str = Money.parse(Decimal(text), currency, "lines.0.unit_price").minor
    except InvalidRequest as exc:
        expected = str(exc)
    try:
        got: int | str = Money.minor_of(Decimal(text), currency, "lines.0.unit_price")
    except InvalidRequest as exc:
        got = str(exc)
    assert got == expected


def test_minor_of_refuses_what_is_not_finite() -> None:
    with pytest.raises(InvalidRequest, match="not a finite amount"):
        Money.minor_of(Decimal("NaN"), "CNY")
