"""The text the store writes into a JSON column: orjson's, compact and UTF-8.

A JSON column is read back as values, never compared as text (an audit event's hash is
taken over its own canonical form, `core/audit.py`), so the spacing and escapes of the
text are ours to choose. orjson writes it about ten times faster than `json.dumps` and a
third shorter for the Chinese in a request (no `\\uXXXX`): on the webhook's path this was
the largest single cost left in our process (README.md, "Benchmarks").

Where orjson refuses a value that `json.dumps` takes (an integer beyond 64 bits, a lone
surrogate), `json.dumps` writes it as before. A datetime or a dataclass, which orjson would
write and `json.dumps` refuses, is refused as before: a datetime stored as orjson's text
would no longer hash as the audit event that holds it did (`default=str`).
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from psycopg.types.json import Json

_OPTIONS = (orjson.OPT_NON_STR_KEYS  # {1: …} becomes {"1": …}, as json.dumps writes it
            | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS)


def json_bytes(value: Any) -> bytes:
    """`value` as JSON text in UTF-8."""
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except orjson.JSONEncodeError:
        return json.dumps(value).encode()


def json_text(value: Any) -> str:
    """`value` as JSON text (SQLAlchemy's `json_serializer`)."""
    return json_bytes(value).decode()


def pg_json(value: Any) -> Json:
    """`value` as a psycopg parameter of type json, written by `json_bytes`."""
    return Json(value, dumps=json_bytes)
