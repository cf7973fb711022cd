"""Amounts in a payment provider's own units, from that provider's own currency table.

`core.money.Money` keeps amounts exact to the ISO/CLDR decimals of the currency; that is how
RefundBridge stores and compares money. What a provider puts on the wire is another question
with another authority: Stripe sends ISK and UGX with two decimals although both are
zero-decimal in CLDR, HUF and COP with two although CLDR prints none, and three-decimal
currencies only in steps of ten. So every payment connector declares a `MinorUnitTable`
transcribed from its provider's documentation, and converts with it in both directions:
requests and what comes back (refund objects, notifications). An amount the table cannot
express exactly is refused with `AmountNotRepresentable` before any call, never rounded:
rounding a refund either pays more than was approved or less than was promised.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Annotated

from pydantic import AfterValidator

from refundbridge.core.errors import AmountNotRepresentable, InvalidRequest
from refundbridge.core.money import Money, check_currency, minor_units, parse_decimal


def _wire_currency(value: str) -> str:
    try:
        return check_currency(value)
    except InvalidRequest as exc:
        raise ValueError(exc.message) from exc


# A currency code in a provider's message, upper-cased. Checked in the wire model, so a bad
# code is reported as a field of the message, not later inside `Money`.
WireCurrency = Annotated[str, AfterValidator(_wire_currency)]


@dataclass(frozen=True, slots=True)
class MinorUnit:
    """How one currency is written on one provider's wire.

    `exponent`: decimal places of the provider's unit (Stripe ISK 2: 100 = 1 króna).
    `multiple`: the integer amount must be a multiple of it (Stripe ISK 100: whole krónur
    only; Stripe KWD 10: the last of three digits is 0).
    """

    exponent: int
    multiple: int = 1
    why: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.exponent <= 8:
            raise ValueError(f"exponent {self.exponent} is not a currency's")
        if self.multiple < 1:
            raise ValueError("multiple must be at least 1")


@dataclass(frozen=True, slots=True)
class MinorUnitTable:
    """One provider's currency table. `default` covers every currency not listed (Stripe:
    "currencies are two-decimal unless otherwise specified"); None means the provider takes
    only the listed ones (WeChat Pay domestic, Alipay: CNY)."""

    provider: str
    source: str  # where the provider documents it
    currencies: Mapping[str, MinorUnit]
    default: MinorUnit | None = None
    _rules: Mapping[str, MinorUnit] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rules = {check_currency(code): unit for code, unit in self.currencies.items()}
        if len(rules) != len(self.currencies):
            raise ValueError(f"{self.provider}: a currency is listed twice")
        object.__setattr__(self, "_rules", MappingProxyType(rules))

    def unit(self, currency: str, amount: str = "") -> MinorUnit:
        """The rule for `currency`, or `AmountNotRepresentable` if the provider has none."""
        code = check_currency(currency)
        rule = self._rules.get(code, self.default)
        if rule is None:
            raise AmountNotRepresentable(
                self.provider, amount or "an amount", code,
                f"{self.provider} takes only {', '.join(sorted(self._rules))}")
        return rule

    # ------------------------------------------------------------------ to the provider
    def to_minor(self, money: Money) -> int:
        """`money` as the provider's integer amount, exactly, or `AmountNotRepresentable`."""
        rule = self.unit(money.currency, str(money.amount))
        scaled = money.amount.scaleb(rule.exponent)
        if scaled != scaled.to_integral_value():
            raise AmountNotRepresentable(
                self.provider, str(money.amount), money.currency,
                f"{self.provider} counts {money.currency} with {rule.exponent} decimal "
                f"place(s), and this amount has more")
        minor = int(scaled)
        if minor % rule.multiple:
            lower = minor - minor % rule.multiple
            raise AmountNotRepresentable(
                self.provider, str(money.amount), money.currency,
                f"{self.provider} takes {money.currency} only in steps of "
                f"{_major(rule.multiple, rule.exponent)} (nearest: "
                f"{_major(lower, rule.exponent)} or "
                f"{_major(lower + rule.multiple, rule.exponent)}){_why(rule)}")
        return minor

    def to_decimal(self, money: Money) -> str:
        """`money` as a fixed-point string with the provider's decimal places ("12.50",
        "500"), never in exponent notation, or `AmountNotRepresentable`."""
        rule = self.unit(money.currency, str(money.amount))
        return _major(self.to_minor(money), rule.exponent)

    # ------------------------------------------------------------------ from the provider
    def from_minor(self, value: int, currency: str, field: str = "amount") -> Money:
        """The provider's integer amount as `Money`. An amount `Money` cannot hold exactly
        (a fraction of a króna, say) is refused naming `field`, never rounded."""
        rule = self.unit(currency, str(value))
        return self._money(Decimal(value).scaleb(-rule.exponent), currency, field)

    def from_decimal(self, value: str | Decimal, currency: str, field: str = "amount"
                     ) -> Money:
        """A provider's decimal string ("12.50") as `Money`, checked against the table."""
        amount = parse_decimal(value, field)
        rule = self.unit(currency, str(value))
        scaled = amount.scaleb(rule.exponent)
        if scaled != scaled.to_integral_value():
            raise InvalidRequest(field, f"{value} has more decimal places than {self.provider} "
                                        f"uses for {currency.upper()} ({rule.exponent})")
        return self._money(amount, currency, field)

    @staticmethod
    def _money(amount: Decimal, currency: str, field: str) -> Money:
        # Trailing zeros are the provider's notation, not precision (ISK 500.00 is 500).
        exact = amount.normalize() if amount else Decimal(0)
        return Money.parse(exact, currency, field)


def held_decimal(money: Money, provider: str) -> str:
    """For providers that take major units as a decimal string of any precision (Shopify's
    `Decimal` scalar, WooCommerce's REST amounts): the amount exactly as `Money` holds it,
    fixed-point with the currency's own decimals ("500" JPY, "1.230" KWD), never exponent
    notation ("5E+2") and never rounded; more precision than the currency has is refused."""
    digits = minor_units(money.currency)
    if not money.amount.is_finite():
        raise AmountNotRepresentable(provider, str(money.amount), money.currency,
                                     "not a finite amount")
    scaled = money.amount.scaleb(digits)
    if scaled != scaled.to_integral_value():
        raise AmountNotRepresentable(provider, str(money.amount), money.currency,
                                     f"{money.currency} has {digits} decimal place(s)")
    return _major(int(scaled), digits)


def _major(minor: int, exponent: int) -> str:
    return f"{Decimal(minor).scaleb(-exponent):.{exponent}f}"


def _why(rule: MinorUnit) -> str:
    return f"; {rule.why}" if rule.why else ""


__all__ = ["MinorUnit", "MinorUnitTable", "held_decimal"]
