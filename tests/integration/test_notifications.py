"""What the customer is told, and what they are owed: a reviewer's internal note never leaves
RefundBridge (not in an email, not in a storefront write-back) while the message to the
customer does; a case does not close while an email it owes is unsent, a failed one is
resent or waived by an operator, and a transient failure is tried again by the reconciler.

A real SMTP server (aiosmtpd on 127.0.0.1), real PostgreSQL and Redis; only third-party HTTP
is faked."""

from __future__ import annotations

import email
import email.policy
import json
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import respx
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy import text

from refundbridge.api.app import create_app
from refundbridge.bootstrap import Container
from refundbridge.core.model import DeliveryStatus
from refundbridge.demo import Mailbox
from refundbridge.workers.reconcile import reconcile
from tests.conftest import drain, open_case
from tests.factories import AUTH, REVIEWER_ACTOR, REVIEWER_AUTH
from tests.fakes.erpnext import ERPNextFake
from tests.fakes.odoo import OdooFake
from tests.fakes.shopify import ShopifyFake
from tests.fakes.stripe import StripeFake
from tests.integration.test_shop_setups import ODOO, SHOPIFY, post_shopify, shopify_order

INTERNAL = "客户疑似转卖，已内部标记 (suspected resale; flagged)"
TO_CUSTOMER = "已为您安排退款，感谢耐心等待。"
KINDS = ("received", "approved", "refunded")
Providers = tuple[respx.MockRouter, StripeFake, ERPNextFake]


class RefusingMailbox(Mailbox):
    """A mail server that refuses every recipient for good (550) until told to accept."""

    def __init__(self) -> None:
        super().__init__()
        self.refusing = True

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if self.refusing:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def smtp_settings(port: int) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": port, "sender_email": "returns@acme.example.com",
            "sender_name": "Acme", "timeout": 5}


@pytest.fixture
def refusing_server() -> Iterator[tuple[int, RefusingMailbox]]:
    handler = RefusingMailbox()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, handler
    controller.stop()


def mails(box: Mailbox) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(m, policy=email.policy.default)  # type: ignore[misc]
            for m in box.messages]


def body_text(mail: email.message.EmailMessage) -> str:
    part = mail.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def case_of(client: TestClient, case_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/cases/{case_id}", headers=AUTH)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def chain(client: TestClient, case_id: str) -> list[dict[str, Any]]:
    evidence = client.get(f"/v1/cases/{case_id}/evidence", headers=AUTH).json()
    assert evidence["verifies"] is True, evidence
    return list(evidence["chain"])


def notifications(case: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["kind"]: n for n in case["notifications"]}


# ------------------------------------------------------------------ the internal note stays in


def test_a_reviewers_internal_note_is_kept_and_only_the_customer_message_is_emailed(
        client: TestClient, container: Container, providers: Providers,
        mailbox: Mailbox) -> None:
    _, _, erp = providers
    case_id, _ = open_case(client, erp, **{"reason.code": "other"})
    drain(container)
    assert case_of(client, case_id)["state"] == "awaiting_review"

    decided = client.post(f"/v1/cases/{case_id}/review", headers=REVIEWER_AUTH, json={
        "decision": "approve", "internal_note": INTERNAL,
        "customer_message": TO_CUSTOMER})
    assert decided.status_code == 200, decided.text
    drain(container)

    case = case_of(client, case_id)
    assert case["state"] == "closed", case
    review = case["decisions"][-1]
    assert (review["internal_note"], review["customer_message"]) == (INTERNAL, TO_CUSTOMER)
    approve_event = next(e for e in chain(client, case_id)
                         if e["name"] == "approve" and e["actor"] == REVIEWER_ACTOR)
    assert approve_event["data"]["internal_note"] == INTERNAL

    received = mails(mailbox)
    assert sorted(str(m["Message-ID"]) for m in received) == sorted(
        f"<{case_id}.{kind}@refundbridge>" for kind in KINDS)
    for mail in received:
        text_read = f"{mail['Subject']}\n{body_text(mail)}"
        assert "suspected resale" not in text_read and "疑似转卖" not in text_read
        assert "suspected resale" not in mail.as_string()
    approval = next(m for m in received if ".approved@" in str(m["Message-ID"]))
    assert f"客服留言：{TO_CUSTOMER}" in body_text(approval)


def test_the_old_note_field_is_refused_naming_it(client: TestClient, container: Container,
                                                 providers: Providers) -> None:
    _, _, erp = providers
    case_id, _ = open_case(client, erp, **{"reason.code": "other"})
    drain(container)
    answer = client.post(f"/v1/cases/{case_id}/review", headers=AUTH, json={
        "decision": "approve", "note": "sent to the customer?"})
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    fields = {e["field"] for e in answer.json()["errors"]}
    assert {"note", "internal_note"} <= fields
    assert "internal_note" in next(e["message"] for e in answer.json()["errors"]
                                   if e["field"] == "note")
    assert case_of(client, case_id)["state"] == "awaiting_review"


@pytest.mark.parametrize(("field", "value"), [
    ("internal_note", "checked\x00"), ("customer_message", "hello\x1b[2J"),
    ("internal_note", ""), ("customer_message", "x" * 2001), ("internal_note", "x" * 4001),
])
def test_review_texts_are_bounded_and_free_of_control_characters(
        client: TestClient, container: Container, providers: Providers, field: str,
        value: str) -> None:
    _, _, erp = providers
    case_id, _ = open_case(client, erp, **{"reason.code": "other"})
    drain(container)
    body = {"decision": "approve", "internal_note": "ok", field: value}
    answer = client.post(f"/v1/cases/{case_id}/review", headers=AUTH, json=body)
    assert answer.status_code == 422, answer.text
    assert [e["field"] for e in answer.json()["errors"]] == [field]
    assert case_of(client, case_id)["state"] == "awaiting_review"


def test_a_review_keeps_line_breaks_in_both_texts(client: TestClient, container: Container,
                                                   providers: Providers) -> None:
    _, _, erp = providers
    case_id, _ = open_case(client, erp, **{"reason.code": "other"})
    drain(container)
    answer = client.post(f"/v1/cases/{case_id}/review", headers=AUTH, json={
        "decision": "deny", "internal_note": "line one\n\tline two",
        "customer_message": "Dear customer,\r\nsorry."})
    assert answer.status_code == 200, answer.text
    decision = answer.json()["decisions"][-1]
    assert decision["internal_note"] == "line one\n\tline two"
    assert decision["customer_message"] == "Dear customer,\r\nsorry."


@pytest.fixture
def shopify_shop(make_container: Callable[..., Container]
                 ) -> Iterator[tuple[Container, ShopifyFake, OdooFake]]:
    shop, erp = ShopifyFake(), OdooFake(version=17)
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        shop.install(router)
        erp.install(router)
        yield make_container(
            storefront="shopify", payment="shopify", erp="odoo", notifier="smtp",
            shopify=SHOPIFY, odoo=ODOO,
            policy={"refund_timing": "on_receipt", "auto_approve_limits": {"USD": "80.00"}},
        ), shop, erp


def test_a_decline_written_back_to_shopify_carries_the_customer_message_not_the_note(
        shopify_shop: tuple[Container, ShopifyFake, OdooFake], mailbox: Mailbox) -> None:
    container, shop, erp = shopify_shop
    order_id = shopify_order(shop, erp)
    return_id = shop.add_return(order_id, items=((0, 1, "DEFECTIVE"),), note="screen blank")
    with TestClient(create_app(container)) as client:
        opened = post_shopify(client, "returns/request", shop.return_webhook(return_id))
        assert opened.status_code == 202, opened.text
        case_id = opened.json()["case_id"]
        drain(container)
        assert case_of(client, case_id)["state"] == "awaiting_review"

        decided = client.post(f"/v1/cases/{case_id}/review", headers=AUTH, json={
            "decision": "deny",
            "internal_note": "Dropped by the customer, per the courier photos; flag account",
            "customer_message": "The damage is not covered by the warranty."})
        assert decided.status_code == 200, decided.text
        drain(container)
        assert case_of(client, case_id)["state"] == "denied"

    declines = shop.bodies("RefundBridgeReturnDecline")
    assert len(declines) == 1
    sent = str(declines[0])
    assert "courier photos" not in sent and "flag account" not in sent
    assert declines[0]["variables"]["input"]["declineNote"] == (
        "The damage is not covered by the warranty.")
    denial = next(m for m in mails(mailbox) if ".denied@" in str(m["Message-ID"]))
    assert "The damage is not covered by the warranty." in body_text(denial)
    assert "courier photos" not in denial.as_string()


# ------------------------------------------------------------------ what the customer is owed


def paid_case_with_refused_mail(make_container: Callable[..., Container], providers: Providers,
                                port: int) -> tuple[Container, TestClient, str]:
    container = make_container(smtp=smtp_settings(port))
    client = TestClient(create_app(container))
    case_id, _ = open_case(client, providers[2])
    drain(container)
    return container, client, case_id


def test_a_refused_email_keeps_the_paid_case_open_until_it_is_resent(
        make_container: Callable[..., Container], providers: Providers,
        refusing_server: tuple[int, RefusingMailbox]) -> None:
    port, server = refusing_server
    container, client, case_id = paid_case_with_refused_mail(make_container, providers, port)
    with client:
        case = case_of(client, case_id)
        assert case["state"] == "refunded", case
        assert case["erp_reference"] is not None
        shown = notifications(case)
        assert set(shown) == set(KINDS)
        for kind in KINDS:
            assert shown[kind]["status"] == "failed"
            assert shown[kind]["attempts"] == 1
            assert "550" in shown[kind]["last_error"]
            assert shown[kind]["next_attempt_at"] is None  # waits for a person
        assert server.messages == []

        # Nothing a worker can mend: the reconciler leaves it alone, the case stays open.
        reconcile(container, stale_after=0, now=datetime.now(UTC) + timedelta(hours=1))
        drain(container)
        assert case_of(client, case_id)["state"] == "refunded"

        server.refusing = False
        for kind in KINDS:
            resent = client.post(f"/v1/cases/{case_id}/notifications/{kind}/resend",
                                 headers=REVIEWER_AUTH)
            assert resent.status_code == 200, resent.text
            assert notifications(resent.json())[kind]["status"] == "pending"
        drain(container)

        case = case_of(client, case_id)
        assert case["state"] == "closed", case
        assert all(n["status"] == "sent" and n["attempts"] == 2
                   for n in case["notifications"])
        assert sorted(str(m["Message-ID"]) for m in mails(server)) == sorted(
            f"<{case_id}.{kind}@refundbridge>" for kind in KINDS)
        asked = [e for e in chain(client, case_id) if e["name"] == "notification_resend_requested"]
        assert {e["actor"] for e in asked} == {REVIEWER_ACTOR}

        again = client.post(f"/v1/cases/{case_id}/notifications/approved/resend", headers=AUTH)
        assert again.status_code == 409, again.text


def test_an_operator_waives_a_refused_email_with_a_reason_and_the_case_closes(
        make_container: Callable[..., Container], providers: Providers,
        refusing_server: tuple[int, RefusingMailbox]) -> None:
    port, _ = refusing_server
    _, client, case_id = paid_case_with_refused_mail(make_container, providers, port)
    with client:
        blank = client.post(f"/v1/cases/{case_id}/notifications/approved/waive",
                            headers=REVIEWER_AUTH, json={"reason": ""})
        assert blank.status_code == 422, blank.text
        assert [e["field"] for e in blank.json()["errors"]] == ["reason"]
        unknown = client.post(f"/v1/cases/{case_id}/notifications/thanks/waive",
                              headers=REVIEWER_AUTH, json={"reason": "x"})
        assert unknown.status_code == 422, unknown.text

        for kind in KINDS:
            answer = client.post(f"/v1/cases/{case_id}/notifications/{kind}/waive",
                                 headers=REVIEWER_AUTH,
                                 json={"reason": "address bounces; told the customer by "
                                                 "phone"})
            assert answer.status_code == 200, answer.text
        case = answer.json()
        assert case["state"] == "closed", case
        assert all((n["status"], n["waived_by"]) == ("waived", REVIEWER_ACTOR)
                   for n in case["notifications"])
        waived = [e for e in chain(client, case_id) if e["name"] == "notification_waived"]
        assert sorted(e["data"]["kind"] for e in waived) == sorted(KINDS)
        assert all(e["actor"] == REVIEWER_ACTOR and "phone" in e["data"]["reason"]
                   and "550" in e["data"]["last_error"] for e in waived)


def test_a_denied_cases_refused_email_is_resent_and_the_case_stays_denied(
        make_container: Callable[..., Container], providers: Providers,
        refusing_server: tuple[int, RefusingMailbox]) -> None:
    port, server = refusing_server
    container = make_container(smtp=smtp_settings(port))
    with TestClient(create_app(container)) as client:
        case_id, _ = open_case(client, providers[2], **{"reason.code": "other"})
        drain(container)
        denied = client.post(f"/v1/cases/{case_id}/review", headers=AUTH, json={
            "decision": "deny", "internal_note": "no reason given"})
        assert denied.status_code == 200, denied.text
        drain(container)
        case = case_of(client, case_id)
        assert case["state"] == "denied"
        assert notifications(case)["denied"]["status"] == "failed"

        server.refusing = False
        resent = client.post(f"/v1/cases/{case_id}/notifications/denied/resend", headers=AUTH)
        assert resent.status_code == 200, resent.text
        drain(container)
        case = case_of(client, case_id)
        assert case["state"] == "denied"
        assert notifications(case)["denied"]["status"] == "sent"
        assert [str(m["Message-ID"]) for m in mails(server)] == [
            f"<{case_id}.denied@refundbridge>"]


def test_an_unreachable_mail_server_is_tried_again_with_backoff_and_then_the_case_closes(
        make_container: Callable[..., Container], providers: Providers) -> None:
    port = free_port()  # nothing listens there yet: connection refused, a transient error
    container = make_container(smtp=smtp_settings(port))
    with TestClient(create_app(container)) as client:
        case_id, _ = open_case(client, providers[2])
        drain(container)
        case = case_of(client, case_id)
        assert case["state"] == "refunded", case
        for notification in case["notifications"]:
            assert notification["status"] == "pending"
            assert notification["attempts"] >= 1
            assert "ConnectionRefusedError" in notification["last_error"]
            assert notification["next_attempt_at"] is not None
        tried = {n["kind"]: n["attempts"] for n in case["notifications"]}

        # Before its time the reconciler leaves the step alone.
        early = reconcile(container, now=datetime.now(UTC))
        assert early.requeued == []

        box = Mailbox()
        controller = Controller(box, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            later = datetime.fromisoformat(case["notifications"][0]["next_attempt_at"])
            report = reconcile(container, now=later + timedelta(seconds=1))
            assert report.requeued, report
            drain(container)
        finally:
            controller.stop()

        case = case_of(client, case_id)
        assert case["state"] == "closed", case
        assert all(n["status"] == "sent" and n["attempts"] == tried[n["kind"]] + 1
                   and n["next_attempt_at"] is None for n in case["notifications"])
        assert sorted(str(m["Message-ID"]) for m in mails(box)) == sorted(
            f"<{case_id}.{kind}@refundbridge>" for kind in KINDS)


def test_a_case_stored_before_the_split_reads_its_note_as_internal_and_its_email_errors(
        client: TestClient, container: Container, providers: Providers) -> None:
    _, _, erp = providers
    case_id, _ = open_case(client, erp, **{"reason.code": "other"})
    drain(container)
    client.post(f"/v1/cases/{case_id}/review", headers=AUTH, json={
        "decision": "deny", "internal_note": "x"})
    # Rewrite the stored details as the release before this one wrote them.
    with container.engine.begin() as conn:
        details = conn.execute(text("SELECT details FROM cases WHERE id = :c"),
                               {"c": case_id}).scalar_one()
        for decision in details["decisions"]:
            decision.pop("customer_message")
            decision["note"] = decision.pop("internal_note")
        details["decisions"][-1]["note"] = "old note"
        details["notifications"] = [{"kind": n["kind"], "status": "failed", "message": "550"}
                                    for n in details["notifications"]]
        conn.execute(text("UPDATE cases SET details = :d WHERE id = :c"),
                     {"d": json.dumps(details), "c": case_id})

    with container.uow() as uow:
        case = uow.cases.get(case_id)
    assert (case.decisions[-1].internal_note, case.decisions[-1].customer_message) == (
        "old note", "")
    assert all((n.status, n.last_error, n.attempts) == (DeliveryStatus.FAILED, "550", 0)
               for n in case.notifications)
