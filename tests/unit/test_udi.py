"""UDI scans: GS1 (element string, HRI, Digital Link, through biip) and China's MA code."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from biip import ParseError
from biip.gtin import Gtin

from refundbridge.core.errors import InvalidUdi
from refundbridge.core.udi import UdiData, UdiScheme, gtin14, parse_udi, udi_mismatches

GS = "\x1d"  # FNC1 as scanners transmit it
GTIN = "09506000134352"  # GS1's own example GTIN; the check digit is 2
BAD_GTIN = "09506000134353"
TODAY = date(2026, 3, 10)


def test_the_example_gtins_are_what_they_claim() -> None:
    # Guards the fixtures themselves: if these were wrong, the tables below would lie.
    assert Gtin.parse(GTIN).check_digit == 2
    with pytest.raises(ParseError, match="check digit"):
        Gtin.parse(BAD_GTIN)


# --- GS1: the three forms ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scan", "lot", "serial", "expiry", "production"),
    [
        # element strings: fixed-length AIs first, FNC1 after a variable-length field
        (f"01{GTIN}17271231101234A{GS}21SN0001", "1234A", "SN0001", date(2027, 12, 31), None),
        (f"]d201{GTIN}1125010217271231101234A{GS}21SN0001", "1234A", "SN0001",
         date(2027, 12, 31), date(2025, 1, 2)),
        (f"]C101{GTIN}17271231101234A", "1234A", None, date(2027, 12, 31), None),
        (f"]Q301{GTIN}21SN0001", None, "SN0001", None, None),
        (f"{GS}01{GTIN}17271231101234A{GS}", "1234A", None, date(2027, 12, 31), None),
        (f"  01{GTIN}\n", None, None, None, None),
        # HRI, as printed under the symbol (spaces between elements are tolerated)
        (f"(01){GTIN}(17)271231(10)1234A(21)SN0001", "1234A", "SN0001", date(2027, 12, 31),
         None),
        (f"(01){GTIN} (11)250102 (10)1234A", "1234A", None, None, date(2025, 1, 2)),
        # GS1 Digital Link: key qualifiers in the path, dates as query attributes
        (f"https://id.gs1.org/01/{GTIN}/10/1234A/21/SN0001?17=271231", "1234A", "SN0001",
         date(2027, 12, 31), None),
        (f"]Q3https://shop.example.com/01/{GTIN}/10/AB%2F1?11=250102&17=271231", "AB/1", None,
         date(2027, 12, 31), date(2025, 1, 2)),
    ],
)
def test_gs1_forms_parse(scan: str, lot: str | None, serial: str | None, expiry: date | None,
                         production: date | None) -> None:
    assert parse_udi(scan, today=TODAY) == UdiData(
        scheme=UdiScheme.GS1, gtin=GTIN, lot=lot, serial=serial, expiry=expiry,
        production_date=production, raw=scan)


@pytest.mark.parametrize(
    ("scan", "expected"),
    [
        ("9506000134352", GTIN),  # EAN-13
        ("]E09506000134352", GTIN),
        ("96385074", "00000096385074"),  # EAN-8
        ("036000291452", "00036000291452"),  # UPC-A
        (GTIN, GTIN),  # ITF-14
    ],
)
def test_a_bare_gtin_carries_the_device_identifier_only(scan: str, expected: str) -> None:
    udi = parse_udi(scan, today=TODAY)
    assert (udi.scheme, udi.gtin, udi.lot, udi.serial, udi.expiry) == (
        UdiScheme.GS1, expected, None, None, None)


def test_scheme_compares_as_its_string() -> None:
    assert parse_udi(f"01{GTIN}", today=TODAY).scheme == "gs1"


# --- GS1: what must not parse -----------------------------------------------------------------


@pytest.mark.parametrize(
    "scan",
    [
        f"01{BAD_GTIN}17271231",  # biip reports it on the result and on the (01) element
        f"]d201{BAD_GTIN}10A1",
        f"]C101{BAD_GTIN}",
        f"https://id.gs1.org/01/{BAD_GTIN}/10/A1",
        f"(01){BAD_GTIN}(10)A1",  # HRI: only the (01) element reports it
        "9506000134353",  # a bare EAN-13
    ],
)
def test_a_bad_check_digit_is_rejected(scan: str) -> None:
    with pytest.raises(InvalidUdi, match="check digit") as caught:
        parse_udi(scan, today=TODAY)
    assert caught.value.scan == scan


@pytest.mark.parametrize(
    ("scan", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("hello world", "GS1"),
        ("(10)A1(21)S1", r"no \(01\)"),  # a PI without a DI
        ("10A1", r"no \(01\)"),
        ("(01)0950600013435", r"AI \(01\) pattern"),  # 13 digits where (01) needs 14
        (f"(01){GTIN}(10)", "only '.*' is readable"),  # biip alone would drop the "(10)"
        (f"(01){GTIN}(99)", "only '.*' is readable"),
        (f"(01){GTIN}(10)A1(", "only '.*' is readable"),
        (f"(01){GTIN}(10)A1(10)B2", r"\(10\) appears twice"),
        ("(01)abc", "GS1"),
    ],
)
def test_scans_that_are_not_a_gs1_udi_are_rejected(scan: str, message: str) -> None:
    with pytest.raises(InvalidUdi, match=message):
        parse_udi(scan, today=TODAY)


# --- GS1: dates --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yymmdd", "today", "expected"),
    [
        ("261200", TODAY, date(2026, 12, 31)),
        ("260400", TODAY, date(2026, 4, 30)),
        ("270200", TODAY, date(2027, 2, 28)),  # February, non-leap year
        ("280200", TODAY, date(2028, 2, 29)),  # February, leap year
        ("000200", TODAY, date(2000, 2, 29)),  # 2000 was a leap year ...
        ("000200", date(2060, 1, 1), date(2100, 2, 28)),  # ... 2100 will not be
        ("280229", TODAY, date(2028, 2, 29)),
    ],
)
def test_day_00_is_the_last_day_of_the_month(yymmdd: str, today: date, expected: date) -> None:
    assert parse_udi(f"(01){GTIN}(17){yymmdd}", today=today).expiry == expected


@pytest.mark.parametrize(
    ("yy", "today", "year"),
    [
        # today 2026: from 1977 (49 years back) to 2076 (50 years ahead)
        ("76", TODAY, 2076),
        ("77", TODAY, 1977),
        ("26", TODAY, 2026),
        ("99", TODAY, 1999),
        # today 2060: the window has moved, so the same digits name other years
        ("10", date(2060, 6, 1), 2110),
        ("11", date(2060, 6, 1), 2011),
        ("77", date(2060, 6, 1), 2077),
        # and backwards, which a clock-reading implementation could not get right
        ("40", date(1990, 6, 1), 2040),
        ("41", date(1990, 6, 1), 1941),
    ],
)
def test_two_digit_years_lie_within_minus_49_plus_50_years_of_today(
        yy: str, today: date, year: int) -> None:
    for scan in (f"(01){GTIN}(17){yy}0615", f"01{GTIN}17{yy}0615",
                 f"https://id.gs1.org/01/{GTIN}?17={yy}0615"):
        assert parse_udi(scan, today=today).expiry == date(year, 6, 15)


def test_the_century_decides_whether_29_february_exists() -> None:
    assert parse_udi(f"(01){GTIN}(17)000229", today=TODAY).expiry == date(2000, 2, 29)
    with pytest.raises(InvalidUdi, match="not a valid YYMMDD"):
        parse_udi(f"(01){GTIN}(17)000229", today=date(2060, 1, 1))  # 2100-02-29


@pytest.mark.parametrize(
    "scan",
    [
        f"(01){GTIN}(17)271301",  # month 13
        f"(01){GTIN}(17)270001",  # month 00
        f"(01){GTIN}(17)270230",  # 30 February
        f"(01){GTIN}(17)270431",  # 31 April
        f"(01){GTIN}(17)270132",  # day 32
        f"01{GTIN}17270230",
        f"01{GTIN}11270230",  # production date too
        f"https://id.gs1.org/01/{GTIN}?17=270230",
    ],
)
def test_an_impossible_date_is_rejected(scan: str) -> None:
    with pytest.raises(InvalidUdi):
        parse_udi(scan, today=TODAY)


@pytest.mark.parametrize(
    ("expiry", "production"),
    [
        ("250101", "240101"),  # already expired on TODAY: that is R09's call, not a parse error
        ("300101", "240101"),
        ("260310", "260310"),  # made and expiring the same day
    ],
)
def test_expiry_before_or_after_today_parses(expiry: str, production: str) -> None:
    udi = parse_udi(f"(01){GTIN}(11){production}(17){expiry}", today=TODAY)
    assert (udi.production_date, udi.expiry) == (
        date(2000 + int(production[:2]), int(production[2:4]), int(production[4:])),
        date(2000 + int(expiry[:2]), int(expiry[2:4]), int(expiry[4:])))


def test_a_production_date_after_the_expiry_is_rejected() -> None:
    with pytest.raises(InvalidUdi, match="after the expiry"):
        parse_udi(f"(01){GTIN}(11)270102(17)270101", today=TODAY)


# --- GS1: a missing group separator -----------------------------------------------------------


@pytest.mark.parametrize(
    ("scan", "swallowed"),
    [
        (f"01{GTIN}10A117271231", r"\(17\)271231"),  # lot, then expiry, no FNC1
        (f"01{GTIN}10A121SN0001", r"\(21\)SN0001"),  # lot, then serial, no FNC1
        (f"01{GTIN}10A11125010217271231", r"\(11\)250102"),
        (f"01{GTIN}21SN000117271231", r"\(17\)271231"),  # serial, then expiry
        (f"]d201{GTIN}10A117271200", r"\(17\)271200"),  # day 00 is a date too
        # a heuristic: a genuine last lot that looks like "lot + (21)…" is rejected as well,
        # which sends the case to manual review rather than trusting an ambiguous lot
        (f"01{GTIN}10B21X", r"\(21\)X"),
    ],
)
def test_a_last_field_that_swallowed_another_is_rejected(scan: str, swallowed: str) -> None:
    with pytest.raises(InvalidUdi, match=f"swallowed {swallowed}.*separator"):
        parse_udi(scan, today=TODAY)


@pytest.mark.parametrize(
    ("scan", "lot", "serial"),
    [
        (f"01{GTIN}10A1{GS}17271231", "A1", None),  # the separator is there
        (f"01{GTIN}10A1{GS}21SN0001", "A1", "SN0001"),
        (f"01{GTIN}1721123110A1", "A1", None),  # GS1's recommended order needs none
        (f"01{GTIN}10A117991399", "A117991399", None),  # "17" + a non-date is just text
        (f"01{GTIN}10A121", "A121", None),  # "21" with nothing after it
        (f"01{GTIN}21SN1000", None, "SN1000"),  # "10" in a serial is not flagged
        (f"(01){GTIN}(10)A121SN0001", "A121SN0001", None),  # HRI delimits every field
        (f"https://id.gs1.org/01/{GTIN}/10/A117271231", "A117271231", None),
    ],
)
def test_fields_that_cannot_have_swallowed_anything_parse(
        scan: str, lot: str | None, serial: str | None) -> None:
    udi = parse_udi(scan, today=TODAY)
    assert (udi.lot, udi.serial) == (lot, serial)


# --- MA (China) --------------------------------------------------------------------------------

MA_DI = "MA.156.M0.100001.10234567"


@pytest.mark.parametrize(
    ("scan", "lot", "serial", "expiry", "production"),
    [
        (f"{MA_DI}.M240115.V260114.L2401A.S0001", "2401A", "0001", date(2026, 1, 14),
         date(2024, 1, 15)),
        (MA_DI, None, None, None, None),
        (f"{MA_DI}.L2401A", "2401A", None, None, None),
        (f"{MA_DI}.S0001", None, "0001", None, None),
        (f"{MA_DI}.M240115", None, None, None, date(2024, 1, 15)),
        (f"{MA_DI}.V260114", None, None, date(2026, 1, 14), None),
        (f"{MA_DI}.E260115", None, None, date(2026, 1, 15), None),
        # any order
        (f"{MA_DI}.S0001.L2401A.V260114.M240115", "2401A", "0001", date(2026, 1, 14),
         date(2024, 1, 15)),
        # both expiries, as on real labels one day apart: the earlier one counts
        (f"{MA_DI}.E260115.V260114", None, None, date(2026, 1, 14), None),
        # YYYYMMDD dates
        (f"{MA_DI}.M20240115.V20260114", None, None, date(2026, 1, 14), date(2024, 1, 15)),
        # a sterilisation lot is read and not kept; a trailing check character is accepted
        (f"{MA_DI}.LAY21062803.D77A.C3", "AY21062803", None, None, None),
        (f"]Q1{MA_DI}.L2401A", "2401A", None, None, None),
        (f" {MA_DI}.Lab12\n", "ab12", None, None, None),
    ],
)
def test_ma_codes_parse(scan: str, lot: str | None, serial: str | None, expiry: date | None,
                        production: date | None) -> None:
    assert parse_udi(scan, today=TODAY) == UdiData(
        scheme=UdiScheme.MA, gtin=MA_DI, lot=lot, serial=serial, expiry=expiry,
        production_date=production, raw=scan)


def test_ma_two_digit_years_use_the_same_window() -> None:
    assert parse_udi(f"{MA_DI}.V770101", today=TODAY).expiry == date(1977, 1, 1)
    assert parse_udi(f"{MA_DI}.V770101", today=date(2060, 1, 1)).expiry == date(2077, 1, 1)


@pytest.mark.parametrize(
    ("scan", "message"),
    [
        # wrong prefix or DI
        ("MB.156.M0.100001.10234567", "GS1"),  # not MA at all, and not GS1 either
        ("ma.156.M0.100001.10234567", "GS1"),
        ("MA.840.M0.100001.10234567", "not an MA medical-device UDI"),  # not China
        ("MA.156.D0.100001.10234567", "not an MA medical-device UDI"),  # not medical devices
        ("MA.156.M0.10001.10234567", "not an MA medical-device UDI"),  # 5-digit registrant
        ("MA.156.M0.100001.1023456", "not an MA medical-device UDI"),  # 7-digit product
        ("MA.156.M0.100001.01004YA10017", "not an MA medical-device UDI"),
        ("MA.156.M0.100001", "not an MA medical-device UDI"),
        # bad dates
        (f"{MA_DI}.V261314", "not a valid YYMMDD or YYYYMMDD"),
        (f"{MA_DI}.M240230", "not a valid YYMMDD or YYYYMMDD"),
        (f"{MA_DI}.V260100", "not a valid YYMMDD or YYYYMMDD"),  # day 00 is GS1 only
        (f"{MA_DI}.E2601141", "not a valid YYMMDD or YYYYMMDD"),  # 7 digits
        (f"{MA_DI}.V26O114", "not a valid YYMMDD or YYYYMMDD"),  # letter O
        (f"{MA_DI}.M260115.V250114", "after the expiry"),
        # unknown or malformed segments
        (f"{MA_DI}.Y123456", "unknown MA data identifier .Y"),
        (f"{MA_DI}.X1", "unknown MA data identifier .X"),
        (f"{MA_DI}.l2401A", "unknown MA data identifier .l"),
        (f"{MA_DI}.L2401A.L2401B", "appears twice"),
        (f"{MA_DI}.L", "letters or digits"),
        (f"{MA_DI}.L24-01", "letters or digits"),
        (f"{MA_DI}..L2401A", "empty segment"),
        (f"{MA_DI}.L2401A.", "empty segment"),
        (f"{MA_DI}.C3.L2401A", "check character"),
        (f"{MA_DI}.C33", "check character"),
    ],
)
def test_bad_ma_codes_are_rejected(scan: str, message: str) -> None:
    with pytest.raises(InvalidUdi, match=message) as caught:
        parse_udi(scan, today=TODAY)
    assert caught.value.scan == scan


# --- gtin14 ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("9506000134352", GTIN),
        (GTIN, GTIN),
        ("96385074", "00000096385074"),
        ("036000291452", "00036000291452"),
        (" 9506000134352 ", GTIN),
    ],
)
def test_gtin14_zero_pads(value: str, expected: str) -> None:
    assert gtin14(value) == expected


@pytest.mark.parametrize("value", [BAD_GTIN, "9506000134353", "950600013435", "95060001343x2",
                                   "", "123456789012345"])
def test_gtin14_rejects_what_is_not_a_gtin(value: str) -> None:
    with pytest.raises(InvalidUdi, match="not a valid GTIN"):
        gtin14(value)


# --- comparison with the sales record ---------------------------------------------------------

SCANNED = parse_udi(f"(01){GTIN}(17)271231(10)1234A(21)SN0001", today=TODAY)
SCANNED_LOT_ONLY = parse_udi(f"(01){GTIN}(10)1234A", today=TODAY)
SCANNED_MA = parse_udi(f"{MA_DI}.L2401A.S0001.V260114", today=TODAY)


@pytest.mark.parametrize(
    ("udi", "record", "fields"),
    [
        (SCANNED, {"gtin": GTIN, "lot": "1234A", "serial": "SN0001",
                   "expiry": date(2027, 12, 31)}, []),
        (SCANNED, {"gtin": "9506000134352"}, []),  # GTIN-13 in the record, GTIN-14 scanned
        (SCANNED, {}, []),  # nothing recorded: nothing to disagree with
        (SCANNED, {"gtin": "4006381333931"}, ["gtin"]),
        (SCANNED, {"gtin": BAD_GTIN}, ["gtin"]),  # the record itself is wrong
        (SCANNED, {"lot": "1234a"}, ["lot"]),  # case-sensitive
        (SCANNED, {"serial": "SN0002"}, ["serial"]),
        (SCANNED, {"expiry": date(2027, 12, 30)}, ["expiry"]),
        (SCANNED, {"gtin": "4006381333931", "lot": "X", "serial": "Y",
                   "expiry": date(2020, 1, 1)}, ["gtin", "lot", "serial", "expiry"]),
        # fields the label does not carry are not mismatches
        (SCANNED_LOT_ONLY, {"serial": "SN0001", "expiry": date(2027, 12, 31)}, []),
        (SCANNED_LOT_ONLY, {"lot": "9999"}, ["lot"]),
        (SCANNED_MA, {"gtin": MA_DI, "lot": "2401A", "serial": "0001",
                      "expiry": date(2026, 1, 14)}, []),
        (SCANNED_MA, {"gtin": "MA.156.M0.100001.10234568"}, ["gtin"]),
        (SCANNED_MA, {"gtin": GTIN}, ["gtin"]),
        (SCANNED_MA, {"lot": "2401B", "serial": "0002"}, ["lot", "serial"]),
    ],
)
def test_udi_mismatches(udi: UdiData, record: dict[str, Any], fields: list[str]) -> None:
    arguments: dict[str, Any] = {"gtin": None, "lot": None, "serial": None, "expiry": None}
    arguments.update(record)
    mismatches = udi_mismatches(udi, **arguments)
    assert [field for field, _ in mismatches] == fields
    assert all(message for _, message in mismatches)


def test_mismatch_messages_name_both_values() -> None:
    mismatches = udi_mismatches(SCANNED, gtin="4006381333931", lot="9999", serial=None,
                                expiry=date(2027, 12, 30))
    assert mismatches == [
        ("gtin", f"scanned GTIN {GTIN} is not the sold GTIN 04006381333931"),
        ("lot", "scanned lot '1234A' is not the sold lot '9999'"),
        ("expiry", "scanned expiry 2027-12-31 is not the sold unit's expiry 2027-12-30"),
    ]
