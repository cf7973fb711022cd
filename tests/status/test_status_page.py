"""The customer's status page, end to end: a case opened by a signed webhook, moved by the
workers (real PostgreSQL, Redis and SMTP), read through the link in the email it sent."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta

import respx
from fastapi.testclient import TestClient

from refundbridge.bootstrap import Container
from refundbridge.core.status_links import StatusLinks
from refundbridge.demo import Mailbox
from tests.conftest import drain, open_case
from tests.factories import AUTH, REVIEWER, REVIEWER_AUTH, SHOP
from tests.fakes.erpnext import ERPNextFake
from tests.fakes.stripe import StripeFake
from tests.status.conftest import (
    LINK_SECRET,
    OTHER_SHOP,
    PUBLIC,
    link_in,
    links_sent,
    look_up,
    mails,
    path_of,
)

Providers = tuple[respx.MockRouter, StripeFake, ERPNextFake]
INTERNAL = "客户疑似转卖，已内部标记 (suspected resale; flagged)"
TO_CUSTOMER = "已为您安排退款，感谢耐心等待。"


def page(client: TestClient, path: str, lang: str = "en") -> str:
    answer = client.get(f"{path}?lang={lang}")
    assert answer.status_code == 200, answer.text
    return html.unescape(answer.text)


def token_path(container: Container, case_id: str, shop: str = SHOP) -> str:
    links = container.api_services.status_links
    assert links is not None
    return path_of(links.link_for(case_id, shop))


def test_the_received_email_carries_a_link_that_opens_the_case_in_the_customers_language(
        status_client: TestClient, status_container: Container, providers: Providers,
        mailbox: Mailbox) -> None:
    _, _, erp = providers
    case_id, body = open_case(status_client, erp)
    drain(status_container)

    [link] = links_sent(mailbox, "received")
    answer = status_client.get(path_of(link))
    assert answer.status_code == 200, answer.text
    text = html.unescape(answer.text)
    assert '<html lang="zh-CN">' in text  # the request's customer.locale
    assert case_id in text and body["order"]["id"] in text
    assert "退款已完成" in text and "¥398.00" in text
    assert "li.wei@example.com" not in text and "+8613800000000" not in text
    assert "l****@e******.com" in text and "+86*******0000" in text
    # every message of the case carries the same kind of link
    assert len(links_sent(mailbox, "refunded")) == 1
    english = page(status_client, path_of(link), "en")
    assert "Your refund has been paid." in english
    assert "the card you paid with" in english  # a Stripe payment, in the customer's words
    assert "Confirmation of your refund" in english


def test_a_return_shows_each_state_and_what_to_do_as_it_moves(
        status_client: TestClient, status_container: Container, providers: Providers,
        mailbox: Mailbox) -> None:
    _, stripe, erp = providers
    case_id, _ = open_case(status_client, erp, kind="return_and_refund", **{
        "lines.0.name": "一次性采血针 Safety lancets", "lines.0.sku": "GLU-METER-01"})
    path = token_path(status_container, case_id)

    waiting = page(status_client, path)
    assert 'data-phase="reviewing"' in waiting
    assert "Please do not send anything back until your request is approved." in waiting
    assert 'data-kind="received" data-status="sending"' in waiting  # queued, not yet sent

    drain(status_container)
    send_back = page(status_client, path)
    assert 'data-phase="send_back"' in send_back
    assert f"write your case number {case_id} on the parcel" in send_back
    assert "上海市浦东新区张江路 88 号 3 楼" in send_back
    assert 'data-testid="pack-sharps"' in send_back  # lancets
    assert 'data-testid="pack-cold"' not in send_back
    assert "We pay it within 7 days of receiving your items." in send_back
    assert 'data-step="goods_back" data-done="no"' in send_back
    assert 'data-kind="approved" data-status="sent"' in send_back
    chinese = page(status_client, path, "zh-CN")
    assert "请将商品寄回给我们，并在包裹上注明申请编号" in chinese
    assert "锐器" in chinese

    receipt = status_client.post(f"/v1/cases/{case_id}/receipt", headers=AUTH, json={
        "lines": [{"line": 0, "seal_intact": True, "condition": "as_new",
                   "inspector": "wang.fang"}]})
    assert receipt.status_code == 200, receipt.text
    goods_back = page(status_client, path)
    assert 'data-phase="goods_back"' in goods_back
    assert 'data-step="goods_back" data-done="yes"' in goods_back
    assert "at the latest." in goods_back  # R07's deadline, now that the clock runs
    assert "wang.fang" not in goods_back

    drain(status_container)
    assert len(stripe.posts) == 1
    done = page(status_client, path)
    assert 'data-phase="refunded"' in done
    assert done.count('data-done="yes"') == 4
    assert "Paid back to the card you paid with." in done
    assert "CN¥398.00" in done


def test_a_reviewers_internal_note_never_shows_and_the_customer_message_does(
        status_client: TestClient, status_container: Container, providers: Providers,
        mailbox: Mailbox) -> None:
    _, _, erp = providers
    case_id, _ = open_case(status_client, erp, **{"reason.code": "other"})
    drain(status_container)
    path = token_path(status_container, case_id)
    assert 'data-phase="reviewing"' in page(status_client, path)

    decided = status_client.post(f"/v1/cases/{case_id}/review", headers=REVIEWER_AUTH, json={
        "decision": "approve", "internal_note": INTERNAL, "customer_message": TO_CUSTOMER})
    assert decided.status_code == 200, decided.text
    drain(status_container)

    for lang in ("en", "zh-CN"):
        shown = page(status_client, path, lang)
        assert TO_CUSTOMER in shown
        assert "疑似转卖" not in shown and "suspected resale" not in shown
        assert REVIEWER not in shown and "token:" not in shown and "operator" not in shown
        assert "R0" not in shown and "R1" not in shown and "R2" not in shown  # no rule ids
        assert "rules" not in shown
    # …and the status link in the approval email opens the same page
    [approval] = [m for m in mails(mailbox) if ".approved@" in str(m["Message-ID"])]
    assert status_client.get(path_of(link_in(approval))).status_code == 200


def test_an_expired_link_says_so_and_offers_the_form_without_the_case(
        status_client: TestClient, status_container: Container, providers: Providers) -> None:
    _, _, erp = providers
    case_id, body = open_case(status_client, erp)
    long_ago = datetime.now(UTC) - timedelta(days=91)
    old = StatusLinks(LINK_SECRET, PUBLIC, clock=lambda: long_ago)
    answer = status_client.get(path_of(old.link_for(case_id, SHOP)) + "?lang=en")
    assert answer.status_code == 410, answer.text
    assert "This link has expired" in answer.text
    assert "status links work for 90 days" in answer.text
    assert f'action="/status/{SHOP}/lookup"' in answer.text
    assert case_id not in answer.text and body["order"]["id"] not in answer.text
    recent = StatusLinks(LINK_SECRET, PUBLIC,
                         clock=lambda: datetime.now(UTC) - timedelta(days=89))
    assert status_client.get(path_of(recent.link_for(case_id, SHOP))).status_code == 200


def test_a_forged_or_foreign_link_is_not_valid_and_shows_nothing_of_a_case(
        status_client: TestClient, status_container: Container, providers: Providers) -> None:
    _, _, erp = providers
    case_id, body = open_case(status_client, erp)
    good = token_path(status_container, case_id)
    forged_paths = [
        good[:-10] + ("A" if good[-10] != "A" else "B") + good[-9:],  # signature changed
        path_of(StatusLinks("another-key-" + "x" * 30, PUBLIC).link_for(case_id, SHOP)),
        # our signature, but naming the other shop: the case is not that shop's
        token_path(status_container, case_id, OTHER_SHOP),
        token_path(status_container, "rc_does_not_exist"),
    ]
    for path in [*forged_paths, "/status/not-a-token"]:
        answer = status_client.get(path + "?lang=en")
        assert answer.status_code == 404, (path, answer.text)
        assert "This link is not valid" in answer.text
        assert case_id not in answer.text and body["order"]["id"] not in answer.text
        # the form of the shop the token claims to be from; none for one that claims none
        # (two shops here, so no guess)
        assert ("lookup-form" in answer.text) is (path in forged_paths), path


def test_the_pages_send_strict_headers_and_ask_not_to_be_indexed(
        status_client: TestClient, status_container: Container, providers: Providers) -> None:
    _, _, erp = providers
    case_id, _ = open_case(status_client, erp)
    for path, status in [(token_path(status_container, case_id), 200),
                         ("/status/forged", 404), (f"/status/{SHOP}/lookup", 200)]:
        answer = status_client.get(path)
        assert answer.status_code == status
        headers = answer.headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
        assert headers["x-robots-tag"] == "noindex, nofollow"
        assert '<meta name="robots" content="noindex, nofollow">' in answer.text
        assert "<script" not in answer.text and "style=" not in answer.text
    css = status_client.get("/status/static/status.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    assert status_client.get("/status/a/b/c").status_code == 404


def test_the_lookup_form_answers_the_same_and_emails_only_the_address_on_file(
        status_client: TestClient, status_container: Container, providers: Providers,
        mailbox: Mailbox) -> None:
    _, _, erp = providers
    case_id, body = open_case(status_client, erp)
    order = body["order"]["id"]
    mailbox.messages.clear()

    answers = [look_up(status_client, "SO-no-such-order", "li.wei@example.com"),
               look_up(status_client, order, "somebody.else@example.com"),
               look_up(status_client, order, "LI.WEI@example.com ")]

    assert {a.status_code for a in answers} == {200}
    assert len({a.text for a in answers}) == 1  # word for word, whatever matched
    assert "Check your email" in answers[0].text
    assert case_id not in answers[0].text and order not in answers[0].text
    sent = mails(mailbox)
    assert len(sent) == 1
    [mail] = sent
    assert mail["To"].addresses[0].addr_spec == "li.wei@example.com"  # the one on file
    assert "新链接" in str(mail["Subject"])  # the case's language
    fresh = link_in(mail)
    shown = page(status_client, path_of(fresh))
    assert case_id in shown


def test_the_lookup_form_needs_its_csrf_cookie_and_is_rate_limited(
        status_client: TestClient, status_container: Container, providers: Providers,
        mailbox: Mailbox) -> None:
    _, _, erp = providers
    _, body = open_case(status_client, erp)
    order = body["order"]["id"]
    mailbox.messages.clear()

    no_token = status_client.post(f"/status/{SHOP}/lookup", data={
        "order": order, "email": "li.wei@example.com", "csrf_token": "guessed"})
    assert no_token.status_code == 403
    bad_email = status_client.post(f"/status/{SHOP}/lookup", data={
        "order": order, "email": "nope", "csrf_token": "x"})
    assert bad_email.status_code == 403  # CSRF is checked before anything else

    statuses = [look_up(status_client, order, "li.wei@example.com").status_code
                for _ in range(4)]
    assert statuses == [200, 200, 200, 429]  # three a hour for one order
    assert len(mails(mailbox)) == 3
    # one address: ten look-ups per 15 minutes, of any orders
    more = [look_up(status_client, f"SO-none-{n}", "x@example.com").status_code
            for n in range(8)]
    assert more == [200] * 7 + [429]  # 3 + 7 counted; the refused one is not
    assert len(mails(mailbox)) == 3
    assert status_client.get("/status/no-such-shop/lookup").status_code == 404
