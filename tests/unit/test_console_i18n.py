"""Every text the console shows has its Chinese: a page half in English fails a zh-CN shop."""

from __future__ import annotations

import json
import re
from pathlib import Path

from refundbridge.api.console.web import HERE, NAV, catalog

LITERAL = re.compile(r"""\b_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")


def _texts_in(path: Path) -> set[str]:
    return {double or single for double, single in LITERAL.findall(path.read_text("utf-8"))}


def test_every_literal_text_of_the_templates_and_pages_has_a_chinese_version() -> None:
    sources = [*(HERE / "templates").rglob("*.html"), *HERE.glob("*.py")]
    missing = {f"{path.name}: {text}" for path in sources for text in _texts_in(path)
               if text not in catalog()}
    assert not missing, "no zh-CN text for:\n" + "\n".join(sorted(missing))


def test_the_menu_and_the_roles_are_translated() -> None:
    for _href, label, _permission in NAV:
        assert label in catalog()
    for role in ("admin", "reviewer", "warehouse", "auditor"):
        assert role in catalog()


def test_no_text_is_translated_twice_differently() -> None:
    seen: dict[str, tuple[str, str]] = {}
    clashes = []
    for path in sorted((HERE / "i18n").glob("*.json")):
        for english, chinese in json.loads(path.read_text("utf-8")).items():
            if english in seen and seen[english][1] != chinese:
                clashes.append(f"{english!r}: {seen[english][0]} vs {path.name}")
            seen[english] = (path.name, chinese)
    assert not clashes, "\n".join(clashes)
