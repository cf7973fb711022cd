"""The rules' and guards' sentences (core/messages.py): both languages, the same slots, and
every id the code names is worded."""

from __future__ import annotations

import re
from pathlib import Path
from string import Formatter

import pytest

from refundbridge.core.messages import CATALOGS, CHINESE, ENGLISH, language, text
from refundbridge.core.request import Severity

ROOT = Path(__file__).resolve().parents[2]
# The modules that say things through core/messages.py.
SPEAKERS = ("core/compliance.py", "core/rules.py", "core/exchanges.py")
# A message id as the code writes it: "R02.late", "G03.unit.lot", or the first part of one
# that the code completes ("R14.severity.", "G03.unit.").
_ID = re.compile(r'"((?:[GRX]\d\d|A00)\.[a-z_.]*)')


def placeholders(template: str) -> set[tuple[str, str | None, str]]:
    """Each `{name!conversion:spec}` of a template."""
    return {(name, conversion, spec or "")
            for _, name, spec, conversion in Formatter().parse(template) if name is not None}


def test_every_message_is_in_both_languages() -> None:
    assert set(CATALOGS) == {ENGLISH, CHINESE}
    assert set(CATALOGS[ENGLISH]) == set(CATALOGS[CHINESE])


@pytest.mark.parametrize("message_id", sorted(CATALOGS[ENGLISH]))
def test_both_languages_fill_the_same_placeholders(message_id: str) -> None:
    english, chinese = CATALOGS[ENGLISH][message_id], CATALOGS[CHINESE][message_id]
    assert placeholders(english) == placeholders(chinese)
    assert english.strip() and chinese.strip()
    # Written in Chinese, but for the one label that is only a code and its value.
    assert re.search("[\u4e00-\u9fff]", chinese) or message_id == "G03.unit.sku"


def _named_in_code() -> tuple[set[str], set[str]]:
    """The ids the code names whole, and the prefixes it completes at run time."""
    found: set[str] = set()
    for module in SPEAKERS:
        found |= set(_ID.findall((ROOT / module).read_text(encoding="utf-8")))
    return {i for i in found if not i.endswith(".")}, {i for i in found if i.endswith(".")}


def test_every_id_the_code_names_is_worded_and_every_message_is_used() -> None:
    whole, prefixes = _named_in_code()
    assert prefixes == {"G03.unit.", "R14.severity."}
    assert whole - set(CATALOGS[ENGLISH]) == set()
    completed = {i for i in CATALOGS[ENGLISH] if any(i.startswith(p) for p in prefixes)}
    assert set(CATALOGS[ENGLISH]) - whole - completed == set()


def test_the_ids_the_code_completes_exist() -> None:
    for kind in ("sku", "lot", "serial"):
        assert text(f"G03.unit.{kind}", "en", sku="S", lot="L", serial="N").startswith("SKU S")
    for severity in [*Severity, None]:
        message_id = f"R14.severity.{severity.value if severity else 'unknown'}"
        assert text(message_id, "zh-CN") != text(message_id, "en")


@pytest.mark.parametrize(("locale", "catalog"), [
    ("zh-CN", CHINESE), ("zh", CHINESE), ("ZH-cn", CHINESE), ("zh-Hant-TW", CHINESE),
    ("en", ENGLISH), ("en-US", ENGLISH), ("de-DE", ENGLISH), ("", ENGLISH)])
def test_a_locale_reads_chinese_when_it_is_chinese_and_english_otherwise(
        locale: str, catalog: str) -> None:
    assert language(locale) == catalog
    assert text("R07.received", locale, days=7) == CATALOGS[catalog]["R07.received"].format(
        days=7)


def test_an_unknown_message_id_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        text("R99.nothing", "en")
