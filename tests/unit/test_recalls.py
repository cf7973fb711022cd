"""The recall list: CSV import (all or nothing, errors naming row and column) and matching."""

from __future__ import annotations

from datetime import date

import pytest
from biip.gtin import Gtin

from refundbridge.core.errors import InvalidRequest
from refundbridge.core.recalls import (
    Recall,
    RecallClass,
    RecallList,
    decode_csv,
    normalize_gtin,
    parse_recall_csv,
    recall_from_fields,
)

GTIN13 = "4006381333931"
GTIN14 = "04006381333931"  # the same product, as GTIN-14
OTHER_GTIN14 = "14006381333938"  # another packaging level: a different product
HEADER = "gtin,sku,lot,serial,class,notice_date,reference\n"
DAY = date(2026, 11, 20)


def _recall(reference: str = "R-1", **scope: str | None) -> Recall:
    return Recall(reference=reference, recall_class=RecallClass.II, notice_date=DAY, **scope)


# ------------------------------------------------------------------ GTIN


@pytest.mark.parametrize("gtin", ["96385074", "036000291452", GTIN13, GTIN14, OTHER_GTIN14,
                                  "6901234567892"])
def test_gtins_normalise_to_gtin14_as_gs1_does(gtin: str) -> None:
    # biip implements GS1's rules independently of us: both must agree.
    assert normalize_gtin(gtin) == Gtin.parse(gtin).as_gtin_14()
    assert len(normalize_gtin(gtin)) == 14


@pytest.mark.parametrize(("gtin", "message"), [
    ("4006381333932", "check digit"),
    ("400638133393", "check digit"),  # 12 digits, but not a GTIN-12
    ("40063813339", "is not a GTIN"),  # 11 digits
    ("4006381333931X", "is not a GTIN"),
    ("４００６３８１３３３９３１", "is not a GTIN"),  # full-width digits are not GS1 digits
])
def test_bad_gtins_are_refused_naming_the_field(gtin: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        normalize_gtin(gtin)
    assert caught.value.field == "gtin"
    assert message in caught.value.message


# ------------------------------------------------------------------ the recall itself


def test_a_recall_normalises_what_it_is_given() -> None:
    recall = Recall(reference=" NMPA-42 ", recall_class=RecallClass("I"), notice_date=DAY,
                    gtin=GTIN13, sku="  ", lot=" L1 ", serial="")
    assert (recall.reference, recall.gtin, recall.sku, recall.lot, recall.serial) == (
        "NMPA-42", GTIN14, None, "L1", None)


@pytest.mark.parametrize(("scope", "field"), [
    ({}, "gtin"),  # neither gtin nor sku
    ({"gtin": "123"}, "gtin"),
    ({"sku": "S", "lot": "L" * 65}, "lot"),
    ({"sku": "S", "serial": "X" * 65}, "serial"),
])
def test_a_recall_without_a_valid_scope_is_refused(scope: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        _recall(**scope)
    assert caught.value.field == field


def test_a_recall_needs_a_reference() -> None:
    with pytest.raises(InvalidRequest) as caught:
        Recall(reference=" ", recall_class=RecallClass.I, notice_date=DAY, sku="S")
    assert caught.value.field == "reference"


def test_fields_report_every_problem_of_a_record() -> None:
    with pytest.raises(InvalidRequest) as caught:
        recall_from_fields({"gtin": "12", "class": "IV", "notice_date": "2026-13-01",
                            "reference": ""})
    assert [f for f, _ in caught.value.errors] == ["gtin", "reference", "class", "notice_date"]


@pytest.mark.parametrize(("text", "expected"), [
    ("I", RecallClass.I), ("ii", RecallClass.II), ("3", RecallClass.III),
    ("一级", RecallClass.I), ("二级召回", RecallClass.II), (" III ", RecallClass.III),
])
def test_class_spellings(text: str, expected: RecallClass) -> None:
    recall = recall_from_fields({"sku": "S", "class": text, "notice_date": "2026-11-20",
                                 "reference": "R"})
    assert recall.recall_class is expected


def test_notice_deadlines_per_class() -> None:
    assert [c.notice_days for c in RecallClass] == [1, 3, 7]


# ------------------------------------------------------------------ CSV


def test_csv_with_every_column() -> None:
    text = (HEADER
            + f"{GTIN13},,L2401,,II,2026-11-20,NMPA-2026-0042\n"
            + ",GLU-METER-01,,,I,2026/11/2,NMPA-2026-0043\n"
            + ",GLU-METER-01,L9,SN-7,III,2026-11-21,\"ref, with comma\"\n")
    assert parse_recall_csv(text) == [
        Recall("NMPA-2026-0042", RecallClass.II, date(2026, 11, 20), gtin=GTIN14, lot="L2401"),
        Recall("NMPA-2026-0043", RecallClass.I, date(2026, 11, 2), sku="GLU-METER-01"),
        Recall("ref, with comma", RecallClass.III, date(2026, 11, 21), sku="GLU-METER-01",
               lot="L9", serial="SN-7"),
    ]


def test_csv_with_a_bom_from_a_spreadsheet_and_crlf() -> None:
    raw = "\ufeff".encode() + (
        "Reference,Class,Notice_Date,SKU,Lot\r\n"
        "召回-1,II,2026-11-20,血糖仪-01,L1\r\n").encode()
    text = decode_csv(raw)
    assert not text.startswith("\ufeff")
    assert parse_recall_csv(text) == [Recall("召回-1", RecallClass.II, DAY, sku="血糖仪-01",
                                             lot="L1")]
    # A BOM left in the text (a caller that decoded as plain UTF-8) is harmless too.
    assert parse_recall_csv(raw.decode("utf-8")) == parse_recall_csv(text)


def test_csv_separated_by_semicolons() -> None:
    text = "sku;lot;class;notice_date;reference\nS1;L1;I;2026-11-20;R-1\n"
    assert parse_recall_csv(text) == [Recall("R-1", RecallClass.I, DAY, sku="S1", lot="L1")]


def test_blank_rows_are_skipped_and_serial_is_optional() -> None:
    text = "sku,lot,class,notice_date,reference\n\nS1,,I,2026-11-20,R-1\n,,,,\n"
    assert parse_recall_csv(text) == [Recall("R-1", RecallClass.I, DAY, sku="S1")]


@pytest.mark.parametrize(("text", "field"), [
    (HEADER + ",S1,,,II,20-11-2026,R-1\n", "row 2, notice_date"),
    (HEADER + ",S1,,,II,2026-11-20,R-1\n,S2,,,II,2026-02-30,R-2\n", "row 3, notice_date"),
    (HEADER + ",S1,,,IV,2026-11-20,R-1\n", "row 2, class"),
    (HEADER + ",S1,,,,2026-11-20,R-1\n", "row 2, class"),
    (HEADER + ",,L1,,II,2026-11-20,R-1\n", "row 2, gtin"),
    (HEADER + "4006381333932,,,,II,2026-11-20,R-1\n", "row 2, gtin"),
    (HEADER + ",S1,,,II,2026-11-20,\n", "row 2, reference"),
    (HEADER + ",S1,,,II,2026-11-20,R-1,extra\n", "row 2"),
    ("sku,lot,class,notice_date\nS1,,I,2026-11-20\n", "row 1, reference"),
    ("sku,class,notice_date,reference\nS1,I,2026-11-20,R\n", "row 1, lot"),
    ("lot,class,notice_date,reference\nL1,I,2026-11-20,R\n", "row 1, gtin"),
    ("sku,lot,serail,class,notice_date,reference\n", "row 1, serail"),
    ("sku,sku,lot,class,notice_date,reference\n", "row 1, sku"),
    ("", "row 1"),
])
def test_a_bad_row_names_row_and_column_and_nothing_is_returned(text: str, field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_recall_csv(text)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_every_bad_row_is_reported_not_just_the_first() -> None:
    text = (HEADER + ",S1,,,II,2026-11-20,R-1\n"
            + ",S2,,,II,tomorrow,R-2\n"
            + ",S3,,,V,2026-11-20,R-3\n")
    with pytest.raises(InvalidRequest) as caught:
        parse_recall_csv(text)
    assert [f for f, _ in caught.value.errors] == ["row 3, notice_date", "row 4, class"]
    assert "tomorrow" in caught.value.message


def test_rows_are_counted_like_a_spreadsheet_across_quoted_line_breaks() -> None:
    text = HEADER + ',S1,,,II,2026-11-20,"R-1\nsecond line"\n,S2,,,II,bad,R-2\n'
    with pytest.raises(InvalidRequest) as caught:
        parse_recall_csv(text)
    assert caught.value.field == "row 3, notice_date"


def test_csv_the_reader_cannot_read_names_the_row() -> None:
    text = HEADER + ",S1,,,II,2026-11-20,R-1\n" + ',S2,,,II,2026-11-20,"' + "x" * 200_000 + '"\n'
    with pytest.raises(InvalidRequest) as caught:
        parse_recall_csv(text)
    assert caught.value.field == "row 3"
    assert "not valid CSV" in caught.value.message


def test_a_value_under_an_unnamed_column_is_refused() -> None:
    text = "sku,lot,class,notice_date,reference,\nS1,,I,2026-11-20,R-1,\nS2,,I,2026-11-20,R,x\n"
    with pytest.raises(InvalidRequest) as caught:
        parse_recall_csv(text)
    assert [f for f, _ in caught.value.errors] == ["row 3"]


def test_bytes_that_are_not_utf8_are_refused() -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_csv("sku,lot\n血糖仪,L1\n".encode("gb18030"))
    assert caught.value.field == "body"


# ------------------------------------------------------------------ matching


WHOLE_BY_GTIN = _recall("whole-gtin", gtin=GTIN13)
WHOLE_BY_SKU = _recall("whole-sku", sku="GLU-METER-01")
LOT = _recall("lot", gtin=GTIN14, lot="L1")
SERIAL = _recall("serial", sku="PUMP-02", serial="SN-9")
LOT_SERIAL = _recall("lot+serial", sku="PUMP-02", lot="L7", serial="SN-1")


@pytest.mark.parametrize(("recall", "unit", "matches"), [
    # by GTIN, compared as GTIN-14 whichever length either side uses
    (WHOLE_BY_GTIN, {"sku": "x", "gtin": GTIN13}, True),
    (WHOLE_BY_GTIN, {"sku": "x", "gtin": GTIN14}, True),
    (_recall(gtin=GTIN14), {"sku": "x", "gtin": GTIN13}, True),
    (_recall(gtin="96385074"), {"sku": "x", "gtin": "00000096385074"}, True),
    (WHOLE_BY_GTIN, {"sku": "x", "gtin": OTHER_GTIN14}, False),
    (WHOLE_BY_GTIN, {"sku": "x", "gtin": None}, False),
    (WHOLE_BY_GTIN, {"sku": "x", "gtin": "not-a-gtin"}, False),
    # by SKU, whatever the unit's GTIN
    (WHOLE_BY_SKU, {"sku": "GLU-METER-01", "gtin": None}, True),
    (WHOLE_BY_SKU, {"sku": "glu-meter-01 ", "gtin": GTIN13}, True),
    (WHOLE_BY_SKU, {"sku": "GLU-METER-02", "gtin": None}, False),
    # a GTIN recall does not match on a SKU that happens to equal the GTIN's digits
    (WHOLE_BY_GTIN, {"sku": GTIN13, "gtin": None}, False),
    # whole-product recalls cover every lot and serial, known or not
    (WHOLE_BY_SKU, {"sku": "GLU-METER-01", "gtin": None, "lot": "ANY", "serial": "ANY"}, True),
    # a lot recall covers only that lot
    (LOT, {"sku": "x", "gtin": GTIN13, "lot": "L1"}, True),
    (LOT, {"sku": "x", "gtin": GTIN13, "lot": "l1"}, True),
    (LOT, {"sku": "x", "gtin": GTIN13, "lot": "L1", "serial": "SN-5"}, True),
    (LOT, {"sku": "x", "gtin": GTIN13, "lot": "L2"}, False),
    (LOT, {"sku": "x", "gtin": GTIN13, "lot": None}, False),
    (LOT, {"sku": "x", "gtin": OTHER_GTIN14, "lot": "L1"}, False),
    # a serial recall covers only that serial, in any lot
    (SERIAL, {"sku": "PUMP-02", "gtin": None, "lot": "L1", "serial": "SN-9"}, True),
    (SERIAL, {"sku": "PUMP-02", "gtin": None, "lot": None, "serial": "SN-9"}, True),
    (SERIAL, {"sku": "PUMP-02", "gtin": None, "lot": None, "serial": "SN-8"}, False),
    (SERIAL, {"sku": "PUMP-02", "gtin": None, "lot": None, "serial": None}, False),
    (SERIAL, {"sku": "PUMP-03", "gtin": None, "lot": None, "serial": "SN-9"}, False),
    # lot and serial: both must match
    (LOT_SERIAL, {"sku": "PUMP-02", "gtin": None, "lot": "L7", "serial": "SN-1"}, True),
    (LOT_SERIAL, {"sku": "PUMP-02", "gtin": None, "lot": "L8", "serial": "SN-1"}, False),
    (LOT_SERIAL, {"sku": "PUMP-02", "gtin": None, "lot": "L7", "serial": "SN-2"}, False),
])
def test_matching_table(recall: Recall, unit: dict[str, str | None], matches: bool) -> None:
    query = {"lot": None, "serial": None, **unit}
    found = RecallList([recall]).match(sku=str(query["sku"]), gtin=query["gtin"],
                                       lot=query["lot"], serial=query["serial"])
    assert found == (recall if matches else None)


def test_the_most_specific_recall_wins() -> None:
    whole = _recall("whole", sku="PUMP-02")
    lot = _recall("lot", sku="PUMP-02", lot="L7")
    serial = _recall("serial", sku="PUMP-02", serial="SN-1")
    recalls = RecallList([whole, lot, serial, LOT_SERIAL])

    def match(lot_: str | None, serial_: str | None) -> str | None:
        found = recalls.match(sku="PUMP-02", gtin=None, lot=lot_, serial=serial_)
        return found.reference if found else None

    assert match("L7", "SN-1") == "lot+serial"
    assert match("L8", "SN-1") == "serial"
    assert match("L7", "SN-5") == "lot"
    assert match("L9", "SN-5") == "whole"
    assert match(None, None) == "whole"


def test_ties_go_to_the_most_severe_class_then_the_earliest_notice() -> None:
    late_i = Recall("late-I", RecallClass.I, date(2026, 11, 25), sku="S")
    early_iii = Recall("early-III", RecallClass.III, date(2026, 1, 1), sku="S")
    early_i = Recall("early-I", RecallClass.I, date(2026, 11, 1), gtin=GTIN13)
    recalls = RecallList([early_iii, late_i, early_i])
    assert recalls.match(sku="S", gtin=GTIN14, lot=None, serial=None) == early_i
    assert recalls.match(sku="S", gtin=None, lot=None, serial=None) == late_i


def test_a_list_counts_each_recall_once() -> None:
    recalls = RecallList([LOT, LOT, _recall("lot", gtin=GTIN13, lot="L1"), WHOLE_BY_SKU])
    assert len(recalls) == 2
    assert list(recalls) == [LOT, WHOLE_BY_SKU]
    assert len(RecallList()) == 0
    assert RecallList().match(sku="S", gtin=GTIN13, lot="L1", serial=None) is None
