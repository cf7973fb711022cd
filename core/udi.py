"""Parse a scanned UDI (unique device identifier) and compare it with the sales record.

Rules R01, R09 and R16 of the compliance engine need the GTIN (or other device identifier),
lot, serial and dates a returned unit carries. Two issuing schemes are understood:

**GS1** (`UdiScheme.GS1`), parsed by the `biip` library in any of its three forms:

- element strings as a scanner sends them, with FNC1 transmitted as the group separator
  ``\\x1d`` and optionally an AIM symbology identifier (``]d2`` DataMatrix, ``]C1`` GS1-128,
  ``]Q3`` QR, …), e.g. ``]d201095060001343521726123110A1\\x1d21S1``;
- the human-readable interpretation (HRI), ``(01)09506000134352(17)261231(10)A1(21)S1``;
- GS1 Digital Link URIs, ``https://id.gs1.org/01/09506000134352/10/A1/21/S1?17=261231``;
- a bare GTIN-8/12/13/14 (an EAN/UPC/ITF-14 symbol), which carries the device identifier
  only.

AIs used: (01) GTIN, (10) lot, (21) serial, (11) production date, (17) expiry date. A scan
without (01) is rejected. ``biip.parse`` never raises, so every error it records is checked:
``gtin_error`` on the result *and* on the (01) element (a bad check digit still yields a
parsed message with no message error), and the message and Digital Link errors.

*Dates.* GS1 dates are YYMMDD. Day ``00`` means the last day of that month (GS1 General
Specifications, the date AIs of section 3.4). The century of a two-digit year is chosen so
that the year lies from 49 years before to 50 years after the current year (GS1 General
Specifications 7.12).
biip does apply both rules, but it takes "the current year" from the machine clock
(``biip.gs1_element_strings._get_century`` calls ``datetime.now``). Our decision must depend
only on the ``today`` the caller passes (reproducible decisions, frozen dates in tests), and
the century also decides whether ``000229`` is a real day (2000 was a leap year, 2100 is
not). So biip is told not to judge dates (``gs1_element_strings_verify_date=False``), and the
dates are rebuilt here from each element's raw YYMMDD with ``today``; an impossible date
(month 00 or 13, 30 February, …) raises `InvalidUdi`.

*Missing group separator.* A variable-length field (lot, serial) that is not the last one
must be ended by FNC1; if the printer or scanner dropped it, the field swallows everything
after it: ``10LOT1721123121S1`` is read as the single lot ``LOT1721123121S1``. Only the last
field of an element string can have swallowed anything, so when the last field is a lot or a
serial whose text contains an embedded ``11``/``17`` + a valid YYMMDD date, or (for a lot) an
embedded ``21`` + at least one character, the scan is rejected as ambiguous. That is a
heuristic: a genuine lot such as ``B21X`` is rejected too. We prefer that false alarm (the
case goes to manual review, R16) to a silently wrong lot. An embedded ``10`` inside a serial
is *not* flagged: serials containing "10" are far too common, and a serial that swallowed a
lot still fails the serial comparison of `udi_mismatches`. HRI and Digital Link delimit every
field, so they cannot swallow.

**MA** (`UdiScheme.MA`): China's IDcode/MA scheme (issuing agency code "MA" under
ISO/IEC 15459-2, run by 中关村工信二维码技术研究院, one of the three issuing agencies NMPA
accepts for UDI beside GS1 China and AHM). No library parses it, so this module does. The
grammar accepted (``·`` is a literal ``.``)::

    ma-udi     = di *( "." pi-segment )
    di         = "MA" "." "156" "." "M0" "." registrant "." product
    registrant = 6DIGIT                      ; 注册人代码
    product    = 8DIGIT                      ; 包装编码 1 + 项目编码 6 + 校验码 1
    pi-segment = "L" 1*ALNUM                 ; 批号 lot, variable length
               / "S" 1*ALNUM                 ; 序列号 serial, variable length
               / "D" 1*ALNUM                 ; 灭菌批号 sterilisation lot (read, not kept)
               / "M" date                    ; 生产日期 production date
               / "V" date                    ; 有效期 expiry ("valid until")
               / "E" date                    ; 失效期 expiry ("invalid from")
               / "C" DIGIT                   ; PI check character, only as the last segment
    date       = 6DIGIT / 8DIGIT             ; YYMMDD or YYYYMMDD

PI segments may come in any order; each at most once. Sources (read second-hand, the
MA(IDcode) coding manual itself was not available):

- the DI structure "MA . 制造商编码 . 产品编码", 制造商编码 = country 3 + "M0" + registrant 6,
  产品编码 = packaging 1 + item 6 + check 1: an FAQ quoting 《医疗器械唯一标识 MA(IDcode)
  编码手册》 (wanbiaoku.com/new/af3df720e0c04f3bb39b5d8f0061555d);
- the data units ``.L`` ``.S`` ``.M`` ``.D`` ``.V`` ``.E``, alphanumeric variable-length lot,
  serial and sterilisation lot, dates of 6 or 8 digits: "MA二维码编码规则" on
  udi.cp-sy.cn/Login/Architecture;
- the trailing ``.C`` check character: seen in real codes, e.g.
  ``MA.156.M0.100350.….M210628.LAY21062803.E220628.V220627.C3`` in a label printer's source.

Where unsure we are strict, and say so: only country 156 and industry M0 are accepted; the
product code must be exactly 8 digits (12-character alphanumeric product codes exist in the
wild but are not in the manual as quoted); the DI and ``.C`` check characters are *not*
verified, because the only algorithm found is an unofficial reverse-engineering; letters
other than those above (e.g. ``.Y`` medical-insurance code, ``.P``) are rejected; day ``00``
is a GS1 convention and is rejected in MA dates; two-digit years use the GS1 window. When
both ``.V`` and ``.E`` are present the earlier date is the expiry, since an expired unit must
not be sold (R09) and the two are one day apart on real labels.

For both schemes a production date after the expiry date is rejected.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from biip import ParseConfig, ParseError, parse
from biip.gs1_element_strings import GS1ElementString
from biip.gs1_messages import GS1Message
from biip.gtin import Gtin

from refundbridge.core.errors import InvalidUdi


class UdiScheme(StrEnum):
    GS1 = "gs1"
    MA = "ma"


@dataclass(frozen=True, slots=True)
class UdiData:
    """What a UDI scan says about one unit.

    `gtin` is the device identifier: a GTIN-14 for GS1; for MA the whole DI,
    ``MA.156.M0.<registrant>.<product>``, since the product code alone is only unique
    within its registrant.
    """

    scheme: UdiScheme
    gtin: str
    lot: str | None
    serial: str | None
    expiry: date | None
    production_date: date | None
    raw: str


# biip must not judge dates against the machine clock; we rebuild them with `today`.
_BIIP_CONFIG = ParseConfig(gs1_element_strings_verify_date=False)

_AIM_SYMBOLOGY = re.compile(r"\][A-Za-z][0-9A-Za-z]")
_BARE_GTIN = re.compile(r"\d{8}|\d{12,14}")
_VARIABLE_LENGTH_AIS = ("10", "21")


def parse_udi(raw: str, *, today: date) -> UdiData:
    """Parse a GS1 or MA UDI scan; raise `InvalidUdi` for anything that does not parse.

    `today` places two-digit years (GS1 General Specifications 7.12); the machine clock is
    never read.
    """
    text = raw.strip()
    if not text:
        raise InvalidUdi(raw, "the scan is empty")
    if _strip_symbology(text).startswith("MA."):
        return _parse_ma(raw, _strip_symbology(text), today)
    return _parse_gs1(raw, text, today)


def gtin14(value: str) -> str:
    """`value` (GTIN-8, -12, -13 or -14) as a zero-padded GTIN-14; the check digit is
    verified by biip. Raises `InvalidUdi` if it is not a valid GTIN."""
    try:
        return Gtin.parse(value.strip()).as_gtin_14()
    except ParseError as exc:
        raise InvalidUdi(value, f"not a valid GTIN: {exc}") from exc


def udi_mismatches(udi: UdiData, *, gtin: str | None, lot: str | None, serial: str | None,
                   expiry: date | None) -> list[tuple[str, str]]:
    """Every field on which the scan and the sales record disagree, as (field, message).

    A field absent on either side (None in the record, or not encoded in the scan) is not a
    mismatch: many labels carry a lot but no serial, and many sales records keep no expiry.
    Whether a missing field is acceptable is for the rule that calls this (R01/R16) to
    decide. For a GS1 scan the GTINs are compared as GTIN-14, so a record holding the
    GTIN-13 ``9506000134352`` matches ``(01)09506000134352``; a record GTIN that is not a
    valid GTIN is reported as a mismatch. For an MA scan the record must hold the same DI.
    Lot and serial are compared exactly: both are case-sensitive in GS1 and MA.
    """
    mismatches: list[tuple[str, str]] = []
    if gtin is not None:
        message = _gtin_mismatch(udi, gtin)
        if message is not None:
            mismatches.append(("gtin", message))
    if lot is not None and udi.lot is not None and udi.lot != lot:
        mismatches.append(("lot", f"scanned lot {udi.lot!r} is not the sold lot {lot!r}"))
    if serial is not None and udi.serial is not None and udi.serial != serial:
        mismatches.append(
            ("serial", f"scanned serial {udi.serial!r} is not the sold serial {serial!r}"))
    if expiry is not None and udi.expiry is not None and udi.expiry != expiry:
        mismatches.append(("expiry", f"scanned expiry {udi.expiry.isoformat()} is not the "
                                     f"sold unit's expiry {expiry.isoformat()}"))
    return mismatches


def _gtin_mismatch(udi: UdiData, record: str) -> str | None:
    if udi.scheme is UdiScheme.MA:
        if record.strip() == udi.gtin:
            return None
        return f"scanned device identifier {udi.gtin!r} is not the sold one {record!r}"
    try:
        sold = gtin14(record)
    except InvalidUdi:
        return f"the sales record's GTIN {record!r} is not a valid GTIN"
    if sold == udi.gtin:
        return None
    return f"scanned GTIN {udi.gtin} is not the sold GTIN {sold}"


# --- GS1 -------------------------------------------------------------------------------------


def _parse_gs1(raw: str, text: str, today: date) -> UdiData:
    result_gtin_error: str | None = None
    element_string_scan = False
    if text.startswith("("):
        try:
            message = GS1Message.parse_hri(text, config=_BIIP_CONFIG)
        except ParseError as exc:
            raise InvalidUdi(raw, f"not a GS1 HRI string: {exc}") from exc
        # biip skips a "(AI)" with no data after it; nothing of the scan may go unread.
        if message.as_hri() != "".join(text.split()):
            raise InvalidUdi(raw, f"not a GS1 HRI string: only {message.as_hri()!r} is readable")
        elements = list(message.element_strings)
    else:
        result = parse(text, config=_BIIP_CONFIG)
        has_gtin_element = result.gs1_message is not None and any(
            e.ai.ai == "01" for e in result.gs1_message.element_strings)
        if result.gs1_digital_link_uri is not None:
            elements = list(result.gs1_digital_link_uri.element_strings)
        elif has_gtin_element and result.gs1_message is not None:
            elements = list(result.gs1_message.element_strings)
            element_string_scan = True
        elif _BARE_GTIN.fullmatch(_strip_symbology(text)):
            # Parsed as a GTIN on its own, not through biip's guesses (it would also try the
            # digits as a UPC-E and expand them).
            try:
                bare = Gtin.parse(_strip_symbology(text)).as_gtin_14()
            except ParseError as exc:
                raise InvalidUdi(raw, f"bad GTIN: {exc}") from exc
            return UdiData(scheme=UdiScheme.GS1, gtin=bare, lot=None, serial=None,
                           expiry=None, production_date=None, raw=raw)
        elif result.gs1_message is not None:
            elements = list(result.gs1_message.element_strings)
        else:
            reason = (result.gs1_digital_link_uri_error or result.gs1_message_error
                      or result.gtin_error or "not a GS1 element string, HRI or Digital Link")
            raise InvalidUdi(raw, reason)
        result_gtin_error = result.gtin_error

    by_ai = _index(raw, elements)
    gtin_element = by_ai.get("01")
    if gtin_element is None:
        raise InvalidUdi(raw, "no (01) GTIN in the scan")
    # Both are checked: the result's error comes from biip's promotion of (01), the
    # element's from the element itself; either one alone means a bad GTIN.
    gtin_error = gtin_element.gtin_error or result_gtin_error
    if gtin_error is not None or gtin_element.gtin is None:
        raise InvalidUdi(raw, f"bad GTIN in (01): {gtin_error or gtin_element.value!r}")

    if element_string_scan:
        _reject_swallowed_fields(raw, elements[-1], today)

    expiry = _gs1_date(raw, by_ai, "17", today)
    production = _gs1_date(raw, by_ai, "11", today)
    _check_order(raw, production, expiry)
    lot = by_ai["10"].value if "10" in by_ai else None
    serial = by_ai["21"].value if "21" in by_ai else None
    return UdiData(scheme=UdiScheme.GS1, gtin=gtin_element.gtin.as_gtin_14(), lot=lot,
                   serial=serial, expiry=expiry, production_date=production, raw=raw)


def _index(raw: str, elements: list[GS1ElementString]) -> dict[str, GS1ElementString]:
    by_ai: dict[str, GS1ElementString] = {}
    for element in elements:
        seen = by_ai.setdefault(element.ai.ai, element)
        if seen.value != element.value:
            raise InvalidUdi(raw, f"AI ({element.ai.ai}) appears twice with different values "
                                  f"{seen.value!r} and {element.value!r}")
    return by_ai


def _gs1_date(raw: str, by_ai: dict[str, GS1ElementString], ai: str, today: date) -> date | None:
    element = by_ai.get(ai)
    if element is None:
        return None
    parsed = _yymmdd(element.value, today, day_zero_is_month_end=True)
    if parsed is None:
        raise InvalidUdi(raw, f"({ai}) {element.value!r} is not a valid YYMMDD date")
    return parsed


def _reject_swallowed_fields(raw: str, last: GS1ElementString, today: date) -> None:
    if last.ai.ai not in _VARIABLE_LENGTH_AIS:
        return
    value = last.value
    for start in range(1, len(value)):
        tail = value[start:]
        swallowed: str | None = None
        embedded_date = _yymmdd(tail[2:8], today, day_zero_is_month_end=True)
        if tail[:2] in ("11", "17") and embedded_date is not None:
            swallowed = f"({tail[:2]}){tail[2:8]}"
        elif last.ai.ai == "10" and tail.startswith("21") and len(tail) > 2:
            swallowed = f"(21){tail[2:]}"
        if swallowed is not None:
            raise InvalidUdi(raw, f"({last.ai.ai}) {value!r} may have swallowed {swallowed}: "
                                  "a group separator (FNC1) seems to be missing")


# --- MA --------------------------------------------------------------------------------------

_MA_DI = re.compile(r"MA\.156\.M0\.(?P<registrant>\d{6})\.(?P<product>\d{8})")
_MA_DATE = re.compile(r"\d{6}|\d{8}")
_MA_TEXT = re.compile(r"[0-9A-Za-z]+")
_MA_TEXT_SEGMENTS = {"L": "lot", "S": "serial", "D": "sterilisation lot"}
_MA_DATE_SEGMENTS = {"M": "production date", "V": "expiry (有效期)", "E": "expiry (失效期)"}


def _parse_ma(raw: str, text: str, today: date) -> UdiData:
    parts = text.split(".")
    di_match = _MA_DI.fullmatch(".".join(parts[:5]))
    if di_match is None:
        raise InvalidUdi(raw, "not an MA medical-device UDI: expected "
                              "MA.156.M0.<6-digit registrant>.<8-digit product code>")
    values: dict[str, str] = {}
    dates: dict[str, date] = {}
    segments = parts[5:]
    for position, segment in enumerate(segments):
        if not segment:
            raise InvalidUdi(raw, "empty segment (two dots in a row, or a trailing dot)")
        letter, value = segment[0], segment[1:]
        if letter in values:
            raise InvalidUdi(raw, f"segment .{letter} appears twice")
        if letter in _MA_TEXT_SEGMENTS:
            if not _MA_TEXT.fullmatch(value):
                raise InvalidUdi(raw, f".{letter} {_MA_TEXT_SEGMENTS[letter]} {value!r} must be "
                                      "one or more letters or digits")
        elif letter in _MA_DATE_SEGMENTS:
            parsed = (_yymmdd(value, today, day_zero_is_month_end=False)
                      if _MA_DATE.fullmatch(value) else None)
            if parsed is None:
                raise InvalidUdi(raw, f".{letter} {_MA_DATE_SEGMENTS[letter]} {value!r} is not "
                                      "a valid YYMMDD or YYYYMMDD date")
            dates[letter] = parsed
        elif letter == "C":
            if position != len(segments) - 1 or not re.fullmatch(r"\d", value):
                raise InvalidUdi(raw, ".C check character must be one digit, last")
        else:
            raise InvalidUdi(raw, f"unknown MA data identifier .{letter}")
        values[letter] = value

    expiries = [dates[letter] for letter in ("V", "E") if letter in dates]
    expiry = min(expiries) if expiries else None
    production = dates.get("M")
    _check_order(raw, production, expiry)
    return UdiData(scheme=UdiScheme.MA, gtin=di_match.group(0), lot=values.get("L"),
                   serial=values.get("S"), expiry=expiry, production_date=production, raw=raw)


# --- shared ----------------------------------------------------------------------------------


def _strip_symbology(text: str) -> str:
    return text[3:] if _AIM_SYMBOLOGY.match(text) else text


def _yymmdd(value: str, today: date, *, day_zero_is_month_end: bool) -> date | None:
    """YYMMDD (GS1 century window around `today`) or YYYYMMDD as a date; None if invalid."""
    if not value.isdigit() or len(value) not in (6, 8):
        return None
    year = int(value[:4]) if len(value) == 8 else _gs1_year(int(value[:2]), today)
    month, day = int(value[-4:-2]), int(value[-2:])
    if not 1 <= month <= 12:
        return None
    if day == 0 and day_zero_is_month_end:
        day = calendar.monthrange(year, month)[1]
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _gs1_year(two_digits: int, today: date) -> int:
    """GS1 General Specifications 7.12: the year lies from 49 years before to 50 after today."""
    century = today.year - today.year % 100
    difference = two_digits - today.year % 100
    if 51 <= difference <= 99:
        century -= 100
    elif -99 <= difference <= -50:
        century += 100
    return century + two_digits


def _check_order(raw: str, production: date | None, expiry: date | None) -> None:
    if production is not None and expiry is not None and production > expiry:
        raise InvalidUdi(raw, f"production date {production.isoformat()} is after the expiry "
                              f"{expiry.isoformat()}")
