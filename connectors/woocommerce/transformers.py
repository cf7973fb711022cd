"""WooCommerce's order as our request: the mapping from its wire models (`wire.py`) to the
core model, and the helpers that read its answers. No I/O: `client.py` sends what is built
here and in `refunds.py`, and `webhooks.py` parses deliveries with these functions.

Sources for the shapes: WooCommerce's own REST controllers (`class-wc-rest-orders-v2-controller`,
`class-wc-rest-order-refunds-controller` v2/v3, `RestApiUtil::adjust_create_refund_request_
parameters`) and `wc_create_refund()`.

Amounts are decimal strings on the wire (`"59.80"`) except a few fields we never read
(`line_items[].price` is a PHP float). Dates ending in `_gmt` are UTC without an offset.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from refundbridge.connectors.base import unexpected_answer
from refundbridge.connectors.woocommerce.wire import WCError, WCLineItem, WCOrder
from refundbridge.core.errors import InvalidRequest
from refundbridge.core.money import Money, check_currency, minor_units
from refundbridge.core.ports import ExternalRefund, OrderLine, OrderSnapshot
from refundbridge.core.request import (
    WIRE_FRACTION_DIGITS,
    NormalizedRefundRequest,
    ReasonCode,
    RequestKind,
    parse_amount_text,
)

NAME: Final = "woocommerce"
API_PREFIX: Final = "/wp-json/wc/v3"

# What we write into every refund we create, so we can tell ours from refunds made in the
# shop's admin and find ours again after a lost answer. The reason text is stored by
# `wc_create_refund()` *before* the gateway is called; meta_data only after it returned. The
# marker in the reason is therefore what survives a PHP process dying mid-call.
REFUND_MARKER: Final = "RefundBridge"
META_IDEMPOTENCY_KEY: Final = "_refundbridge_idempotency_key"
META_CASE_ID: Final = "_refundbridge_case_id"

# WooCommerce answers "refund not found" with one of these (404), depending on whether the
# id is unknown or belongs to another order.
REFUND_MISSING_CODES: Final = frozenset({"woocommerce_rest_shop_order_refund_invalid_id",
                                         "woocommerce_rest_invalid_order_refund_id"})

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


def read_error(body: bytes) -> WCError | None:
    """WordPress's error body, or None if the answer is something else (a proxy's page)."""
    try:
        return WCError.model_validate_json(body)
    except ValidationError:
        return None


def parse_wire(model: type[M], body: bytes, what: str) -> M:
    """A 2xx body in WooCommerce's shape, or `PermanentProviderError` naming the bad field."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise unexpected_answer(NAME, what, exc) from exc


def parse_wire_list(model: type[M], body: bytes, what: str) -> list[M]:
    try:
        return TypeAdapter(list[model]).validate_json(body)  # type: ignore[valid-type]
    except ValidationError as exc:
        raise unexpected_answer(NAME, what, exc) from exc


_FIELD_PREFIX: Final = re.compile(r"^([A-Za-z_][\w.]*): (.+)$", re.DOTALL)


def validation_error(exc: ValidationError, prefix: str = "",
                     rename: Mapping[str, str] | None = None) -> InvalidRequest:
    """Every problem pydantic found, as one `InvalidRequest` naming the first field;
    `rename` maps field prefixes of a model we built back to WooCommerce's names."""
    errors: list[tuple[str, str]] = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "json_invalid":
            field, message = "", f"malformed JSON: {error.get('ctx', {}).get('error', '')}"
        elif not error["loc"] and (named := _FIELD_PREFIX.match(message)):
            # Cross-field checks run on the whole model; their message names the field.
            field, message = named.group(1), named.group(2)
        for ours, theirs in (rename or {}).items():
            if field == ours or field.startswith(ours + "."):
                field = theirs + field[len(ours):]
                break
        errors.append((".".join(p for p in (prefix, field) if p) or "body", message))
    return InvalidRequest(errors[0][0], errors[0][1], errors)


# ------------------------------------------------------------------ amounts and dates


def wc_money(value: str | int, currency: str, field: str) -> Money:
    """A WooCommerce amount. Shops may show more decimals than the currency has ("1000.00"
    JPY); trailing zeros are fine, a real fraction of the minor unit is not."""
    try:
        amount = parse_amount_text(str(value), WIRE_FRACTION_DIGITS)
    except ValueError as exc:
        raise InvalidRequest(field, str(exc)) from exc
    quantum = Decimal(1).scaleb(-minor_units(currency))
    exact = amount.quantize(quantum)
    if exact != amount:
        raise InvalidRequest(field, f"{value} has more decimal places than {currency} allows")
    return Money(exact, check_currency(currency))


def wc_datetime(value: str | None, field: str) -> datetime | None:
    """A `*_gmt` field: ISO 8601 in UTC without an offset."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidRequest(field, f"'{value}' is not an ISO 8601 date-time") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _meta_datetime(value: Any, field: str) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, int) or (isinstance(value, str) and value.isascii()
                                  and value.isdigit()):
        try:
            return datetime.fromtimestamp(int(value), UTC)
        except (OverflowError, OSError, ValueError) as exc:  # a "time" past year 9999
            raise InvalidRequest(field, "is not a time") from exc
    if isinstance(value, str):
        return wc_datetime(value, field)
    raise InvalidRequest(field, "must be an ISO 8601 date-time or unix seconds")


def line_sku(item: WCLineItem) -> str:
    """The line's SKU, or a stable stand-in when the product has none (WooCommerce allows
    that): the variation or product id."""
    if item.sku:
        return item.sku
    if item.variation_id:
        return f"wc-variation-{item.variation_id}"
    return f"wc-product-{item.product_id}"


def unit_gross(item: WCLineItem, currency: str, index: int) -> Money:
    """What one unit cost the customer: the line's total after discounts plus its tax,
    divided by the quantity and rounded *down*, so no rounding can refund more than was paid."""
    total = wc_money(item.total, currency, f"line_items.{index}.total")
    tax = wc_money(item.total_tax or "0", currency, f"line_items.{index}.total_tax")
    if item.quantity <= 0:
        raise InvalidRequest(f"line_items.{index}.quantity", "must be greater than zero")
    digits = minor_units(currency)
    per_unit = ((total.amount + tax.amount) / item.quantity).quantize(
        Decimal(1).scaleb(-digits), rounding=ROUND_DOWN)
    return Money(per_unit, currency)


# ------------------------------------------------------------------ order → core


class OrderMapping(BaseModel):
    """Where a shop's WooCommerce keeps what WooCommerce itself has no field for: a return
    plugin's status and meta keys. The connector's settings extend it, so each is declared
    once, with its default."""

    model_config = ConfigDict(frozen=True)

    # The status a return plugin gives an order when its customer asks for a refund.
    refund_requested_status: str = "refund-requested"
    request_kind: RequestKind = RequestKind.RETURN_AND_REFUND
    # Order meta the return plugin fills in; missing keys fall back as documented in
    # `to_refund_request`.
    kind_meta_key: str = "_refund_request_kind"
    reason_code_meta_key: str = "_refund_reason_code"
    reason_text_meta_key: str = "_refund_reason"
    requested_amount_meta_key: str = "_refund_request_amount"
    requested_at_meta_key: str = "_refund_requested_at"
    request_id_meta_key: str = "_refund_request_id"
    locale_meta_key: str = "wpml_language"
    default_locale: str = "en"
    # Line item meta `<prefix>lot`, `<prefix>serial`, `<prefix>sterile`, … carry device data.
    line_meta_prefix: str = "_rb_"
    # Exchanges (WooCommerce has none of its own; see `exchanges.py`): the status an order
    # is given when its customer asks for an exchange (None: no exchange status), and line
    # meta `<prefix>exchange_sku` (+ `_quantity`, `_price`, `_name`) naming a line's
    # replacement, on an exchange or on a refund request.
    exchange_requested_status: str | None = None


TRUE_WORDS: Final = frozenset({"1", "true", "yes", "on"})
LINE_TEXT_FIELDS: Final = ("device_class", "lot", "serial", "expiry_date", "udi")
LINE_FLAG_FIELDS: Final = ("sterile", "package_opened", "cold_chain", "custom_made")


def meta_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, str | int | Decimal):
        return str(value).strip()
    return ""  # arrays/objects: not a value we can read as text


def _locale(order: WCOrder, mapping: OrderMapping) -> str:
    raw = meta_text(order.meta(mapping.locale_meta_key)).replace("_", "-")
    if not raw:
        return mapping.default_locale
    language, _, region = raw.partition("-")
    if language.lower() == "zh" and region.lower() in {"", "cn", "hans", "sg"}:
        return "zh-CN"  # WPML and Polylang say "zh-hans"; our templates are "zh-CN"
    language = language.lower()
    locale = f"{language}-{region}" if region else language
    valid = len(language) == 2 and language.isalpha() and (
        not region or (2 <= len(region) <= 4 and region.isalpha()))
    return locale if valid else mapping.default_locale


def customer_id(order: WCOrder) -> str:
    if order.customer_id:
        return str(order.customer_id)
    email = (order.billing.email or "").strip().lower()
    return f"guest:{email}" if email else f"guest-order-{order.id}"


def payment_reference(order: WCOrder) -> tuple[str, str]:
    """(provider, reference) of the original payment. Offline methods (bank transfer, cash
    on delivery) have no transaction id; the order itself is then the reference."""
    provider = order.payment_method or NAME
    return provider, order.transaction_id or f"wc-order-{order.id}"


def request_line(item: WCLineItem, index: int, currency: str, prefix: str) -> dict[str, Any]:
    line: dict[str, Any] = {
        "sku": line_sku(item),
        "name": item.name or line_sku(item),
        "quantity": item.quantity,
        "unit_price": str(unit_gross(item, currency, index).amount),
    }
    for field in LINE_TEXT_FIELDS:
        value = meta_text(item.meta(prefix + field))
        if value:
            line[field] = value
    for field in LINE_FLAG_FIELDS:
        value = meta_text(item.meta(prefix + field)).lower()
        if value:
            line[field] = value in TRUE_WORDS
    return line


def external_request_id(order: WCOrder, mapping: OrderMapping) -> str:
    """Stable per request, so every redelivery (and every later `order.updated` while the
    status stays) dedupes onto one case. A plugin that allows several requests per order
    can tell them apart with its own request id in meta."""
    own = meta_text(order.meta(mapping.request_id_meta_key))
    base = f"order-{order.id}-refund-request"
    return f"{base}-{own}" if own else base


def _requested_amount(order: WCOrder, mapping: OrderMapping, lines: Sequence[Mapping[str, Any]],
                      paid: Money) -> Money:
    asked = meta_text(order.meta(mapping.requested_amount_meta_key))
    if asked:
        return wc_money(asked, paid.currency, f"meta_data.{mapping.requested_amount_meta_key}")
    worth = Money.zero(paid.currency)
    for line in lines:
        unit = Money.parse(line["unit_price"], paid.currency)
        worth = worth + Money.from_minor(unit.minor * line["quantity"], paid.currency)
    return min(worth, paid)


def _request_kind(order: WCOrder, mapping: OrderMapping) -> RequestKind:
    kind_raw = meta_text(order.meta(mapping.kind_meta_key)).lower()
    try:
        return RequestKind(kind_raw) if kind_raw else mapping.request_kind
    except ValueError as exc:
        raise InvalidRequest(f"meta_data.{mapping.kind_meta_key}",
                             f"'{kind_raw}' is not one of "
                             f"{', '.join(k.value for k in RequestKind)}") from exc


def _reason(order: WCOrder, mapping: OrderMapping) -> tuple[ReasonCode, str]:
    code_raw = meta_text(order.meta(mapping.reason_code_meta_key)).lower()
    text = meta_text(order.meta(mapping.reason_text_meta_key))
    try:
        return ReasonCode(code_raw), text
    except ValueError:
        # A plugin's own code we don't know: "other" sends the case to a person (rule A02),
        # and the code is kept as evidence in the text.
        return ReasonCode.OTHER, f"[{code_raw}] {text}".strip() if code_raw else text


def to_refund_request(order: WCOrder, mapping: OrderMapping) -> NormalizedRefundRequest:
    """The normalized request for an order whose status says "refund requested".

    Lines are the order's line items with their gross unit price. The amount asked for is
    the plugin's (meta) if it set one, else what the lines are worth, capped at the order
    total: shipping is the shop's call, not the customer's claim.
    """
    return validated_request(request_body(order, mapping), mapping)


def validated_request(body: Mapping[str, Any], mapping: OrderMapping
                      ) -> NormalizedRefundRequest:
    """`body` (as `request_body` builds it) as our request, or `InvalidRequest` naming the
    field by WooCommerce's name."""
    try:
        return NormalizedRefundRequest.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc, rename={
            "customer.email": "billing.email",
            "customer.phone": "billing.phone",
            "lines": "line_items",
            "requested_amount": f"meta_data.{mapping.requested_amount_meta_key}",
        }) from exc


def request_body(order: WCOrder, mapping: OrderMapping) -> dict[str, Any]:
    """The fields of the request for `order`, before validation (`to_refund_request`)."""
    currency = order.currency.upper()
    if not order.line_items:
        raise InvalidRequest("line_items", "the order has no line items to refund")
    lines = [request_line(item, i, currency, mapping.line_meta_prefix)
             for i, item in enumerate(order.line_items) if item.quantity > 0]
    paid = wc_money(order.total, currency, "total")
    requested = _requested_amount(order, mapping, lines, paid)
    kind = _request_kind(order, mapping)
    code, text = _reason(order, mapping)
    placed_at = wc_datetime(order.date_created_gmt, "date_created_gmt")
    if placed_at is None:
        raise InvalidRequest("date_created_gmt", "the order has no creation date")
    requested_at = (
        _meta_datetime(order.meta(mapping.requested_at_meta_key),
                       f"meta_data.{mapping.requested_at_meta_key}")
        # Without the plugin's own time, the last change of the order (its move to the
        # refund-requested status) is the best we have.
        or wc_datetime(order.date_modified_gmt, "date_modified_gmt")
        or placed_at
    )
    provider, reference = payment_reference(order)
    body = {
        "external_id": external_request_id(order, mapping),
        "kind": kind.value,
        "order": {
            "id": str(order.id),
            "currency": currency,
            "paid_total": str(paid.amount),
            "placed_at": placed_at,
            # WooCommerce "completed" means fulfilled; it has no delivery date of its own.
            "delivered_at": wc_datetime(order.date_completed_gmt, "date_completed_gmt"),
            "payment": {"provider": provider, "reference": reference},
        },
        "customer": {
            "id": customer_id(order),
            "email": (order.billing.email or "").strip() or None,
            "phone": (order.billing.phone or "").strip() or None,
            "locale": _locale(order, mapping),
        },
        "lines": lines,
        "reason": {"code": code.value, "text": text[:4000]},
        "requested_amount": str(requested.amount),
        "requested_at": requested_at,
    }
    return body


def to_snapshot(order: WCOrder, mapping: OrderMapping) -> OrderSnapshot:
    currency = order.currency.upper()
    placed_at = wc_datetime(order.date_created_gmt, "date_created_gmt")
    if placed_at is None:
        raise InvalidRequest("date_created_gmt", "the order has no creation date")
    provider, reference = payment_reference(order)
    return OrderSnapshot(
        order_id=str(order.id),
        paid_total=wc_money(order.total, currency, "total"),
        placed_at=placed_at,
        delivered_at=wc_datetime(order.date_completed_gmt, "date_completed_gmt"),
        payment_provider=provider,
        payment_reference=reference,
        customer_id=customer_id(order),
        customer_email=(order.billing.email or "").strip() or None,
        customer_phone=(order.billing.phone or "").strip() or None,
        customer_locale=_locale(order, mapping),
        lines=tuple(
            OrderLine(sku=line_sku(item), name=item.name or line_sku(item),
                      quantity=item.quantity, unit_price=unit_gross(item, currency, i),
                      line_id=str(item.id))
            for i, item in enumerate(order.line_items) if item.quantity > 0
        ),
    )


def is_ours(reason: str) -> bool:
    return REFUND_MARKER in reason


def external_refund(order: WCOrder) -> ExternalRefund | None:
    """The newest refund on the order that RefundBridge did not make (one made in the shop's
    admin, or WooCommerce's own "Order fully refunded."), or None.

    One webhook carries one event, so only the newest is reported. Refunds are made one at a
    time and each one updates the order, so each is normally the newest of some delivery;
    recording one twice changes nothing.
    """
    foreign = [r for r in order.refunds if not is_ours(r.reason)]
    if not foreign:
        return None
    newest = max(foreign, key=lambda r: r.id)
    currency = order.currency.upper()
    index = order.refunds.index(newest)
    amount = wc_money(newest.total.lstrip("-"), currency, f"refunds.{index}.total")
    return ExternalRefund(order_id=str(order.id), external_id=str(newest.id), amount=amount,
                          note=newest.reason)
