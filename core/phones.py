"""Customers' phone numbers: parsed with `phonenumbers` and kept in E.164 ("+8613800138000"),
the form every SMS provider takes. A number without a country code is read in the shop's
region (`ShopPolicy.phone_region`); a number that is not a possible, valid one is refused at
intake, naming `customer.phone`, rather than failing a send later."""

from __future__ import annotations

import phonenumbers

from refundbridge.core.errors import InvalidRequest

FIELD = "customer.phone"
_REASONS = {
    phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
    phonenumbers.ValidationResult.TOO_SHORT: "too short",
    phonenumbers.ValidationResult.TOO_LONG: "too long",
    phonenumbers.ValidationResult.INVALID_LENGTH: "a length no number there has",
    phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "a local number: add the area code",
}


def to_e164(raw: str, region: str | None) -> str:
    """`raw` as E.164; raises `InvalidRequest` on `customer.phone`."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        hint = ("" if region else
                " (this shop has no default country: give it with its country code, +…)")
        raise InvalidRequest(FIELD, f"{raw!r} is not a phone number: {exc._msg}{hint}"
                             ) from None
    # Possible (a known country code, a length its plan allows), not "valid": whether a
    # range is assigned changes with the library's data, and a storefront's order may carry
    # a number from a reserved range; a provider refuses what it cannot reach, and that is
    # shown on the message, never the case.
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason is not phonenumbers.ValidationResult.IS_POSSIBLE:
        where = f" in {region}" if region and not raw.strip().startswith("+") else ""
        raise InvalidRequest(FIELD, f"{raw!r} is not a phone number{where}: "
                                    f"{_REASONS.get(reason, 'not a possible number')}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
