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
from refundbridge.core.campaigns import campaign_id_for
from refundbridge.core.model import CAMPAIGN_KINDS, NotificationKind
from refundbridge.core.recalls import REFERENCE_MAX, SKU_MAX
from refundbridge.core.status_links import StatusLinks

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


CASE_KINDS = [kind for kind in NotificationKind if kind not in CAMPAIGN_KINDS]
CASES = list(itertools.product(
    ("en", "zh-CN"), CASE_KINDS, (True, False), (STATUS_URL, None),
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


# ------------------------------------------------------------------ recall campaigns

CAMPAIGN_ID = campaign_id_for("kangfu-medical", "RC-2026-001")
# A consignee's acknowledgement link as the core signs it (183 characters): most of a
# Chinese SMS.
ACK_URL = StatusLinks("s" * 32, "https://returns.kangfu-medical.cn").recall_link_for(
    CAMPAIGN_ID, 123456, "kangfu-medical")
LONG_REFERENCE = "FSCA-2026-11-" + "7" * (REFERENCE_MAX - 13)
LONG_SKU = "BPM-200-" + "X" * (SKU_MAX - 8)
CLASS_WORDS = {"en": "(Class II)", "zh-CN": "二级召回"}


def recall_context(locale: str = "en", kind: NotificationKind = NotificationKind.RECALL_NOTICE,
                   **changes: Any) -> dict[str, Any]:
    """A campaign's context as core/services/campaigns.py builds it."""
    return {"campaign_id": CAMPAIGN_ID, "shop_id": "kangfu-medical",
            "reference": "RC-2026-001", "recall_class": "II", "notice_date": "2026-12-01",
            "consignee_name": "Dr Wang Clinic", "product": {"sku": "BPM-200", "gtin": None},
            "units": [{"sku": "BPM-200", "quantity": 2, "lot": "L2406A", "serial": None,
                       "document": "SO-1001", "shipped_on": "2026-10-14"}],
            "quantity": 2, "actions": ["stop_use", "return"], "instructions": "Return it.",
            "ack_url": ACK_URL, "reminder": 2 if kind is NotificationKind.RECALL_REMINDER else 0,
            "return_address": "", "shop_name": SHOP[locale], **changes}


def test_the_acknowledgement_link_is_as_long_as_the_core_makes_it() -> None:
    assert len(ACK_URL) > 130  # what the sizes below are about: a real link, not a stub


RECALL_CASES = list(itertools.product(
    ("en", "zh-CN"), sorted(CAMPAIGN_KINDS), ("shop", None), ("RC-2026-001", LONG_REFERENCE),
    ("BPM-200", LONG_SKU), (["stop_use", "return"], ["destroy"])))


@pytest.mark.parametrize(("locale", "kind", "shop", "reference", "sku", "actions"),
                         RECALL_CASES)
def test_every_recall_template_fits_four_segments_even_with_a_long_reference(
        locale: str, kind: NotificationKind, shop: str | None, reference: str, sku: str,
        actions: list[str]) -> None:
    rendered = render_sms(kind, locale, recall_context(
        locale, kind, shop_name=SHOP[locale] if shop else None, reference=reference,
        product={"sku": sku, "gtin": None}, actions=actions))

    text = rendered.text
    assert rendered.length.segments <= MAX_SEGMENTS
    assert rendered.length == sms_length(text)
    assert rendered.length.encoding == ("UCS-2" if locale == "zh-CN" else "GSM-7")
    # The link, the class and the words "recall" are never cut; nor is the shop.
    assert text.endswith(ACK_URL)
    assert CLASS_WORDS[locale] in text
    assert ("召回通知" if locale == "zh-CN" else "recall") in text
    if shop:
        assert SHOP[locale] in text
    # The reference is there whole or not at all, never cut; a short one always fits.
    assert (reference in text) or (reference[:8] not in text)
    if reference == "RC-2026-001":
        assert reference in text
    if kind is NotificationKind.RECALL_REMINDER:
        assert ("第2次提醒" if locale == "zh-CN" else "Reminder 2:") in text
    assert (("停止使用" if locale == "zh-CN" else "Stop using it now") in text) is (
        "stop_use" in actions)
    # internal data: the campaign's id is not the consignee's business
    assert CAMPAIGN_ID not in text.replace(ACK_URL, "")
    assert "\n" not in text and "  " not in text


@pytest.mark.parametrize("locale", ["en", "zh-CN"])
def test_a_short_recall_sms_names_the_reference_product_and_link(locale: str) -> None:
    rendered = render_sms(NotificationKind.RECALL_NOTICE, locale, recall_context(locale))

    assert "RC-2026-001" in rendered.text and "BPM-200" in rendered.text
    assert ACK_URL in rendered.text
    assert "..." not in rendered.text


def test_the_product_gives_way_before_the_reference() -> None:
    reference = "FSCA-2026-11-0042"
    rendered = render_sms(NotificationKind.RECALL_NOTICE, "zh-CN", recall_context(
        "zh-CN", reference=reference, product={"sku": LONG_SKU, "gtin": None}))

    assert rendered.length.segments == MAX_SEGMENTS
    assert reference in rendered.text
    assert LONG_SKU not in rendered.text and f"产品{LONG_SKU[:4]}" in rendered.text
    assert "..." in rendered.text
    # As much as fits: one character more would not.
    shown = rendered.text[rendered.text.index("产品") + 2:rendered.text.index("...")]
    more = rendered.text.replace(f"{shown}...", f"{LONG_SKU[:len(shown) + 1]}...")
    assert sms_length(more).segments > MAX_SEGMENTS


@pytest.mark.parametrize("kind", sorted(CAMPAIGN_KINDS))
def test_an_english_recall_sms_has_room_for_the_longest_reference(
        kind: NotificationKind) -> None:
    rendered = render_sms(kind, "en", recall_context(
        "en", kind, reference=LONG_REFERENCE, product={"sku": LONG_SKU, "gtin": None}))

    assert LONG_REFERENCE in rendered.text and LONG_SKU[:40] in rendered.text
    assert rendered.length.segments <= MAX_SEGMENTS


def test_a_reference_too_long_for_a_chinese_sms_is_left_out_whole() -> None:
    rendered = render_sms(NotificationKind.RECALL_NOTICE, "zh-CN", recall_context(
        "zh-CN", reference=LONG_REFERENCE))

    assert "FSCA" not in rendered.text and "召回编号" not in rendered.text
    assert "BPM-200" in rendered.text and rendered.text.endswith(ACK_URL)
    # ... while an English one has room for it
    english = render_sms(NotificationKind.RECALL_NOTICE, "en", recall_context(
        "en", reference=LONG_REFERENCE))
    assert LONG_REFERENCE in english.text


def test_a_recall_sms_without_a_product_sku_names_its_gtin_or_the_units() -> None:
    by_gtin = render_sms(NotificationKind.RECALL_NOTICE, "en", recall_context(
        product={"sku": None, "gtin": "06901234567892"}))
    by_units = render_sms(NotificationKind.RECALL_NOTICE, "en", recall_context(
        product={"sku": None, "gtin": None}))
    assert "GTIN 06901234567892" in by_gtin.text
    assert "(BPM-200)" in by_units.text


@pytest.mark.parametrize(("changes", "words"), [
    ({"ack_url": None}, "'ack_url'"), ({"ack_url": "/status/recall/x"}, "ack_url"),
    ({"reference": ""}, "'reference'"), ({"recall_class": "IV"}, "recall_class"),
    ({"actions": ["burn"]}, "'burn'")])
def test_a_recall_context_without_what_the_text_needs_is_an_error(
        changes: dict[str, Any], words: str) -> None:
    with pytest.raises(SmsTextError, match=words):
        render_sms(NotificationKind.RECALL_NOTICE, "en", recall_context(**changes))


def test_a_recall_sms_too_long_without_product_and_reference_is_an_error() -> None:
    with pytest.raises(SmsTextError, match="even without a product or reference"):
        render_sms(NotificationKind.RECALL_REMINDER, "zh-CN", recall_context(
            "zh-CN", NotificationKind.RECALL_REMINDER, shop_name="店" * 100))
