"""The text of a customer SMS, for providers that send our own words (Twilio); providers that
send only approved templates (Aliyun, Tencent) take parameters instead.

One template per notification kind and locale, kept inline below: an SMS is one short
paragraph, so a template is one line of text, and the whole set is easier to review (and to
keep within the length) side by side than in a dozen files. A locale is whatever the table
holds; adding a language is adding one entry per kind (a test checks each one's length).

Rendering is Jinja2 with `StrictUndefined` (a template naming a value we do not pass fails
at once) and no HTML autoescaping (an SMS is plain text: "&amp;" would reach the handset).
Whitespace is collapsed to single spaces, so a reviewer's line breaks cost nothing.

Length: a message is at most `MAX_SEGMENTS` segments (`sms_length` counts them the way the
networks do: GSM-7 when every character is in the GSM 03.38 alphabet, else UCS-2, so any
Chinese text is UCS-2). A long customer message (a reviewer may write 2 000 characters) is
cut to fit and marked with "..."; the status link, when there is one, carries the rest.
Nothing else is ever cut: a message that does not fit without its customer message is an
error (`SmsTextError`), never a truncated link or case number.

A recall campaign's messages (`CAMPAIGN_KINDS`) have no case: their context is the
campaign's (checked as the email checks it, `recall_values`). Their acknowledgement link is a
signed token of about 180 characters, most of a Chinese SMS, so what gives way is, in turn:
the product (cut and marked like a customer message), then the recall's reference (left out
whole, never cut: the email carries it); the link, the recall class and the words saying it
is a recall never give way.

Only what the customer may read is in the context the core hands us (its `customer_message`,
never a reviewer's internal note), and only named values of it are used.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Literal

import jinja2

from refundbridge.connectors.smtp.transformers import (
    MessageError,
    format_amount,
    recall_values,
    resolve_locale,
)
from refundbridge.core.model import CAMPAIGN_KINDS, NotificationKind

MAX_SEGMENTS: Final = 4
ELLIPSIS: Final = "..."  # three dots, not "…": that one is not GSM-7 and would halve the room

# GSM 03.38: the basic alphabet (one septet each; ESC itself is not a character) and the
# extension table, whose characters take an escape and a septet (two each).
GSM_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM_EXTENDED: Final = frozenset("\f^{}\\[~]|€")

Encoding = Literal["GSM-7", "UCS-2"]
# (room in a message of one segment, room per segment of a concatenated message): the
# user data header of a concatenated message takes 6 octets (7 septets, 3 UCS-2 units).
ROOM: Final[Mapping[Encoding, tuple[int, int]]] = MappingProxyType({
    "GSM-7": (160, 153), "UCS-2": (70, 67)})


class SmsTextError(MessageError):
    """The SMS cannot be written from this message; sending it again will not help."""


@dataclass(frozen=True, slots=True)
class SmsLength:
    encoding: Encoding
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int


@dataclass(frozen=True, slots=True)
class SmsText:
    locale: str  # the locale whose template was used, after fallback
    text: str
    length: SmsLength


def sms_length(text: str) -> SmsLength:
    """How the networks carry `text`: its encoding, size and number of segments.

    A concatenated message never splits a character: a GSM-7 escape pair or a UTF-16
    surrogate pair (an emoji) that does not fit moves whole into the next segment.
    """
    encoding: Encoding = "GSM-7" if all(
        ch in GSM_BASIC or ch in GSM_EXTENDED for ch in text) else "UCS-2"
    if encoding == "GSM-7":
        sizes = [2 if ch in GSM_EXTENDED else 1 for ch in text]
    else:
        sizes = [len(ch.encode("utf-16-le")) // 2 for ch in text]
    units = sum(sizes)
    single, per_segment = ROOM[encoding]
    if units <= single:
        return SmsLength(encoding, units, 1)
    segments, used = 1, 0
    for size in sizes:
        if used + size > per_segment:
            segments, used = segments + 1, 0
        used += size
    return SmsLength(encoding, units, segments)


# ------------------------------------------------------------------ the templates

_SHOP_EN = "{% if shop_name %}{{ shop_name }}: {% endif %}"
_SHOP_ZH = "{% if shop_name %}【{{ shop_name }}】{% endif %}"
_LINK_EN = "{% if status_url %} Status: {{ status_url }}{% endif %}"
_LINK_ZH = "{% if status_url %}进度：{{ status_url }} {% endif %}"
_NOTE_EN = "{% if customer_message %} Note from us: {{ customer_message }}{% endif %}"
_NOTE_ZH = "{% if customer_message %}客服留言：{{ customer_message }}。{% endif %}"
_STOP_EN = "{% if stop_use %} Stop using it now.{% endif %}"
_STOP_ZH = "{% if stop_use %}请立即停止使用，{% endif %}"
_REFERENCE_ZH = "{% if reference %}（召回编号{{ reference }}）{% endif %}"
_LEVEL_ZH = '{{ {"I": "一", "II": "二", "III": "三"}[recall_class] }}级召回'

TEMPLATES: Final[Mapping[str, Mapping[NotificationKind, str]]] = MappingProxyType({
    "en": MappingProxyType({
        NotificationKind.RECEIVED: (
            _SHOP_EN + "We have received your {{ 'return and refund' if is_return else "
            "'refund' }} request for order {{ order_id }} ({{ amount_display }}). "
            "Case {{ case_id }}. We will text you our decision."
            "{% if is_return %} Please keep the items until we approve it.{% endif %}"
            + _LINK_EN + " Reply STOP to opt out."),
        NotificationKind.APPROVED: (
            _SHOP_EN + "Your refund request for order {{ order_id }} is approved: "
            "{{ amount_display }}. Case {{ case_id }}."
            "{% if is_return %} Please send the items back with the case number on the "
            "parcel.{% else %} The money goes back to your original payment method."
            "{% endif %}" + _NOTE_EN + _LINK_EN),
        NotificationKind.DENIED: (
            _SHOP_EN + "We cannot approve your refund request for order {{ order_id }}. "
            "Case {{ case_id }}." + _NOTE_EN.replace("Note from us", "Reason")
            + " Questions? Contact us with your case number." + _LINK_EN),
        NotificationKind.GOODS_RECEIVED: (
            _SHOP_EN + "Your returned items for order {{ order_id }} have arrived and been "
            "checked in. Case {{ case_id }}." + _LINK_EN),
        NotificationKind.REFUNDED: (
            _SHOP_EN + "We have refunded {{ amount_display }} for order {{ order_id }} to "
            "your original payment method; it may take a few working days to show. "
            "Case {{ case_id }}." + _LINK_EN),
        NotificationKind.REFUND_FAILED: (
            _SHOP_EN + "Your refund of {{ amount_display }} for order {{ order_id }} did not "
            "go through. Case {{ case_id }}. Our team will pay it again; you need not do "
            "anything." + _LINK_EN),
        NotificationKind.REPLACEMENT_ORDERED: (
            _SHOP_EN + "We have ordered your replacement for order {{ order_id }}. Case "
            "{{ case_id }}. We will text you when it ships." + _LINK_EN),
        NotificationKind.REPLACEMENT_SHIPPED: (
            _SHOP_EN + "Your replacement for order {{ order_id }} is on its way. Case "
            "{{ case_id }}." + _LINK_EN),
        NotificationKind.RECALL_NOTICE: (
            _SHOP_EN + "Medical device recall{% if reference %} {{ reference }}{% endif %} "
            "(Class {{ recall_class }}): a product you received from us"
            "{% if product %} ({{ product }}){% endif %} is being recalled." + _STOP_EN
            + " Please read our email and do as it says. Confirm you got this notice: "
            "{{ ack_url }}"),
        NotificationKind.RECALL_REMINDER: (
            _SHOP_EN + "Reminder {{ reminder }}: medical device recall"
            "{% if reference %} {{ reference }}{% endif %} (Class {{ recall_class }})"
            "{% if product %} of {{ product }}{% endif %}. You have not yet confirmed that "
            "you received our notice." + _STOP_EN + " Please read our email and confirm: "
            "{{ ack_url }}"),
    }),
    "zh-CN": MappingProxyType({
        NotificationKind.RECEIVED: (
            _SHOP_ZH + "您的{{ '退货退款' if is_return else '退款' }}申请已收到：订单"
            "{{ order_id }}，金额{{ amount_display }}，申请编号{{ case_id }}。"
            "{% if is_return %}审核通过前请勿寄回商品。{% endif %}" + _LINK_ZH + "回复退订拒收"),
        NotificationKind.APPROVED: (
            _SHOP_ZH + "订单{{ order_id }}的退款申请已通过，金额{{ amount_display }}，申请编号"
            "{{ case_id }}。{% if is_return %}请寄回商品并在包裹上注明申请编号。"
            "{% else %}款项将退回原支付方式。{% endif %}" + _NOTE_ZH + _LINK_ZH),
        NotificationKind.DENIED: (
            _SHOP_ZH + "很抱歉，订单{{ order_id }}的退款申请未通过，申请编号{{ case_id }}。"
            + _NOTE_ZH.replace("客服留言", "原因") + "如有疑问请联系我们。" + _LINK_ZH),
        NotificationKind.GOODS_RECEIVED: (
            _SHOP_ZH + "订单{{ order_id }}的退货已签收并验收，申请编号{{ case_id }}。" + _LINK_ZH),
        NotificationKind.REFUNDED: (
            _SHOP_ZH + "订单{{ order_id }}的退款{{ amount_display }}已退回原支付方式，"
            "通常几个工作日内到账。申请编号{{ case_id }}。" + _LINK_ZH),
        NotificationKind.REFUND_FAILED: (
            _SHOP_ZH + "订单{{ order_id }}的退款{{ amount_display }}未能成功退回，申请编号"
            "{{ case_id }}。工作人员会重新为您退款，您无需操作。" + _LINK_ZH),
        NotificationKind.REPLACEMENT_ORDERED: (
            _SHOP_ZH + "订单{{ order_id }}的换货已安排，申请编号{{ case_id }}，发货后短信通知您。"
            + _LINK_ZH),
        NotificationKind.REPLACEMENT_SHIPPED: (
            _SHOP_ZH + "订单{{ order_id }}的换货商品已发出，申请编号{{ case_id }}。" + _LINK_ZH),
        NotificationKind.RECALL_NOTICE: (
            _SHOP_ZH + "医疗器械召回通知" + _REFERENCE_ZH + "：您收到的产品"
            "{% if product %}{{ product }}{% endif %}正在实施" + _LEVEL_ZH + "，" + _STOP_ZH
            + "详见邮件。确认收到：{{ ack_url }}"),
        NotificationKind.RECALL_REMINDER: (
            _SHOP_ZH + "第{{ reminder }}次提醒：医疗器械召回通知" + _REFERENCE_ZH + "，"
            + _LEVEL_ZH + "{% if product %}，产品{{ product }}{% endif %}。您尚未确认收到，"
            + _STOP_ZH + "详见邮件。确认收到：{{ ack_url }}"),
    }),
})

LOCALES: Final = frozenset(TEMPLATES)
_REQUIRED: Final = ("case_id", "order_id", "amount", "currency")
_SPACE = re.compile(r"\s+")

_env = jinja2.Environment(
    loader=jinja2.DictLoader({f"{locale}/{kind.value}": source
                              for locale, kinds in TEMPLATES.items()
                              for kind, source in kinds.items()}),
    undefined=jinja2.StrictUndefined,
    autoescape=False,  # plain text
    keep_trailing_newline=False,
)


def plain(text: str) -> str:
    """`text` as one line of an SMS: whitespace runs (line breaks, no-break spaces) as one
    space, no control or format characters."""
    kept = "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch)[0] != "C")
    return _SPACE.sub(" ", kept).strip()


def _values(kind: NotificationKind, locale: str, context: Mapping[str, Any]
            ) -> dict[str, Any]:
    if kind in CAMPAIGN_KINDS:
        return _recall_values(kind, context)
    missing = [key for key in _REQUIRED if context.get(key) in (None, "")]
    if missing:
        raise SmsTextError(f"context has no {', '.join(repr(k) for k in missing)}")
    shop_name, status_url = context.get("shop_name"), context.get("status_url")
    return {
        "case_id": plain(str(context["case_id"])),
        "order_id": plain(str(context["order_id"])),
        "amount_display": plain(format_amount(str(context["amount"]),
                                              str(context["currency"]), locale)),
        "is_return": bool(context.get("is_return", False)),
        "customer_message": plain(str(context.get("customer_message") or "")),
        "shop_name": plain(str(shop_name)) if shop_name else None,
        "status_url": str(status_url).strip() if status_url else None,
    }


def _recall_values(kind: NotificationKind, context: Mapping[str, Any]) -> dict[str, Any]:
    try:
        values = recall_values(kind, context)  # the email's checks: class, actions, link…
    except SmsTextError:
        raise
    except MessageError as exc:  # the connectors catch ours (`SmsTextError`) only
        raise SmsTextError(str(exc)) from exc
    product = values["product"]
    if product["sku"]:
        named = str(product["sku"])
    elif product["gtin"]:
        named = f"GTIN {product['gtin']}"
    else:  # a notice by lot alone: the SKUs the consignee has
        named = ", ".join(dict.fromkeys(str(unit.get("sku") or "") for unit in values["units"]
                                        if unit.get("sku")))
    shop_name = context.get("shop_name")
    return {
        "reference": plain(str(values["reference"])),
        "recall_class": values["recall_class"],
        "product": plain(named),
        "stop_use": "stop_use" in values["actions"],
        "reminder": values["reminder"],
        "ack_url": values["ack_url"],
        "shop_name": plain(str(shop_name)) if shop_name else None,
    }


def _render(locale: str, kind: NotificationKind, values: Mapping[str, Any]) -> str:
    try:
        return plain(_env.get_template(f"{locale}/{kind.value}").render(values))
    except jinja2.TemplateNotFound as exc:  # a kind added to the core, not yet written here
        raise SmsTextError(f"no {locale} SMS template for '{kind.value}'") from exc
    except jinja2.UndefinedError as exc:  # a template naming a value we do not pass
        raise SmsTextError(f"template {locale}/{kind.value}: {exc.message}") from exc


def _shortened(message: str, length: int) -> str:
    return message[:length].rstrip() + ELLIPSIS if length else ""


def _fallbacks(kind: NotificationKind, values: Mapping[str, Any]
               ) -> list[tuple[Mapping[str, Any], str]]:
    """What may give way when the SMS is too long, in turn: (the values, the one text of
    them that may be cut)."""
    if kind in CAMPAIGN_KINDS:
        return [(values, "product"), ({**values, "reference": ""}, "product")]
    return [(values, "customer_message")]


def _longest_fit(used: str, kind: NotificationKind, values: Mapping[str, Any], name: str,
                 max_segments: int) -> SmsText | None:
    """The SMS with the longest start of `values[name]` that fits (more text never takes
    fewer segments, so a binary search finds it); none at all if even "..." does not fit."""
    text = values[name]
    low, high, best = 0, len(text) - 1, None
    while low <= high:
        middle = (low + high) // 2
        candidate = _render(used, kind, {**values, name: _shortened(text, middle)})
        if (length := sms_length(candidate)).segments <= max_segments:
            best, low = SmsText(used, candidate, length), middle + 1
        else:
            high = middle - 1
    return best


def render_sms(kind: NotificationKind, locale: str, context: Mapping[str, Any],
               max_segments: int = MAX_SEGMENTS) -> SmsText:
    """The SMS for one notification, within `max_segments`; raises `SmsTextError`."""
    used = resolve_locale(locale, LOCALES)
    values = _values(kind, used, context)
    text = _render(used, kind, values)
    if (length := sms_length(text)).segments <= max_segments:
        return SmsText(used, text, length)
    for number, (variant, name) in enumerate(_fallbacks(kind, values)):
        # a variant that leaves something out may fit with the text it would cut whole
        whole = text if number == 0 else _render(used, kind, variant)
        if number and (length := sms_length(whole)).segments <= max_segments:
            return SmsText(used, whole, length)
        best = _longest_fit(used, kind, variant, name, max_segments)
        if best is not None:
            return best
    without = "a product or reference" if kind in CAMPAIGN_KINDS else "a customer message"
    raise SmsTextError(f"the {used} '{kind.value}' SMS takes {sms_length(text).segments} "
                       f"segments even without {without}, more than {max_segments}")
