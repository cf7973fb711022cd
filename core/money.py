"""Money: a Decimal amount with its ISO 4217 currency, exact to the currency's minor unit."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache

from babel.numbers import get_currency_precision, is_currency

from refundbridge.core.errors import CurrencyMismatch, InvalidRequest

# ISO 4217 codes that are not money a shop is paid in: metals, funds units, test, "no currency".
NOT_MONEY = frozenset({"XXX", "XTS", "XAU", "XAG", "XPT", "XPD", "XDR", "XBA", "XBB", "XBC",
                       "XBD", "XSU", "XUA"})


@lru_cache(maxsize=512)
def check_currency(code: str) -> str:
    """Return the upper-case code if it is a current ISO 4217 currency, else raise."""
    upper = code.upper()
    if len(upper) != 3 or not upper.isalpha() or upper in NOT_MONEY or not is_currency(upper):
        raise InvalidRequest("currency", f"'{code}' is not an ISO 4217 currency code")
    return upper


@lru_cache(maxsize=512)
def minor_units(currency: str) -> int:
    """Digits after the decimal point (JPY 0, CNY/USD/EUR 2, KWD 3), from CLDR via Babel."""
    return int(get_currency_precision(check_currency(currency)))


def parse_decimal(value: str | Decimal | int, field: str = "amount") -> Decimal:
    """A finite decimal from a string or number, exactly; a float or anything else is an
    `InvalidRequest` naming `field`."""
    if isinstance(value, float):
        raise InvalidRequest(field, "amounts are decimal strings, not floats")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise InvalidRequest(field, f"'{value}' is not a decimal amount") from exc
    if not amount.is_finite():
        raise InvalidRequest(field, f"'{value}' is not a finite amount")
    return amount


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise TypeError("Money.amount must be a Decimal, never a float")
        object.__setattr__(self, "currency", check_currency(self.currency))

    @classmethod
    def parse(cls, value: str | Decimal | int, currency: str, field: str = "amount") -> Money:
        """Parse a decimal string exactly; more digits than the currency allows is an error."""
        amount = parse_decimal(value, field)
        digits = minor_units(currency)
        exponent = amount.as_tuple().exponent
        if isinstance(exponent, int) and -exponent > digits:
            raise InvalidRequest(
                field, f"{value} has more than {digits} decimal places for {currency.upper()}"
            )
        return cls(amount.quantize(Decimal(1).scaleb(-digits)), currency)

    @staticmethod
    def minor_of(value: Decimal, currency: str, field: str = "amount") -> int:
        """`Money.parse(value, currency, field).minor` without building the Money: a sum of
        many amounts (a request's lines) adds plain integers. The same checks, the same
        errors."""
        if not value.is_finite():
            raise InvalidRequest(field, f"'{value}' is not a finite amount")
        digits = minor_units(currency)
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and -exponent > digits:
            raise InvalidRequest(
                field, f"{value} has more than {digits} decimal places for {currency.upper()}"
            )
        return int(value.scaleb(digits))  # exact: no more places than the currency has

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls.from_minor(0, currency)

    @classmethod
    def from_minor(cls, minor: int, currency: str) -> Money:
        digits = minor_units(currency)
        return cls(Decimal(minor).scaleb(-digits).quantize(Decimal(1).scaleb(-digits)), currency)

    @property
    def minor(self) -> int:
        """The amount in the currency's minor unit (cents, fen; yen as is)."""
        digits = minor_units(self.currency)
        scaled = (self.amount.scaleb(digits)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
        return int(scaled)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} and {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money.from_minor(self.minor + other.minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money.from_minor(self.minor - other.minor, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor < other.minor

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.minor <= other.minor

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.minor > other.minor

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.minor >= other.minor

    def is_positive(self) -> bool:
        return self.minor > 0

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"

    def as_json(self) -> dict[str, str]:
        return {"amount": str(self.amount), "currency": self.currency}
