"""`GET /metrics` and the structured logs: what an operator watches a deployment with.

The counters are the process's own and add up over the whole test run, so each test reads
them before and after what it does and checks the difference, by label."""

from __future__ import annotations

import io
import json
import logging
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from refundbridge import telemetry
from refundbridge.api.app import create_app
from refundbridge.api.metrics import WebhookAccessFilter
from refundbridge.bootstrap import Container
from refundbridge.connectors.base import RetryPolicy
from refundbridge.store.outbox import work_step
from refundbridge.workers.jobs import run_one
from refundbridge.workers.metrics import JOBS
from tests.browser import serve
from tests.conftest import drain, open_case
from tests.factories import AUTH, SHOP, request_body, signed
from tests.fakes.stripe import BASE as STRIPE_BASE

METRICS_TOKEN = "mt_" + secrets.token_hex(16)
SCRAPE = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture
def metered(container: Container) -> Iterator[TestClient]:
    """The API with a `metrics_token` set."""
    container.settings = container.settings.model_copy(
        update={"metrics_token": SecretStr(METRICS_TOKEN)})
    with TestClient(create_app(container, dashboard=False)) as client:
        yield client


def scrape(client: TestClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    answer = client.get("/metrics", headers=SCRAPE)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(answer.text)
            for s in family.samples}


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def matching(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
             **labels: str) -> float:
    """The sum over every sample of `name` that has at least these labels."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


# ------------------------------------------------------------------ the token


def test_no_metrics_without_a_token_setting(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers=SCRAPE).status_code == 404


def test_a_wrong_or_missing_token_is_refused(metered: TestClient) -> None:
    assert metered.get("/metrics").status_code == 401
    wrong = metered.get("/metrics", headers={"Authorization": "Bearer " + "x" * 35})
    assert wrong.status_code == 403
    assert METRICS_TOKEN not in wrong.text
    assert metered.get("/metrics", headers={"Authorization": f"Basic {METRICS_TOKEN}"}
                       ).status_code == 403


def test_an_operator_token_does_not_open_metrics(metered: TestClient) -> None:
    assert metered.get("/metrics", headers=AUTH).status_code == 403


def test_a_short_metrics_token_is_refused_by_the_settings() -> None:
    from refundbridge.config.settings import load_settings
    from refundbridge.core.errors import ConfigError

    with pytest.raises(ConfigError, match="metrics_token"):
        load_settings(None, metrics_token="short")


# ------------------------------------------------------------------ what is counted


def test_a_webhook_its_jobs_and_provider_calls_are_counted(
        metered: TestClient, container: Container, providers: Any) -> None:
    _, _, erp = providers
    before = scrape(metered)
    case_id, _ = open_case(metered, erp)
    drain(container)
    after = scrape(metered)

    def grew(name: str, **labels: str) -> float:
        return matching(after, name, **labels) - matching(before, name, **labels)

    assert grew("refundbridge_webhooks_total", shop=SHOP, connector="generic",
                kind="webhook", status="202") == 1
    assert grew("refundbridge_webhook_intake_seconds_count", shop=SHOP,
                connector="generic") == 1
    # The pipeline ran each of its steps once, all fine.
    for step in ("evaluate", "refund", "notify"):
        assert grew("refundbridge_jobs_total", step=step, outcome="ok") >= 1, step
        assert grew("refundbridge_job_seconds_count", step=step, outcome="ok") >= 1, step
    assert grew("refundbridge_jobs_total", outcome="failed") == 0
    # The refund went to Stripe once, and was answered 200.
    assert grew("refundbridge_provider_calls_total", shop=SHOP, connector="stripe",
                outcome="ok", status="200") >= 1
    assert grew("refundbridge_provider_call_seconds_count", connector="stripe",
                outcome="ok") >= 1
    assert grew("refundbridge_provider_calls_total", connector="unknown") == 0
    assert grew("refundbridge_messages_total", shop=SHOP, channel="email", state="sent") >= 1
    # The database's gauges: the case is open in some state, and the shop's states show.
    assert value(after, "refundbridge_store_up") == 1
    states = {dict(ls)["state"] for n, ls in after if n == "refundbridge_cases"}
    assert {"received", "awaiting_review", "failed"} <= states
    assert "closed" not in states  # final states are not counted at scrape time
    assert value(after, "refundbridge_outbox_oldest_open_seconds") >= 0
    assert case_id


def test_a_refused_webhook_is_counted_by_status_and_an_unknown_shop_is_not_a_label(
        metered: TestClient) -> None:
    before = scrape(metered)
    raw, headers = signed(request_body(), secret="not-the-shop-secret")
    assert metered.post(f"/webhooks/{SHOP}/generic", content=raw,
                        headers=headers).status_code == 401
    invented = "shop-" + secrets.token_hex(4)
    assert metered.post(f"/webhooks/{invented}/generic", content=raw,
                        headers=headers).status_code == 404
    after = scrape(metered)
    for labels, grown in (({"shop": SHOP, "connector": "generic", "status": "401"}, 1),
                          ({"shop": "unknown", "connector": "unknown", "status": "404"}, 1)):
        assert matching(after, "refundbridge_webhooks_total", **labels) - matching(
            before, "refundbridge_webhooks_total", **labels) == grown, labels
    assert not any(invented in dict(ls).values() for _, ls in after)


def test_retries_and_transient_answers_are_counted(
        metered: TestClient, container: Container, providers: Any) -> None:
    """Stripe is down once, then answers: one retry, one transient call, then the refund."""
    router, stripe, erp = providers
    tries: list[httpx.Request] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        tries.append(request)
        if len(tries) == 1:
            return httpx.Response(503, json={"error": {"type": "api_error",
                                                       "message": "down"}})
        return stripe._create(request)  # type: ignore[no-any-return]

    router.post(f"{STRIPE_BASE}/v1/refunds").mock(side_effect=flaky)  # replaces the fake's
    before = scrape(metered)
    open_case(metered, erp)
    drain(container)
    after = scrape(metered)
    assert len(tries) == 2

    def grew(name: str, **labels: str) -> float:
        return matching(after, name, **labels) - matching(before, name, **labels)

    assert grew("refundbridge_provider_retries_total", connector="stripe") == 1
    assert grew("refundbridge_provider_calls_total", shop=SHOP, connector="stripe",
                outcome="transient", status="503") == 1
    assert grew("refundbridge_provider_calls_total", shop=SHOP, connector="stripe",
                outcome="ok", status="200") == 1


def test_a_failed_step_is_counted_as_failed(container: Container) -> None:
    """A step that raises what no retry mends counts as failed, even when recording the
    failure fails too (here: there is no such case to fail)."""
    from refundbridge.core.errors import NotFound

    before = JOBS.labels("evaluate", "failed")._value.get()
    ok = JOBS.labels("evaluate", "ok")._value.get()
    with pytest.raises(NotFound):
        run_one(container.services, "case-that-does-not-exist", work_step("evaluate"))
    assert JOBS.labels("evaluate", "failed")._value.get() == before + 1
    assert JOBS.labels("evaluate", "ok")._value.get() == ok


def test_the_retry_policy_counts_only_retries() -> None:
    from refundbridge.connectors.telemetry import RETRIES
    from refundbridge.core.errors import TransientProviderError

    name = "probe-" + secrets.token_hex(3)
    calls = iter([TransientProviderError(name, "down"), TransientProviderError(name, "down"),
                  "done"])

    def call() -> str:
        outcome = next(calls)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert RetryPolicy(attempts=5, initial_wait=0, max_wait=0).call(call) == "done"
    assert RETRIES.labels(name)._value.get() == 2


# ------------------------------------------------------------------ logs


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    handler = telemetry.configure_logging("json", logging.INFO, stream=stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_request_and_job_lines_are_json_with_their_context(
        json_logs: io.StringIO, metered: TestClient, container: Container,
        providers: Any) -> None:
    _, _, erp = providers
    body = request_body()
    erp.add_invoice(body["order"]["id"], [("GLU-METER-01", 2, "199.00")])
    raw, headers = signed(body)
    answer = metered.post(f"/webhooks/{SHOP}/generic", content=raw,
                          headers={**headers, "X-Request-ID": "shop-req.42"})
    assert answer.status_code == 202
    assert answer.headers["x-request-id"] == "shop-req.42"
    case_id = answer.json()["case_id"]
    drain(container)
    records = lines(json_logs)  # every line parses, or json.loads raises here
    request = [r for r in records if r.get("request_id") == "shop-req.42"]
    assert request, records
    assert {(r["shop"], r["connector"]) for r in request} == {(SHOP, "generic")}
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    steps = [r for r in records if r.get("case_id") == case_id and "step" in r]
    assert {"evaluate", "refund", "notify"} <= {r["step"] for r in steps}
    assert all("request_id" not in r for r in steps)  # a job is not the request
    # A request that names no id of its own gets a new one, not the last request's.
    second = metered.get("/healthz")
    assert second.headers["x-request-id"] not in ("", "shop-req.42")


def test_a_webhook_under_uvicorn_logs_one_line_with_what_uvicorn_s_access_line_had(
        json_logs: io.StringIO, container: Container) -> None:
    """Served as `refundbridge serve` serves it: uvicorn's access line for a webhook is
    dropped, ours carries client, method, path, status and the request id; any other
    request keeps uvicorn's line."""
    raw, headers = signed(request_body())
    with serve(create_app(container, dashboard=False), log_level="info",
               log_config=telemetry.uvicorn_log_config()) as base:
        answer = httpx.post(f"{base}/webhooks/{SHOP}/generic?via=test", content=raw,
                            headers={**headers, "X-Request-ID": "one-line.1"})
        assert answer.status_code == 202, answer.text
        assert httpx.post(f"{base}/webhooks/no-such-shop/generic",
                          content=raw, headers=headers).status_code == 404
        assert httpx.get(f"{base}/healthz").status_code == 200
    records = lines(json_logs)
    access = [r["message"] for r in records if r["logger"] == "uvicorn.access"]
    assert any("GET /healthz" in m for m in access), access
    assert not [m for m in access if "/webhooks/" in m], access
    ours = [r for r in records if r["logger"] == "refundbridge.api"]
    assert [(r["path"], r["status"]) for r in ours] == [
        (f"/webhooks/{SHOP}/generic", 202), ("/webhooks/no-such-shop/generic", 404)]
    assert all(r["method"] == "POST" and r["client"].startswith("127.0.0.1:") for r in ours)
    assert ours[0]["request_id"] == "one-line.1"
    assert (ours[0]["shop"], ours[0]["connector"]) == (SHOP, "generic")
    assert "shop" not in ours[1]  # an unknown shop is not a field either
    assert f"POST /webhooks/{SHOP}/generic from 127.0.0.1:" in ours[0]["message"]


def test_uvicorn_s_access_filter_drops_only_the_webhooks_we_log() -> None:
    access = WebhookAccessFilter()

    def kept(method: str, path: str) -> bool:
        record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 0,
                                   '%s - "%s %s HTTP/%s" %d',
                                   ("127.0.0.1:5000", method, path, "1.1", 202), None)
        return access.filter(record)

    assert not kept("POST", f"/webhooks/{SHOP}/generic")
    assert not kept("POST", f"/webhooks/{SHOP}/twilio/callback/m-1?x=1")
    assert kept("GET", f"/webhooks/{SHOP}/generic")
    assert kept("POST", f"/webhooks/{SHOP}/generic/extra/parts")  # not a route we log
    assert kept("POST", "/v1/cases")
    assert access.filter(logging.LogRecord("uvicorn.access", logging.INFO, __file__, 0,
                                           "no args", None, None))


def test_an_unusable_request_id_is_replaced(metered: TestClient) -> None:
    answer = metered.get("/healthz", headers={"X-Request-ID": "a b\tc" + "x" * 200})
    assert answer.headers["x-request-id"] != "a b\tc" + "x" * 200
    assert len(answer.headers["x-request-id"]) == 32


def test_a_refused_webhook_logs_why_at_warning(json_logs: io.StringIO,
                                               metered: TestClient) -> None:
    body = request_body()
    raw, headers = signed(body, secret="gsec_wrong_" + secrets.token_hex(8))
    assert metered.post(f"/webhooks/{SHOP}/generic", content=raw,
                        headers=headers).status_code == 401
    stale_raw, stale_headers = signed(body, timestamp=int(time.time()) - 3600)
    assert metered.post(f"/webhooks/{SHOP}/generic", content=stale_raw,
                        headers=stale_headers).status_code == 401
    bad_raw, bad_headers = signed(b'{"external_id": 5}')
    assert metered.post(f"/webhooks/{SHOP}/generic", content=bad_raw,
                        headers=bad_headers).status_code == 422
    refusals = [r for r in lines(json_logs) if r["logger"] == "refundbridge.webhooks"]
    assert [r["level"] for r in refusals] == ["WARNING"] * 3
    assert all((r["shop"], r["connector"]) == (SHOP, "generic") for r in refusals)
    assert [r["refusal"] for r in refusals] == ["rejected", "rejected", "invalid"]
    assert "signature" in refusals[0]["reason"]
    assert "ago" in refusals[1]["reason"]
    assert all(r.get("request_id") for r in refusals)
    # Nor the body, nor a secret: only our own words.
    logged = json_logs.getvalue()
    assert body["external_id"] not in logged
    assert headers["X-RefundBridge-Signature"] not in logged


def test_text_lines_carry_the_context_after_the_message() -> None:
    from refundbridge.core import log_context

    stream = io.StringIO()
    handler = telemetry.make_handler("text", stream)
    logger = logging.getLogger("refundbridge.test.text")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        with log_context.bound(case_id="c-1", step="refund"):
            logger.info("hello")
        logger.info("bare")
    finally:
        logger.removeHandler(handler)
    first, second = stream.getvalue().splitlines()
    assert first.endswith("hello [case_id=c-1 step=refund]")
    assert second.endswith("bare")


# ------------------------------------------------------------------ tracing (the otel extra)


def test_tracing_spans_the_request_its_steps_and_the_provider_calls(
        container: Container, providers: Any) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    # A process sets its tracer provider once: no other test here traces.
    assert telemetry.setup_tracing("refundbridge-test", exporter=exporter)
    _, _, erp = providers
    app = create_app(container, dashboard=False)
    telemetry.instrument_app(app)
    try:
        with TestClient(app) as client:
            case_id, _ = open_case(client, erp)
            drain(container)
    finally:
        HTTPXClientInstrumentor().uninstrument()
        exporter.shutdown()  # later tests' spans (the jobs') go nowhere
    spans = exporter.get_finished_spans()
    names = [s.name for s in spans]
    assert any(n.startswith("POST /webhooks/") for n in names), names
    steps = [s for s in spans if s.name.startswith("step ")]
    assert {"step evaluate", "step refund"} <= {s.name for s in steps}
    assert all(s.attributes["refundbridge.case_id"] == case_id for s in steps)
    # The refund's call to Stripe is a child of the refund step's span.
    refund = next(s for s in steps if s.name == "step refund")
    calls = [s for s in spans if s.kind.name == "CLIENT"
             and s.parent is not None and s.parent.span_id == refund.context.span_id]
    assert calls, names


def test_the_dashboard_uses_only_metrics_we_export(
        metered: TestClient, container: Container, providers: Any) -> None:
    import re
    from pathlib import Path

    _, _, erp = providers
    open_case(metered, erp)
    drain(container)
    answer = metered.get("/metrics", headers=SCRAPE)
    # Every family is described, samples or not (a counter with no retries yet).
    families = {f.name for f in text_string_to_metric_families(answer.text)}
    exported = {name + suffix for name in families
                for suffix in ("", "_total", "_bucket", "_count", "_sum")}
    dashboard = json.loads((Path(__file__).resolve().parents[2] / "docs" / "grafana"
                            / "refundbridge.json").read_text(encoding="utf-8"))
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"refundbridge_\w+", target["expr"])}
    assert used and used <= exported, used - exported
