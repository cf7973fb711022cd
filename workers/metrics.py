"""What the workers count for Prometheus: jobs by step and outcome with their duration,
and what the reconciler did. A worker process serves them itself
(`refundbridge worker --metrics-port N`, `serve_metrics`): the API's `/metrics` shows only
its own process's counters."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Histogram, start_http_server

if TYPE_CHECKING:
    from refundbridge.workers.reconcile import ReconcileReport

log = logging.getLogger("refundbridge.worker")

JOBS = Counter("refundbridge_jobs", "Steps run by workers, by outcome: ok, transient (left "
               "open for the reconciler), failed (the case or campaign failed)",
               ["step", "outcome"])
JOB_SECONDS = Histogram("refundbridge_job_seconds", "How long one step took, by outcome",
                        ["step", "outcome"],
                        buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                                 120.0))
RECONCILER = Counter("refundbridge_reconciler_actions", "What the reconciler did: requeued "
                     "(a lost job handed out again), revived (an idle case's steps enqueued), "
                     "given_up (a step failed after max_dispatches), campaigns (recall "
                     "campaigns asked to go on)", ["action"])
for _action in ("requeued", "revived", "given_up", "campaigns"):
    RECONCILER.labels(_action)  # present at 0, so a rate() is defined before the first one


def job_finished(step: str, outcome: str, seconds: float) -> None:
    JOBS.labels(step, outcome).inc()
    JOB_SECONDS.labels(step, outcome).observe(seconds)


def reconciled(report: ReconcileReport) -> None:
    for action, items in (("requeued", report.requeued), ("revived", report.revived),
                          ("given_up", report.given_up), ("campaigns", report.campaigns)):
        if items:
            RECONCILER.labels(action).inc(len(items))


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    """Serve this process's metrics at http://host:port/metrics (a thread of its own).
    Loopback by default: the port has no token, so only a scraper on the host reaches it."""
    start_http_server(port, addr=host)
    log.info("worker metrics on http://%s:%d/metrics", host, port)


try:  # tracing is optional (the `otel` extra); without it a step runs without a span
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - depends on what is installed
    _trace = None  # type: ignore[assignment]


@contextmanager
def step_span(step: str, work_id: str, campaign: bool) -> Iterator[Any]:
    """A span around one step, when tracing is installed (a no-op span otherwise)."""
    if _trace is None:
        yield None
        return
    attributes = {"refundbridge.step": step,
                  "refundbridge.campaign_id" if campaign else "refundbridge.case_id": work_id}
    with _trace.get_tracer("refundbridge.workers").start_as_current_span(
            f"step {step}", attributes=attributes) as span:
        yield span
