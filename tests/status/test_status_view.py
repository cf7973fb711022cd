"""The status page's read model copies only what a customer may read: a case full of
internal facts comes out without any of them."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from decimal import Decimal
from typing import Any

from refundbridge.api.status.view import StatusView, mask_email, mask_phone
from refundbridge.core.money import Money
from refundbridge.core.policy import ShopPolicy, SkuFlags

SECRETS = ("疑似转卖", "suspected resale", "wang.fang", "token:li.na", "operator:zhang",
           "R04", "R07", "R13", "li.wei@example.com", "13800001234", "550 mailbox",
           "Stores - RB", "ERP-RET-0001", "pi_3Nsecret", "cust-7781", "quarantine")


def a_case(**changes: Any) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "id": "rc_01", "shop_id": "acme-medical", "source": "generic",
        "external_id": "ext-1", "order_id": "SO-1001", "kind": "return_and_refund",
        "state": "awaiting_return",
        "requested": {"amount": "398.00", "currency": "CNY"},
        "approved": {"amount": "398.00", "currency": "CNY"},
        "refunded": {"amount": "0.00", "currency": "CNY"},
        "created_at": "2026-03-01T02:00:00+00:00",
        "updated_at": "2026-03-01T03:00:00+00:00",
        "order": {"id": "SO-1001", "payment": {"provider": "alipay",
                                               "reference": "pi_3Nsecret"}},
        "customer": {"id": "cust-7781", "email": "li.wei@example.com",
                     "phone": "+8613800001234", "locale": "zh-CN", "type": "consumer"},
        "lines": [
            {"sku": "IVD-REAGENT-COLD", "name": "血糖试纸 Reagent", "quantity": 1,
             "sterile": False, "cold_chain": False, "lot": "L1"},
            {"sku": "LANCET-200", "name": "采血针 Lancets", "quantity": 2, "sterile": True},
        ],
        "reason": {"code": "defective", "text": "扎到手了"},
        "decisions": [
            {"outcome": "review", "rules": [{"id": "R13", "outcome": "review"}],
             "decided_by": "rules", "at": "2026-03-01T02:01:00+00:00",
             "internal_note": "", "customer_message": ""},
            {"outcome": "approve", "amount": {"amount": "398.00", "currency": "CNY"},
             "rules": [{"id": "R04", "outcome": "approve", "message": "R07 quarantine"}],
             "lines": [{"disposition": "quarantine", "rule": "R13"}],
             "obligations": [{"kind": "recall_notice", "rule": "R13", "detail": "R13"}],
             "decided_by": "token:li.na", "proposed_by": "operator:zhang",
             "at": "2026-03-02T01:00:00+00:00",
             "internal_note": "客户疑似转卖 (suspected resale)",
             "customer_message": "请尽快寄回。"},
        ],
        "notifications": [
            {"kind": "received", "status": "sent", "attempts": 1, "last_error": None,
             "last_attempt_at": "2026-03-01T02:02:00+00:00", "waived_by": None},
            {"kind": "approved", "status": "failed", "attempts": 3,
             "last_error": "550 mailbox li.wei@example.com unavailable",
             "last_attempt_at": "2026-03-02T01:05:00+00:00", "waived_by": "operator:zhang"},
        ],
        "inspections": [{"inspector": "wang.fang", "condition": "used"}],
        "stock_moves": [{"disposition": "quarantine", "warehouse": "Stores - RB"}],
        "obligations": [
            {"kind": "refund_deadline", "due": None, "detail": "R07 within 7 days",
             "rule": "R07"},
            {"kind": "adverse_event_report", "due": "2026-03-08", "detail": "R14",
             "rule": "R14"}],
        "erp_reference": "ERP-RET-0001", "assignee": "wang.fang",
        "failure": None, "pending_review": None,
        "timeline": [
            {"seq": 1, "at": "2026-03-01T02:00:00+00:00", "name": "received",
             "from_state": None, "to_state": "received", "actor": "storefront:generic"},
            {"seq": 5, "at": "2026-03-02T01:00:00+00:00", "name": "approve",
             "from_state": "awaiting_review", "to_state": "approved", "actor": "token:li.na"},
        ],
    }
    detail.update(changes)
    return detail


POLICY = ShopPolicy(sku_flags={"IVD-REAGENT-COLD": SkuFlags(cold_chain=True)},
                    return_address="Acme, 88 Zhangjiang Rd")


def everything_shown(view: StatusView) -> str:
    return repr(asdict(view))


def test_nothing_internal_comes_through() -> None:
    view = StatusView.of(a_case(), POLICY)
    shown = everything_shown(view)
    for secret in SECRETS:
        assert secret not in shown, secret
    assert view.customer_message == "请尽快寄回。"
    assert view.email == "l****@e******.com" and view.phone == "+86*******1234"


def test_the_state_reads_as_the_customers_steps_and_todo() -> None:
    view = StatusView.of(a_case(), POLICY)
    assert view.phase == "send_back"
    assert [(s.key, s.done, s.current) for s in view.steps] == [
        ("received", True, False), ("decided", True, False), ("goods_back", False, True),
        ("refunded", False, False)]
    # the shop's calendar (Asia/Shanghai): 01:00 UTC is 09:00 the same day
    assert view.steps[1].at == date(2026, 3, 2)
    assert view.amount == Money(Decimal("398.00"), "CNY") and view.refunded is None
    assert view.paid_with == "your Alipay account"
    assert view.expected_by is None and view.deadline_days == 7
    assert (view.needs_cold_chain, view.needs_sterile, view.needs_sharps) == (True, True, True)
    assert view.return_address == "Acme, 88 Zhangjiang Rd"
    assert [(m.kind, m.status) for m in view.messages] == [
        ("received", "sent"), ("approved", "not_delivered")]


def test_goods_back_and_refunded_take_their_dates_from_the_timeline() -> None:
    timeline = a_case()["timeline"] + [
        {"seq": 8, "at": "2026-03-05T16:30:00+00:00", "to_state": "received_goods",
         "actor": "wang.fang"},
        {"seq": 9, "at": "2026-03-05T17:00:00+00:00", "to_state": "refunding"},
        {"seq": 10, "at": "2026-03-05T17:01:00+00:00", "to_state": "refunded"}]
    deadline = [{"kind": "refund_deadline", "due": "2026-03-12", "rule": "R07",
                 "detail": "x"}]
    receiving = StatusView.of(a_case(state="refunding", timeline=timeline[:-1],
                                     obligations=deadline), POLICY)
    assert receiving.phase == "goods_back"
    assert receiving.expected_by == date(2026, 3, 12)
    assert receiving.steps[2].at == date(2026, 3, 6)  # 00:30 in Shanghai
    done = StatusView.of(a_case(state="closed", timeline=timeline, obligations=deadline,
                                refunded={"amount": "398.00", "currency": "CNY"}), POLICY)
    assert done.phase == "refunded" and all(s.done for s in done.steps)
    assert done.expected_by is None  # paid: no more promise to show


def test_a_refusal_has_no_refund_step_and_a_refund_only_case_no_goods_step() -> None:
    decisions = a_case()["decisions"]
    denied = StatusView.of(a_case(state="denied", approved=None, decisions=[
        {**decisions[-1], "outcome": "deny", "customer_message": "超过退货期限"}]), POLICY)
    assert denied.phase == "denied"
    assert [s.key for s in denied.steps] == ["received", "decided"]
    assert denied.steps[1].label == "Request declined"
    assert denied.customer_message == "超过退货期限"
    waiting = StatusView.of(a_case(state="awaiting_review", kind="refund_only",
                                   approved=None, decisions=decisions[:1]), POLICY)
    assert waiting.phase == "reviewing"
    assert [s.key for s in waiting.steps] == ["received", "decided", "refunded"]
    assert waiting.steps[1].current and not waiting.steps[1].done
    assert waiting.customer_message == ""


def test_masks() -> None:
    assert mask_email("a@b.cn") == "a****@b**.cn"
    assert mask_email("张三@例子.中国") == "张****@例**.中国"
    assert mask_email("no-at-sign") is None and mask_email(None) is None
    assert mask_phone("+8613800001234") == "+86*******1234"
    assert mask_phone("0755-1234") == "****1234"
    assert mask_phone("12345") == "****"
    assert mask_phone(None) is None
