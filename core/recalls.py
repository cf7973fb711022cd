"""The recall list: which products, lots and serials are under recall (rule R13's input).

A recall names a product by GTIN or by the shop's SKU and narrows it to a lot, a serial, or
both; with neither it recalls every unit of the product. Shops import notices as CSV
(`parse_recall_csv`) or JSON; a `RecallRegister` keeps them per shop, and importing the same
notice twice changes nothing.

Matching (`RecallList.match`):

- the product matches by GTIN, compared as GTIN-14 (GTIN-8/12/13 are zero-padded on the
  left, as GS1 prescribes), or by SKU;
- a recall with a lot matches only that lot, one with a serial only that serial; a unit
  whose lot (serial) is unknown does not match a recall that names a lot (serial): the
  unit's identity is for R01/R16 to settle, and a guess here would move money;
- SKU, lot and serial are compared ignoring case and surrounding spaces: they are typed by
  people, and a recall that matches too eagerly errs on the side of the patient;
- the most specific recall wins (lot and serial, then serial, then lot, then the whole
  product); ties go to the most severe class, then the earliest notice.

Part of the pure core: the standard library and `core.udi` only.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Protocol

from refundbridge.core.errors import InvalidRequest, InvalidUdi
from refundbridge.core.udi import gtin14

Problems = list[tuple[str, str]]

# Column limits, shared with the storage schema (store/tables.py `recalls`).
REFERENCE_MAX = 128
SKU_MAX = 128
LOT_MAX = 64  # as `RequestLine.lot`/`.serial`; GS1 AIs (10) and (21) allow 20
SERIAL_MAX = 64

COLUMNS = ("gtin", "sku", "lot", "serial", "class", "notice_date", "reference")
REQUIRED_COLUMNS = ("lot", "class", "notice_date", "reference")
MAX_REPORTED_PROBLEMS = 50  # a wholly wrong file should not produce a megabyte of errors


class RecallClass(StrEnum):
    """China's recall classes ([RECALL] Art 14): I is the most severe."""

    I = "I"  # noqa: E741 - the regulation's own name for the class
    II = "II"
    III = "III"

    @property
    def notice_days(self) -> int:
        """Days within which the registrant must notify distributors and users: class I 1,
        II 3, III 7 ([RECALL] Art 16, read second-hand; see compliance.md)."""
        return _NOTICE_DAYS[self]

    @property
    def severity(self) -> int:
        """0 for the most severe class; for ordering."""
        return _SEVERITY[self]


_NOTICE_DAYS = {RecallClass.I: 1, RecallClass.II: 3, RecallClass.III: 7}
_SEVERITY = {RecallClass.I: 0, RecallClass.II: 1, RecallClass.III: 2}

# What people write in the class column: the Roman numeral, the digit, or 一级/二级/三级(召回).
_CLASS_WORDS = {
    "i": RecallClass.I, "1": RecallClass.I, "一级": RecallClass.I, "一级召回": RecallClass.I,
    "ii": RecallClass.II, "2": RecallClass.II, "二级": RecallClass.II,
    "二级召回": RecallClass.II,
    "iii": RecallClass.III, "3": RecallClass.III, "三级": RecallClass.III,
    "三级召回": RecallClass.III,
}
_DATE = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})")


# ------------------------------------------------------------------ GTIN


def normalize_gtin(value: str) -> str:
    """A GTIN-8, -12, -13 or -14 as GTIN-14 (check digit verified by `core.udi.gtin14`).
    Raises `InvalidRequest` on `gtin` when it is not one."""
    digits = value.strip()
    if not digits.isascii() or not digits.isdigit() or len(digits) not in (8, 12, 13, 14):
        raise InvalidRequest("gtin", f"{value!r} is not a GTIN (8, 12, 13 or 14 digits)")
    try:
        return gtin14(digits)
    except InvalidUdi as exc:
        raise InvalidRequest("gtin", f"{value!r} has a wrong check digit") from exc


def _gtin14_or_none(value: str | None) -> str | None:
    """A unit's GTIN for look-up only: padded when it has a GTIN's shape, else None. A bad
    check digit is R16's business, not a reason to miss a recall."""
    if value is None:
        return None
    digits = value.strip()
    if digits.isascii() and digits.isdigit() and len(digits) in (8, 12, 13, 14):
        return digits.zfill(14)
    return None


def _key(value: str | None) -> str | None:
    return None if value is None else value.strip().casefold() or None


# ------------------------------------------------------------------ the recall


def _text(value: object, field: str, limit: int, problems: Problems) -> str | None:
    """Stripped text, None when blank; a problem when it is not text or too long."""
    if value is None:
        return None
    if not isinstance(value, str):
        problems.append((field, "must be text"))
        return None
    text = value.strip()
    if len(text) > limit:
        problems.append((field, f"is longer than {limit} characters"))
        return None
    return text or None


def _identity(values: Mapping[str, object], problems: Problems) -> dict[str, str | None]:
    """Validate and normalise what identifies a recall; problems name the field."""
    gtin: str | None = None
    raw_gtin = _text(values.get("gtin"), "gtin", 64, problems)
    if raw_gtin is not None:
        try:
            gtin = normalize_gtin(raw_gtin)
        except InvalidRequest as exc:
            problems.append(("gtin", exc.message))
    sku = _text(values.get("sku"), "sku", SKU_MAX, problems)
    reference = _text(values.get("reference"), "reference", REFERENCE_MAX, problems)
    if reference is None and not any(f == "reference" for f, _ in problems):
        problems.append(("reference", "is required: the recall notice's reference"))
    if raw_gtin is None and sku is None and not any(f == "sku" for f, _ in problems):
        problems.append(("gtin", "a gtin or a sku is required"))
    return {
        "gtin": gtin,
        "sku": sku,
        "lot": _text(values.get("lot"), "lot", LOT_MAX, problems),
        "serial": _text(values.get("serial"), "serial", SERIAL_MAX, problems),
        "reference": reference,
    }


@dataclass(frozen=True, slots=True)
class Recall:
    """One recall notice's scope. Construction validates and normalises: text is stripped
    (blank means None) and the GTIN becomes GTIN-14; `InvalidRequest` names the field."""

    reference: str  # the recall notice's reference
    recall_class: RecallClass
    notice_date: date
    gtin: str | None = None  # GTIN-14 (normalised); gtin or sku is required
    sku: str | None = None
    lot: str | None = None  # None: every lot of the product
    serial: str | None = None  # None: every serial of the lot

    def __post_init__(self) -> None:
        problems: Problems = []
        normalised = _identity(
            {"gtin": self.gtin, "sku": self.sku, "lot": self.lot, "serial": self.serial,
             "reference": self.reference}, problems)
        recall_class = self.recall_class
        if not isinstance(recall_class, RecallClass):
            try:
                recall_class = RecallClass(recall_class)
            except ValueError:
                problems.append(("class", "must be I, II or III"))
        if not isinstance(self.notice_date, date) or isinstance(self.notice_date, datetime):
            problems.append(("notice_date", "must be a date"))
        if problems:
            raise InvalidRequest(problems[0][0], problems[0][1], problems)
        # Frozen: normalising in place is how a frozen dataclass sets its own fields.
        for name, value in normalised.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "recall_class", recall_class)

    @property
    def specificity(self) -> int:
        """3 lot and serial, 2 serial, 1 lot, 0 the whole product."""
        return (2 if self.serial is not None else 0) + (1 if self.lot is not None else 0)

    def covers(self, *, sku: str, gtin: str | None, lot: str | None,
               serial: str | None) -> bool:
        """Whether this recall covers that unit (see the module's notes on matching)."""
        gtin14 = _gtin14_or_none(gtin)
        same_product = (
            (self.gtin is not None and self.gtin == gtin14)
            or (self.sku is not None and _key(self.sku) == _key(sku))
        )
        return (
            same_product
            and (self.lot is None or _key(self.lot) == _key(lot))
            and (self.serial is None or _key(self.serial) == _key(serial))
        )

    def as_json(self) -> dict[str, str | None]:
        return {
            "reference": self.reference, "class": self.recall_class.value,
            "notice_date": self.notice_date.isoformat(), "gtin": self.gtin, "sku": self.sku,
            "lot": self.lot, "serial": self.serial,
        }


def _parse_class(value: object, problems: Problems) -> RecallClass | None:
    text = _text(value, "class", 16, problems)
    if text is None:
        if not any(f == "class" for f, _ in problems):
            problems.append(("class", "is required: I, II or III"))
        return None
    found = _CLASS_WORDS.get(text.casefold())
    if found is None:
        problems.append(("class", f"{text!r} is not a recall class: I, II or III"))
    return found


def _parse_date(value: object, problems: Problems) -> date | None:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    text = _text(value, "notice_date", 32, problems)
    if text is None:
        if not any(f == "notice_date" for f, _ in problems):
            problems.append(("notice_date", "is required: YYYY-MM-DD"))
        return None
    matched = _DATE.fullmatch(text)
    if matched is None:
        problems.append(("notice_date", f"{text!r} is not a date as YYYY-MM-DD"))
        return None
    try:
        return date(*(int(part) for part in matched.groups()))
    except ValueError:
        problems.append(("notice_date", f"{text!r} is no such day"))
        return None


def recall_from_fields(fields: Mapping[str, object]) -> Recall:
    """A recall from the CSV's (and the JSON API's) field names: `gtin`, `sku`, `lot`,
    `serial`, `class`, `notice_date` (YYYY-MM-DD), `reference`. Raises `InvalidRequest`
    listing every bad field of the record."""
    problems: Problems = []
    identity = _identity(fields, problems)
    recall_class = _parse_class(fields.get("class"), problems)
    notice_date = _parse_date(fields.get("notice_date"), problems)
    if problems or recall_class is None or notice_date is None or identity["reference"] is None:
        problems = problems or [("body", "not a recall")]
        raise InvalidRequest(problems[0][0], problems[0][1], problems)
    return Recall(reference=identity["reference"], recall_class=recall_class,
                  notice_date=notice_date, gtin=identity["gtin"], sku=identity["sku"],
                  lot=identity["lot"], serial=identity["serial"])


# ------------------------------------------------------------------ CSV


def decode_csv(data: bytes) -> str:
    """The CSV's bytes as text: UTF-8, with or without a byte-order mark."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidRequest("body", f"is not UTF-8 text (byte {exc.start})") from exc


def _delimiter(first_line: str) -> str:
    # Spreadsheets in some locales save with ';' (or tabs); the header says which.
    return max(",;\t", key=first_line.count) if first_line else ","


def parse_recall_csv(text: str) -> list[Recall]:
    """Every recall in a CSV export. Row 1 is the header: `gtin` and/or `sku`, `lot`,
    optional `serial`, `class` (I/II/III), `notice_date` (YYYY-MM-DD), `reference`; the
    names ignore case and order, and unnamed (blank) columns must stay empty. Blank cells
    mean None, blank rows are skipped.

    All or nothing: any bad row raises `InvalidRequest` whose fields name the row, counted
    as a spreadsheet does (the header is row 1), and the column: "row 3, notice_date"."""
    rows = _rows(text)
    header = next(rows, None)
    if header is None or not any(cell.strip() for cell in header[1]):
        raise InvalidRequest("row 1", "the file is empty: expected a header row")
    columns = _header(header[1])
    problems: Problems = []
    recalls: list[Recall] = []
    for number, row in rows:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(columns):
            problems.append((f"row {number}",
                             f"has {len(row)} cells but the header has {len(columns)}"))
        elif any(cell.strip() for column, cell in zip(columns, row, strict=False)
                 if not column):
            problems.append((f"row {number}", "has a value in a column without a name"))
        else:
            try:
                recalls.append(recall_from_fields(dict(zip(columns, row, strict=False))))
            except InvalidRequest as exc:
                problems.extend((f"row {number}, {field}", message)
                                for field, message in exc.errors)
    if problems:
        problems = problems[:MAX_REPORTED_PROBLEMS]
        raise InvalidRequest(problems[0][0], problems[0][1], problems)
    return recalls


def _rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """(row number, cells) from 1; a quoted cell may span lines and is still one row."""
    text = text.removeprefix("\ufeff")
    reader = csv.reader(io.StringIO(text, newline=""),
                        delimiter=_delimiter(text.split("\n", 1)[0]))
    number = 0
    try:
        for number, row in enumerate(reader, start=1):
            yield number, row
    except csv.Error as exc:
        raise InvalidRequest(f"row {number + 1}", f"is not valid CSV: {exc}") from exc


def _header(cells: Sequence[str]) -> list[str]:
    columns = [cell.strip().casefold() for cell in cells]
    problems: Problems = []
    for column in filter(None, columns):
        if column not in COLUMNS:
            problems.append((f"row 1, {column}",
                             f"unknown column; expected {', '.join(COLUMNS)}"))
        elif columns.count(column) > 1 and (f"row 1, {column}", "appears twice") not in problems:
            problems.append((f"row 1, {column}", "appears twice"))
    problems.extend((f"row 1, {column}", "missing column")
                    for column in REQUIRED_COLUMNS if column not in columns)
    if "gtin" not in columns and "sku" not in columns:
        problems.append(("row 1, gtin", "missing column: a gtin or a sku column is required"))
    if problems:
        raise InvalidRequest(problems[0][0], problems[0][1], problems)
    return columns


# ------------------------------------------------------------------ the list and its port


class RecallList:
    """A shop's recalls, indexed by product for look-ups while deciding a case."""

    def __init__(self, recalls: Iterable[Recall] = ()) -> None:
        self._recalls = tuple(dict.fromkeys(recalls))  # duplicates add nothing
        self._by_gtin: dict[str, list[Recall]] = {}
        self._by_sku: dict[str, list[Recall]] = {}
        for recall in self._recalls:
            if recall.gtin is not None:
                self._by_gtin.setdefault(recall.gtin, []).append(recall)
            sku = _key(recall.sku)
            if sku is not None:
                self._by_sku.setdefault(sku, []).append(recall)

    def match(self, *, sku: str, gtin: str | None, lot: str | None,
              serial: str | None) -> Recall | None:
        """The recall covering this unit, the most specific first; None if none does."""
        gtin14 = _gtin14_or_none(gtin)
        sku_key = _key(sku)
        candidates = [
            *(self._by_gtin.get(gtin14, []) if gtin14 is not None else []),
            *(self._by_sku.get(sku_key, []) if sku_key is not None else []),
        ]
        covering = [r for r in candidates if r.covers(sku=sku, gtin=gtin, lot=lot,
                                                      serial=serial)]
        if not covering:
            return None
        return min(covering, key=lambda r: (-r.specificity, r.recall_class.severity,
                                            r.notice_date, r.reference))

    def __len__(self) -> int:
        return len(self._recalls)

    def __iter__(self) -> Iterator[Recall]:
        return iter(self._recalls)

    def __repr__(self) -> str:
        return f"RecallList({len(self._recalls)} recalls)"


class RecallRegister(Protocol):
    """Where a shop's recalls are kept (store/recalls.py `SqlRecallRegister`)."""

    def for_shop(self, shop_id: str) -> RecallList: ...

    def add(self, shop_id: str, recalls: Sequence[Recall]) -> int:
        """Store the recalls not yet known (same product, lot, serial and reference);
        returns how many were new."""
        ...
