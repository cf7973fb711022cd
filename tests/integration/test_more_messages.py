"""The messages between the decision and the refund: the approved email of a return says
what to do next (the RMA number, the shop's return address, how to pack sterile, cold-chain
and sharp items), the warehouse's receipt sends "goods received", and a refund the provider
refuses for good, or reverses, sends "refund failed" once, however many attempts fail.

A real SMTP server (aiosmtpd on 127.0.0.1), real PostgreSQL and Redis; only Stripe and
ERPNext are faked (respx)."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from refundbridge.api.app import create_app
from refundbridge.bootstrap import Container
from refundbridge.core.model import RefundResult, RefundStatus
from refundbridge.demo import Mailbox
from tests.conftest import drain, open_case
from tests.factories import AUTH, REVIEWER_AUTH
from tests.fakes.erpnext import ERPNextFake
from tests.fakes.stripe import StripeFake

Providers = tuple[Any, StripeFake, ERPNextFake]
ADDRESS = "爱康医疗 售后部\n上海市浦东新区张江路 88 号 3 楼\n200120"
RECEIPT = {"lines": [{"line": 0, "seal_intact": True, "condition": "as_new",
                      "inspector": "wang.fang", "quantity": 2}]}


def mails(box: Mailbox) -> list[EmailMessage]:
    return [email.message_from_bytes(m, policy=email.policy.default) for m in box.messages]


def of_kind(box: Mailbox, case_id: str, kind: str) -> list[EmailMessage]:
    return [m for m in mails(box) if str(m["Message-ID"]) == f"<{case_id}.{kind}@refundbridge>"]


def text_of(mail: EmailMessage) -> str:
    part = mail.get_body(("plain",))
    assert part is not None
    return " ".join(str(part.get_content()).split())


def html_of(mail: EmailMessage) -> str:
    part = mail.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def case_of(client: TestClient, case_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/cases/{case_id}", headers=AUTH)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def notification(case: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = [n for n in case["notifications"] if n["kind"] == kind]
    return dict(found)


def approved_return(client: TestClient, container: Container, erp: ERPNextFake,
                    **overrides: Any) -> str:
    """A return, approved (by a reviewer if the rules sent it to one), awaiting its goods."""
    case_id, _ = open_case(client, erp, kind="return_and_refund", **overrides)
    drain(container)
    if case_of(client, case_id)["state"] == "awaiting_review":
        decided = client.post(f"/v1/cases/{case_id}/review", headers=REVIEWER_AUTH,
                              json={"decision": "approve", "internal_note": "fine"})
        assert decided.status_code == 200, decided.text
        drain(container)
    case = case_of(client, case_id)
    assert case["state"] in ("awaiting_return", "refunded"), case
    return case_id


# ------------------------------------------------------------------ approved: what to do next

ADVICE = {
    "en": {"sterile": "Sterile items: keep unopened packs sealed",
           "cold_chain": "Items to be kept cold: keep them in the fridge",
           "sharp": "Lancets, needles and other sharps:"},
    "zh-CN": {"sterile": "无菌产品：未开封的请保持密封",
              "cold_chain": "需冷藏的产品：寄出前请放在冰箱冷藏",
              "sharp": "采血针、针头等锐器："},
}
RMA = {"en": "Write your return number (RMA) on the outside of the parcel: ",
       "zh-CN": "在包裹外侧写上退货编号（RMA）："}


@pytest.mark.parametrize(("locale", "line", "needs"), [
    # sterile by the request line, cold-chain by the shop's SKU flag
    ("en", {"lines.0.sterile": True, "lines.0.sku": "IVD-COLD-1"}, {"sterile", "cold_chain"}),
    # sterile by the request line, a sharp by its name
    ("zh-CN", {"lines.0.sterile": True, "lines.0.name": "无菌一次性采血针 Sterile lancets"},
     {"sterile", "sharp"}),
], ids=["en", "zh-CN"])
def test_the_approved_email_of_a_sterile_return_names_the_address_and_the_packing(
        make_container: Callable[..., Container], providers: Providers, mailbox: Mailbox,
        locale: str, line: dict[str, Any], needs: set[str]) -> None:
    _, _, erp = providers
    container = make_container(policy={
        "refund_timing": "on_receipt", "auto_approve_limits": {"CNY": "500"},
        "return_address": ADDRESS, "skus": {"IVD-COLD-1": {"cold_chain": True}}})
    with TestClient(create_app(container)) as client:
        case_id = approved_return(client, container, erp, **{"customer.locale": locale},
                                  **line)

    (approval,) = of_kind(mailbox, case_id, "approved")
    assert approval["Content-Language"] == locale
    text, html = text_of(approval), html_of(approval)
    assert f"{RMA[locale]}{case_id}" in text
    assert RMA[locale].strip() in html and case_id in html
    for part in ADDRESS.splitlines():
        assert part in text and part in html
    for need, phrase in ADVICE[locale].items():
        assert (phrase in text) is (need in needs), (need, text)


def test_without_a_return_address_the_approval_asks_the_customer_to_write_first(
        client: TestClient, container: Container, providers: Providers,
        mailbox: Mailbox) -> None:
    _, _, erp = providers
    case_id = approved_return(client, container, erp)
    (approval,) = of_kind(mailbox, case_id, "approved")
    assert "寄出前请回复本邮件，我们会告诉您寄回地址" in text_of(approval)
    assert not any(phrase in text_of(approval) for phrase in ADVICE["zh-CN"].values())


# ------------------------------------------------------------------ goods received


def test_a_returns_receipt_emails_goods_received_and_the_case_closes(
        client: TestClient, container: Container, providers: Providers,
        mailbox: Mailbox) -> None:
    _, stripe, erp = providers
    case_id = approved_return(client, container, erp, **{"customer.locale": "en"})
    assert of_kind(mailbox, case_id, "goods_received") == []  # not before the receipt

    received = client.post(f"/v1/cases/{case_id}/receipt", headers=AUTH, json=RECEIPT)
    assert received.status_code == 200, received.text
    assert notification(received.json(), "goods_received")["status"] == "pending"
    drain(container)

    case = case_of(client, case_id)
    assert case["state"] == "closed", case
    assert notification(case, "goods_received")["status"] == "sent"
    assert len(stripe.paid()) == 1
    (mail,) = of_kind(mailbox, case_id, "goods_received")
    assert mail["Subject"] == f"Your returned items for order {case['order_id']} have arrived"
    assert "has arrived and we have checked in the items" in text_of(mail)
    assert "2 × 血糖仪 Glucose meter" in text_of(mail)
    assert "wang.fang" not in mail.as_string()  # who inspected stays inside
    assert sorted(str(m["Message-ID"]) for m in mails(mailbox)) == sorted(
        f"<{case_id}.{kind}@refundbridge>"
        for kind in ("received", "approved", "goods_received", "refunded"))


def test_goods_received_after_the_refund_says_it_is_paid_and_the_case_closes_after_it(
        make_container: Callable[..., Container], providers: Providers,
        mailbox: Mailbox) -> None:
    _, stripe, erp = providers
    container = make_container(policy={"refund_timing": "on_approval",
                                       "auto_approve_limits": {"CNY": "500"}})
    with TestClient(create_app(container)) as client:
        case_id = approved_return(client, container, erp, **{"customer.locale": "en"})
        assert case_of(client, case_id)["state"] == "awaiting_return"  # paid, goods out
        assert len(of_kind(mailbox, case_id, "refunded")) == 1

        received = client.post(f"/v1/cases/{case_id}/receipt", headers=AUTH, json=RECEIPT)
        assert received.status_code == 200, received.text
        # paid and (soon) booked, but the customer is still owed the receipt's email
        assert received.json()["state"] == "received_goods"
        drain(container)
        case = case_of(client, case_id)

    assert case["state"] == "closed", case
    (mail,) = of_kind(mailbox, case_id, "goods_received")
    assert "Your refund of CN¥398.00 has already been paid to the card you paid with." in (
        text_of(mail))
    assert len(stripe.paid()) == 1


def test_a_refund_only_case_gets_no_goods_received_email(
        client: TestClient, container: Container, providers: Providers,
        mailbox: Mailbox) -> None:
    _, _, erp = providers
    case_id, _ = open_case(client, erp)
    drain(container)
    case = case_of(client, case_id)
    assert case["state"] == "closed"
    assert sorted(n["kind"] for n in case["notifications"]) == [
        "approved", "received", "refunded"]


# ------------------------------------------------------------------ refund failed

REFUSAL = httpx.Response(400, json={"error": {
    "type": "invalid_request_error", "code": "charge_disputed",
    "message": "Charge ch_123 has been charged back; cannot issue a refund."}})


def test_a_refund_refused_for_good_emails_refund_failed_once_and_the_retry_closes_the_case(
        client: TestClient, container: Container, providers: Providers,
        mailbox: Mailbox) -> None:
    _, stripe, erp = providers
    stripe.before_post.append(lambda request: REFUSAL)
    case_id, _ = open_case(client, erp, **{"customer.locale": "en"})
    drain(container)

    case = case_of(client, case_id)
    assert case["state"] == "failed" and case["failure"]["step"] == "refund"
    assert notification(case, "refund_failed")["status"] == "sent"
    (mail,) = of_kind(mailbox, case_id, "refund_failed")
    assert mail["Subject"] == f"Your refund for order {case['order_id']} is delayed"
    text = text_of(mail)
    assert "CN¥398.00" in text and "to the card you paid with" in text
    assert "will pay it again" in text
    assert "charged back" not in mail.as_string()  # the provider's words stay inside

    # A person retries while the cause is still there: the second attempt fails too, and
    # the customer is not told again.
    retried = client.post(f"/v1/cases/{case_id}/retry", headers=REVIEWER_AUTH)
    assert retried.status_code == 200, retried.text
    drain(container)
    case = case_of(client, case_id)
    assert case["state"] == "failed"
    assert [a["status"] for a in case["refund_attempts"]] == ["failed", "failed"]
    assert len(of_kind(mailbox, case_id, "refund_failed")) == 1
    assert notification(case, "refund_failed")["attempts"] == 1

    stripe.before_post.clear()  # the dispute is resolved
    retried = client.post(f"/v1/cases/{case_id}/retry", headers=REVIEWER_AUTH)
    assert retried.status_code == 200, retried.text
    drain(container)
    case = case_of(client, case_id)
    assert case["state"] == "closed", case
    assert len(stripe.paid()) == 1
    assert len(of_kind(mailbox, case_id, "refund_failed")) == 1
    assert len(of_kind(mailbox, case_id, "refunded")) == 1
    assert {n["kind"]: n["status"] for n in case["notifications"]} == {
        "received": "sent", "approved": "sent", "refund_failed": "sent", "refunded": "sent"}


def test_a_refund_the_provider_reverses_emails_refund_failed_and_the_retry_closes_it(
        client: TestClient, container: Container, providers: Providers,
        mailbox: Mailbox) -> None:
    _, stripe, erp = providers
    case_id, _ = open_case(client, erp)
    drain(container)
    assert case_of(client, case_id)["state"] == "closed"
    with container.uow() as uow:  # the provider reports the paid refund failed after all
        case = uow.cases.get(case_id)
        attempt = case.current_attempt
        assert attempt is not None
        case.apply_refund_result(RefundResult(RefundStatus.FAILED, attempt.provider_ref,
                                              message="card closed"),
                                 datetime.now(UTC), actor="connector:stripe")
        uow.commit()
    drain(container)

    failed = case_of(client, case_id)
    assert failed["state"] == "failed"
    assert notification(failed, "refund_failed")["status"] == "sent"
    (mail,) = of_kind(mailbox, case_id, "refund_failed")
    assert "未能成功" in text_of(mail) and "重新为您退款" in text_of(mail)
    assert "card closed" not in mail.as_string()

    client.post(f"/v1/cases/{case_id}/retry", headers=AUTH, json={})
    drain(container)
    assert case_of(client, case_id)["state"] == "closed"
    assert len(stripe.paid()) == 2
    assert len(of_kind(mailbox, case_id, "refund_failed")) == 1


def test_an_operator_resends_and_waives_the_new_kinds_through_v1(
        client: TestClient, container: Container, providers: Providers,
        mailbox: Mailbox) -> None:
    _, stripe, erp = providers
    stripe.before_post.append(lambda request: REFUSAL)
    case_id, _ = open_case(client, erp)
    drain(container)
    assert notification(case_of(client, case_id), "refund_failed")["status"] == "sent"

    # a sent message is neither resent nor waived; an unknown kind is a 422
    again = client.post(f"/v1/cases/{case_id}/notifications/refund_failed/resend",
                        headers=REVIEWER_AUTH)
    assert again.status_code == 409, again.text
    waive = client.post(f"/v1/cases/{case_id}/notifications/refund_failed/waive",
                        headers=REVIEWER_AUTH, json={"reason": "told by phone"})
    assert waive.status_code == 409, waive.text
    missing = client.post(f"/v1/cases/{case_id}/notifications/goods_received/resend",
                          headers=REVIEWER_AUTH)
    assert missing.status_code == 404, missing.text
    unknown = client.post(f"/v1/cases/{case_id}/notifications/goods_back/resend",
                          headers=REVIEWER_AUTH)
    assert unknown.status_code == 422, unknown.text
