"""The recall campaign's core: the notice's validation, the state machine, merging pages,
the reminder schedule, and the campaign's own audit trail."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from refundbridge.core.audit import verify_chain
from refundbridge.core.campaigns import (
    CampaignState,
    CampaignStep,
    CheckLevel,
    RecallAction,
    RecallCampaign,
    RecallNotice,
    campaign_id_for,
    merge_page,
    merge_units,
    reminder_due,
)
from refundbridge.core.errors import IllegalTransition, InvalidRequest
from refundbridge.core.ports import Consignee, ConsigneeUnits
from refundbridge.core.recalls import RecallClass

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def notice(**overrides: Any) -> RecallNotice:
    values: dict[str, Any] = {"reference": "RC-1", "recall_class": RecallClass.II,
                              "notice_date": date(2026, 12, 1), "sku": "GLU-METER-01",
                              "lots": ("L1",)}
    values.update(overrides)
    return RecallNotice(**values)


def test_the_notice_due_date_follows_the_class() -> None:
    assert notice(recall_class=RecallClass.I).notice_due == date(2026, 12, 2)
    assert notice(recall_class=RecallClass.II).notice_due == date(2026, 12, 4)
    assert notice(recall_class=RecallClass.III).notice_due == date(2026, 12, 8)


@pytest.mark.parametrize(("overrides", "field"), [
    ({"reference": " "}, "reference"),
    ({"reference": "R" * 129}, "reference"),
    ({"sku": None}, "sku"),
    ({"gtin": "0690123456789"}, "gtin"),
    ({"lots": ("",)}, "lots[0]"),
    ({"lots": ("L" * 65,)}, "lots[0]"),
    ({"serials": tuple(f"S{i}" for i in range(501))}, "serials"),
    ({"recall_class": "IV"}, "class"),
    ({"notice_date": "2026-12-01"}, "notice_date"),
    ({"actions": ()}, "actions"),
    ({"actions": ("pray",)}, "actions[0]"),
    ({"instructions": "x" * 4001}, "instructions"),
    ({"check_level": CheckLevel.B}, "check_percent"),
    ({"check_level": CheckLevel.B, "check_percent": 100}, "check_percent"),
    ({"check_level": CheckLevel.D, "check_percent": 10}, "check_percent"),
])
def test_a_bad_notice_names_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        notice(**overrides)
    assert field in [f for f, _ in raised.value.errors]


def test_a_notice_is_normalised() -> None:
    n = notice(reference="  RC-1 ", lots=(" L1", "L1", "L2"), gtin="6901234567892",
               check_level=CheckLevel.C, instructions="  stop  ")
    assert n.reference == "RC-1" and n.lots == ("L1", "L2")
    assert n.gtin == "06901234567892" and n.check_percent == 10
    assert n.instructions == "stop"
    assert [r.lot for r in n.recalls()] == ["L1", "L2"]
    assert RecallNotice.from_json(n.as_json()) == n


def test_the_campaign_id_is_the_shop_and_the_reference_whatever_their_case() -> None:
    assert campaign_id_for("shop", "RC-1") == campaign_id_for("shop", " rc-1 ")
    assert campaign_id_for("shop", "RC-1") != campaign_id_for("other", "RC-1")


def test_the_state_machine_and_its_trail() -> None:
    campaign = RecallCampaign.open("shop", notice(), actor="operator:qa", at=AT,
                                   can_quarantine=True)
    assert campaign.new_steps == [CampaignStep.IDENTIFY, CampaignStep.QUARANTINE]
    with pytest.raises(IllegalTransition):
        campaign.close("operator:qa", "too early", AT, {})
    campaign.page_read("200", 200, 150, AT)
    assert campaign.state is CampaignState.IDENTIFYING
    campaign.page_read(None, 10, 0, AT)
    assert campaign.state is CampaignState.NOTIFYING
    campaign.notices_sent({"email_sent": 5}, AT, more=False, remaining=3)
    assert campaign.state is CampaignState.NOTIFYING  # three still to tell
    campaign.notices_sent({"email_sent": 3}, AT, more=False, remaining=0)
    assert campaign.state is CampaignState.MONITORING
    with pytest.raises(IllegalTransition):
        campaign.page_read(None, 0, 0, AT)
    campaign.close("operator:qa", "Level A: all answered", AT, {"totals": {}})
    assert campaign.state is CampaignState.CLOSED and not campaign.is_open
    names = [e.name for e in campaign.new_events]
    assert names == ["open", "consignees_page", "consignees_page", "consignees_identified",
                     "notices_sent", "notices_sent", "all_notified", "close"]
    assert verify_chain(campaign.new_events).verifies


def test_a_walk_given_up_ends_the_identification() -> None:
    campaign = RecallCampaign.open("shop", notice(), actor="a", at=AT, can_quarantine=False)
    campaign.walk_given_up("ERP: no such item", AT)
    assert campaign.state is CampaignState.NOTIFYING
    assert campaign.walk_failed == "ERP: no such item"


def unit(line: str, quantity: int = 1) -> ConsigneeUnits:
    return ConsigneeUnits(line_id=line, document="DN-1", sku="S", quantity=quantity, lot="L1")


def test_pages_merge_by_erp_line_so_a_page_read_twice_adds_nothing() -> None:
    assert merge_units([unit("a"), unit("b")], [unit("b"), unit("c", 2)]) == [
        unit("a"), unit("b"), unit("c", 2)]
    merged = merge_page([Consignee("K", "Kim", (unit("a"),)),
                         Consignee("K", "Kim", (unit("b"),), email="kim@example.com")])
    assert list(merged) == ["K"]
    assert [u.line_id for u in merged["K"].units] == ["a", "b"]
    assert merged["K"].email == "kim@example.com"


@pytest.mark.parametrize(("cls", "every", "most"), [
    (RecallClass.I, 1, 5), (RecallClass.II, 3, 3), (RecallClass.III, 7, 2)])
def test_reminders_by_class_stop_after_the_last(cls: RecallClass, every: int,
                                                 most: int) -> None:
    assert reminder_due(cls, AT, 0) == AT + timedelta(days=every)
    assert reminder_due(cls, AT, most - 1) == AT + timedelta(days=every * most)
    assert reminder_due(cls, AT, most) is None


def test_actions_keep_their_order() -> None:
    n = notice(actions=(RecallAction.DESTROY, RecallAction.STOP_USE))
    assert n.as_json()["actions"] == ["destroy", "stop_use"]
