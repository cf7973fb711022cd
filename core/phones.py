"""Customers' phone numbers: parsed with `phonenumbers` and kept in E.164 ("+8613800138000"),
the form every SMS provider takes. A number without a country code is read in the shop's
region (`ShopPolicy.phone_region`); a number that is not a possible, valid one is refused at
intake, naming `customer.phone`, rather than failing a send later."""

from __future__ import annotations

import phonenumbers

from refundbridge.core.errors import InvalidRequest

FIELD = "customer.phone"


def to_e164(raw: str, region: str | None) -> str:
    """`raw` as E.164; raises `InvalidRequest` on `customer.phone`."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        hint = ("" if region else
                " (this shop has no default country: give it with its country code, +…)")
        raise InvalidRequest(FIELD, f"{raw!r} is not a phone number: {exc._msg}{hint}"
                             ) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidRequest(FIELD, f"{raw!r} is not a valid phone number"
                             + (f" in {region}" if region and not raw.startswith("+") else ""))
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
