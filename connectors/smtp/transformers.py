"""Mapping between the core's `OutgoingMessage` and an RFC 5322 email.

Every email is multipart/alternative: a text/plain part from `<kind>.txt.j2` and a text/html
part from `<kind>.html.j2`, under a subject from `<kind>.subject.j2`, all in
`templates/<locale>/`. A locale is whatever folder exists there, so adding a language is
adding a folder; `<locale>/_layout.html.j2` is the frame its HTML parts extend (the shop's
name, the status link as a button, the reply address). A recall campaign's messages
(`CAMPAIGN_KINDS`) have no case, order or amount: their context is the campaign's
(`recall_values`), and the layout's button is the consignee's acknowledgement link.
Only HTML templates are autoescaped; HTML parts use inline `style=` attributes and no
remote images or fonts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from email.errors import HeaderParseError, NonASCIILocalPartDefect
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

import jinja2
from babel.core import UnknownLocaleError
from babel.numbers import format_currency

from refundbridge.core.model import CAMPAIGN_KINDS, NotificationKind
from refundbridge.core.ports import OutgoingMessage

DEFAULT_LOCALE = "en"

# How the money comes back, by the order's payment provider (the context's `payment`), in
# each locale's words; the status page says the same (api/status/view.py PAID_WITH).
PAID_WITH: Mapping[str, Mapping[str, str]] = {
    "en": {"stripe": "the card you paid with", "alipay": "your Alipay account",
           "wechatpay": "your WeChat Pay account",
           "shopify": "the payment method you used at checkout",
           "woocommerce": "the payment method you used at checkout",
           "": "your original payment method"},
    "zh-CN": {"stripe": "您付款时使用的银行卡", "alipay": "您的支付宝账户",
              "wechatpay": "您的微信支付账户", "shopify": "您下单时使用的支付方式",
              "woocommerce": "您下单时使用的支付方式", "": "您的原支付方式"},
}

# A recall notice's classes and actions (core/campaigns.py `RecallAction`), as its
# templates know them; anything else in a campaign's context is refused, never left out.
RECALL_CLASSES = frozenset({"I", "II", "III"})
RECALL_ACTIONS = ("stop_use", "return", "destroy", "await_correction")
# What a recall email needs to say anything at all (the rest may be empty).
_RECALL_REQUIRED = ("reference", "recall_class", "units", "ack_url")

# dot-atom-text of RFC 5322: what may stand left of the "@" in a Message-ID without quoting.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_MSG_ID_LEFT = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_ADDRESS_SPECIALS = frozenset('()<>[]:;@\\,"')


class MessageError(ValueError):
    """The message cannot be turned into an email; sending it again will not help."""


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    locale: str  # the locale whose templates were used, after fallback
    subject: str
    body: str  # the text/plain part
    html: str  # the text/html part


def mailbox(addr_spec: str, display_name: str = "") -> Address:
    """An `Address` built from its parts, never from a "Name <addr>" string, so a display
    name with non-ASCII text or specials is encoded rather than parsed."""
    try:
        return Address(display_name=display_name, addr_spec=addr_spec)
    except NonASCIILocalPartDefect:
        # RFC 6531 allows UTF-8 local parts and smtplib sends them with SMTPUTF8, but the
        # stdlib parser refuses them; build the address from its parts after our own check.
        local, at, domain = addr_spec.rpartition("@")
        if not (at and local and domain) or any(
            ch.isspace() or ch in _ADDRESS_SPECIALS for ch in local + domain
        ):
            raise MessageError(f"not an email address: {addr_spec!r}") from None
        return Address(display_name=display_name, username=local, domain=domain)
    except (ValueError, HeaderParseError) as exc:
        raise MessageError(f"not an email address: {addr_spec!r}") from exc


def resolve_locale(requested: str, available: frozenset[str]) -> str:
    """Exact match (case-insensitive), then any locale of the same language, then English."""
    by_lower = {locale.lower(): locale for locale in available}
    wanted = requested.strip().replace("_", "-").lower()
    if wanted in by_lower:
        return by_lower[wanted]
    language = wanted.split("-", 1)[0]
    if language in by_lower:
        return by_lower[language]
    # sorted, so the choice between e.g. zh-CN and zh-TW does not depend on disk order
    same_language = sorted(lower for lower in by_lower if lower.split("-", 1)[0] == language)
    if same_language:
        return by_lower[same_language[0]]
    return DEFAULT_LOCALE


def format_amount(amount: str, currency: str, locale: str) -> str:
    try:
        value = Decimal(amount)
    except (InvalidOperation, TypeError) as exc:
        raise MessageError(f"amount {amount!r} is not a decimal string") from exc
    try:
        return str(format_currency(value, currency, locale=locale.replace("-", "_")))
    except (UnknownLocaleError, ValueError):
        return f"{currency} {amount}"


def _autoescape(name: str | None) -> bool:
    # plain text and subjects unescaped: escaping would put "&amp;" into a customer's
    # product names; the HTML parts escaped, so a customer's text cannot add markup
    return name is not None and name.endswith(".html.j2")


def _status_url(value: object, name: str = "status_url") -> str | None:
    """A link, checked: it becomes an `href`, so only an absolute http(s) URL."""
    if value is None or value == "":
        return None
    url = str(value).strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(
        ch.isspace() or ch in '"<>' for ch in url
    ):
        raise MessageError(f"{name} {url!r} is not an http(s) URL")
    return url


def recall_values(kind: NotificationKind, context: Mapping[str, Any]) -> dict[str, Any]:
    """A campaign's context, checked for what its recall email cannot do without: a recall
    notice that silently drops an action or the acknowledgement link is worse than none, so
    a missing or unknown value is a `MessageError` (the campaign shows it), not a gap."""
    values = dict(context)
    missing = [key for key in _RECALL_REQUIRED if values.get(key) in (None, "", [])]
    if missing:
        raise MessageError(f"context has no {', '.join(repr(k) for k in missing)}")
    if str(values["recall_class"]) not in RECALL_CLASSES:
        raise MessageError(f"recall_class {values['recall_class']!r} is not I, II or III")
    values["recall_class"] = str(values["recall_class"])
    actions = [str(action) for action in values.get("actions") or []]
    unknown = [action for action in actions if action not in RECALL_ACTIONS]
    if unknown:
        raise MessageError(f"unknown recall action {', '.join(map(repr, unknown))}")
    values["actions"] = actions
    try:
        reminder = int(values.get("reminder") or 0)
    except (TypeError, ValueError) as exc:
        raise MessageError(f"reminder {values.get('reminder')!r} is not a number") from exc
    if (kind is NotificationKind.RECALL_REMINDER) != (reminder > 0):
        raise MessageError(f"a {kind.value} with reminder={reminder}")
    values["reminder"] = reminder
    product = values.get("product") or {}
    values["product"] = {"sku": product.get("sku") or None, "gtin": product.get("gtin") or None}
    values["ack_url"] = _status_url(values["ack_url"], "ack_url")
    values["instructions"] = str(values.get("instructions") or "").strip()
    values["return_address"] = str(values.get("return_address") or "").strip()
    values["consignee_name"] = str(values.get("consignee_name") or "").strip()
    # A campaign has no status page: a status_url in its context is not the consignee's.
    values["status_url"] = None
    return values


class TemplateRenderer:
    """One Jinja2 environment per notifier; templates are parsed once and cached by it."""

    def __init__(self) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader("refundbridge.connectors.smtp", "templates"),
            undefined=jinja2.StrictUndefined,
            autoescape=_autoescape,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.locales = frozenset(
            name.split("/", 1)[0]
            for name in self._env.list_templates(extensions=["j2"]) if "/" in name
        )

    @property
    def env(self) -> jinja2.Environment:
        return self._env

    def render(
        self,
        kind: NotificationKind,
        locale: str,
        context: Mapping[str, Any],
        sender_name: str,
        *,
        reply_email: str | None = None,
    ) -> RenderedEmail:
        """`reply_email`: the address a reply reaches (Reply-To, else From), shown in the
        HTML part's footer."""
        used = resolve_locale(locale, self.locales)
        if kind in CAMPAIGN_KINDS:
            values = recall_values(kind, context)
            return self.render_named(kind.value, used, values, sender_name, reply_email,
                                     button_url=values["ack_url"])
        values = dict(context)
        try:
            values["amount_display"] = format_amount(
                str(values["amount"]), str(values["currency"]), used
            )
        except KeyError as exc:
            raise MessageError(f"context has no {exc.args[0]!r}") from exc
        words = PAID_WITH.get(used, PAID_WITH[DEFAULT_LOCALE])
        values["payment_display"] = words.get(str(values.get("payment") or ""), words[""])
        values["return_address"] = str(values.get("return_address") or "").strip()
        # What the parcel needs, from the lines' flags (core/packing.py): the approved
        # email's packing advice.
        lines = values.get("lines") or []
        values["packing"] = {need: any(bool(line.get(need)) for line in lines)
                             for need in ("sterile", "cold_chain", "sharp")}
        return self.render_named(kind.value, used, values, sender_name, reply_email)

    def render_named(
        self,
        name: str,
        used: str,
        context: Mapping[str, Any],
        sender_name: str,
        reply_email: str | None,
        *,
        button_url: str | None = None,
    ) -> RenderedEmail:
        """Subject, text and HTML of `<used>/<name>.*.j2` (`used`: a locale we have).
        `button_url`: the link of the layout's button, the status link unless given (a
        recall's acknowledgement page, checked by the caller)."""
        shop_name = context.get("shop_name")
        status_url = _status_url(context.get("status_url"))
        values = {
            **context,
            "sender_name": sender_name,
            # the shop as the customer knows it: the core's name for it, else our From name
            "shop_name": str(shop_name).strip() if shop_name else sender_name,
            "status_url": status_url,
            "button_url": button_url or status_url,
            "reply_email": reply_email,
        }
        try:
            raw_subject = self._env.get_template(f"{used}/{name}.subject.j2").render(values)
            # A header is one line: this also keeps a CR/LF in a context value out of them.
            subject = " ".join(raw_subject.split())
            body = self._env.get_template(f"{used}/{name}.txt.j2").render(values)
            html = self._env.get_template(f"{used}/{name}.html.j2").render(
                {**values, "subject": subject})
        except jinja2.TemplateError as exc:
            raise MessageError(f"template {used}/{name}: {exc}") from exc
        return RenderedEmail(locale=used, subject=subject, body=body, html=html)


def to_email(
    message: OutgoingMessage,
    rendered: RenderedEmail,
    *,
    sender_email: str,
    sender_name: str,
    now: datetime,
    reply_to: str | None = None,
) -> EmailMessage:
    if not message.email:
        raise MessageError("the message has no email address")
    # Stable per case and kind: a resend after an ambiguous failure (a timeout after DATA)
    # carries the same id, so mail clients and MTAs can recognise the duplicate.
    return _email(message.email, rendered, message_id=message.message_id,
                  sender_email=sender_email, sender_name=sender_name, now=now,
                  reply_to=reply_to)


def _email(to: str, rendered: RenderedEmail, *, message_id: str, sender_email: str,
           sender_name: str, now: datetime, reply_to: str | None) -> EmailMessage:
    if not _MSG_ID_LEFT.fullmatch(message_id):
        raise MessageError(f"message_id {message_id!r} cannot be used in a Message-ID")
    email = EmailMessage()  # policy.default: RFC 2047-encodes non-ASCII header text
    email["From"] = mailbox(sender_email, sender_name)
    email["To"] = mailbox(to)
    if reply_to:
        # built from its parts, like From: a Chinese shop name is encoded, not parsed
        email["Reply-To"] = mailbox(reply_to, sender_name)
    email["Subject"] = rendered.subject
    email["Date"] = format_datetime(now)
    email["Message-ID"] = f"<{message_id}@refundbridge>"
    # RFC 3834: keeps vacation auto-replies from answering a machine-sent mail.
    email["Auto-Submitted"] = "auto-generated"
    # Left alone the stdlib picks 8bit for short non-ASCII lines, which needs BODY=8BITMIME
    # (smtplib asks for it only with SMTPUTF8); quoted-printable works with every server and
    # keeps the ASCII parts (order numbers) readable in the raw mail.
    email.set_content(rendered.body, charset="utf-8", cte=_cte(rendered.body))
    # multipart/alternative, plainest first: a client shows the last part it can
    email.add_alternative(rendered.html, subtype="html", charset="utf-8",
                          cte=_cte(rendered.html))
    # after the parts, as making them multipart moves every Content-* header into a part
    email["Content-Language"] = rendered.locale
    return email


def _cte(text: str) -> str | None:
    return None if text.isascii() else "quoted-printable"


# ---- a fresh status link, asked for on the status page's look-up form -------------------

def render_status_link(renderer: TemplateRenderer, locale: str, context: Mapping[str, Any],
                       sender_name: str, *, reply_email: str | None = None) -> RenderedEmail:
    """`templates/<locale>/status_link.*.j2`: not a message a case owes (no
    `NotificationKind`), but an email the customer asked for."""
    used = resolve_locale(locale, renderer.locales)
    return renderer.render_named("status_link", used, context, sender_name, reply_email)


def plain_email(to: str, rendered: RenderedEmail, *, message_id: str, sender_email: str,
                sender_name: str, now: datetime, reply_to: str | None = None) -> EmailMessage:
    """`to_email` for an email that is not one of a case's messages."""
    return _email(to, rendered, message_id=message_id, sender_email=sender_email,
                  sender_name=sender_name, now=now, reply_to=reply_to)
