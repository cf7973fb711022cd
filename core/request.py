"""The normalized refund request: what every storefront connector turns its webhook into.

This is also the body the `generic` connector accepts, so its JSON schema is published in
the OpenAPI document and the README. Amounts are decimal strings, never JSON numbers.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Literal, get_args

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    EmailStr,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from refundbridge.core.errors import InvalidRequest
from refundbridge.core.money import Money, check_currency

# ------------------------------------------------------------------ limits
# What the store's columns hold (store/tables.py); tests/unit/test_intake_limits.py checks
# that the two agree. A value that cannot be stored is refused here, at intake, never found
# out by a worker that then fails on every try.

BIGINT_MAX = 2**63 - 1  # every *_minor column is a BIGINT
# 14 digits before the point and at most 4 after (no ISO 4217 currency has more): the
# largest amount, 99 999 999 999 999.9999, is 10^18 minor units at most, inside a BIGINT.
AMOUNT_INTEGER_DIGITS = 14
AMOUNT_FRACTION_DIGITS = 4
AMOUNT_PATTERN = (rf"^[0-9]{{1,{AMOUNT_INTEGER_DIGITS}}}"
                  rf"(\.[0-9]{{1,{AMOUNT_FRACTION_DIGITS}}})?$")
EXTERNAL_ID_MAX = 255  # inbox.external_id, cases.external_id, external_refunds.external_id
ORDER_ID_MAX = 128  # cases.order_id, orders.order_id, external_refunds.order_id
CUSTOMER_ID_MAX = 128  # cases.customer_id
PROVIDER_REF_MAX = 255  # cases.refund_ref: a payment provider's refund id
REFUND_KEY_MAX = 80  # cases.refund_key: our idempotency key
ACTOR_MAX = 128  # case_events.actor: "operator:<name>", "connector:<name>"
ACTOR_PREFIX_MAX = len("connector:")
PERSON_NAME_MAX = ACTOR_MAX - ACTOR_PREFIX_MAX  # a reviewer's or inspector's name
MAX_LINES = 500  # lines in one request
MAX_QUANTITY = 100_000  # units on one line

_AMOUNT = re.compile(AMOUNT_PATTERN)
# Control characters (C0, DEL, C1) and lone surrogates: PostgreSQL cannot store NUL, a
# surrogate cannot be encoded as UTF-8, and the rest only hide what a person reads.
_C0_BUT_BREAKS = r"\x00-\x08\x0b\x0c\x0e-\x1f"
_OTHER_CONTROLS = r"\x7f-\x9f\ud800-\udfff"
_BREAKS = r"\t\n\r\u2028\u2029"
_IN_TEXT = re.compile(f"[{_C0_BUT_BREAKS}{_OTHER_CONTROLS}]")  # text keeps tab, line breaks
_IN_LINE = re.compile(f"[{_C0_BUT_BREAKS}{_OTHER_CONTROLS}{_BREAKS}]")
# A GS1 UDI scan carries FNC1 as the group separator (\x1d); no other control character.
_IN_UDI = re.compile(rf"[\x00-\x08\x0b\x0c\x0e-\x1c\x1e\x1f{_OTHER_CONTROLS}{_BREAKS}]")


def _refuse(pattern: re.Pattern[str], what: str) -> Any:
    def check(value: str) -> str:
        found = pattern.search(value)
        if found is not None:
            raise ValueError(f"contains the control character U+{ord(found.group()):04X} at "
                             f"position {found.start()} ({what})")
        return value
    return check


# Every string of a request is one of these three.
Line = Annotated[str, AfterValidator(_refuse(_IN_LINE, "not allowed in a one-line value"))]
Text = Annotated[str, AfterValidator(_refuse(_IN_TEXT, "only tab and line breaks are "
                                                        "allowed in text"))]
UdiScan = Annotated[str, AfterValidator(_refuse(_IN_UDI, "only the GS1 group separator "
                                                          "is allowed in a UDI"))]


def check_text(value: str, field: str, *, multiline: bool = False) -> str:
    """`Text`/`Line`'s check for code outside a model; raises `InvalidRequest`."""
    try:
        return str(_refuse(_IN_TEXT if multiline else _IN_LINE, "not allowed")(value))
    except ValueError as exc:
        raise InvalidRequest(field, str(exc)) from exc


def parse_amount_text(value: str, fraction_digits: int = AMOUNT_FRACTION_DIGITS) -> Decimal:
    """An amount exactly as documented (`AMOUNT_PATTERN`): ASCII digits, one optional point,
    nothing around them. A provider's wire format may write more zeros after the point
    (`fraction_digits`); the currency's own decimal places are checked by `Money`.
    Raises `ValueError` saying what is wrong, never echoing a huge value back."""
    pattern = _AMOUNT if fraction_digits == AMOUNT_FRACTION_DIGITS else re.compile(
        rf"^[0-9]{{1,{AMOUNT_INTEGER_DIGITS}}}(\.[0-9]{{1,{fraction_digits}}})?$")
    if value.startswith("-") and pattern.fullmatch(value[1:]):
        raise ValueError("must not be negative")
    if not pattern.fullmatch(value):  # not match(): "$" would let a trailing newline by
        raise ValueError(
            f"must be a decimal string such as \"12.50\": ASCII digits, at most "
            f"{AMOUNT_INTEGER_DIGITS} before the point and {fraction_digits} after, "
            "no sign, exponent, separator or spaces")
    return Decimal(value)


WIRE_FRACTION_DIGITS = 8  # "1000.000000" JPY from a shop that shows six decimals


def _decimal_string(value: object) -> Decimal:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("is not a finite amount")
        value = format(value, "f")
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError("amounts are decimal strings such as \"12.50\", not JSON numbers")
    return parse_amount_text(value)


DecimalString = Annotated[
    Decimal,
    BeforeValidator(_decimal_string),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
    Field(json_schema_extra={"type": "string", "pattern": AMOUNT_PATTERN}),
]

MinorUnits = Annotated[int, Field(ge=-BIGINT_MAX, le=BIGINT_MAX)]


class WireModel(BaseModel):
    """Base of a provider's wire models: whatever a signed body says, no string in it holds
    a control character (free text keeps tab and line breaks) and no integer is beyond
    what a BIGINT column holds. Subclasses set their own `model_config`."""

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        # A loose part (`dict[str, Any]`) is read through its own model later, which names
        # the exact field; until then nothing in it is used.
        if field is None or not _is_loose(field.annotation):
            _check_wire(value, 0)
        return value


def _is_loose(annotation: Any) -> bool:
    return annotation is Any or any(_is_loose(arg) for arg in get_args(annotation))


def _check_wire(value: Any, depth: int) -> None:
    if isinstance(value, bool | BaseModel):
        return  # a nested wire model checks its own fields
    if isinstance(value, str):
        _refuse(_IN_TEXT, "only tab and line breaks are allowed")(value)
    elif isinstance(value, int):
        if not -BIGINT_MAX <= value <= BIGINT_MAX:
            raise ValueError(f"must be between -{BIGINT_MAX} and {BIGINT_MAX}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_wire(key, depth + 1)
            _check_wire(item, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_wire(item, depth + 1)


# ------------------------------------------------------------------ strict JSON

JSON_MAX_DEPTH = 32


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its key/value pairs in order, before duplicates are looked for."""


def loads_strict(raw: bytes | str, field: str = "body") -> Any:
    """Parse a signed JSON body strictly: UTF-8, no key twice in one object (which copy did
    the sender mean?), no NaN/Infinity, nesting at most `JSON_MAX_DEPTH` deep.

    Raises `InvalidRequest` naming `field`, or the repeated key's path."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise InvalidRequest(field, f"not UTF-8 text (byte {exc.start})") from exc
    # Every webhook comes this way, and nearly every body is fine: objects are built as
    # they are parsed and only a body that fails is read again, the slow way, to name where.
    try:
        document = json.loads(text, object_pairs_hook=_object, parse_constant=_no_constant)
    except (_Repeated, RecursionError, ValueError):
        pass
    else:
        # No part can be nested deeper than the body has containers: most bodies have
        # too few to need the walk.
        if text.count("{") + text.count("[") < JSON_MAX_DEPTH or _within_depth(document, 1):
            return document
    try:
        pairs = json.loads(text, object_pairs_hook=_Pairs, parse_constant=_no_constant)
    except RecursionError as exc:
        raise InvalidRequest(field, f"nested more than {JSON_MAX_DEPTH} levels deep") from exc
    except ValueError as exc:
        raise InvalidRequest(field, f"malformed JSON: {exc}") from exc
    return _unpair(pairs, [], field)


class _Repeated(Exception):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Repeated
    return result


def _within_depth(value: Any, depth: int) -> bool:
    """Whether no part of `value`, at level `depth`, is nested deeper than
    `JSON_MAX_DEPTH` (`_unpair`'s count: a scalar inside the deepest container counts)."""
    # A loop over the containers only: on the webhook path, a call per scalar cost more
    # than the rest of the JSON check.
    pending: list[tuple[Any, int]] = [(value, depth)] if isinstance(value, dict | list) else []
    while pending:
        container, level = pending.pop()
        items = container.values() if isinstance(container, dict) else container
        if level >= JSON_MAX_DEPTH:
            if items:
                return False
            continue
        pending.extend((item, level + 1) for item in items if isinstance(item, dict | list))
    return True


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _unpair(value: Any, path: list[str], field: str) -> Any:
    if len(path) >= JSON_MAX_DEPTH:  # the top level is level 1
        raise InvalidRequest(field, f"nested more than {JSON_MAX_DEPTH} levels deep")
    if isinstance(value, _Pairs):
        result: dict[str, Any] = {}
        for key, item in value:
            if key in result:
                name = ".".join([*path, key])
                raise InvalidRequest(name, f"'{key}' appears twice in one JSON object")
            result[key] = _unpair(item, [*path, key], field)
        return result
    if isinstance(value, list):
        return [_unpair(item, [*path, str(index)], field) for index, item in enumerate(value)]
    return value


def _currency(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 4217 code such as \"CNY\"")
    try:
        return check_currency(value)
    except InvalidRequest as exc:
        raise ValueError(exc.message) from exc


CurrencyCode = Annotated[str, BeforeValidator(_currency)]


class RequestKind(StrEnum):
    REFUND_ONLY = "refund_only"
    RETURN_AND_REFUND = "return_and_refund"
    # The returned lines come back and `replacements` go out instead of money; a price
    # difference between them is refunded or charged.
    EXCHANGE = "exchange"
    # Some returned lines are refunded, others exchanged (Shopify's returns with exchange
    # line items).
    RETURN_AND_EXCHANGE = "return_and_exchange"


class CustomerType(StrEnum):
    CONSUMER = "consumer"
    BUSINESS = "business"


class ReasonCode(StrEnum):
    """Why the customer wants their money back. Groups are used by the rule engine."""

    CHANGED_MIND = "changed_mind"
    NO_LONGER_NEEDED = "no_longer_needed"
    ORDERED_BY_MISTAKE = "ordered_by_mistake"
    DEFECTIVE = "defective"
    DAMAGED_ON_ARRIVAL = "damaged_on_arrival"
    WRONG_ITEM = "wrong_item"
    NOT_AS_DESCRIBED = "not_as_described"
    RECALL = "recall"
    INJURY = "injury"
    MALFUNCTION_HARM = "malfunction_harm"
    OTHER = "other"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class PaymentRef(_Strict):
    provider: Line = Field(min_length=1, max_length=64, examples=["stripe"])
    reference: Line = Field(
        min_length=1, max_length=255, description="The provider's id of the original payment"
    )


class OrderInfo(_Strict):
    id: Line = Field(min_length=1, max_length=ORDER_ID_MAX)
    currency: CurrencyCode
    paid_total: DecimalString
    placed_at: datetime
    delivered_at: datetime | None = None
    payment: PaymentRef


DeviceClass = Literal["I", "II", "IIa", "IIb", "III"]


class Licence(_Strict):
    """A business buyer's medical-device trading licence or filing (R15)."""

    number: Line = Field(min_length=1, max_length=64)
    expires_on: date | None = Field(default=None, description="null: no expiry (a filing)")
    scope_classes: list[DeviceClass] = Field(
        default_factory=list, description="Device classes the licence allows it to buy")


class CustomerInfo(_Strict):
    id: Line = Field(min_length=1, max_length=CUSTOMER_ID_MAX)
    type: CustomerType = CustomerType.CONSUMER
    email: EmailStr | None = None
    phone: Line | None = Field(default=None, max_length=32)
    locale: str = Field(default="en", pattern=r"^[a-z]{2}(-[A-Za-z]{2,4})?$")
    licence: Licence | None = Field(default=None, description="Business buyers only (R15)")


class RequestLine(_Strict):
    sku: Line = Field(min_length=1, max_length=128)
    name: Line = Field(min_length=1, max_length=512)
    quantity: int = Field(gt=0, le=MAX_QUANTITY)
    unit_price: DecimalString
    device_class: DeviceClass | None = None
    gtin: str | None = Field(default=None, max_length=14, pattern=r"^[0-9]{8,14}$")
    lot: Line | None = Field(default=None, max_length=64)
    serial: Line | None = Field(default=None, max_length=64)
    expiry_date: date | None = None
    udi: UdiScan | None = Field(default=None, max_length=512)
    sterile: bool = False
    package_opened: bool = False
    cold_chain: bool = False
    custom_made: bool = False
    implantable: bool = False
    single_use: bool = False
    no_reason_exclusion_confirmed: bool = Field(
        default=False, description="The buyer confirmed at purchase that this item is excluded "
                                   "from no-reason return (R04)")


class ReplacementLine(_Strict):
    """A unit to send the customer in place of a returned one (an exchange)."""

    sku: Line = Field(min_length=1, max_length=128)
    name: Line = Field(min_length=1, max_length=512)
    quantity: int = Field(gt=0, le=MAX_QUANTITY)
    unit_price: DecimalString
    replaces_sku: Line | None = Field(
        default=None, max_length=128, description="The returned line's sku it replaces")
    line_id: Line | None = Field(default=None, max_length=128,
                                 description="The storefront's id of the exchange line")


class Severity(StrEnum):
    """How badly someone was harmed, when the reason is a possible adverse event."""

    DEATH = "death"
    SERIOUS_INJURY = "serious_injury"
    INJURY = "injury"
    MALFUNCTION = "malfunction"  # no one was hurt, but it could have been


class Reason(_Strict):
    code: ReasonCode
    text: Text = Field(default="", max_length=4000)
    injury: bool = Field(default=False, description="The customer says someone was hurt")
    severity: Severity | None = Field(
        default=None, description="null: not known; deadlines then assume the worst")


class NormalizedRefundRequest(_Strict):
    """One customer's request for money back (and maybe goods back) on one order."""

    external_id: Line = Field(
        min_length=1, max_length=EXTERNAL_ID_MAX,
        description="The sender's id; unique per shop and connector",
    )
    kind: RequestKind
    order: OrderInfo
    customer: CustomerInfo
    lines: list[RequestLine] = Field(min_length=1, max_length=MAX_LINES)
    replacements: list[ReplacementLine] = Field(
        default_factory=list, max_length=MAX_LINES,
        description="exchange / return_and_exchange only: what goes out instead")
    reason: Reason
    requested_amount: DecimalString
    requested_at: datetime

    @model_validator(mode="after")
    def _amounts_fit(self) -> NormalizedRefundRequest:
        currency = self.order.currency
        # Compared in minor units, each amount checked for the currency's decimal places
        # as Money.parse checks it; a Money is built only to be printed (the webhook path).
        paid = _minor(self.order.paid_total, currency, "order.paid_total")
        requested = _minor(self.requested_amount, currency, "requested_amount")
        lines_total = sum(
            _minor(line.unit_price, currency, f"lines.{index}.unit_price") * line.quantity
            for index, line in enumerate(self.lines))
        if self.is_exchange:
            _exchange_fits(self, Money.from_minor(requested, currency),
                           Money.from_minor(lines_total, currency))
        elif self.replacements:
            raise ValueError(
                f"replacements: a {self.kind.value} request sends nothing in place of the "
                "returned units; only an exchange or return_and_exchange has replacements")
        elif requested <= 0:
            raise ValueError("requested_amount: must be greater than zero")
        if requested > paid:
            raise ValueError(
                f"requested_amount: {Money.from_minor(requested, currency)} is more than the "
                f"order's paid_total {Money.from_minor(paid, currency)}"
            )
        if requested > lines_total:
            raise ValueError(
                f"requested_amount: {Money.from_minor(requested, currency)} is more than the "
                f"returned lines are worth ({Money.from_minor(lines_total, currency)})"
            )
        return self

    @property
    def currency(self) -> str:
        return self.order.currency

    @property
    def is_exchange(self) -> bool:
        """Units go out in place of the returned ones (`replacements`)."""
        return self.kind in EXCHANGE_KINDS

    @property
    def returns_goods(self) -> bool:
        """The customer sends the lines back: a return, or an exchange."""
        return self.kind is not RequestKind.REFUND_ONLY

    @cached_property
    def lines_value(self) -> Money:
        """What the returned lines are worth, at the prices paid."""
        return Money.from_minor(sum(Money.minor_of(line.unit_price, self.currency)
                                    * line.quantity for line in self.lines), self.currency)

    @cached_property
    def replacements_value(self) -> Money:
        """What the replacement units are worth, at their prices (zero: no replacements)."""
        total = Money.zero(self.currency)
        for line in self.replacements:
            unit = Money.parse(line.unit_price, self.currency)
            total = total + Money.from_minor(unit.minor * line.quantity, self.currency)
        return total

    @cached_property
    def price_difference(self) -> Money:
        """The returned lines' value minus the replacements': above zero the shop owes the
        customer (refunded), below zero the customer owes the shop (charged, or a person)."""
        return self.lines_value - self.replacements_value

    @cached_property
    def requested(self) -> Money:
        return Money.parse(self.requested_amount, self.order.currency)

    @cached_property
    def paid(self) -> Money:
        return Money.parse(self.order.paid_total, self.order.currency)

    def fingerprint(self) -> str:
        """A digest of the request's meaning, to tell a replay from a changed resend."""
        return self._fingerprint

    def has_fingerprint(self, digest: str) -> bool:
        """Whether `digest` is this request's fingerprint, as written now or in its first
        form: an inbox row stored before the change still knows its redelivery."""
        return digest == self._fingerprint or digest == self._first_fingerprint()

    @cached_property
    def _fingerprint(self) -> str:
        # Canonical: "12.5" and "12.50", or 18:00+08:00 and 10:00Z, mean the same thing.
        # orjson with sorted keys, in a third of json.dumps' time on the webhook's path.
        return hashlib.sha256(orjson.dumps(
            self._fingerprinted(), default=_canonical,
            option=orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME)).hexdigest()

    def _first_fingerprint(self) -> str:
        # The same fields and canonical values, in json.dumps' text (before 2026-12).
        canonical = json.dumps(self._fingerprinted(), sort_keys=True,
                               default=_canonical, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def _fingerprinted(self) -> dict[str, Any]:
        # A request without replacements digests as it did before exchanges existed.
        return self.model_dump(mode="python", exclude={"replacements"} if not
                               self.replacements else None)


EXCHANGE_KINDS = frozenset({RequestKind.EXCHANGE, RequestKind.RETURN_AND_EXCHANGE})


def _exchange_fits(request: NormalizedRefundRequest, requested: Money,
                   lines_total: Money) -> None:
    """An exchange sends at least one unit out, each priced in the order's currency, and asks
    back in money at most the price difference its replacements leave (zero is fine)."""
    if not request.replacements:
        raise ValueError(f"replacements: a {request.kind.value} request names at least one "
                         "unit to send in place of the returned ones")
    currency = request.currency
    value = Money.zero(currency)
    for index, line in enumerate(request.replacements):
        unit = _money(line.unit_price, currency, f"replacements.{index}.unit_price")
        value = value + Money.from_minor(unit.minor * line.quantity, currency)
    owed_back = max(lines_total - value, Money.zero(currency))
    if requested > owed_back:
        raise ValueError(
            f"requested_amount: {requested} is more than the exchange's price difference "
            f"{owed_back} (returned lines {lines_total} minus replacements {value})")


def _canonical(value: object) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if value.tzinfo else value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return value.value
    raise TypeError(f"no canonical form for {type(value).__name__}")


def _minor(value: Decimal, currency: str, field: str) -> int:
    try:
        return Money.minor_of(value, currency, field)
    except InvalidRequest as exc:
        raise ValueError(str(exc)) from exc


def _money(value: Decimal, currency: str, field: str) -> Money:
    try:
        return Money.parse(value, currency, field)
    except InvalidRequest as exc:
        raise ValueError(str(exc)) from exc


def field_path(loc: Sequence[int | str], prefix: str = "") -> str:
    """A pydantic error's place as a dotted path below `prefix`; "body" for the whole."""
    return ".".join(str(part) for part in (prefix, *loc) if part != "") or "body"


def validation_error(exc: ValidationError, prefix: str = "") -> InvalidRequest:
    """Every problem pydantic found, as one `InvalidRequest` naming the first field
    (prefixed with where in the message the model sits)."""
    errors = [(field_path(error["loc"], prefix), error["msg"]) for error in exc.errors()]
    return InvalidRequest(errors[0][0], errors[0][1], errors)


# A cross-field check runs on the whole model; its message starts with the field it means.
_FIELD_PREFIX = re.compile(r"^([A-Za-z_][\w.]*): (.+)$", re.DOTALL)


def parse_request(body: bytes) -> NormalizedRefundRequest:
    """A normalized request from its JSON text, read strictly (`loads_strict`: a key twice,
    NaN, too deep, not UTF-8), or an `InvalidRequest` naming every failing field."""
    loads_strict(body)
    try:
        return NormalizedRefundRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = []
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"]) or "body"
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "json_invalid":
                field, message = "body", f"malformed JSON: {error['ctx'].get('error', '')}"
            elif not error["loc"] and (named := _FIELD_PREFIX.match(message)):
                field, message = named.group(1), named.group(2)
            errors.append((field, message))
        raise InvalidRequest(errors[0][0], errors[0][1], errors) from exc
