"""The two languages of the pages for people (the console, the status page): English texts
in the templates, their Chinese in JSON files beside them."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any


class Catalog:
    """zh-CN for every English text of a set of pages: the JSON files of one folder, merged
    (one file per page, so pages are written apart). A text missing here shows in English."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder

    @cached_property
    def texts(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for path in sorted(self._folder.glob("*.json")):
            merged.update(json.loads(path.read_text(encoding="utf-8")))
        return merged

    def translator(self, locale: str) -> Callable[..., str]:
        texts = self.texts if locale == "zh-CN" else {}

        def gettext(english: str, **values: Any) -> str:
            text = texts.get(english, english)
            return text.format(**values) if values else text

        return gettext
