"""The medical-device rule set as a pure function: no database, no clock, no network.

Each rule's boundaries are tested in a table; then the way rules combine, and where each
returned unit goes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from refundbridge.core.compliance import MedicalDeviceRuleSet, ReasonGroup, reason_group
from refundbridge.core.model import Disposition, Inspection, ObligationKind, Outcome, ShippedUnit
from refundbridge.core.policy import Jurisdiction, ShopPolicy, SkuFlags
from refundbridge.core.recalls import Recall, RecallClass, RecallList
from refundbridge.core.request import ReasonCode
from refundbridge.core.rules import EvaluationContext, Verdict
from tests.unit.builders import line, make_request

NOW = datetime(2026, 3, 10, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
LIMITS = {"CNY": Decimal("500"), "USD": Decimal("80")}
GTIN = "09506000134352"
RULES = MedicalDeviceRuleSet()


def policy(**overrides: Any) -> ShopPolicy:
    return ShopPolicy(**{"auto_approve_limits": LIMITS, **overrides})


def body(**overrides: Any) -> dict[str, Any]:
    """A consumer's no-reason return of two glucose meters, delivered on 1 March (Shanghai),
    asked for on 5 March: within every window, under every limit."""
    base: dict[str, Any] = {
        "kind": "return_and_refund",
        "order.delivered_at": "2026-03-01T10:00:00+08:00",
        "requested_at": "2026-03-05T10:00:00+08:00",
        "lines.0.expiry_date": "2027-12-31",
    }
    return {**base, **overrides}


def evaluate(*, rules_policy: ShopPolicy | None = None, now: datetime = NOW,
             recalls: list[Recall] | None = None, previous: tuple[datetime, ...] = (),
             shipments: tuple[ShippedUnit, ...] | None = None,
             inspections: tuple[Inspection, ...] = (), decided: Outcome | None = None,
             **overrides: Any) -> Verdict:
    request = make_request(**body(**overrides))
    ctx = EvaluationContext(request, rules_policy or policy(), request.paid, now,
                            recalls=RecallList(recalls or ()), previous_requests=previous,
                            shipments=shipments, inspections=inspections, decided=decided)
    return RULES.evaluate(ctx)


def outcomes(verdict: Verdict, rule: str) -> list[Outcome]:
    return [r.outcome for r in verdict.rules if r.rule_id == rule]


def disposition(verdict: Verdict, line: int = 0) -> Disposition:
    return verdict.lines[line].disposition


def passed(line: int = 0, **overrides: Any) -> Inspection:
    fields: dict[str, Any] = {"line": line, "seal_intact": True, "condition": "as_new",
                              "inspector": "qa:chen", "passed": True,
                              "temperature_log_ok": None}
    fields.update(overrides)
    return Inspection(**fields)


def recall(**overrides: Any) -> Recall:
    fields: dict[str, Any] = {"reference": "NMPA-2026-017", "recall_class": RecallClass.II,
                              "notice_date": date(2026, 3, 2), "sku": "GLU-METER-01",
                              "lot": "L2401"}
    fields.update(overrides)
    return Recall(**fields)


# ------------------------------------------------------------------ reason groups


@pytest.mark.parametrize(
    ("code", "text", "injury", "group"),
    [
        (ReasonCode.CHANGED_MIND, "不想要了", False, ReasonGroup.NO_REASON),
        (ReasonCode.NO_LONGER_NEEDED, "", False, ReasonGroup.NO_REASON),
        (ReasonCode.ORDERED_BY_MISTAKE, "", False, ReasonGroup.NO_REASON),
        (ReasonCode.DEFECTIVE, "screen stays blank", False, ReasonGroup.QUALITY),
        (ReasonCode.DAMAGED_ON_ARRIVAL, "", False, ReasonGroup.QUALITY),
        (ReasonCode.WRONG_ITEM, "", False, ReasonGroup.QUALITY),
        (ReasonCode.NOT_AS_DESCRIBED, "", False, ReasonGroup.QUALITY),
        (ReasonCode.RECALL, "", False, ReasonGroup.RECALL),
        (ReasonCode.INJURY, "", False, ReasonGroup.ADVERSE_EVENT),
        (ReasonCode.MALFUNCTION_HARM, "", False, ReasonGroup.ADVERSE_EVENT),
        (ReasonCode.OTHER, "", False, ReasonGroup.OTHER),
        # Words in the free text override the code, in Chinese and in English.
        (ReasonCode.CHANGED_MIND, "用了以后手上过敏", False, ReasonGroup.ADVERSE_EVENT),
        (ReasonCode.DEFECTIVE, "试纸划伤了手指，出血", False, ReasonGroup.ADVERSE_EVENT),
        (ReasonCode.DEFECTIVE, "the heating pad gave her a Burn", False,
         ReasonGroup.ADVERSE_EVENT),
        (ReasonCode.OTHER, "allergic reaction to the adhesive", False,
         ReasonGroup.ADVERSE_EVENT),
        (ReasonCode.WRONG_ITEM, "", True, ReasonGroup.ADVERSE_EVENT),
        (ReasonCode.CHANGED_MIND, "被burn了", False, ReasonGroup.ADVERSE_EVENT),
        # An English word must start where a word starts: no injury in these.
        (ReasonCode.CHANGED_MIND, "studied the manual; the box went in the trash", False,
         ReasonGroup.NO_REASON),
        (ReasonCode.DEFECTIVE, "the screen crashed", False, ReasonGroup.QUALITY),
    ],
)
def test_reason_groups(code: ReasonCode, text: str, injury: bool, group: ReasonGroup) -> None:
    assert reason_group(code, text, injury) is group


# ------------------------------------------------------------------ R02 no-reason window


@pytest.mark.parametrize(
    ("requested_at", "outcome"),
    [
        ("2026-03-08T23:59:00+08:00", Outcome.APPROVE),  # day 7 counted from 2 March
        ("2026-03-09T00:00:00+08:00", Outcome.DENY),  # day 8
        ("2026-03-01T18:00:00+08:00", Outcome.APPROVE),  # the day of delivery
    ],
)
def test_r02_window_is_seven_days_from_the_day_after_delivery(requested_at: str,
                                                              outcome: Outcome) -> None:
    verdict = evaluate(requested_at=requested_at)
    assert verdict.outcome is outcome
    assert outcomes(verdict, "R02") == [Outcome.PASS if outcome is Outcome.APPROVE
                                        else Outcome.DENY]


def test_r02_days_are_counted_in_the_shops_calendar_not_utc() -> None:
    # Delivered 1 March 01:00 in Shanghai (still 28 February in UTC); asked 8 March 20:00 in
    # Shanghai: day 7 there, day 8 by UTC dates.
    delivered, asked = "2026-03-01T01:00:00+08:00", "2026-03-08T20:00:00+08:00"
    shanghai = evaluate(**{"order.delivered_at": delivered, "requested_at": asked})
    assert shanghai.outcome is Outcome.APPROVE
    utc = evaluate(rules_policy=policy(timezone="UTC"),
                   **{"order.delivered_at": delivered, "requested_at": asked})
    assert utc.outcome is Outcome.DENY


def test_r02_window_length_is_the_shops_policy() -> None:
    late = {"requested_at": "2026-03-12T10:00:00+08:00"}  # day 11
    assert evaluate(**late).outcome is Outcome.DENY
    assert evaluate(rules_policy=policy(no_reason_window_days=14), **late).outcome \
        is Outcome.APPROVE


def test_r02_not_yet_delivered_is_within_the_window() -> None:
    verdict = evaluate(**{"order.delivered_at": None})
    assert verdict.outcome is Outcome.APPROVE


def test_r02_no_reason_return_is_for_consumers_only() -> None:
    verdict = evaluate(**{"customer.type": "business",
                          "customer.licence": {"number": "粤食药监械经营许20240001",
                                               "scope_classes": ["II", "III"]}})
    assert verdict.outcome is Outcome.DENY
    assert outcomes(verdict, "R02") == [Outcome.DENY]


@pytest.mark.parametrize("code", ["defective", "wrong_item", "recall", "injury"])
def test_only_the_no_reason_path_is_ever_denied(code: str) -> None:
    # Outside the window, custom-made, seal broken: all of it would deny a no-reason return.
    verdict = evaluate(requested_at="2026-03-30T10:00:00+08:00",
                       **{"reason.code": code, "lines.0.custom_made": True,
                          "lines.0.sterile": True, "lines.0.package_opened": True})
    assert verdict.outcome is not Outcome.DENY


# ------------------------------------------------------------------ R03, R04, R05


def test_r03_custom_made_is_excluded_from_no_reason_return() -> None:
    verdict = evaluate(**{"lines.0.custom_made": True})
    assert verdict.outcome is Outcome.DENY
    assert outcomes(verdict, "R03") == [Outcome.DENY]


def test_r03_flag_may_come_from_the_shops_policy() -> None:
    shop = policy(sku_flags={"GLU-METER-01": SkuFlags(custom_made=True)})
    assert evaluate(rules_policy=shop).outcome is Outcome.DENY


@pytest.mark.parametrize(
    ("confirmed", "outcome", "disposition_after_inspection"),
    [(True, Outcome.DENY, Disposition.SCRAP), (False, Outcome.APPROVE, Disposition.SCRAP)],
)
def test_r04_exclusion_counts_only_if_confirmed_at_purchase(
        confirmed: bool, outcome: Outcome, disposition_after_inspection: Disposition) -> None:
    shop = policy(sku_flags={"GLU-METER-01": SkuFlags(no_reason_excluded=True)})
    overrides = {"lines.0.no_reason_exclusion_confirmed": confirmed}
    assert evaluate(rules_policy=shop, **overrides).outcome is outcome
    # Accepted or not, such a unit never goes back on the shelf.
    inspected = evaluate(rules_policy=shop, inspections=(passed(),), **overrides)
    assert disposition(inspected) is disposition_after_inspection


@pytest.mark.parametrize(
    ("sterile", "single_use", "opened", "outcome"),
    [
        (True, False, True, Outcome.DENY),
        (False, True, True, Outcome.DENY),
        # Opening the outer box of a reusable device to look at it is not a broken seal.
        (False, False, True, Outcome.APPROVE),
        (True, False, False, Outcome.APPROVE),
    ],
)
def test_r05_a_broken_single_use_seal_denies_a_no_reason_return(
        sterile: bool, single_use: bool, opened: bool, outcome: Outcome) -> None:
    verdict = evaluate(**{"lines.0.sterile": sterile, "lines.0.single_use": single_use,
                          "lines.0.package_opened": opened})
    assert verdict.outcome is outcome


def test_r05_the_inspectors_finding_outranks_the_buyers_word() -> None:
    # The buyer says the single-use pack is unopened; the inspector finds its seal broken.
    verdict = evaluate(inspections=(passed(seal_intact=False),),
                       **{"lines.0.single_use": True})
    assert verdict.outcome is Outcome.DENY
    assert outcomes(verdict, "R05") == [Outcome.DENY]


def test_r05_a_device_without_a_single_use_seal_has_none_to_break() -> None:
    # An inspector's "seal not intact" on a reusable meter only says its outer box was
    # opened: that does not bar a no-reason return ([7D] Arts 8, 9), and it is not sold as
    # new either (R12).
    verdict = evaluate(inspections=(passed(seal_intact=False),))
    assert verdict.outcome is Outcome.APPROVE
    assert outcomes(verdict, "R05") == [Outcome.PASS]
    assert (disposition(verdict), verdict.lines[0].rule) == (Disposition.QUARANTINE, "R12")


# ------------------------------------------------------------------ R06 quality


@pytest.mark.parametrize(
    ("code", "outcome", "where"),
    [
        ("defective", Outcome.REVIEW, Disposition.RETURN_TO_MANUFACTURER),
        ("not_as_described", Outcome.REVIEW, Disposition.RETURN_TO_MANUFACTURER),
        ("damaged_on_arrival", Outcome.APPROVE, Disposition.RETURN_TO_MANUFACTURER),
        ("wrong_item", Outcome.APPROVE, Disposition.RESTOCK),
    ],
)
def test_r06_quality_claims_go_to_a_person_unless_the_shop_approves_them(
        code: str, outcome: Outcome, where: Disposition) -> None:
    verdict = evaluate(inspections=(passed(),), **{"reason.code": code})
    assert verdict.outcome is outcome
    assert disposition(verdict) is where


def test_r06_a_shop_may_auto_approve_defects() -> None:
    shop = policy(auto_approve_reasons=frozenset({ReasonCode.DEFECTIVE}))
    assert evaluate(rules_policy=shop, **{"reason.code": "defective"}).outcome \
        is Outcome.APPROVE


# ------------------------------------------------------------------ R09 expiry


@pytest.mark.parametrize(
    ("expiry", "where", "outcome"),
    [
        ("2026-03-10", Disposition.RESTOCK, Outcome.REVIEW),  # expires today: still good
        ("2026-03-09", Disposition.SCRAP, Outcome.APPROVE),  # expired yesterday
        ("2026-04-09", Disposition.RESTOCK, Outcome.REVIEW),  # near expiry (30 days)
        ("2026-04-10", Disposition.RESTOCK, Outcome.APPROVE),  # 31 days left
    ],
)
def test_r09_expiry_boundaries(expiry: str, where: Disposition, outcome: Outcome) -> None:
    verdict = evaluate(inspections=(passed(),), **{"lines.0.expiry_date": expiry})
    assert disposition(verdict) is where
    assert verdict.outcome is outcome


def test_r09_unknown_expiry_of_a_device_with_a_shelf_life_is_scrapped() -> None:
    shop = policy(sku_flags={"GLU-METER-01": SkuFlags(shelf_life=True)})
    verdict = evaluate(rules_policy=shop, inspections=(passed(),),
                       **{"lines.0.expiry_date": None, "lines.0.lot": None})
    assert disposition(verdict) is Disposition.SCRAP
    assert verdict.lines[0].rule == "R09"


@pytest.mark.parametrize(
    ("scan", "now", "where"),
    [
        # Day 00 is the last day of the month: February 2028 has 29 days.
        (f"(01){GTIN}(17)280200(10)L2401", datetime(2028, 2, 29, 4, tzinfo=UTC),
         Disposition.RESTOCK),
        (f"(01){GTIN}(17)280200(10)L2401", datetime(2028, 3, 1, 4, tzinfo=UTC),
         Disposition.SCRAP),
        (f"(01){GTIN}(17)270200(10)L2401", datetime(2027, 2, 28, 4, tzinfo=UTC),
         Disposition.RESTOCK),
        (f"(01){GTIN}(17)270200(10)L2401", datetime(2027, 3, 1, 4, tzinfo=UTC),
         Disposition.SCRAP),
    ],
)
def test_r09_expiry_from_the_udi_with_day_00(scan: str, now: datetime,
                                              where: Disposition) -> None:
    # The requested_at/delivered_at stay in 2026; only the expiry moves with `now`.
    shop = policy(near_expiry_days=0)
    verdict = evaluate(rules_policy=shop, now=now, inspections=(passed(udi_scan=scan),),
                       **{"lines.0.expiry_date": None})
    assert disposition(verdict) is where


# ------------------------------------------------------------------ R10, R11, R12, R08


@pytest.mark.parametrize(
    ("overrides", "inspection", "where", "rule"),
    [
        ({"lines.0.sterile": True}, passed(), Disposition.SCRAP, "R10"),  # from a consumer
        ({"lines.0.sterile": True, "customer.type": "business",
          "customer.licence": {"number": "L-1", "scope_classes": ["II"]},
          "reason.code": "wrong_item"},
         passed(), Disposition.RESTOCK, "R08"),
        ({"lines.0.cold_chain": True}, passed(temperature_log_ok=True), Disposition.RESTOCK,
         "R08"),
        ({"lines.0.cold_chain": True}, passed(temperature_log_ok=None),
         Disposition.QUARANTINE, "R11"),
        ({"lines.0.cold_chain": True}, passed(temperature_log_ok=False),
         Disposition.QUARANTINE, "R11"),
        ({}, passed(condition="used"), Disposition.SCRAP, "R12"),
        ({}, passed(passed=False), Disposition.SCRAP, "R08"),
        ({}, None, Disposition.PENDING_INSPECTION, "R08"),
        ({}, passed(), Disposition.RESTOCK, "R08"),
        ({"kind": "refund_only"}, None, Disposition.NOT_RETURNED, "R08"),
    ],
)
def test_dispositions_first_match_wins(overrides: dict[str, Any],
                                       inspection: Inspection | None,
                                       where: Disposition, rule: str) -> None:
    verdict = evaluate(inspections=(inspection,) if inspection else (), **overrides)
    assert (disposition(verdict), verdict.lines[0].rule) == (where, rule)


def test_restock_only_ever_follows_an_inspection_pass() -> None:
    before = evaluate()
    after = evaluate(inspections=(passed(),))
    assert disposition(before) is Disposition.PENDING_INSPECTION
    assert disposition(after) is Disposition.RESTOCK


# ------------------------------------------------------------------ R13 recall


def test_r13_recall_approves_whatever_the_window_amount_or_seal_and_quarantines() -> None:
    verdict = evaluate(
        recalls=[recall()], requested_at="2026-03-30T10:00:00+08:00",  # day 29
        **{"lines.0.sterile": True, "lines.0.package_opened": True,
           "order.paid_total": "1398.00", "lines.0.unit_price": "699.00",
           "requested_amount": "1398.00"})  # above the 500 CNY limit
    assert verdict.outcome is Outcome.APPROVE
    assert outcomes(verdict, "R13") == [Outcome.APPROVE]
    assert disposition(verdict) is Disposition.QUARANTINE
    notice = [o for o in verdict.obligations if o.kind is ObligationKind.RECALL_NOTICE]
    assert [o.due for o in notice] == [date(2026, 3, 13)]  # class II: 3 days


@pytest.mark.parametrize(("cls", "days"), [(RecallClass.I, 1), (RecallClass.III, 7)])
def test_r13_notice_deadline_by_class(cls: RecallClass, days: int) -> None:
    verdict = evaluate(recalls=[recall(recall_class=cls)])
    due = [o.due for o in verdict.obligations if o.kind is ObligationKind.RECALL_NOTICE]
    assert due == [date(2026, 3, 10) + timedelta(days=days)]


def test_r13_one_notice_per_recall_however_many_lines_and_references_alike() -> None:
    lines = [line(lot=lot, quantity=1, expiry_date="2027-12-31")
             for lot in ("L2401", "L2402", "L2401")]
    verdict = evaluate(lines=lines, recalls=[recall(reference="NMPA-12", lot="L2401"),
                                             recall(reference="NMPA-1", lot="L2402")])
    notices = [o.detail for o in verdict.obligations
               if o.kind is ObligationKind.RECALL_NOTICE]
    assert len(notices) == 2  # in the customer's language, zh-CN
    assert "召回 NMPA-12（" in notices[0] and "召回 NMPA-1（" in notices[1]


def test_r13_other_lots_are_not_recalled() -> None:
    verdict = evaluate(recalls=[recall(lot="L9999")])
    assert outcomes(verdict, "R13") == [Outcome.PASS]


def test_r13_a_doubt_about_the_units_identity_still_goes_to_a_person() -> None:
    shipped = (ShippedUnit("GLU-METER-01", 2, lot="L2399"),)
    verdict = evaluate(recalls=[recall()], shipments=shipped)
    assert verdict.outcome is Outcome.REVIEW
    assert disposition(verdict) is Disposition.QUARANTINE


# ------------------------------------------------------------------ R14 adverse event


@pytest.mark.parametrize(
    ("jurisdiction", "severity", "days"),
    [
        (Jurisdiction.CN, "death", 7),
        (Jurisdiction.CN, "serious_injury", 20),
        (Jurisdiction.CN, None, 7),  # unknown: the shortest deadline
        (Jurisdiction.US, "serious_injury", 30),
        (Jurisdiction.EU, "serious_injury", 15),
        (Jurisdiction.EU, "death", 10),
    ],
)
def test_r14_adverse_event_deadlines(jurisdiction: Jurisdiction, severity: str | None,
                                     days: int) -> None:
    verdict = evaluate(rules_policy=policy(jurisdiction=jurisdiction),
                       **{"reason.code": "injury", "reason.severity": severity})
    reports = [o for o in verdict.obligations
               if o.kind is ObligationKind.ADVERSE_EVENT_REPORT]
    assert [o.due for o in reports] == [date(2026, 3, 5) + timedelta(days=days)]


def test_r14_adverse_event_always_goes_to_review_and_the_unit_is_kept() -> None:
    verdict = evaluate(recalls=[recall()], inspections=(passed(),),
                       **{"reason.code": "defective", "reason.text": "用后皮肤红肿过敏"})
    assert verdict.outcome is Outcome.REVIEW
    assert outcomes(verdict, "R14") == [Outcome.REVIEW]
    assert disposition(verdict) is Disposition.KEEP_AS_EVIDENCE


def test_r14_a_refund_only_adverse_event_asks_for_the_unit_as_evidence() -> None:
    verdict = evaluate(kind="refund_only", **{"reason.injury": True})
    assert disposition(verdict) is Disposition.KEEP_AS_EVIDENCE


def _message(verdict: Verdict, rule: str) -> str:
    return " ".join(r.message for r in verdict.rules if r.rule_id == rule)


@pytest.mark.parametrize(
    "text",
    [
        # The two ways of describing an injury that the fixed word list approved, and kin.
        "用了之后手上起了一片红疹",
        "针头扎进去流了好多血",
        "贴了两天皮肤又红又痒",
        "护膝戴了一晚上，腿肿得厉害",
        "my kid got a rash from the patch",
    ],
)
def test_r14_an_injury_in_free_text_is_never_a_plain_no_reason_return(text: str) -> None:
    # Asked on day 9: the no-reason path alone would be denied, and with no text approved.
    late = {"requested_at": "2026-03-10T10:00:00+08:00", "reason.text": text}
    verdict = evaluate(inspections=(passed(),), **late)
    assert verdict.outcome is Outcome.REVIEW
    assert outcomes(verdict, "R14") == [Outcome.REVIEW]
    assert disposition(verdict) is Disposition.KEEP_AS_EVIDENCE
    assert [o.kind for o in verdict.obligations].count(ObligationKind.ADVERSE_EVENT_REPORT) == 1
    assert evaluate(**{"reason.text": "不想要了"}).outcome is Outcome.APPROVE


def test_r14_names_the_words_it_read_and_a_doubtful_word_still_reaches_a_person() -> None:
    certain = evaluate(**{"reason.text": "用了以后手上过敏"})
    assert "过敏" in _message(certain, "R14")
    doubtful = evaluate(inspections=(passed(),), **{"reason.text": "不小心扎到了"})
    assert doubtful.outcome is Outcome.REVIEW
    assert disposition(doubtful) is Disposition.KEEP_AS_EVIDENCE
    assert "扎到" in _message(doubtful, "R14")
    report = [o for o in doubtful.obligations
              if o.kind is ObligationKind.ADVERSE_EVENT_REPORT]
    assert len(report) == 1 and report[0].detail.startswith("如经人工判断确有人受到伤害")
    assert report[0].due == date(2026, 3, 12)  # the deadline for a death, from the request
    english = evaluate(inspections=(passed(),), **{"reason.text": "不小心扎到了",
                                                   "customer.locale": "en"})
    assert next(o.detail for o in english.obligations
                if o.kind is ObligationKind.ADVERSE_EVENT_REPORT).startswith("If a person finds")


@pytest.mark.parametrize("text", ["血糖仪读数不准", "血压计袖带漏气", "血氧仪数值乱跳",
                                  "采血笔弹簧卡住了", "让人很伤心，不想要了"])
def test_r14_the_devices_own_names_in_chinese_are_not_injuries(text: str) -> None:
    verdict = evaluate(**{"reason.text": text})
    assert outcomes(verdict, "R14") == [Outcome.PASS]
    assert verdict.outcome is Outcome.APPROVE


def test_r14_a_shops_own_injury_terms_count() -> None:
    text = "用了以后视物模糊"
    assert evaluate(**{"reason.text": text}).outcome is Outcome.APPROVE
    shop = policy(injury_terms=("视物模糊",))
    verdict = evaluate(rules_policy=shop, **{"reason.text": text})
    assert verdict.outcome is Outcome.REVIEW
    assert outcomes(verdict, "R14") == [Outcome.REVIEW]
    assert reason_group(ReasonCode.CHANGED_MIND, text, False, ("视物模糊",)) \
        is ReasonGroup.ADVERSE_EVENT


# ------------------------------------------------------------------ R12 open box


BP = "BP-MONITOR-01"


@pytest.mark.parametrize(
    ("shop", "line_opened", "seal_intact", "where", "rule"),
    [
        # The blood-pressure monitor whose outer box was opened is not sold as new …
        (policy(), True, True, Disposition.QUARANTINE, "R12"),
        (policy(), False, False, Disposition.QUARANTINE, "R12"),  # the inspector saw it
        # … unless the shop resells open-box units, for all SKUs or this one …
        (policy(open_box_resale=True), True, True, Disposition.RESTOCK, "R08"),
        (policy(sku_flags={BP: SkuFlags(open_box_resale=True)}), True, True,
         Disposition.RESTOCK, "R08"),
        # … and a SKU may be held back where the shop otherwise allows it.
        (policy(open_box_resale=True, sku_flags={BP: SkuFlags(open_box_resale=False)}), True,
         True, Disposition.QUARANTINE, "R12"),
        # A box that was never opened goes back on the shelf after a pass.
        (policy(), False, True, Disposition.RESTOCK, "R08"),
    ],
)
def test_r12_an_opened_box_is_not_sold_as_new_by_default(
        shop: ShopPolicy, line_opened: bool, seal_intact: bool, where: Disposition,
        rule: str) -> None:
    verdict = evaluate(rules_policy=shop, inspections=(passed(seal_intact=seal_intact),),
                       **{"lines.0.sku": BP, "lines.0.package_opened": line_opened})
    assert (disposition(verdict), verdict.lines[0].rule) == (where, rule)
    # Opening the outer box never bars the no-reason return itself (R05).
    assert verdict.outcome is Outcome.APPROVE
    assert ("外包装已开启" in _message(verdict, "R12")) is (where is Disposition.QUARANTINE)


def test_r12_open_box_comes_after_the_rules_that_scrap_or_wait() -> None:
    opened = {"lines.0.sku": BP, "lines.0.package_opened": True}
    # Before the inspection the unit waits for it, whatever the buyer said.
    assert disposition(evaluate(**opened)) is Disposition.PENDING_INSPECTION
    # Sterile and opened, or not as new: scrapped, not merely held.
    sterile = evaluate(inspections=(passed(),), **opened, **{"lines.0.sterile": True})
    assert (disposition(sterile), sterile.lines[0].rule) == (Disposition.SCRAP, "R10")
    used = evaluate(inspections=(passed(condition="used"),), **opened)
    assert (disposition(used), used.lines[0].rule) == (Disposition.SCRAP, "R12")
    # A refund without goods leaves the unit with the customer.
    assert disposition(evaluate(kind="refund_only", **opened)) is Disposition.NOT_RETURNED


# ------------------------------------------------------------------ R04 on the order line


def test_r04_a_confirmation_on_the_order_line_is_honoured_without_a_policy_flag() -> None:
    confirmed = {"lines.0.no_reason_exclusion_confirmed": True}
    verdict = evaluate(**confirmed)
    assert verdict.outcome is Outcome.DENY
    assert outcomes(verdict, "R04") == [Outcome.DENY]
    assert "本店政策未列出" in _message(verdict, "R04")
    # Only the no-reason path: a quality claim or an injury is never denied for it …
    assert evaluate(**confirmed, **{"reason.code": "wrong_item"}).outcome is Outcome.APPROVE
    assert evaluate(**confirmed, **{"reason.text": "手上起了红疹"}).outcome is Outcome.REVIEW
    # … and a unit excluded for safety or hygiene never goes back on the shelf.
    quality = evaluate(inspections=(passed(),), **confirmed, **{"reason.code": "wrong_item"})
    assert (disposition(quality), quality.lines[0].rule) == (Disposition.SCRAP, "R04")


# ------------------------------------------------------------------ R15 qualification


@pytest.mark.parametrize(
    ("licence", "device_class", "outcome"),
    [
        (None, "II", Outcome.REVIEW),
        ({"number": "L-1", "expires_on": "2026-03-09", "scope_classes": ["II"]}, "II",
         Outcome.REVIEW),
        ({"number": "L-1", "expires_on": "2026-03-10", "scope_classes": ["II"]}, "II",
         Outcome.APPROVE),
        ({"number": "L-1", "scope_classes": ["II"]}, "III", Outcome.REVIEW),
        ({"number": "L-1", "scope_classes": []}, "I", Outcome.APPROVE),
    ],
)
def test_r15_business_buyers_licence(licence: dict[str, Any] | None, device_class: str,
                                     outcome: Outcome) -> None:
    verdict = evaluate(**{"customer.type": "business", "customer.licence": licence,
                          "lines.0.device_class": device_class, "reason.code": "wrong_item"})
    assert verdict.outcome is outcome


def test_r15_professional_device_sold_to_a_consumer_goes_to_review() -> None:
    shop = policy(sku_flags={"GLU-METER-01": SkuFlags(professional_only=True)})
    verdict = evaluate(rules_policy=shop)
    assert outcomes(verdict, "R15") == [Outcome.REVIEW]


# ------------------------------------------------------------------ R16 UDI, R01 shipment


@pytest.mark.parametrize(
    ("scan", "outcome"),
    [
        (f"(01){GTIN}(17)271231(10)L2401", Outcome.APPROVE),
        ("(01)09506000134353(17)271231(10)L2401", Outcome.REVIEW),  # bad check digit
        (f"(01){GTIN}(17)271231(10)L2402", Outcome.REVIEW),  # another lot than sold
        (f"01{GTIN}10L24011727123121S1", Outcome.REVIEW),  # group separator missing
        ("MA.156.M0.100001.10234567.V271231.LL2401", Outcome.APPROVE),
        ("MA.156.M0.100001.10234567.V271231.LL2402", Outcome.REVIEW),
        ("MA.156.M0.100001.10234567.X1", Outcome.REVIEW),  # unknown segment
    ],
)
def test_r16_scans_must_parse_and_match_the_sales_record(scan: str, outcome: Outcome) -> None:
    verdict = evaluate(inspections=(passed(udi_scan=scan),),
                       **{"lines.0.expiry_date": None})
    assert verdict.outcome is outcome
    if outcome is Outcome.REVIEW:
        assert disposition(verdict) is Disposition.QUARANTINE


@pytest.mark.parametrize(
    ("shipped", "outcome", "rule_outcome"),
    [
        (None, Outcome.APPROVE, Outcome.PASS),  # the ERP could not say: noted, not held
        ((ShippedUnit("GLU-METER-01", 2, lot="L2401"),), Outcome.APPROVE, Outcome.PASS),
        ((ShippedUnit("GLU-METER-01", 2, lot="L2399"),), Outcome.REVIEW, Outcome.REVIEW),
        ((ShippedUnit("OTHER-SKU", 2, lot="L2401"),), Outcome.REVIEW, Outcome.REVIEW),
    ],
)
def test_r01_the_returned_unit_must_be_one_we_shipped(
        shipped: tuple[ShippedUnit, ...] | None, outcome: Outcome,
        rule_outcome: Outcome) -> None:
    verdict = evaluate(shipments=shipped)
    assert verdict.outcome is outcome
    assert outcomes(verdict, "R01") == [rule_outcome]


@pytest.mark.parametrize(
    ("scan", "shipped", "rule"),
    [
        (f"(01){GTIN}(17)271231(10)L2402", None, "R16"),  # parses, another lot than sold
        ("(01)09506000134353(17)271231(10)L2401", None, "R16"),  # does not parse
        (f"(01){GTIN}(17)271231(10)L2401", (ShippedUnit("GLU-METER-01", 2, lot="L2399"),),
         "R01"),  # the scan agrees with the line; the ERP shipped another lot
    ],
)
def test_quarantine_for_identity_names_the_rule_that_doubted(
        scan: str, shipped: tuple[ShippedUnit, ...] | None, rule: str) -> None:
    verdict = evaluate(shipments=shipped, inspections=(passed(udi_scan=scan),),
                       **{"lines.0.expiry_date": None})
    assert (disposition(verdict), verdict.lines[0].rule) == (Disposition.QUARANTINE, rule)


def test_r01_shipment_fills_a_missing_lot_and_expiry() -> None:
    shipped = (ShippedUnit("GLU-METER-01", 2, lot="L2401", expiry_date=date(2026, 3, 1)),)
    verdict = evaluate(shipments=shipped, recalls=[recall()], inspections=(passed(),),
                       **{"lines.0.lot": None, "lines.0.expiry_date": None})
    assert outcomes(verdict, "R13") == [Outcome.APPROVE]  # the recall matched the ERP's lot
    assert verdict.lines[0].disposition is Disposition.QUARANTINE


# ------------------------------------------------------------------ R17, R19, R20


def test_r17_implantable_records_are_kept_permanently() -> None:
    verdict = evaluate(**{"lines.0.implantable": True})
    assert outcomes(verdict, "R17") == [Outcome.PASS]


@pytest.mark.parametrize(
    ("ages_in_days", "outcome"),
    [((1, 5, 29), Outcome.REVIEW), ((1, 5), Outcome.APPROVE), ((1, 5, 31), Outcome.APPROVE)],
)
def test_r19_frequent_refunds(ages_in_days: tuple[int, ...], outcome: Outcome) -> None:
    previous = tuple(NOW - timedelta(days=d) for d in ages_in_days)
    assert evaluate(previous=previous).outcome is outcome


@pytest.mark.parametrize(
    ("currency", "amount", "outcome"),
    [("CNY", "500.00", Outcome.APPROVE), ("CNY", "500.01", Outcome.REVIEW),
     ("EUR", "10.00", Outcome.REVIEW)],  # no limit set for EUR
)
def test_r20_auto_approval_limit_per_currency(currency: str, amount: str,
                                              outcome: Outcome) -> None:
    verdict = evaluate(**{"order.currency": currency, "order.paid_total": amount,
                          "lines.0.unit_price": amount, "lines.0.quantity": 1,
                          "requested_amount": amount})
    assert verdict.outcome is outcome


# ------------------------------------------------------------------ R07, messages, purity


def test_r07_refund_deadlines() -> None:
    refund_only = evaluate(kind="refund_only")
    waiting = evaluate()
    received = evaluate(inspections=(passed(),))
    denied = evaluate(**{"lines.0.custom_made": True})

    def deadline(verdict: Verdict) -> list[date | None]:
        return [o.due for o in verdict.obligations
                if o.kind is ObligationKind.REFUND_DEADLINE]

    assert deadline(refund_only) == [date(2026, 3, 17)]
    assert deadline(waiting) == [None]  # the clock starts when the goods arrive
    assert deadline(received) == [date(2026, 3, 17)]
    assert deadline(denied) == []


def test_r07_deadlines_follow_a_decision_already_taken() -> None:
    def deadline(verdict: Verdict) -> list[date | None]:
        return [o.due for o in verdict.obligations
                if o.kind is ObligationKind.REFUND_DEADLINE]

    # A refund without goods that a person approves is due from the approval ("today") …
    in_review = {"kind": "refund_only", "reason.code": "other"}
    assert evaluate(**in_review).outcome is Outcome.REVIEW
    assert deadline(evaluate(**in_review)) == []
    assert deadline(evaluate(decided=Outcome.APPROVE, **in_review)) == [date(2026, 3, 17)]
    # … and an approved return whose seal turns out broken at receipt is still owed its
    # refund: the rules' own outcome (deny) does not take the deadline away.
    broken = (passed(seal_intact=False),)
    single_use = {"lines.0.single_use": True}
    assert evaluate(inspections=broken, **single_use).outcome is Outcome.DENY
    assert deadline(evaluate(inspections=broken, decided=Outcome.APPROVE, **single_use)) == [
        date(2026, 3, 17)]


def test_messages_follow_the_customers_locale() -> None:
    chinese = evaluate(**{"customer.locale": "zh-CN", "lines.0.sterile": True})
    english = evaluate(**{"customer.locale": "en", "lines.0.sterile": True})
    zh = next(r.message for r in chinese.rules if r.rule_id == "R02")
    en = next(r.message for r in english.rules if r.rule_id == "R02")
    assert "无理由" in zh and "no-reason window" in en
    # Words filled into a message follow the locale too.
    zh_r10 = next(r.message for r in chinese.rules if r.rule_id == "R10")
    en_r10 = next(r.message for r in english.rules if r.rule_id == "R10")
    assert "由消费者退回" in zh_r10 and "was returned by a consumer" in en_r10


def test_obligations_follow_the_customers_locale_like_the_reasons() -> None:
    # A recalled unit whose reason also speaks of harm sets all three obligations.
    case = {"reason.code": "defective", "reason.text": "用后皮肤红肿",
            "reason.severity": "serious_injury"}
    chinese = evaluate(recalls=[recall()], inspections=(passed(),),
                       **{"customer.locale": "zh-CN", **case})
    english = evaluate(recalls=[recall()], inspections=(passed(),),
                       **{"customer.locale": "en", **case})
    zh = {o.kind: o.detail for o in chinese.obligations}
    en = {o.kind: o.detail for o in english.obligations}
    assert zh == {
        ObligationKind.RECALL_NOTICE:
            "通知注册人：召回 NMPA-2026-017（II级）范围内的一件产品已退回；该件须隔离存放。",
        ObligationKind.ADVERSE_EVENT_REPORT:
            "须在获知之日起20天内报告该可疑不良事件（严重伤害；"
            "依据：医疗器械不良事件监测和再评价管理办法）。",
        ObligationKind.REFUND_DEADLINE: "须在收到退货后7天内退款。",
    }
    # The English wording is the one obligations always had.
    assert en == {
        ObligationKind.RECALL_NOTICE:
            "Notify the registrant that a unit under recall NMPA-2026-017 (class II) came "
            "back; keep it in quarantine.",
        ObligationKind.ADVERSE_EVENT_REPORT:
            "Report the possible adverse event (serious injury) within 20 days of learning "
            "of it (医疗器械不良事件监测和再评价管理办法).",
        ObligationKind.REFUND_DEADLINE: "Refund due within 7 days of receiving the goods.",
    }


def test_the_same_inputs_give_the_same_verdict() -> None:
    assert evaluate(inspections=(passed(),)) == evaluate(inspections=(passed(),))


def test_r13_a_recall_the_shop_does_not_know_goes_to_a_person() -> None:
    verdict = evaluate(**{"reason.code": "recall"})
    assert verdict.outcome is Outcome.REVIEW
    assert outcomes(verdict, "R13") == [Outcome.REVIEW]
    assert evaluate(recalls=[recall()], **{"reason.code": "recall"}).outcome \
        is Outcome.APPROVE


@pytest.mark.parametrize("text", ["the blood pressure monitor reads too high",
                                  "blood glucose meter shows E-3"])
def test_the_devices_own_names_are_not_injuries(text: str) -> None:
    assert reason_group(ReasonCode.DEFECTIVE, text, False) is ReasonGroup.QUALITY
