"""The text of a JSON column (`store/json_text.py`): orjson's, read back as the same values
`json.dumps` would have given, and refusing what `json.dumps` refuses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from refundbridge.store.json_text import json_bytes, json_text

VALUES = [
    {"reason": {"code": "defective", "text": "血糖仪读数不准\n第二行"}, "lines": [1, 2.5, None]},
    {1: "an int key", "nested": [{"a": True}, []], "empty": {}},
    ["tab\tand \\ backslash", "\u2028", -9223372036854775808],
]


@pytest.mark.parametrize("value", VALUES)
def test_the_text_reads_back_as_json_dumps_text_does(value: object) -> None:
    assert json.loads(json_text(value)) == json.loads(json.dumps(value))
    assert json_bytes(value).decode() == json_text(value)


def test_the_text_is_compact_utf8() -> None:
    assert json_bytes({"text": "血", "n": [1, 2]}) == '{"text":"血","n":[1,2]}'.encode()


@pytest.mark.parametrize("value", [{"big": 2**70}, {"surrogate": "\ud800"}])
def test_what_orjson_refuses_and_json_dumps_takes_is_written_by_json_dumps(value: object
                                                                          ) -> None:
    assert json_text(value) == json.dumps(value)


@dataclass
class _Point:
    x: int


@pytest.mark.parametrize("value", [{"at": datetime.now(UTC)}, {"p": _Point(1)},
                                   {"amount": Decimal("1.50")}])
def test_what_json_dumps_refuses_is_refused(value: object) -> None:
    with pytest.raises(TypeError):
        json_text(value)
