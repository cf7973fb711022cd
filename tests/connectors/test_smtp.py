"""SMTP notifier against a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import email
import email.policy
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from html.parser import HTMLParser
from importlib.resources import files
from typing import Any, TypeVar

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from refundbridge.connectors.base import ConnectorContext, RetryPolicy
from refundbridge.connectors.smtp import SmtpNotifier
from refundbridge.connectors.smtp.transformers import TemplateRenderer, resolve_locale
from refundbridge.core.errors import ConfigError, PermanentProviderError, TransientProviderError
from refundbridge.core.model import CAMPAIGN_KINDS, NotificationKind
from refundbridge.core.ports import OutgoingMessage
from refundbridge.core.status_links import StatusLinkMessage

LOCALES = ("en", "zh-CN")
STATUS_URL = "https://returns.shop.example/status/eyJjIjoicmNfMDAwMSJ9.Zx8-tok_1"
HOSTILE = '<script>alert("x")</script><img src="https://evil.example/p.gif"> & co'
NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
PASSWORD = "correct-horse-battery-staple"
T = TypeVar("T")


# ------------------------------------------------------------------ the server


@dataclass
class Recorder:
    """Handler that keeps what arrived. Recipients named reject@/busy@ get 550/451."""

    envelopes: list[Envelope] = field(default_factory=list)
    rcpt_attempts: list[str] = field(default_factory=list)
    logins: list[bytes] = field(default_factory=list)
    login_sessions: set[int] = field(default_factory=set)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:
        self.rcpt_attempts.append(address)
        if address.startswith("reject@"):
            return "550 5.1.1 <reject@example.org>: mailbox unavailable"
        if address.startswith("busy@"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any,
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append(data.login)
        self.login_sessions.add(id(session))
        # handled=False: otherwise aiosmtpd sends no reply to a failed login
        return AuthResult(success=data.password == PASSWORD.encode(), handled=False)

    def clear(self) -> None:
        self.envelopes.clear()
        self.rcpt_attempts.clear()
        self.logins.clear()
        self.login_sessions.clear()

    def only_mail(self) -> tuple[Envelope, EmailMessage]:
        assert len(self.envelopes) == 1
        return self.envelopes[0], parse(self.envelopes[0])

    def mails(self) -> list[EmailMessage]:
        return [parse(envelope) for envelope in self.envelopes]


def parse(envelope: Envelope) -> EmailMessage:
    assert isinstance(envelope.content, bytes)
    parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def free_port() -> int:
    # aiosmtpd's Controller connects to its own port to start up, so port 0 will not do.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    port: int
    recorder: Recorder


@contextmanager
def serving(**smtp_options: Any) -> Iterator[Server]:
    """A running SMTP server on loopback, stopped afterwards."""
    recorder = Recorder()
    if smtp_options.get("auth_require_tls") is False:
        smtp_options["authenticator"] = recorder.authenticate
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port(), **smtp_options)
    controller.start()
    try:
        yield Server(controller.port, recorder)
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def _smtp_server() -> Iterator[Server]:
    with serving(enable_SMTPUTF8=True) as server:
        yield server


@pytest.fixture(scope="module")
def _auth_server() -> Iterator[Server]:
    with serving(auth_require_tls=False) as server:
        yield server


@pytest.fixture
def server(_smtp_server: Server) -> Server:
    _smtp_server.recorder.clear()
    return _smtp_server


@pytest.fixture
def auth_server(_auth_server: Server) -> Server:
    _auth_server.recorder.clear()
    return _auth_server


# ------------------------------------------------------------------ helpers


def context(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "case_id": "rc_0001",
        "shop_id": "shop-1",
        "order_id": "SO-1001",
        "amount": "129.50",
        "currency": "CNY",
        "customer_id": "cust-7",
        "reason_text": "The meter shows an error on start-up",
        "lines": [
            {"sku": "GM-100", "name": "Blood glucose meter", "quantity": 1},
            {"sku": "TS-50", "name": "Test strips, 50 pcs", "quantity": 2},
        ],
        "is_return": False,
        "customer_message": "",
    }
    values.update(overrides)
    return values


# A recall campaign's message to one consignee, as core/services/campaigns.py builds it.
CAMPAIGN_ID = "rcp_bea7664778d841fdbcc6fb93de13f571"
ACK_URL = "https://returns.shop.example/status/recall/eyJyIjoicmNwXzAwMDEifQ.Zx8-ack_1"
RECALL_UNITS = [
    {"sku": "GM-100", "quantity": 2, "lot": "L2406A", "serial": None, "document": "SO-1001",
     "shipped_on": "2026-10-14"},
    {"sku": "GM-100", "quantity": 1, "lot": "L2406B", "serial": "SN-00981",
     "document": "SO-1077", "shipped_on": None},
]
ACTIONS = ["stop_use", "return", "destroy", "await_correction"]


def recall_context(kind: NotificationKind = NotificationKind.RECALL_NOTICE,
                   **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "campaign_id": CAMPAIGN_ID,
        "shop_id": "shop-1",
        "reference": "RC-2026-001",
        "recall_class": "I",
        "notice_date": "2026-12-01",
        "consignee_name": "Dr Wang Clinic",
        "product": {"sku": "GM-100", "gtin": "06901234567892"},
        "units": RECALL_UNITS,
        "quantity": 3,
        "actions": ACTIONS,
        "instructions": "Remove the battery.\nDo not dispose of the meter with household waste.",
        "ack_url": ACK_URL,
        "reminder": 1 if kind is NotificationKind.RECALL_REMINDER else 0,
        "return_address": "",
    }
    values.update(overrides)
    return values


def message_context(kind: NotificationKind, **overrides: Any) -> dict[str, Any]:
    """The context the core hands over for `kind`: a case's, or a recall campaign's."""
    if kind in CAMPAIGN_KINDS:
        return recall_context(kind, **overrides)
    return context(**overrides)


def outgoing(
    kind: NotificationKind = NotificationKind.RECEIVED,
    locale: str = "en",
    email_address: str | None = "patient@example.org",
    **overrides: Any,
) -> OutgoingMessage:
    if kind in CAMPAIGN_KINDS:
        suffix = "notice" if kind is NotificationKind.RECALL_NOTICE else "reminder1"
        return OutgoingMessage(
            case_id=CAMPAIGN_ID, kind=kind, locale=locale, email=email_address, phone=None,
            message_id=f"{CAMPAIGN_ID}.42.{suffix}", context=recall_context(kind, **overrides))
    return OutgoingMessage(
        case_id="rc_0001",
        kind=kind,
        locale=locale,
        email=email_address,
        phone=None,
        message_id=f"rc_0001-{kind.value}",
        context=context(**overrides),
    )


def names_in(kind: NotificationKind | str) -> tuple[str, str]:
    """What a message of `kind` must name: the order and the case number, or the recall's
    reference and a lot of the consignee's."""
    if kind in {k.value for k in CAMPAIGN_KINDS}:
        return "RC-2026-001", "L2406A"
    return "SO-1001", "rc_0001"


def link_of(kind: NotificationKind | str) -> str:
    """The one link a message's button points to: the status page, or for a recall the
    consignee's acknowledgement page."""
    return ACK_URL if kind in {k.value for k in CAMPAIGN_KINDS} else STATUS_URL


def text_of(mail: EmailMessage) -> str:
    part = mail.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(mail: EmailMessage) -> str:
    part = mail.get_body(("html",))
    assert part is not None
    assert part.get_content_charset() == "utf-8"
    return str(part.get_content())


class Page(HTMLParser):
    """What a mail client sees of an HTML part: its elements, attributes and text."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.texts: list[str] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))

    def handle_data(self, data: str) -> None:
        self.texts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.texts).split())

    def hrefs(self) -> list[str]:
        return [attrs["href"] for tag, attrs in self.tags if tag == "a" and "href" in attrs]


def notifier(port: int, *, retry: RetryPolicy | None = None, **settings: Any) -> SmtpNotifier:
    raw: dict[str, Any] = {"host": "127.0.0.1", "port": port, "sender_email": "care@shop.example",
                           "timeout": 5.0}
    raw.update(settings)
    ctx = ConnectorContext(
        shop_id="shop-1",
        retry=retry or RetryPolicy(attempts=2, initial_wait=0, max_wait=0),
        clock=lambda: NOW,
    )
    return SmtpNotifier.from_config(raw, ctx)


# ------------------------------------------------------------------ delivery


def test_english_message_arrives_with_stable_headers(server: Server) -> None:
    notifier(server.port, sender_name="Acme Medical").send(outgoing())

    envelope, mail = server.recorder.only_mail()
    assert envelope.mail_from == "care@shop.example"
    assert envelope.rcpt_tos == ["patient@example.org"]
    assert mail["Subject"] == "We have received your refund request for order SO-1001"
    assert mail["From"].addresses[0].display_name == "Acme Medical"
    assert mail["From"].addresses[0].addr_spec == "care@shop.example"
    assert mail["To"].addresses[0].addr_spec == "patient@example.org"
    assert mail["Message-ID"] == "<rc_0001-received@refundbridge>"
    assert mail["Content-Language"] == "en"
    assert mail["Date"].datetime == NOW
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Reply-To"] is None  # no reply_to set: replies go to From
    assert mail.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in mail.iter_parts()] == ["text/plain",
                                                                        "text/html"]
    body = text_of(mail)
    assert "rc_0001" in body
    assert "CN¥129.50" in body
    assert "1 × Blood glucose meter (SKU GM-100)" in body
    assert "The meter shows an error on start-up" in body
    assert "<" not in body


def test_resend_carries_the_same_message_id(server: Server) -> None:
    smtp = notifier(server.port)
    smtp.send(outgoing(NotificationKind.REFUNDED))
    smtp.send(outgoing(NotificationKind.REFUNDED))

    ids = [email.message_from_bytes(e.content, policy=email.policy.default)["Message-ID"]
           for e in server.recorder.envelopes if isinstance(e.content, bytes)]
    assert ids == ["<rc_0001-refunded@refundbridge>"] * 2


def test_chinese_message_round_trips(server: Server) -> None:
    notifier(server.port, sender_name="康健医疗 退款中心").send(
        outgoing(NotificationKind.APPROVED, "zh-CN", is_return=True,
                 lines=[{"sku": "GM-100", "name": "血糖仪", "quantity": 1}])
    )

    envelope, mail = server.recorder.only_mail()
    assert isinstance(envelope.content, bytes)
    # headers RFC 2047-encoded and body quoted-printable: any server can carry it
    assert envelope.content.isascii()
    assert "SMTPUTF8" not in envelope.mail_options
    assert mail["Subject"] == "您的退款申请已通过（订单 SO-1001）"
    assert mail["From"].addresses[0].display_name == "康健医疗 退款中心"
    assert mail["Content-Language"] == "zh-CN"
    body = text_of(mail)
    assert "将以下商品放入包裹" in body
    assert "血糖仪（SKU GM-100）× 1" in body
    assert "¥129.50" in body
    page = html_of(mail)
    assert '<html lang="zh-CN">' in page
    assert "将以下商品放入包裹" in page and "血糖仪" in page and "¥129.50" in page
    assert "康健医疗 退款中心" in page


@pytest.mark.parametrize(
    ("requested", "used"),
    [("zh", "zh-CN"), ("zh-cn", "zh-CN"), ("zh_CN", "zh-CN"), ("fr", "en"), ("en-GB", "en")],
)
def test_locale_falls_back_to_language_then_english(
    server: Server, requested: str, used: str
) -> None:
    notifier(server.port).send(outgoing(locale=requested))

    _, mail = server.recorder.only_mail()
    assert mail["Content-Language"] == used
    assert ("您好" in text_of(mail)) is (used == "zh-CN")
    assert ("您好" in html_of(mail)) is (used == "zh-CN")


def test_resolve_locale_prefers_a_sorted_regional_variant() -> None:
    available = frozenset({"en", "zh-TW", "zh-CN"})
    assert resolve_locale("zh", available) == "zh-CN"
    assert resolve_locale("zh-TW", available) == "zh-TW"
    assert resolve_locale("", available) == "en"


def test_non_ascii_address_uses_smtputf8_once(server: Server) -> None:
    notifier(server.port).send(outgoing(email_address="用户@例子.中国"))

    envelope, mail = server.recorder.only_mail()
    assert envelope.rcpt_tos == ["用户@例子.中国"]
    assert envelope.mail_options.count("SMTPUTF8") == 1
    assert isinstance(envelope.content, bytes)
    # the stdlib parser leaves raw UTF-8 headers undecoded, so look at the bytes
    assert "To: 用户@例子.中国".encode() in envelope.content
    assert mail["Subject"] == "We have received your refund request for order SO-1001"


def test_non_ascii_address_on_server_without_smtputf8_is_permanent() -> None:
    with (serving(enable_SMTPUTF8=False) as server,  # Controller's default is on
          pytest.raises(PermanentProviderError, match="SMTPUTF8")):
        notifier(server.port).send(outgoing(email_address="用户@例子.中国"))
    assert server.recorder.envelopes == []


def test_login_with_credentials(auth_server: Server) -> None:
    notifier(auth_server.port, username="shop-1", password=PASSWORD).send(outgoing())

    assert auth_server.recorder.logins == [b"shop-1"]
    assert len(auth_server.recorder.envelopes) == 1


def test_rejected_login_is_permanent(auth_server: Server) -> None:
    smtp = notifier(auth_server.port, username="shop-1", password="wrong-but-long-enough")
    with pytest.raises(PermanentProviderError) as caught:
        smtp.send(outgoing())

    assert caught.value.code == "535"
    # smtplib tries each mechanism the server offers, but on one connection: no retry
    assert len(auth_server.recorder.login_sessions) == 1


def test_starttls_required_but_not_offered_is_permanent(server: Server) -> None:
    with pytest.raises(PermanentProviderError, match="STARTTLS"):
        notifier(server.port, starttls=True).send(outgoing())
    assert server.recorder.envelopes == []


# ------------------------------------------------------------------ templates


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", list(NotificationKind))
@pytest.mark.parametrize("is_return", [False, True])
def test_every_kind_and_locale_renders_with_the_full_context(
    kind: NotificationKind, locale: str, is_return: bool
) -> None:
    rendered = TemplateRenderer().render(
        kind, locale, message_context(kind, is_return=is_return,
                                      customer_message="Checked by QA"), "Acme"
    )
    headline, number = names_in(kind)

    assert rendered.locale == locale
    assert rendered.subject
    assert "\n" not in rendered.subject
    assert headline in rendered.subject
    assert number in rendered.body
    assert "Acme" in rendered.body
    assert "<" not in rendered.body  # plain text, no HTML
    page = Page(rendered.html)
    assert headline in page.text and number in page.text and "Acme" in page.text
    assert rendered.subject in page.text  # the <title>
    assert ("Checked by QA" in page.text) is (kind in (NotificationKind.APPROVED,
                                                       NotificationKind.DENIED))


def test_templates_exist_for_every_kind_and_locale_and_nothing_else() -> None:
    root = files("refundbridge.connectors.smtp") / "templates"
    found = {f"{d.name}/{f.name}" for d in root.iterdir() if d.is_dir() for f in d.iterdir()}
    # every message a case owes, a recall campaign's notice and reminder, and the fresh
    # status link the look-up form sends
    names = [kind.value for kind in NotificationKind] + ["status_link"]
    expected = {f"{locale}/{name}.{part}.j2"
                for locale in LOCALES for name in names for part in ("subject", "txt", "html")}
    # the frame each locale's HTML parts extend
    expected |= {f"{locale}/_layout.html.j2" for locale in LOCALES}
    assert found == expected


@pytest.mark.parametrize(("kind", "locale", "label"), [
    (NotificationKind.APPROVED, "en", "A message from us: "),
    (NotificationKind.DENIED, "en", "A message from us: "),
    (NotificationKind.APPROVED, "zh-CN", "客服留言："),
    (NotificationKind.DENIED, "zh-CN", "客服留言："),
])
def test_the_customer_message_appears_only_when_given(kind: NotificationKind, locale: str,
                                                      label: str) -> None:
    renderer = TemplateRenderer()
    with_message = renderer.render(kind, locale,
                                   context(customer_message="Sterile pack opened"), "Acme")
    without = renderer.render(kind, locale, context(), "Acme")

    assert f"{label}Sterile pack opened" in with_message.body
    assert label not in without.body


def test_missing_context_key_is_permanent_and_named(server: Server) -> None:
    message = outgoing()
    broken = replace(message, context={k: v for k, v in message.context.items()
                                       if k != "order_id"})

    with pytest.raises(PermanentProviderError, match="order_id"):
        notifier(server.port).send(broken)
    assert server.recorder.envelopes == []


def test_line_breaks_in_context_do_not_reach_the_headers(server: Server) -> None:
    notifier(server.port).send(outgoing(order_id="SO-1\r\nBcc: victim@example.org"))

    envelope, mail = server.recorder.only_mail()
    assert mail["Bcc"] is None
    assert envelope.rcpt_tos == ["patient@example.org"]


# ------------------------------------------------------------------ what to do next

ADDRESS = "Kangfu Returns, Dock 3\n88 Zhangjiang Road\nShanghai 201203"
STERILE = {"sku": "DR-10", "name": "Sterile dressing 10x10", "quantity": 2,
           "sterile": True, "cold_chain": False, "sharp": False}
COLD = {"sku": "IVD-7", "name": "CRP reagent kit", "quantity": 1,
        "sterile": False, "cold_chain": True, "sharp": False}
SHARP = {"sku": "LN-200", "name": "Lancets 200", "quantity": 1,
         "sterile": False, "cold_chain": False, "sharp": True}
PLAIN = {"sku": "GM-100", "name": "Blood glucose meter", "quantity": 1,
         "sterile": False, "cold_chain": False, "sharp": False}
# A phrase of each piece of packing advice, per locale.
ADVICE = {
    "en": {"sterile": "Sterile items: keep unopened packs sealed",
           "cold_chain": "Items to be kept cold: keep them in the fridge",
           "sharp": "Lancets, needles and other sharps: never send loose or used sharps"},
    "zh-CN": {"sterile": "无菌产品：未开封的请保持密封",
              "cold_chain": "需冷藏的产品：寄出前请放在冰箱冷藏",
              "sharp": "采血针、针头等锐器：切勿将散装或用过的锐器"},
}
RMA = {"en": "return number (RMA) on the outside of the parcel", "zh-CN": "退货编号（RMA）"}
ASK_ADDRESS = {"en": "reply to this email and we will tell you where to send it",
               "zh-CN": "寄出前请回复本邮件，我们会告诉您寄回地址"}


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("lines", [[PLAIN], [STERILE], [COLD, PLAIN], [SHARP],
                                   [STERILE, COLD, SHARP]], ids=lambda ls: "+".join(
                                       li["sku"] for li in ls))
def test_an_approved_return_says_what_to_do_next(locale: str,
                                                 lines: list[dict[str, Any]]) -> None:
    rendered = TemplateRenderer().render(NotificationKind.APPROVED, locale, context(
        is_return=True, lines=lines, return_address=ADDRESS), "Acme")

    page = Page(rendered.html)
    for text in (flat(rendered.body), flat(page.text)):
        assert RMA[locale] in text and "rc_0001" in text
        assert all(part in text for part in ADDRESS.splitlines())
        assert ASK_ADDRESS[locale] not in text
        for need, phrase in ADVICE[locale].items():
            # the HTML sets the item kind in bold: its text is split there
            found = phrase.replace(" ", "") in text.replace(" ", "")
            assert found is any(line[need] for line in lines), (need, text)
    # the address keeps its lines, in both parts
    assert "   88 Zhangjiang Road\n   Shanghai 201203" in rendered.body.replace("\r", "")
    assert "88 Zhangjiang Road<br>Shanghai 201203" in rendered.html


@pytest.mark.parametrize("locale", LOCALES)
def test_without_a_return_address_the_customer_is_asked_to_write_first(locale: str) -> None:
    renderer = TemplateRenderer()
    for extra in ({}, {"return_address": ""}, {"return_address": "  "}):
        rendered = renderer.render(NotificationKind.APPROVED, locale,
                                   context(is_return=True, **extra), "Acme")
        assert ASK_ADDRESS[locale] in flat(rendered.body)
        assert ASK_ADDRESS[locale] in flat(Page(rendered.html).text)


@pytest.mark.parametrize("locale", LOCALES)
def test_a_refund_only_approval_gives_no_return_instructions(locale: str) -> None:
    rendered = TemplateRenderer().render(NotificationKind.APPROVED, locale, context(
        is_return=False, lines=[STERILE, SHARP], return_address=ADDRESS), "Acme")
    for text in (flat(rendered.body), flat(Page(rendered.html).text)):
        assert RMA[locale] not in text and "Zhangjiang" not in text
        assert not any(phrase.replace(" ", "") in text.replace(" ", "")
                       for phrase in ADVICE[locale].values())


def test_the_return_address_is_text_in_the_html() -> None:
    rendered = TemplateRenderer().render(NotificationKind.APPROVED, "en", context(
        is_return=True, return_address=f"Dock 3\n{HOSTILE}"), "Acme")
    page = Page(rendered.html)
    assert HOSTILE in page.text
    assert not {tag for tag, _ in page.tags} & {"script", "img"}


@pytest.mark.parametrize(("locale", "payment", "words"), [
    ("en", "stripe", "to the card you paid with"),
    ("en", "alipay", "to your Alipay account"),
    ("en", "sandbox", "to your original payment method"),
    ("en", None, "to your original payment method"),
    ("zh-CN", "wechatpay", "已退回您的微信支付账户"),
    ("zh-CN", "stripe", "已退回您付款时使用的银行卡"),
    ("zh-CN", "sandbox", "已退回您的原支付方式"),
])
def test_the_refunded_email_says_the_amount_and_how_it_comes_back(
        locale: str, payment: str | None, words: str) -> None:
    rendered = TemplateRenderer().render(NotificationKind.REFUNDED, locale,
                                         context(payment=payment), "Acme")
    amount = "CN¥129.50" if locale == "en" else "¥129.50"
    for text in (flat(rendered.body), flat(Page(rendered.html).text)):
        assert amount in text and words in text


@pytest.mark.parametrize(("locale", "paid", "unpaid"), [
    ("en", "has already been paid to", "We will now refund"),
    ("zh-CN", "已退回您的原支付方式", "我们将把"),
])
def test_the_goods_received_email_says_whether_the_refund_is_paid(
        locale: str, paid: str, unpaid: str) -> None:
    renderer = TemplateRenderer()
    before = renderer.render(NotificationKind.GOODS_RECEIVED, locale,
                             context(is_return=True, refund_paid=False), "Acme")
    after = renderer.render(NotificationKind.GOODS_RECEIVED, locale,
                            context(is_return=True, refund_paid=True), "Acme")
    assert unpaid in before.body and paid not in before.body
    assert paid in after.body and unpaid not in after.body
    assert "Blood glucose meter" in before.body and "Blood glucose meter" in Page(
        before.html).text


@pytest.mark.parametrize(("locale", "words"), [
    ("en", "will pay it again"), ("zh-CN", "重新为您退款")])
def test_the_refund_failed_email_says_a_person_pays_again(locale: str, words: str) -> None:
    rendered = TemplateRenderer().render(NotificationKind.REFUND_FAILED, locale, context(
        payment="stripe"), "Acme")
    assert words in rendered.body and words in Page(rendered.html).text
    assert "rc_0001" in rendered.subject or "SO-1001" in rendered.subject


# ------------------------------------------------------------------ recall campaigns

# Each action's sentence, and the acknowledgement button, per locale.
ACTION_WORDS = {
    "en": {"stop_use": "Stop using it now.", "return": "Return it for a refund.",
           "destroy": "Destroy it.", "await_correction": "Wait for a correction."},
    "zh-CN": {"stop_use": "立即停止使用。", "return": "退回产品，办理退款。",
              "destroy": "销毁产品。", "await_correction": "等待纠正。"},
}
ACK_BUTTON = {"en": "Tell us you have received this notice", "zh-CN": "确认收到召回通知"}
RECALL_ASK_ADDRESS = {"en": "reply to this email and we will tell you where to send them",
                      "zh-CN": ASK_ADDRESS["zh-CN"]}


@pytest.mark.parametrize("locale", LOCALES)
def test_the_recall_notice_names_the_consignees_units_and_the_ack_link(
    server: Server, locale: str
) -> None:
    notifier(server.port).send(outgoing(NotificationKind.RECALL_NOTICE, locale))

    _, mail = server.recorder.only_mail()
    body, page = text_of(mail), Page(html_of(mail))
    assert "RC-2026-001" in mail["Subject"]
    for text in (flat(body), page.text):
        assert "Dr Wang Clinic" in text
        # their own units: each delivery's lot, serial and quantity
        assert "L2406A" in text and "L2406B" in text and "SN-00981" in text
        assert "SO-1001" in text and "SO-1077" in text and "2026-10-14" in text
        assert "GTIN 06901234567892" in text
        for words in ACTION_WORDS[locale].values():
            assert words in text
        assert "Remove the battery." in text
        assert campaign_words_absent(text)
    # each action in the order the notice gives them
    positions = [page.text.index(ACTION_WORDS[locale][action]) for action in ACTIONS]
    assert positions == sorted(positions)
    assert ACK_URL in body
    (button,) = [i for i, (tag, attrs) in enumerate(page.tags)
                 if tag == "a" and attrs.get("href") == ACK_URL and "padding" in attrs["style"]]
    assert ACK_BUTTON[locale] in page.text
    assert ("Class I" if locale == "en" else "一级召回") in page.text
    assert button > 0


def campaign_words_absent(text: str) -> bool:
    """No internal data: the campaign's and the shop's ids are not the consignee's."""
    return CAMPAIGN_ID not in text and "shop-1" not in text


@pytest.mark.parametrize("locale", LOCALES)
def test_only_the_notices_actions_are_asked_for(locale: str) -> None:
    rendered = TemplateRenderer().render(NotificationKind.RECALL_NOTICE, locale,
                                         recall_context(actions=["return"], instructions=""),
                                         "Acme")

    words = ACTION_WORDS[locale]
    for text in (flat(rendered.body), Page(rendered.html).text):
        assert words["return"] in text
        assert words["stop_use"] not in text and words["destroy"] not in text
        assert words["await_correction"] not in text
        assert RECALL_ASK_ADDRESS[locale] in text  # no return address: they ask first
    with_address = TemplateRenderer().render(NotificationKind.RECALL_NOTICE, locale,
                                             recall_context(return_address=ADDRESS), "Acme")
    assert "88 Zhangjiang Road" in with_address.body
    assert RECALL_ASK_ADDRESS[locale] not in with_address.body


@pytest.mark.parametrize("locale", LOCALES)
def test_hostile_recall_text_arrives_escaped_in_the_html(server: Server, locale: str) -> None:
    hostile_unit = {**RECALL_UNITS[0], "lot": "<b>L1</b>", "document": HOSTILE}
    notifier(server.port).send(outgoing(
        NotificationKind.RECALL_NOTICE, locale, instructions=f"Step 1\n{HOSTILE}",
        consignee_name='Clinic "><script>x()</script>', units=[hostile_unit],
        reference="RC-<i>1</i>", return_address=f"Dock 3\n{HOSTILE}"))

    _, mail = server.recorder.only_mail()
    markup = html_of(mail)
    page = Page(markup)
    assert not {tag for tag, _ in page.tags} & {"script", "img", "i", "b"}
    assert "&lt;script&gt;" in markup
    assert HOSTILE in page.text  # shown as the text it is, not dropped
    assert 'Clinic "><script>x()</script>' in page.text
    assert "<b>L1</b>" in page.text and "RC-<i>1</i>" in page.text
    assert HOSTILE in text_of(mail)  # the text part is text: nothing to escape


def test_the_chinese_recall_notice_uses_the_words_of_a_device_recall(server: Server) -> None:
    notifier(server.port, sender_name="康健医疗").send(
        outgoing(NotificationKind.RECALL_NOTICE, "zh-CN", recall_class="II"))

    envelope, mail = server.recorder.only_mail()
    assert isinstance(envelope.content, bytes) and envelope.content.isascii()
    assert mail["Subject"] == "医疗器械召回通知（召回编号 RC-2026-001，二级召回）：请立即处理"
    assert mail["Content-Language"] == "zh-CN"
    for text in (text_of(mail), Page(html_of(mail)).text):
        for words in ("召回通知", "召回编号", "二级召回", "批号", "序列号", "停止使用", "退回",
                      "销毁", "等待纠正", "生产企业的说明", "尊敬的Dr Wang Clinic"):
            assert words in text, words
    assert "批号 L2406A" in text_of(mail) and "序列号 SN-00981" in text_of(mail)
    assert "确认收到召回通知" in Page(html_of(mail)).text
    assert "召回编号 RC-2026-001" in Page(html_of(mail)).text  # the footer's reference


@pytest.mark.parametrize(("locale", "words"), [
    ("en", ("Reminder 2", "you have not yet told us that you received it")),
    ("zh-CN", ("第 2 次提醒", "您尚未确认收到"))])
def test_a_reminder_says_which_it_is_and_that_no_acknowledgement_came(
    locale: str, words: tuple[str, str]
) -> None:
    rendered = TemplateRenderer().render(
        NotificationKind.RECALL_REMINDER, locale,
        recall_context(NotificationKind.RECALL_REMINDER, reminder=2), "Acme")
    notice = TemplateRenderer().render(NotificationKind.RECALL_NOTICE, locale,
                                       recall_context(), "Acme")

    assert words[0] in rendered.subject and "RC-2026-001" in rendered.subject
    for text in (rendered.body, Page(rendered.html).text):
        # (the text part writes its headline in capitals, as the HTML part's is in red)
        assert words[0].casefold() in text.casefold() and words[1] in text
        # the notice's essentials again
        assert "L2406A" in text and ACTION_WORDS[locale]["stop_use"] in text
    assert ACK_URL in Page(rendered.html).hrefs()
    assert words[1] not in notice.body and words[0].casefold() not in notice.body.casefold()


@pytest.mark.parametrize(("kind", "changes", "words"), [
    (NotificationKind.RECALL_NOTICE, {"ack_url": None}, "ack_url"),
    (NotificationKind.RECALL_NOTICE, {"ack_url": "javascript:alert(1)"}, "ack_url"),
    (NotificationKind.RECALL_NOTICE, {"units": []}, "units"),
    (NotificationKind.RECALL_NOTICE, {"reference": ""}, "reference"),
    (NotificationKind.RECALL_NOTICE, {"recall_class": "IV"}, "recall_class"),
    (NotificationKind.RECALL_NOTICE, {"actions": ["stop_use", "burn"]}, "'burn'"),
    (NotificationKind.RECALL_NOTICE, {"reminder": 1}, "reminder=1"),
    (NotificationKind.RECALL_REMINDER, {"reminder": 0}, "reminder=0"),
])
def test_a_recall_message_missing_what_it_needs_is_permanent(
    server: Server, kind: NotificationKind, changes: dict[str, Any], words: str
) -> None:
    # a notice that silently drops an action or its link would be worse than none
    with pytest.raises(PermanentProviderError, match=re.escape(words)) as refused:
        notifier(server.port).send(outgoing(kind, **changes))
    assert refused.value.message.startswith(f"campaign {CAMPAIGN_ID}")
    assert server.recorder.envelopes == []


# ------------------------------------------------------------------ the HTML part

NAMES = [kind.value for kind in NotificationKind] + ["status_link"]
# elements and attributes that would make a mail client fetch something, or run something
FETCHING_TAGS = {"img", "link", "script", "style", "iframe", "object", "embed", "video",
                 "audio", "source", "picture", "svg", "form", "base", "meta"}
URL = re.compile(r"(?:https?:)?//[^\s\"'<>)]+", re.IGNORECASE)


def send_named(smtp: SmtpNotifier, name: str, locale: str, **overrides: Any) -> None:
    """Sends one of the case's messages, or (`status_link`) the look-up form's email."""
    if name == "status_link":
        smtp.send_status_link(StatusLinkMessage(
            shop_id="shop-1", case_id="rc_0001", order_id=overrides.get("order_id", "SO-1001"),
            email="patient@example.org", locale=locale,
            status_url=overrides.get("status_url") or STATUS_URL, message_id="rc_0001.link-1"))
    else:
        smtp.send(outgoing(NotificationKind(name), locale, **overrides))


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", NAMES)
def test_every_kind_and_locale_arrives_as_text_and_html(server: Server, name: str,
                                                        locale: str) -> None:
    send_named(notifier(server.port, sender_name="Acme Medical"), name, locale,
               is_return=True, status_url=STATUS_URL, customer_message="Checked by QA")

    envelope, mail = server.recorder.only_mail()
    assert isinstance(envelope.content, bytes) and envelope.content.isascii()
    assert mail.get_content_type() == "multipart/alternative"
    plain, html = list(mail.iter_parts())  # plainest first: clients show the last they can
    assert (plain.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert mail["Content-Language"] == locale
    if name == "status_link":
        assert mail["Message-ID"] == "<rc_0001.link-1@refundbridge>"
    elif name in {k.value for k in CAMPAIGN_KINDS}:
        assert mail["Message-ID"].startswith(f"<{CAMPAIGN_ID}.42.")
    else:
        assert mail["Message-ID"] == f"<rc_0001-{name}@refundbridge>"
    page = Page(html_of(mail))
    assert ("html", {"lang": locale}) in page.tags
    headline, number = names_in(name)
    assert headline in page.text and number in page.text and "Acme Medical" in page.text
    assert ("您好" in page.text) is (locale == "zh-CN")
    assert link_of(name) in text_of(mail)
    assert link_of(name) in page.hrefs()


@pytest.mark.parametrize("locale", LOCALES)
def test_hostile_customer_text_arrives_escaped_in_the_html(server: Server, locale: str) -> None:
    smtp = notifier(server.port, sender_name="Acme <b>Medical</b>")
    hostile_line = {"sku": "X&1", "name": HOSTILE, "quantity": 1}
    smtp.send(outgoing(NotificationKind.RECEIVED, locale, reason_text=f"broken\n{HOSTILE}",
                       lines=[hostile_line], order_id="SO-<i>1</i>"))
    smtp.send(outgoing(NotificationKind.DENIED, locale, customer_message=HOSTILE,
                       shop_name='Shop "><script>x()</script>'))
    smtp.send(outgoing(NotificationKind.APPROVED, locale, customer_message=HOSTILE,
                       is_return=True, lines=[hostile_line]))

    sent = server.recorder.mails()
    assert len(sent) == 3
    for mail in sent:
        markup = html_of(mail)
        page = Page(markup)
        tags = {tag for tag, _ in page.tags}
        assert not tags & {"script", "img", "i", "b"}, tags
        assert HOSTILE in page.text  # shown as the text it is, not dropped
        assert "&lt;script&gt;" in markup
        assert HOSTILE in text_of(mail)  # the text part is text: nothing to escape
    received, denied, _ = (Page(html_of(mail)) for mail in sent)
    assert "SO-<i>1</i>" in received.text
    assert "Acme <b>Medical</b>" in received.text
    assert "X&1" in received.text
    assert 'Shop "><script>x()</script>' in denied.text


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", [k for k in NotificationKind if k not in CAMPAIGN_KINDS])
def test_status_link_in_both_parts_when_given_and_no_link_without(
    server: Server, kind: NotificationKind, locale: str
) -> None:
    smtp = notifier(server.port)
    smtp.send(outgoing(kind, locale, status_url=STATUS_URL))
    _, with_link = server.recorder.only_mail()
    server.recorder.clear()
    smtp.send(outgoing(kind, locale, status_url=None))
    _, without = server.recorder.only_mail()

    assert STATUS_URL in text_of(with_link)
    links = Page(html_of(with_link)).hrefs()
    # a button and the same link written out, for clients that drop the button
    assert [h for h in links if not h.startswith("mailto:")] == [STATUS_URL, STATUS_URL]
    assert "http" not in text_of(without)
    assert "http" not in html_of(without)
    assert all(h.startswith("mailto:") for h in Page(html_of(without)).hrefs())


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("kind", sorted(CAMPAIGN_KINDS))
def test_a_recall_links_to_the_acknowledgement_page_and_never_a_status_page(
    server: Server, kind: NotificationKind, locale: str
) -> None:
    # a campaign has no status page: a status_url in its context is not the consignee's
    notifier(server.port).send(outgoing(kind, locale, status_url=STATUS_URL))

    _, mail = server.recorder.only_mail()
    assert ACK_URL in text_of(mail)
    assert STATUS_URL not in text_of(mail) and STATUS_URL not in html_of(mail)
    links = Page(html_of(mail)).hrefs()
    assert [h for h in links if not h.startswith("mailto:")] == [ACK_URL, ACK_URL]


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", NAMES)
def test_html_fetches_nothing_and_links_only_to_the_status_page(
    server: Server, name: str, locale: str
) -> None:
    send_named(notifier(server.port, reply_to="help@shop.example"), name, locale,
               is_return=True, status_url=STATUS_URL, customer_message="See https://x.y",
               instructions="Details: https://maker.example/fsn")

    _, mail = server.recorder.only_mail()
    markup = html_of(mail)
    page = Page(markup)
    urls = set(URL.findall(markup))
    if name in (NotificationKind.APPROVED.value, NotificationKind.DENIED.value):
        urls.discard("https://x.y")  # the shop's own message, shown as text, not a link
    if name in {k.value for k in CAMPAIGN_KINDS}:
        # the manufacturer's words, shown as text, not a link
        assert ("a", {"href": "https://maker.example/fsn"}) not in page.tags
        urls.discard("https://maker.example/fsn")
    assert urls == {link_of(name)}
    assert not {tag for tag, _ in page.tags} & (FETCHING_TAGS - {"meta"})
    for tag, attrs in page.tags:
        assert not {"src", "srcset", "background", "class"} & set(attrs), (tag, attrs)
        style = attrs.get("style", "").lower()
        assert "url(" not in style and "@import" not in style and "expression" not in style
        if tag == "a":
            assert attrs["href"] in (link_of(name), "mailto:help@shop.example")
        if tag == "meta":
            assert set(attrs) <= {"charset", "name", "content"}
    assert "<style" not in markup.lower()
    assert any("style" in attrs for _, attrs in page.tags)  # styled inline


# a comma or quotes would split or break a "Name <addr>" string: the name is encoded instead
@pytest.mark.parametrize("shop", ["康健医疗 退款中心", '康健医疗, "退款"中心 <客服>'])
def test_reply_to_with_a_chinese_display_name_round_trips(server: Server, shop: str) -> None:
    smtp = notifier(server.port, sender_name=shop, reply_to="kefu@shop.example")
    smtp.send(outgoing(NotificationKind.DENIED, "zh-CN"))
    send_named(smtp, "status_link", "zh-CN")

    assert len(server.recorder.envelopes) == 2
    for envelope in server.recorder.envelopes:
        assert isinstance(envelope.content, bytes)
        assert envelope.content.isascii()  # RFC 2047, no SMTPUTF8 needed
        assert b"Reply-To: =?utf-8?" in envelope.content
        mail = parse(envelope)
        (reply,) = mail["Reply-To"].addresses
        assert reply.display_name == shop
        assert reply.addr_spec == "kefu@shop.example"
        assert mail["From"].addresses[0].addr_spec == "care@shop.example"
        assert "mailto:kefu@shop.example" in Page(html_of(mail)).hrefs()
        assert envelope.rcpt_tos == ["patient@example.org"]  # a header, not a recipient


def test_without_reply_to_the_html_names_the_sender_address(server: Server) -> None:
    notifier(server.port).send(outgoing())

    _, mail = server.recorder.only_mail()
    assert mail["Reply-To"] is None
    assert Page(html_of(mail)).hrefs() == ["mailto:care@shop.example"]


@pytest.mark.parametrize("locale", LOCALES)
def test_the_shop_name_from_the_context_heads_the_html(server: Server, locale: str) -> None:
    notifier(server.port, sender_name="Returns desk").send(
        outgoing(NotificationKind.REFUNDED, locale, shop_name="康护药房"))

    _, mail = server.recorder.only_mail()
    page = Page(html_of(mail))
    title, heading = [text.strip() for text in page.texts if text.strip()][:2]
    assert (title, heading) == (mail["Subject"], "康护药房")
    assert "Returns desk" not in page.text
    assert text_of(mail).rstrip().endswith("Returns desk")  # the text part as it was
    assert mail["From"].addresses[0].display_name == "Returns desk"


@pytest.mark.parametrize("url", ["javascript:alert(1)", "/status/tok", "https://",
                                 'https://a.example/s/"onmouseover="x'])
def test_a_status_url_that_is_not_an_http_link_is_permanent(server: Server, url: str) -> None:
    with pytest.raises(PermanentProviderError, match="status_url"):
        notifier(server.port).send(outgoing(status_url=url))
    assert server.recorder.envelopes == []


# ------------------------------------------------------------------ failures


def test_recipient_refused_with_550_is_permanent_and_not_retried(server: Server) -> None:
    with pytest.raises(PermanentProviderError) as caught:
        notifier(server.port).send(outgoing(email_address="reject@example.org"))

    assert caught.value.code == "550"
    assert "mailbox unavailable" in caught.value.message
    assert server.recorder.rcpt_attempts == ["reject@example.org"]
    assert server.recorder.envelopes == []


def test_recipient_deferred_with_451_is_retried_then_transient(server: Server) -> None:
    with pytest.raises(TransientProviderError, match="451"):
        notifier(server.port).send(outgoing(email_address="busy@example.org"))

    assert server.recorder.rcpt_attempts == ["busy@example.org"] * 2


def test_nothing_listening_is_transient_after_the_retries() -> None:
    attempts: list[str] = []

    class CountingRetry(RetryPolicy):
        def call(self, fn: Callable[[], T]) -> T:
            def attempt() -> T:
                attempts.append("connect")
                return fn()

            return super().call(attempt)

    port = free_port()  # bound, read, closed: nothing listens there now
    smtp = notifier(port, retry=CountingRetry(attempts=2, initial_wait=0, max_wait=0))

    with pytest.raises(TransientProviderError, match="ConnectionRefusedError"):
        smtp.send(outgoing())
    assert attempts == ["connect", "connect"]


def test_message_without_email_is_permanent(server: Server) -> None:
    with pytest.raises(PermanentProviderError, match="no email address"):
        notifier(server.port).send(outgoing(email_address=None))
    assert server.recorder.rcpt_attempts == []


def test_invalid_email_is_permanent(server: Server) -> None:
    with pytest.raises(PermanentProviderError, match="not an email address"):
        notifier(server.port).send(outgoing(email_address="patient at example.org"))
    assert server.recorder.rcpt_attempts == []


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"sender_email": "not an address"}, "sender_email"),
        ({"sender_email": "care@shop.example", "reply_to": "returns at shop"}, "reply_to"),
        ({"sender_email": "care@shop.example", "username": "shop-1"}, "shop-1.smtp"),
        ({"sender_email": "care@shop.example", "port": 0}, "port"),
        ({"sender_email": "care@shop.example", "username": "u", "password": "changeme"},
         "password"),
    ],
)
def test_bad_settings_are_config_errors_naming_the_key(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SmtpNotifier.from_config(raw, ConnectorContext(shop_id="shop-1"))
    assert caught.value.key.startswith("shops.shop-1.smtp")
    assert key in caught.value.key


def test_no_password_is_accepted_outside_demo_mode() -> None:
    smtp = SmtpNotifier.from_config({"sender_email": "care@shop.example"},
                                    ConnectorContext(shop_id="shop-1"))
    assert smtp.name == "smtp"
