"""The recall acknowledgement page, end to end: a campaign opened on the sandbox ERP's
shipments, its notices sent by the workers (real PostgreSQL, Redis and SMTP), then each
consignee's signed link read and answered through the ASGI app."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest
import respx
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from pydantic import SecretStr
from redis import Redis
from sqlalchemy import Engine

from refundbridge.api.app import create_app
from refundbridge.api.status import recall
from refundbridge.api.status.web import catalog
from refundbridge.bootstrap import Container, bootstrap
from refundbridge.core.campaigns import ConsigneeRecord, RecallAction, RecallNotice
from refundbridge.core.recalls import RecallClass
from refundbridge.core.services.campaigns import close_campaign, open_campaign
from refundbridge.core.status_links import StatusLinks
from refundbridge.demo import Mailbox
from tests.conftest import drain, test_settings
from tests.factories import SHOP
from tests.fakes import shopify as shopify_fake
from tests.fakes.erpnext import ERPNextFake
from tests.fakes.shopify import ShopifyFake
from tests.fakes.stripe import StripeFake
from tests.status.conftest import LINK_SECRET, PUBLIC, csrf_of, path_of

Providers = tuple[respx.MockRouter, StripeFake, ERPNextFake]
REFERENCE = "RC-2026-017"
INSTRUCTIONS = "Stop using the meters of the lots below.\n<b>Strips read high</b> & may mislead."
A_NAME, B_NAME = "林医生诊所 Dr Lin's clinic", "Beta 药房 Other Buyer"
SHOPIFY = {"shop_domain": shopify_fake.SHOP_DOMAIN, "access_token": shopify_fake.ACCESS_TOKEN,
           "client_secret": shopify_fake.CLIENT_SECRET, "api_version": shopify_fake.API_VERSION}


def shipments(a_order: str = "SO-A-1", b_order: str = "SO-B-1") -> list[dict[str, Any]]:
    """Consignee A got 3 + 2 units in two deliveries (lots L2401, L2402); B got 4 of lot
    L2403. Everything of B's is named so that a page of A's can be searched for it."""
    return [
        {"customer": "CUST-A", "name": A_NAME, "sku": "GLU-METER-01", "quantity": 3,
         "document": "DN-A-0001", "lot": "L2401", "order_id": a_order,
         "email": "dr.lin@example.com", "locale": "en", "shipped_on": "2026-10-01"},
        {"customer": "CUST-A", "name": A_NAME, "sku": "GLU-METER-01", "quantity": 2,
         "document": "DN-A-0002", "lot": "L2402", "order_id": a_order,
         "email": "dr.lin@example.com", "locale": "en", "shipped_on": "2026-10-09"},
        {"customer": "CUST-B", "name": B_NAME, "sku": "GLU-METER-01", "quantity": 4,
         "document": "DN-B-0777", "lot": "L2403", "order_id": b_order,
         "email": "beta.buyer@example.com", "locale": "zh-CN", "shipped_on": "2026-10-05"},
    ]


B_SECRETS = (B_NAME, "L2403", "DN-B-0777", "SO-B-1", "beta.buyer@example.com", "CUST-B")


def notice(**overrides: Any) -> RecallNotice:
    values: dict[str, Any] = {
        "reference": REFERENCE, "recall_class": RecallClass.II,
        "notice_date": date(2026, 12, 1), "sku": "GLU-METER-01",
        "lots": ("L2401", "L2402", "L2403"),
        "actions": (RecallAction.STOP_USE, RecallAction.RETURN), "instructions": INSTRUCTIONS}
    values.update(overrides)
    return RecallNotice(**values)


class Recall:
    """A campaign whose notices went out, and a client of the app that serves its links."""

    def __init__(self, container: Container, client: TestClient, campaign_id: str) -> None:
        self.container, self.client, self.campaign_id = container, client, campaign_id

    @property
    def links(self) -> StatusLinks:
        links = self.container.api_services.status_links
        assert links is not None
        return links

    def record(self, key: str) -> ConsigneeRecord:
        [found] = [r for r in self.container.campaigns.consignees(self.campaign_id)
                   if r.key == key]
        return found

    def path(self, key: str) -> str:
        record = self.record(key)
        return path_of(self.links.recall_link_for(self.campaign_id, record.id, SHOP))

    def acks(self) -> int:
        return sum(e.name == "acknowledged"
                   for e in self.container.campaigns.events(self.campaign_id))

    def answer(self, key: str, data: dict[str, str], *, lang: str = "en") -> Any:
        """Open the form (for its CSRF token) and send `data` with it."""
        path = self.path(key)
        form = self.client.get(f"{path}?lang={lang}")
        assert form.status_code == 200, form.text
        return self.client.post(f"{path}?lang={lang}",
                                data={"csrf_token": csrf_of(form.text), **data})


def recall_factory(db: Engine, redis_conn: Redis, smtp_server: tuple[Controller, Mailbox],
                   database_url: str) -> Iterator[Callable[..., Recall]]:
    """Builds `Recall`s (their shop's settings overridden by keywords), closed at the end;
    the body of the `make_recall` fixtures here and in the browser test."""
    opened: list[tuple[Container, TestClient]] = []

    def build(rows: list[dict[str, Any]] | None = None, **shop: Any) -> Recall:
        settings = test_settings(database_url, smtp_server[0].port, erp="sandbox_erp",
                                 sandbox_erp={"shipments": rows or shipments()}, **shop)
        settings = settings.model_copy(update={
            "status_link_secret": SecretStr(LINK_SECRET), "public_base_url": PUBLIC})
        container = bootstrap(settings, redis=redis_conn, engine=db)
        client = TestClient(create_app(container, dashboard=False), base_url=PUBLIC)
        client.__enter__()
        opened.append((container, client))
        campaign = open_campaign(container.services, SHOP, notice(), "operator:qa")
        drain(container)
        return Recall(container, client, campaign.campaign_id)

    yield build
    for container, client in opened:
        client.__exit__(None, None, None)
        container.close()


@pytest.fixture
def make_recall(db: Engine, redis_conn: Redis, smtp_server: tuple[Controller, Mailbox],
                database_url: str) -> Iterator[Callable[..., Recall]]:
    yield from recall_factory(db, redis_conn, smtp_server, database_url)


def text_of(answer: Any) -> str:
    return html.unescape(answer.text)


GOOD = {"stopped_use": "yes", "quantity_held": "4", "wants_return": "yes",
        "note": "两台在库房，已贴停用标签。"}


def test_the_page_shows_the_notice_and_only_this_consignees_own_units(
        make_recall: Callable[..., Recall], mailbox: Mailbox) -> None:
    rc = make_recall()
    answer = rc.client.get(rc.path("CUST-A") + "?lang=en")
    assert answer.status_code == 200, answer.text
    raw, shown = answer.text, text_of(answer)
    assert "Acme Medical 爱康医疗" in shown  # the shop's name
    assert f"Recall notice {REFERENCE}" in shown and "Class II:" in shown
    assert "December 1, 2026" in shown  # the notice date, in words
    assert "Stop using these units now." in shown
    assert "Return these units to us: we refund them." in shown
    # the manufacturer's text is escaped, never markup
    assert "&lt;b&gt;Strips read high&lt;/b&gt; &amp; may mislead." in raw
    assert "<b>" not in raw
    assert A_NAME in shown
    for own in ("L2401", "L2402", "DN-A-0001", "DN-A-0002", "In all: 5 units"):
        assert own in shown, own
    assert shown.count('data-testid="unit"') == 2
    for other in B_SECRETS:
        assert other not in shown, other
    assert 'name="quantity_held"' in raw and 'max="5"' in raw
    assert 'name="wants_return" value="yes"' in raw and 'name="passed_on"' in raw
    # the status page's strict headers, and no script or inline style
    assert "unsafe-inline" not in answer.headers["content-security-policy"]
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert answer.headers["cache-control"] == "no-store"
    assert "<script" not in raw and "style=" not in raw
    cookie = answer.headers["set-cookie"]
    assert "rb_recall_csrf=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie

    # B's page is B's: in B's language by default, and nothing of A's
    other = text_of(rc.client.get(rc.path("CUST-B")))
    assert '<html lang="zh-CN">' in other and "召回确认" in other
    assert "请立即停止使用这些产品。" in other and "二级召回" in other
    assert B_NAME in other and "L2403" in other and "共计：4 件" in other
    for own in (A_NAME, "L2401", "L2402", "DN-A-0001", "SO-A-1", "dr.lin@example.com"):
        assert own not in other, own


def test_an_answer_is_recorded_once_and_a_repeat_shows_the_first(
        make_recall: Callable[..., Recall]) -> None:
    rc = make_recall()
    done = rc.answer("CUST-B", GOOD)
    assert done.status_code == 200, done.text
    shown = text_of(done)
    assert 'data-recorded="yes"' in shown
    assert "Thank you: your answer is recorded" in shown
    assert re.search(r'data-testid="answer-quantity">4<', shown)
    assert "两台在库房，已贴停用标签。" in shown
    assert "We are opening a return and refund case" in shown
    record = rc.record("CUST-B")
    assert record.acknowledgement is not None
    assert record.acknowledgement.quantity_held == 4 and record.acknowledgement.wants_return
    assert record.acknowledgement.stopped_use and not record.acknowledgement.passed_on
    assert rc.acks() == 1

    # The same form again (the same token and cookie), with another answer: the first stands.
    path = rc.path("CUST-B")
    again = rc.client.post(path + "?lang=en", data={
        "csrf_token": rc.client.cookies["rb_recall_csrf"], "stopped_use": "",
        "quantity_held": "1", "wants_return": "no"})
    assert again.status_code == 200, again.text
    repeat = text_of(again)
    assert 'data-recorded="no"' in repeat and "Your first answer stands" in repeat
    assert re.search(r'data-testid="answer-quantity">4<', repeat)
    assert rc.acks() == 1
    # …and the link now opens the answer, not the form
    later = text_of(rc.client.get(path + "?lang=en"))
    assert "You have answered this recall" in later and 'name="quantity_held"' not in later

    # The generic storefront cannot look orders up: no case, and the page says the shop
    # arranges it (not the internal reason).
    drain(rc.container)
    drain(rc.container)
    record = rc.record("CUST-B")
    assert record.case_id is None and record.case_problem
    after = text_of(rc.client.get(path + "?lang=en"))
    assert "The shop will contact you to arrange the return" in after
    assert record.case_problem not in after and "SO-B-1" not in after
    assert rc.acks() == 1


def test_a_consignee_who_holds_none_answers_without_a_return(
        make_recall: Callable[..., Recall]) -> None:
    rc = make_recall()
    done = rc.answer("CUST-A", {"quantity_held": "0", "wants_return": "no",
                                "passed_on": "yes"})
    assert done.status_code == 200, done.text
    shown = text_of(done)
    assert 'data-testid="next-steps"' not in shown  # nothing to return, no case
    assert re.search(r'data-testid="answer-passed">Yes<', shown)
    assert re.search(r'data-testid="answer-stopped">No<', shown)
    ack = rc.record("CUST-A").acknowledgement
    assert ack is not None and ack.passed_on and ack.quantity_held == 0
    assert not ack.wants_return and not ack.stopped_use


# (what is sent, the status, the field the message names)
HOSTILE: list[tuple[str, dict[str, str], int, str]] = [
    ("empty quantity", {**GOOD, "quantity_held": ""}, 422, "quantity_held"),
    ("negative", {**GOOD, "quantity_held": "-1"}, 422, "quantity_held"),
    ("more than received", {**GOOD, "quantity_held": "5"}, 422, "quantity_held"),
    ("huge", {**GOOD, "quantity_held": "9" * 40}, 422, "quantity_held"),
    ("exponent", {**GOOD, "quantity_held": "1e3"}, 422, "quantity_held"),
    ("fraction", {**GOOD, "quantity_held": "2.5"}, 422, "quantity_held"),
    ("not a number", {**GOOD, "quantity_held": "four"}, 422, "quantity_held"),
    ("other digits", {**GOOD, "quantity_held": "٣"}, 422, "quantity_held"),  # int() takes it
    ("padded", {**GOOD, "quantity_held": "+3"}, 422, "quantity_held"),
    ("no choice", {k: v for k, v in GOOD.items() if k != "wants_return"}, 422,
     "wants_return"),
    ("odd choice", {**GOOD, "wants_return": "maybe"}, 422, "wants_return"),
    ("return of nothing", {**GOOD, "quantity_held": "0"}, 422, "wants_return"),
    ("overlong note", {**GOOD, "note": "长" * 2001}, 422, "note"),
    ("missing quantity", {"wants_return": "no"}, 422, "quantity_held"),
]


@pytest.mark.parametrize(("name", "data", "status", "field"), HOSTILE,
                         ids=[h[0] for h in HOSTILE])
def test_a_bad_answer_is_the_form_again_naming_the_field_with_nothing_lost(
        make_recall: Callable[..., Recall], name: str, data: dict[str, str], status: int,
        field: str) -> None:
    rc = make_recall()
    answer = rc.answer("CUST-B", data)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    shown = text_of(answer)
    assert f'data-testid="form-error" data-field="{field}"' in shown
    assert 'data-testid="recall-form"' in shown
    label = {"quantity_held": "Units I still hold", "wants_return":
             "I want to return them for a refund", "note": "Note (optional)"}[field]
    assert f"<strong>{label}:</strong>" in shown
    # what was typed is still there
    if data.get("note"):
        assert data["note"] in shown
    if data.get("quantity_held") and len(data["quantity_held"]) <= 12:
        assert f'value="{data["quantity_held"]}"' in shown
    if data.get("wants_return") == "yes":
        assert 'value="yes" required checked' in shown
    assert rc.record("CUST-B").acknowledged_at is None and rc.acks() == 0


def test_the_messages_are_translated(make_recall: Callable[..., Recall]) -> None:
    rc = make_recall()
    answer = rc.answer("CUST-B", {**GOOD, "quantity_held": "-3"}, lang="zh-CN")
    assert answer.status_code == 422
    shown = text_of(answer)
    assert "<strong>我仍持有的数量:</strong> 您仍持有多少件？请填写 0 到 4 之间的整数。" in shown
    texts = {*recall.ACTION_SENTENCES.values(), *recall.CLASS_SENTENCES.values(),
             *recall.FIELD_MESSAGES.values(), *recall.FIELD_LABELS.values()}
    missing = sorted(t for t in texts if t not in catalog())
    assert not missing, missing
    for english in texts:
        assert set(re.findall(r"\{(\w+)\}", english)) == set(
            re.findall(r"\{(\w+)\}", catalog()[english])), english


def test_a_form_without_its_csrf_cookie_or_token_is_refused(
        make_recall: Callable[..., Recall]) -> None:
    rc = make_recall()
    path = rc.path("CUST-B")
    form = rc.client.get(path + "?lang=en")
    token = csrf_of(form.text)
    cases = [{**GOOD, "csrf_token": "guessed"}, dict(GOOD), {}, {"csrf_token": ""}]
    for data in cases:
        refused = rc.client.post(path + "?lang=en", data=data)
        assert refused.status_code == 403, (data, refused.text)
        assert "The form expired" in refused.text
        if data.get("note"):
            assert data["note"] in text_of(refused)  # nothing lost
    rc.client.cookies.clear()
    no_cookie = rc.client.post(path, data={**GOOD, "csrf_token": token})
    assert no_cookie.status_code == 403
    as_json = rc.client.post(path, json={**GOOD, "csrf_token": token})
    assert as_json.status_code == 403
    assert rc.record("CUST-B").acknowledged_at is None and rc.acks() == 0
    # a body over the API's limit is refused before it is read, as a page
    huge = rc.client.post(path, data={**GOOD, "note": "x" * 2_000_000})
    assert huge.status_code == 413 and huge.headers["content-type"].startswith("text/html")


def test_answers_from_one_address_are_rate_limited(
        make_recall: Callable[..., Recall]) -> None:
    rc = make_recall()
    assert rc.answer("CUST-A", {"quantity_held": "0", "wants_return": "no"}
                     ).status_code == 200
    path = rc.path("CUST-A")
    token = rc.client.cookies["rb_recall_csrf"]
    statuses = [rc.client.post(path, data={"csrf_token": token}).status_code
                for _ in range(recall.POSTS_PER_ADDRESS)]
    assert statuses == [200] * (recall.POSTS_PER_ADDRESS - 1) + [429]
    assert rc.acks() == 1


def test_a_forged_or_garbled_link_is_not_valid_and_shows_nothing(
        make_recall: Callable[..., Recall]) -> None:
    rc = make_recall()
    good = rc.path("CUST-A")
    record = rc.record("CUST-A")
    token = good.rsplit("/", 1)[1]
    other_key = StatusLinks("another-key-" + "x" * 30, PUBLIC)
    paths = [
        good[:-6] + ("A" if good[-6] != "A" else "B") + good[-5:],  # signature changed
        good[:-12],  # cut short
        path_of(other_key.recall_link_for(rc.campaign_id, record.id, SHOP)),
        path_of(rc.links.recall_link_for(rc.campaign_id, 99_999, SHOP)),  # no such consignee
        path_of(rc.links.recall_link_for("rcp_" + "0" * 32, record.id, SHOP)),
        path_of(rc.links.recall_link_for(rc.campaign_id, record.id, "no-such-shop")),
        # a case's status token is signed for another purpose
        "/status/recall/" + rc.links.token_for(rc.campaign_id, SHOP),
        "/status/recall/not-a-token", "/status/recall/" + "A" * 5000,
    ]
    for path in paths:
        for answer in (rc.client.get(path + "?lang=en"),
                       rc.client.post(path + "?lang=en", data={**GOOD, "csrf_token": "x"})):
            assert answer.status_code == 404, (path, answer.text)
            assert "This link is not valid" in answer.text
            shown = text_of(answer)
            assert A_NAME not in shown and "L2401" not in shown and REFERENCE not in shown
    # and a recall link is no case's status link
    assert rc.client.get(f"/status/{token}").status_code == 404
    assert rc.acks() == 0


def test_a_closed_recall_says_so_with_the_answer_given_and_takes_no_more(
        make_recall: Callable[..., Recall]) -> None:
    rc = make_recall()
    assert rc.answer("CUST-A", {"stopped_use": "yes", "quantity_held": "0",
                                "wants_return": "no"}).status_code == 200
    # B opens the form before the recall closes and sends it after
    b_path = rc.path("CUST-B")
    b_token = csrf_of(rc.client.get(b_path).text)
    close_campaign(rc.container.api_services, rc.campaign_id, "operator:qa",
                   "effectiveness check: level A, all reached")

    answered = rc.client.get(rc.path("CUST-A") + "?lang=en")
    assert answered.status_code == 200
    shown = text_of(answered)
    assert "This recall is closed" in shown and "Your answer of" in shown
    assert re.search(r'data-testid="answer-stopped">Yes<', shown)
    silent = text_of(rc.client.get(b_path + "?lang=en"))
    assert "This recall is closed" in silent and 'data-testid="no-answer"' in silent
    assert 'name="quantity_held"' not in silent

    late = rc.client.post(b_path + "?lang=en", data={**GOOD, "csrf_token": b_token})
    assert late.status_code == 409, late.text
    assert "This recall is closed" in late.text
    assert rc.record("CUST-B").acknowledged_at is None and rc.acks() == 1


def test_a_return_opens_one_recall_case_and_the_page_links_to_it(
        make_recall: Callable[..., Recall], providers: Providers) -> None:
    router, _, _ = providers
    shop = ShopifyFake()
    shop.install(router)
    order = shop.add_order([shopify_fake.Line("GLU-METER-01", "Glucose meter", 4, "49.95")],
                           email="beta.buyer@example.com", locale="zh-CN")
    rc = make_recall(shipments(b_order=order), storefront="shopify", shopify=SHOPIFY)
    path = rc.path("CUST-B")
    assert rc.answer("CUST-B", {**GOOD, "quantity_held": "3"}).status_code == 200
    again = rc.client.post(path, data={**GOOD, "csrf_token": rc.client.cookies[
        "rb_recall_csrf"]})
    assert again.status_code == 200 and 'data-recorded="no"' in again.text
    drain(rc.container)
    drain(rc.container)

    record = rc.record("CUST-B")
    assert record.case_id is not None, record.case_problem
    page = rc.client.get(path + "?lang=en")
    link = re.search(r'href="(/status/[^"?]+)" data-testid="case-link"', page.text)
    assert link, page.text
    assert link.group(1) == path_of(rc.links.link_for(record.case_id, SHOP))
    case_page = rc.client.get(link.group(1) + "?lang=en")
    assert case_page.status_code == 200, case_page.text
    assert record.case_id in case_page.text and "Your return request" in case_page.text
    assert "3 ×" in case_page.text  # the units held, not all four received
    # one case for one consignee, however often it was asked
    events = [e for e in rc.container.campaigns.events(rc.campaign_id)
              if e.name == "recall_case_opened"]
    assert len(events) == 1 and rc.acks() == 1
