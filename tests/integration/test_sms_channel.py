"""SMS as a second channel beside email: each message the case owes its customer also goes
by SMS when the shop has an SMS connector and the customer a phone number; a send is marked
before the provider's call, so after a crash it is looked up, never repeated; a deferral or
a refusal shows on the message and never fails or holds the case; STOP / 退订 opts a number
out; quiet hours hold non-urgent SMS; delivery receipts move the message's record.

Real PostgreSQL and Redis, the generic webhook, the sandbox SMS connector and Twilio's
connector against the respx Twilio fake (its callbacks signed by Twilio's own validator)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from fastapi.testclient import TestClient
from redis import Redis
from sqlalchemy import Engine, text

from refundbridge.api.app import create_app
from refundbridge.bootstrap import Container, bootstrap
from refundbridge.connectors.registry import GROUP, ConnectorRegistry
from refundbridge.connectors.sandbox import SandboxSmsConnector
from refundbridge.connectors.sandbox.sms import sign_callback
from refundbridge.core import services
from refundbridge.store.mapping import aware
from tests.conftest import case_count, drain, test_settings
from tests.factories import AUTH, SHOP, request_body, signed
from tests.fakes.erpnext import ERPNextFake
from tests.fakes.twilio import TwilioFake

PHONE = "+8613800000000"
SMS_SECRET = "sms-callback-secret-for-tests"
ACCOUNT_SID = "AC3f1c8a2b9d4e7f60a1b2c3d4e5f60718"
AUTH_TOKEN = "9c1e0f4b7a2d5e8c3f6a9b0d1e2f3a4b"
SENDER = "+14155238886"
PUBLIC = "http://127.0.0.1:8000"  # the settings' default public_base_url
HOLD_SECONDS = 20


@dataclass
class Clock:
    """The container's clock: real time plus an offset a test moves forward."""

    offset: timedelta = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


Build = Callable[..., tuple[Container, Clock]]


@pytest.fixture
def build(db: Engine, redis_conn: Redis, smtp_server: Any, database_url: str
          ) -> Iterator[Build]:
    # Not in tests/conftest.py's TABLES (yet): emptied here, before each test.
    with db.begin() as conn:
        conn.execute(text("DELETE FROM sms_opt_outs"))
        conn.execute(text("DELETE FROM sms_sends"))
    built: list[Container] = []

    def make(sms: str = "sandbox_sms", policy: dict[str, Any] | None = None,
             **overrides: Any) -> tuple[Container, Clock]:
        clock = Clock()
        config: dict[str, Any] = {
            "sms": sms, "sandbox_sms": {"callback_secret": SMS_SECRET},
            "policy": {"refund_timing": "on_receipt",
                       "auto_approve_limits": {"CNY": "500", "USD": "80"}, **(policy or {})},
            **overrides}
        settings = test_settings(database_url, smtp_server[0].port, **config)
        registry = ConnectorRegistry({"sandbox_sms": SandboxSmsConnector},
                                     entries=entry_points(group=GROUP))
        container = bootstrap(settings, redis=redis_conn, engine=db, registry=registry,
                              clock=clock)
        built.append(container)
        return container, clock

    yield make
    for container in built:
        container.close()


def sandbox(container: Container) -> SandboxSmsConnector:
    connector = container.shops[SHOP].by_name["sandbox_sms"]
    assert isinstance(connector, SandboxSmsConnector)
    return connector


def open_case(client: TestClient, erp: ERPNextFake, **overrides: Any) -> str:
    body = request_body(**overrides)
    erp.add_invoice(body["order"]["id"], [("GLU-METER-01", 2, "199.00")])
    raw, headers = signed(body)
    answer = client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["case_id"])


def detail(client: TestClient, case_id: str) -> dict[str, Any]:
    answer = client.get(f"/v1/cases/{case_id}", headers=AUTH)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def sms_of(case: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["kind"]: n for n in case["notifications"] if n["channel"] == "sms"}


def events(db: Engine, case_id: str, name: str) -> list[dict[str, Any]]:
    with db.connect() as conn:
        rows = conn.execute(text("SELECT data FROM case_events WHERE case_id = :c AND name = :n"
                                 " ORDER BY seq"), {"c": case_id, "n": name}).all()
    return [row.data if isinstance(row.data, dict) else json.loads(row.data) for row in rows]


def post_sandbox_callback(client: TestClient, payload: dict[str, Any], *,
                          secret: str = SMS_SECRET, connector: str = "sandbox_sms",
                          shop: str = SHOP) -> httpx.Response:
    path = f"/webhooks/{shop}/{connector}/callback"
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json",
               "X-Sandbox-Signature": sign_callback(secret, PUBLIC + path, body)}
    return client.post(path, content=body, headers=headers)


# ------------------------------------------------------------------ sending


def test_each_message_goes_by_sms_beside_its_email_once(build, providers, mailbox):
    container, _ = build()
    _, _, erp = providers
    with TestClient(create_app(container)) as client:
        case_id = open_case(client, erp)
        drain(container)
        case = detail(client, case_id)
        assert case["state"] == "closed", case["notifications"]
        sent = sandbox(container).sent
        assert sorted(s.message.kind.value for s in sent) == ["approved", "received",
                                                               "refunded"]
        assert {s.message.phone for s in sent} == {PHONE}
        assert all(s.message.message_id == f"{case_id}.{s.message.kind.value}.sms"
                   and case_id in s.text for s in sent)
        records = sms_of(case)
        assert set(records) == {"received", "approved", "refunded"}
        for record in records.values():
            assert record["status"] == "sent" and record["state"] == "queued"
            assert record["attempts"] == 1 and record["last_error"] is None
            assert record["provider_id"].startswith("SBX-SMS-")
        emails = [n for n in case["notifications"] if n["channel"] == "email"]
        assert {n["state"] for n in emails} == {"sent"} and len(emails) == 3
        # Nothing sends a recorded message again: not a resend of its step, not a drain.
        services.send_notifications(container.services, case_id)
        drain(container)
        assert len(sandbox(container).sent) == 3
        assert len(events(container.engine, case_id, "sms_sending")) == 3


def test_a_shop_without_sms_sends_only_email(make_container, providers, mailbox):
    container = make_container()
    _, _, erp = providers
    assert container.shops[SHOP].gateways.sms is None
    with TestClient(create_app(container)) as client:
        case_id = open_case(client, erp)
        drain(container)
        case = detail(client, case_id)
        assert case["state"] == "closed"
        assert {n["channel"] for n in case["notifications"]} == {"email"}


def test_a_customer_without_phone_gets_no_sms(build, providers, mailbox):
    container, _ = build()
    _, _, erp = providers
    with TestClient(create_app(container)) as client:
        case_id = open_case(client, erp, **{"customer.phone": None})
        drain(container)
        case = detail(client, case_id)
        assert case["state"] == "closed" and not sms_of(case)
        assert sandbox(container).sent == []


def test_a_refused_sms_is_shown_and_the_case_closes(build, providers, mailbox):
    container, _ = build(sandbox_sms={"callback_secret": SMS_SECRET,
                                      "refuse_numbers": [PHONE]})
    _, _, erp = providers
    with TestClient(create_app(container)) as client:
        case_id = open_case(client, erp)
        drain(container)
        case = detail(client, case_id)
        assert case["state"] == "closed" and case["failure"] is None
        for record in sms_of(case).values():
            assert record["status"] == "failed" and record["state"] == "failed"
            assert "refused" in record["last_error"]


def test_a_provider_deferral_holds_the_sms_not_the_case(build, providers, mailbox):
    container, clock = build(sandbox_sms={"callback_secret": SMS_SECRET, "deferred_rate": 1.0})
    _, _, erp = providers
    with TestClient(create_app(container)) as client:
        case_id = open_case(client, erp)
        drain(container)
        case = detail(client, case_id)
        assert case["state"] == "closed" and case["failure"] is None
        records = sms_of(case)
        assert records and all(r["state"] == "deferred" and r["status"] == "pending"
                               and r["next_attempt_at"] for r in records.values())
        # Tried before its time, nothing is sent, and the step's work waits, postponed to
        # the deferral's end as if handed out once then: the wait uses up no hand-overs.
        sent_before = len(sandbox(container).sent)
        services.send_notifications(container.services, case_id)
        assert len(sandbox(container).sent) == sent_before
        with container.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT dispatched_at, dispatch_count FROM outbox WHERE case_id = :c AND "
                "step = 'notify' AND done_at IS NULL"), {"c": case_id}).all()
        assert rows and all(r.dispatch_count == 1 for r in rows)
        assert all(aware(r.dispatched_at) > clock() for r in rows)
        sender = sandbox(container)
        sender.settings = sender.settings.model_copy(update={"deferred_rate": 0.0})
        clock.offset = timedelta(minutes=2)
        services.send_notifications(container.services, case_id)
        case = detail(client, case_id)
        assert all(r["state"] == "queued" for r in sms_of(case).values())
        assert len(sandbox(container).sent) == len(sms_of(case))


def test_a_send_cut_off_by_a_crash_is_looked_up_not_repeated(build, providers, mailbox):
    container, clock = build()
    _, _, erp = providers
    sender = sandbox(container)

    class Crash(BaseException):
        pass

    send = sender.send_sms

    def send_then_die(message: Any) -> Any:
        send(message)
        raise Crash  # the worker dies after the provider took the message

    with TestClient(create_app(container)) as client:
        body = request_body()
        erp.add_invoice(body["order"]["id"], [("GLU-METER-01", 2, "199.00")])
        raw, headers = signed(body)
        case_id = client.post(f"/webhooks/{SHOP}/generic", content=raw,
                              headers=headers).json()["case_id"]
        sender.send_sms = send_then_die  # type: ignore[method-assign]
        services.evaluate(container.services, case_id)
        with pytest.raises(Crash):
            services.send_notifications(container.services, case_id)
        record = sms_of(detail(client, case_id))["received"]
        assert record["state"] == "sending" and record["attempts"] == 1
        sender.send_sms = send  # type: ignore[method-assign]
        # A job now, while the first might still be in its call, leaves the SMS alone.
        services.send_notifications(container.services, case_id)
        assert [s.message.kind.value for s in sender.sent] == ["received"]
        # After the claim's lease: the send is found at the provider and recorded.
        clock.offset = container.services.booking_lease + timedelta(seconds=1)
        services.send_notifications(container.services, case_id)
        records = sms_of(detail(client, case_id))
        assert records["received"]["state"] == "sent"
        assert records["received"]["provider_id"] == sender.sent[0].provider_id
        assert [s.message.kind.value for s in sender.sent].count("received") == 1
        found = [e for e in events(container.engine, case_id, "sms_sent")
                 if e["found_after_crash"]]
        assert [e["kind"] for e in found] == ["received"]


# ------------------------------------------------------------------ quiet hours


def test_quiet_hours_hold_sms_until_morning(build, providers, mailbox):
    shanghai = ZoneInfo("Asia/Shanghai")
    local = datetime.now(UTC).astimezone(shanghai)
    start = (local - timedelta(hours=1)).strftime("%H:00")
    end = (local + timedelta(hours=2)).strftime("%H:00")
    container, clock = build(policy={"sms_quiet_hours": f"{start}-{end}"})
    _, _, erp = providers
    with TestClient(create_app(container)) as client:
        case_id = open_case(client, erp)
        drain(container)
        case = detail(client, case_id)
        assert case["state"] == "closed"  # the emails went: the case does not wait
        assert sandbox(container).sent == []
        records = sms_of(case)
        assert records
        for record in records.values():
            assert record["state"] == "deferred" and record["last_error"] == "quiet hours"
            until = datetime.fromisoformat(record["next_attempt_at"]).astimezone(shanghai)
            assert until.strftime("%H:%M") == end and until > local
        clock.offset = timedelta(hours=3)
        services.send_notifications(container.services, case_id)
        assert len(sandbox(container).sent) == len(records)


def test_an_sms_held_overnight_is_sent_in_the_morning_not_given_up(build, providers,
                                                                    mailbox):
    from refundbridge.workers.reconcile import reconcile

    shanghai = ZoneInfo("Asia/Shanghai")
    local = datetime.now(UTC).astimezone(shanghai)
    start = (local - timedelta(hours=1)).strftime("%H:00")
    end = (local + timedelta(hours=11)).strftime("%H:00")
    container, clock = build(policy={"sms_quiet_hours": f"{start}-{end}"})
    _, _, erp = providers
    with TestClient(create_app(container)) as client:
        case_id = open_case(client, erp)
        drain(container)
        records = sms_of(detail(client, case_id))
        assert records and sandbox(container).sent == []
        # A night of reconciler passes: the held message is waiting, not lost, so it is
        # never given up on, however many passes the night takes.
        for minutes in range(30, 12 * 60, 30):
            clock.offset = timedelta(minutes=minutes)
            assert reconcile(container, now=clock()).given_up == []
            drain(container)
        assert len(sandbox(container).sent) == len(records)
        assert all(r["state"] == "queued" for r in sms_of(detail(client, case_id)).values())


# ------------------------------------------------------------------ phone numbers


def test_phone_numbers_are_stored_in_e164(build, providers, mailbox):
    container, _ = build()
    _, _, erp = providers
    with TestClient(create_app(container)) as client:
        case_id = open_case(client, erp, **{"customer.phone": "138 0013 8000"})
        assert detail(client, case_id)["customer"]["phone"] == "+8613800138000"


@pytest.mark.parametrize("phone", ["12345", "not a number", "+86 138 0013 8000 99999"])
def test_an_invalid_phone_is_a_422_naming_the_field(build, providers, phone):
    container, _ = build()
    with TestClient(create_app(container)) as client:
        before = case_count(container.engine)
        raw, headers = signed(request_body(**{"customer.phone": phone}))
        answer = client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
        assert answer.status_code == 422, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == ["customer.phone"]
        assert case_count(container.engine) == before


def test_without_a_default_region_a_number_needs_its_country_code(build, providers):
    container, _ = build(policy={"jurisdiction": "EU", "timezone": "Europe/Berlin"})
    with TestClient(create_app(container)) as client:
        raw, headers = signed(request_body(**{"customer.phone": "030 1234567"}))
        answer = client.post(f"/webhooks/{SHOP}/generic", content=raw, headers=headers)
        assert answer.status_code == 422
        assert answer.json()["errors"][0]["field"] == "customer.phone"
    container, _ = build(policy={"jurisdiction": "EU", "timezone": "Europe/Berlin",
                                 "country": "DE"})
    _, _, erp = providers
    with TestClient(create_app(container)) as client:
        case_id = open_case(client, erp, **{"customer.phone": "030 1234567"})
        assert detail(client, case_id)["customer"]["phone"] == "+49301234567"


# ------------------------------------------------------------------ callbacks, opt-out


def test_a_stop_reply_opts_the_number_out(build, providers, mailbox):
    container, _ = build()
    _, _, erp = providers
    with TestClient(create_app(container)) as client:
        answer = post_sandbox_callback(client, {"replies": [{"phone": PHONE, "text": "退订"}]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["opted_out"] == 1
        # Said again: still one opt-out.
        assert post_sandbox_callback(client, {"replies": [
            {"phone": PHONE, "text": "STOP"}]}).json()["opted_out"] == 0
        case_id = open_case(client, erp)
        drain(container)
        case = detail(client, case_id)
        assert case["state"] == "closed"
        assert sandbox(container).sent == []
        assert all(r["status"] == "waived" for r in sms_of(case).values())
        skipped = events(container.engine, case_id, "sms_skipped")
        assert skipped and all("opted out" in e["reason"] for e in skipped)
        # Another number still gets its SMS.
        other = open_case(client, erp, **{"customer.phone": "+8613900000000"})
        drain(container)
        assert {s.message.case_id for s in sandbox(container).sent} == {other}


def test_a_chatty_reply_is_not_an_opt_out(build, providers, mailbox):
    container, _ = build()
    with TestClient(create_app(container)) as client:
        answer = post_sandbox_callback(client, {"replies": [
            {"phone": PHONE, "text": "谢谢，什么时候退款？"}]})
        assert answer.json()["opted_out"] == 0
        with container.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM sms_opt_outs")).scalar_one() == 0


def test_delivery_reports_move_the_record_by_message_or_provider_id(build, providers,
                                                                     mailbox):
    container, _ = build()
    _, _, erp = providers
    with TestClient(create_app(container)) as client:
        case_id = open_case(client, erp)
        drain(container)
        records = sms_of(detail(client, case_id))
        answer = post_sandbox_callback(client, {"reports": [
            {"message_id": f"{case_id}.received.sms", "state": "delivered"},
            {"provider_id": records["approved"]["provider_id"], "state": "failed",
             "error": "MK:0001 空号"},
            {"provider_id": "SBX-SMS-unknown", "state": "delivered"}]})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"reports": 2, "unknown": 1, "opted_out": 0}
        case = detail(client, case_id)
        records = sms_of(case)
        assert records["received"]["state"] == "delivered"
        assert records["approved"]["state"] == "failed"
        assert records["approved"]["last_error"] == "MK:0001 空号"
        assert records["refunded"]["state"] == "queued"
        assert case["state"] == "closed"  # a failed SMS never reopens or fails a case
        assert len(events(container.engine, case_id, "sms_delivery_report")) == 2


def test_callbacks_refuse_bad_signatures_and_unknown_addresses(build, providers):
    container, _ = build()
    with TestClient(create_app(container)) as client:
        payload = {"replies": [{"phone": PHONE, "text": "STOP"}]}
        assert post_sandbox_callback(client, payload, secret="forged").status_code == 401
        assert post_sandbox_callback(client, payload, connector="twilio").status_code == 404
        assert post_sandbox_callback(client, payload, shop="no-such-shop").status_code == 404
        assert post_sandbox_callback(client, payload,
                                     connector="generic").status_code == 404
        with container.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM sms_opt_outs")).scalar_one() == 0


def test_a_shop_naming_a_connector_that_sends_no_sms_is_refused(build):
    with pytest.raises(Exception, match=r"shops\.acme-medical\.sms"):
        build(sms="smtp")


# ------------------------------------------------------------------ Twilio, races


def twilio_shop(build: Build, providers: Any) -> tuple[Container, TwilioFake]:
    router = providers[0]
    fake = TwilioFake(ACCOUNT_SID, AUTH_TOKEN, numbers=(SENDER,))
    fake.install(router)
    container, _ = build(sms="twilio", twilio={
        "account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": SENDER,
        "status_callback_url": f"{PUBLIC}/webhooks/{SHOP}/twilio/callback"})
    return container, fake


def test_twilio_receipts_and_stop_reach_the_records(build, providers, mailbox):
    container, fake = twilio_shop(build, providers)
    _, _, erp = providers
    with TestClient(create_app(container)) as client:
        case_id = open_case(client, erp)
        drain(container)
        records = sms_of(detail(client, case_id))
        assert len(fake.messages) == 3 and set(records) == {"received", "approved",
                                                            "refunded"}
        sid = records["received"]["provider_id"]
        url, headers, body = fake.status_callback(sid, "delivered")
        path = url.removeprefix(PUBLIC)
        answer = client.post(path, content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        assert sms_of(detail(client, case_id))["received"]["state"] == "delivered"
        # A forged receipt is refused.
        forged = {**headers, "X-Twilio-Signature": "AAAA" + headers["X-Twilio-Signature"][4:]}
        assert client.post(path, content=body, headers=forged).status_code == 401
        # STOP from the customer: the next case's SMS are not sent.
        url, headers, body = fake.inbound(f"{PUBLIC}/webhooks/{SHOP}/twilio/callback",
                                          PHONE, "STOP", SENDER, opt_out_type="STOP")
        assert client.post(url.removeprefix(PUBLIC), content=body,
                           headers=headers).status_code == 200
        second = open_case(client, erp)
        drain(container)
        assert len(fake.messages) == 3
        assert all(r["status"] == "waived" for r in sms_of(detail(client, second)).values())


def test_two_notify_jobs_racing_send_one_sms(build, providers, mailbox):
    container, fake = twilio_shop(build, providers)
    _, _, erp = providers
    inside, released = threading.Event(), threading.Event()

    def hold_first(request: httpx.Request) -> None:
        if not inside.is_set():
            inside.set()
            assert released.wait(HOLD_SECONDS)

    with TestClient(create_app(container)) as client:
        body = request_body()
        erp.add_invoice(body["order"]["id"], [("GLU-METER-01", 2, "199.00")])
        raw, headers = signed(body)
        case_id = client.post(f"/webhooks/{SHOP}/generic", content=raw,
                              headers=headers).json()["case_id"]
        services.evaluate(container.services, case_id)
        fake.before_post.append(hold_first)  # type: ignore[arg-type]
        errors: list[BaseException] = []

        def first() -> None:
            try:
                services.send_notifications(container.services, case_id)
            except BaseException as exc:  # handed to the test thread
                errors.append(exc)

        thread = threading.Thread(target=first)
        thread.start()
        assert inside.wait(HOLD_SECONDS)
        services.send_notifications(container.services, case_id)  # the second job
        sent_while_held = len(fake.messages)
        released.set()
        thread.join(HOLD_SECONDS)
        assert not thread.is_alive() and not errors
        assert sent_while_held == 0
        drain(container)
        kinds = sorted(m["body"].split()[0] for m in fake.messages)
        assert len(fake.messages) == len(sms_of(detail(client, case_id))), kinds
        to_customer = [m for m in fake.messages if m["to"] == PHONE]
        assert len(to_customer) == len({r["provider_id"]
                                        for r in sms_of(detail(client, case_id)).values()})


# ------------------------------------------------------------------ Aliyun: a secret path

ALIYUN_SECRET = "cb_7Hq2xLm9RvT4kPw8"


def test_aliyun_receipts_and_replies_arrive_at_the_secret_path(build, providers, mailbox):
    from tests.fakes.aliyun_sms import ACCESS_KEY_ID, ACCESS_KEY_SECRET, SIGN_NAME, AliyunSmsFake

    fake = AliyunSmsFake(templates={
        "SMS_465320001": "您的退款申请已收到：订单${order_id}，申请编号${case_id}。",
        "SMS_465320002": "订单${order_id}的退款申请已通过，金额${amount}${currency}。",
        "SMS_465320003": "很抱歉，订单${order_id}的退款申请未通过，申请编号${case_id}。",
        "SMS_465320004": "订单${order_id}的退款${amount}${currency}已退回原支付方式。"})
    fake.install(providers[0])
    container, _ = build(sms="aliyun_sms", aliyun_sms={
        "access_key_id": ACCESS_KEY_ID, "access_key_secret": ACCESS_KEY_SECRET,
        "sign_name": SIGN_NAME, "callback_secret": ALIYUN_SECRET,
        "templates": {
            "received": {"code": "SMS_465320001", "params": ["order_id", "case_id"]},
            "approved": {"code": "SMS_465320002",
                         "params": ["order_id", "amount", "currency"]},
            "denied": {"code": "SMS_465320003", "params": ["order_id", "case_id"]},
            "refunded": {"code": "SMS_465320004",
                         "params": ["order_id", "amount", "currency"]}}})
    _, _, erp = providers
    with TestClient(create_app(container)) as client:
        case_id = open_case(client, erp)
        drain(container)
        records = sms_of(detail(client, case_id))
        assert len(fake.sends) == 3 and all(r["state"] == "queued" for r in records.values())
        assert {s["OutId"] for s in fake.sends} == {f"{case_id}.{kind}.sms" for kind in records}
        path = f"/webhooks/{SHOP}/aliyun_sms/callback"
        body = fake.deliver(f"{case_id}.approved.sms")
        assert client.post(f"{path}/wrong-secret", content=body).status_code == 401
        answer = client.post(f"{path}/{ALIYUN_SECRET}", content=body)
        assert answer.status_code == 200, answer.text
        ack = container.shops[SHOP].gateways.sms.acknowledgement  # type: ignore[union-attr]
        assert answer.content == ack.body  # the answer Aliyun waits for
        assert sms_of(detail(client, case_id))["approved"]["state"] == "delivered"
        reply = fake.reply(PHONE.removeprefix("+86"), "退订")
        assert client.post(f"{path}/{ALIYUN_SECRET}", content=reply).status_code == 200
        with container.engine.connect() as conn:
            phones = conn.execute(text("SELECT phone FROM sms_opt_outs")).scalars().all()
        assert phones == [PHONE]


def test_a_message_queued_while_an_sms_is_in_flight_gets_its_own_run(build, providers,
                                                                      mailbox):
    """The refund is confirmed (queueing the "refunded" email) while the notify job is
    inside Twilio's API: its run is still open then, so no second one is written; the first
    asks for it once it is done, and the case closes after the queue drains."""
    container, fake = twilio_shop(build, providers)
    _, _, erp = providers
    inside, released = threading.Event(), threading.Event()

    def hold_first(request: httpx.Request) -> None:
        if not inside.is_set():
            inside.set()
            assert released.wait(HOLD_SECONDS)

    with TestClient(create_app(container)) as client:
        body = request_body()
        erp.add_invoice(body["order"]["id"], [("GLU-METER-01", 2, "199.00")])
        raw, headers = signed(body)
        case_id = client.post(f"/webhooks/{SHOP}/generic", content=raw,
                              headers=headers).json()["case_id"]
        services.evaluate(container.services, case_id)
        # The notify job evaluation queued is the one this test runs (its outbox row is
        # open meanwhile); the refund's job runs from the test thread.
        container.dispatcher.queue.empty()
        fake.before_post.append(hold_first)  # type: ignore[arg-type]
        errors: list[BaseException] = []

        def notify() -> None:
            try:
                services.send_notifications(container.services, case_id)
            except BaseException as exc:  # handed to the test thread
                errors.append(exc)

        thread = threading.Thread(target=notify)
        thread.start()
        assert inside.wait(HOLD_SECONDS)
        services.issue_refund(container.services, case_id)
        released.set()
        thread.join(HOLD_SECONDS)
        assert not thread.is_alive() and not errors
        drain(container)
        case = detail(client, case_id)
        assert case["state"] == "closed", case["notifications"]
        assert set(sms_of(case)) == {"received", "approved", "refunded"}
        assert len(fake.messages) == 3
