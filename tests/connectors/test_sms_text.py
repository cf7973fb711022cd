"""The shared SMS text: segment counting as the networks count (GSM 03.38 and UCS-2), and
every template within four segments in every locale at realistic sizes."""

from __future__ import annotations

import itertools
from typing import Any

import jinja2
import pytest

from refundbridge.connectors import sms_text
from refundbridge.connectors.sms_text import (
    MAX_SEGMENTS,
    TEMPLATES,
    SmsLength,
    SmsTextError,
    render_sms,
    sms_length,
)
from refundbridge.core.model import NotificationKind

CASE_ID = "rc_8f14e45fceea167a5a36dedd4bea2543"
# The length of a status link as itsdangerous signs a case id (85 characters of token).
STATUS_URL = ("https://returns.kangfu-medical.cn/status/InJjXzhmMTRlNDVmY2VlYTE2N2E1YTM2ZGV"
              "kZDRiZWEyNTQzIg.axCBNg.QqU5UjVd0OvTe0ZHx5c65Awu320")
SHOP = {"en": "Kangfu Medical Supplies Flagship", "zh-CN": "康复医疗器械旗舰店"}
REASON = {"en": "We cannot take back an opened sterile pack: the seal is broken.",
          "zh-CN": "无菌包装已拆封，无法退货。"}
LONG_REASON = {"en": "The seal of the sterile dressing pack is broken. " * 40,
               "zh-CN": "无菌敷料包装的密封已经破损，按规定不能再次销售。" * 40}


def context(locale: str = "en", **changes: Any) -> dict[str, Any]:
    """A context as the core builds it (core/services/notifications.py), at realistic sizes:
    the longest amounts and order numbers a shop has, its name, a status link."""
    return {"case_id": CASE_ID, "shop_id": "kangfu", "order_id": "SO-2026-0001234567",
            "amount": "12345.67", "currency": "CNY", "customer_id": "c-7",
            "reason_text": "cuff leaks", "is_return": True, "customer_message": "",
            "lines": [{"sku": f"SKU-{n}", "name": "Blood pressure monitor BPM-200 with cuff",
                       "quantity": 2} for n in range(12)],
            "shop_name": SHOP[locale], "status_url": STATUS_URL, **changes}


# ------------------------------------------------------------------ counting segments


@pytest.mark.parametrize(("text", "expected"), [
    ("", SmsLength("GSM-7", 0, 1)),
    ("a" * 160, SmsLength("GSM-7", 160, 1)),
    ("a" * 161, SmsLength("GSM-7", 161, 2)),
    ("a" * 306, SmsLength("GSM-7", 306, 2)),
    ("a" * 307, SmsLength("GSM-7", 307, 3)),
    ("a" * 612, SmsLength("GSM-7", 612, 4)),
    ("a" * 613, SmsLength("GSM-7", 613, 5)),
    ("£¥èÉ@ΔÑü§¿_" * 10, SmsLength("GSM-7", 110, 1)),
    ("€" * 80, SmsLength("GSM-7", 160, 1)),  # the extension table: two septets each
    ("€" * 81, SmsLength("GSM-7", 162, 2)),
    ("[]{}~^|\\" * 20, SmsLength("GSM-7", 320, 3)),
    # An escape pair never straddles two segments: 152 + (2) moves to the next one.
    ("a" * 152 + "€" + "a" * 152, SmsLength("GSM-7", 306, 3)),
    ("中" * 70, SmsLength("UCS-2", 70, 1)),
    ("中" * 71, SmsLength("UCS-2", 71, 2)),
    ("中" * 134, SmsLength("UCS-2", 134, 2)),
    ("中" * 135, SmsLength("UCS-2", 135, 3)),
    ("中" * 268, SmsLength("UCS-2", 268, 4)),
    ("中" * 269, SmsLength("UCS-2", 269, 5)),
    ("a" * 69 + "中", SmsLength("UCS-2", 70, 1)),  # one non-GSM character: all UCS-2
    ("a" * 100 + "ç", SmsLength("UCS-2", 101, 2)),  # only the capital Ç is GSM
    ("It’s" + "a" * 70, SmsLength("UCS-2", 74, 2)),  # a curly apostrophe
    ("😀" * 35, SmsLength("UCS-2", 70, 1)),  # outside the BMP: two UTF-16 units
    # ... and a surrogate pair does not straddle two segments either.
    ("a" * 66 + "😀" + "a" * 3, SmsLength("UCS-2", 71, 2)),
    ("a" * 66 + "😀" + "a" * 66, SmsLength("UCS-2", 134, 3)),
])
def test_segments_are_counted_as_the_networks_count_them(text: str,
                                                         expected: SmsLength) -> None:
    assert sms_length(text) == expected


# ------------------------------------------------------------------ the templates


def test_every_kind_has_a_template_in_every_locale() -> None:
    assert set(TEMPLATES) == {"en", "zh-CN"}
    for kinds in TEMPLATES.values():
        assert set(kinds) == set(NotificationKind)


def test_templates_are_strict_plain_text() -> None:
    env = sms_text._env
    assert env.undefined is jinja2.StrictUndefined
    assert env.autoescape is False
    text = render_sms(NotificationKind.RECEIVED, "en", context(order_id="A&B<1>",
                                                               shop_name="Lee & Sons")).text
    assert "A&B<1>" in text and text.startswith("Lee & Sons: ")


CASES = list(itertools.product(
    ("en", "zh-CN"), NotificationKind, (True, False), (STATUS_URL, None),
    ("shop", None), ("", "reason", "long")))


@pytest.mark.parametrize(("locale", "kind", "is_return", "status_url", "shop", "message"),
                         CASES)
def test_every_template_fits_four_segments_at_realistic_sizes(
        locale: str, kind: NotificationKind, is_return: bool, status_url: str | None,
        shop: str | None, message: str) -> None:
    customer_message = {"": "", "reason": REASON[locale], "long": LONG_REASON[locale]}[message]
    rendered = render_sms(kind, locale, context(
        locale, is_return=is_return, status_url=status_url,
        shop_name=SHOP[locale] if shop else None, customer_message=customer_message))

    assert rendered.locale == locale
    assert rendered.length.segments <= MAX_SEGMENTS
    assert rendered.length == sms_length(rendered.text)
    assert rendered.length.encoding == ("UCS-2" if locale == "zh-CN" else "GSM-7")
    # What the customer needs is never cut: the case number, the order, the link.
    assert CASE_ID in rendered.text and "SO-2026-0001234567" in rendered.text
    if status_url:
        assert f"{STATUS_URL} " in f"{rendered.text} "
    if shop:
        assert SHOP[locale] in rendered.text
    assert "\n" not in rendered.text and "  " not in rendered.text


@pytest.mark.parametrize("locale", ["en", "zh-CN"])
def test_a_denial_carries_the_customer_message_and_never_a_note(locale: str) -> None:
    rendered = render_sms(NotificationKind.DENIED, locale, context(
        locale, customer_message=REASON[locale],
        internal_note="Known abuser; third claim this year"))  # not in a real context
    assert REASON[locale] in rendered.text
    assert "abuser" not in rendered.text and "third claim" not in rendered.text


@pytest.mark.parametrize("locale", ["en", "zh-CN"])
def test_a_long_customer_message_is_cut_to_fit_and_marked(locale: str) -> None:
    long = LONG_REASON[locale]
    rendered = render_sms(NotificationKind.DENIED, locale, context(locale,
                                                                   customer_message=long))
    assert rendered.length.segments == MAX_SEGMENTS
    assert long[:12] in rendered.text and long not in rendered.text
    assert "..." in rendered.text
    # As much as fits: one character more would not.
    start = rendered.text.index(long[:12])
    shown = rendered.text[start:rendered.text.index("...", start)]
    n = len(shown) + 1
    while long[:n].rstrip() == shown:
        n += 1
    more = rendered.text.replace(f"{shown}...", f"{long[:n].rstrip()}...")
    assert sms_length(more).segments > MAX_SEGMENTS


def test_a_message_too_long_without_its_customer_message_is_an_error() -> None:
    with pytest.raises(SmsTextError, match="even without a customer message"):
        render_sms(NotificationKind.RECEIVED, "zh-CN", context("zh-CN", shop_name="店" * 300))


@pytest.mark.parametrize("key", ["case_id", "order_id", "amount", "currency"])
def test_a_context_without_what_the_text_needs_is_an_error(key: str) -> None:
    values = context()
    del values[key]
    with pytest.raises(SmsTextError, match=f"'{key}'"):
        render_sms(NotificationKind.APPROVED, "en", values)


def test_line_breaks_and_control_characters_do_not_reach_the_handset() -> None:
    rendered = render_sms(NotificationKind.DENIED, "en", context(
        customer_message="Dear customer,\r\n\r\nsorry.\x1b[2J\u200b", status_url=None))
    assert "Reason: Dear customer, sorry.[2J Questions?" in rendered.text
    assert rendered.length.encoding == "GSM-7"


@pytest.mark.parametrize(("locale", "currency", "shown"), [
    ("en", "USD", "$12,345.67"), ("en", "CNY", "CN¥12,345.67"), ("zh-CN", "CNY", "¥12,345.67"),
])
def test_amounts_are_written_for_the_locale(locale: str, currency: str, shown: str) -> None:
    rendered = render_sms(NotificationKind.REFUNDED, locale, context(locale, currency=currency))
    assert shown in rendered.text
    if locale == "en":
        assert rendered.length.encoding == "GSM-7"


def test_no_break_spaces_are_plain_spaces() -> None:
    # babel writes some amounts with U+00A0 or U+202F, which are not GSM-7.
    assert sms_text.plain("12\u00a0345,67\u202f€") == "12 345,67 €"


@pytest.mark.parametrize(("asked", "used"), [("zh", "zh-CN"), ("zh_CN", "zh-CN"),
                                             ("en-GB", "en"), ("de-DE", "en")])
def test_locales_fall_back_as_the_emails_do(asked: str, used: str) -> None:
    assert render_sms(NotificationKind.RECEIVED, asked, context()).locale == used


def test_a_kind_without_a_template_is_an_error_not_a_crash(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sms_text, "_env", jinja2.Environment(
        loader=jinja2.DictLoader({}), undefined=jinja2.StrictUndefined))
    with pytest.raises(SmsTextError, match="no en SMS template for 'received'"):
        render_sms(NotificationKind.RECEIVED, "en", context())
