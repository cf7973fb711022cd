"""Money, dates and deadline badges as the Cases, Jobs and KPIs pages show them."""

from __future__ import annotations

from datetime import date, timedelta

from babel.numbers import format_currency, format_decimal

from refundbridge.core.money import Money

AT_RISK_DAYS = 2  # a deadline this close (or closer) shows "Due soon"


def money_text(money: Money, locale: str) -> str:
    """`CN¥398.00`, `$12.50` (en) / `¥398.00`, `US$12.50` (zh-CN): Babel's pattern for
    the locale, from the Decimal itself (never a float)."""
    return str(format_currency(money.amount, money.currency,
                               locale=locale.replace("-", "_")))


def number_text(value: float | int, locale: str) -> str:
    return str(format_decimal(value, locale=locale.replace("-", "_")))


def due_badge(due: date | None, today: date, settled: bool) -> tuple[str, str]:
    """(css class, English label) of a case's earliest deadline."""
    if due is None:
        return ("", "")
    if settled:
        return ("muted", "Settled")
    if due < today:
        return ("breached", "Overdue")
    if due <= today + timedelta(days=AT_RISK_DAYS):
        return ("at-risk", "Due soon")
    return ("ok", "On time")
