"""How the processes log and trace: set up once by whoever starts one (`serve`, `worker`,
the multi-process ASGI entry), never on import.

Logs: every line carries the request id, shop, connector, case id, campaign id and step
that are known where it was logged (`core.log_context`), as `key=value` after the message
(`log_format = "text"`) or as fields of one JSON object a line (`"json"`, python-json-logger).

Tracing (`tracing = true`) needs the `otel` extra (`pip install 'refundbridge[otel]'`):
without its packages the hook logs one warning and does nothing. Spans are exported over
OTLP/HTTP to where the standard `OTEL_EXPORTER_OTLP_ENDPOINT` points.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

from refundbridge.core import log_context

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("refundbridge.telemetry")

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The attribute our handler marks its records with, so a second setup replaces it.
_OURS = "_refundbridge_handler"


class ContextFilter(logging.Filter):
    """Adds the log context's fields to each record (a field the call passed in `extra`
    wins), so any formatter can print them."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in log_context.current().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class TextFormatter(logging.Formatter):
    """The plain line, then the context fields that are set: `… [request_id=… case_id=…]`."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [f"{name}={getattr(record, name)}" for name in log_context.FIELDS
                  if getattr(record, name, None) is not None]
        if not fields:
            return line
        first, newline, rest = line.partition("\n")  # after the message, before a traceback
        return f"{first} [{' '.join(fields)}]{newline}{rest}"


def json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    # Extra attributes (the context fields, `reason`, …) become fields of their own.
    return JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                         rename_fields={"asctime": "time", "levelname": "level",
                                        "name": "logger"},
                         json_ensure_ascii=False)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a line is logged, not when it was set up
    (a command run inside a test runner gets a stream that is closed afterwards)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def make_handler(log_format: LogFormat, stream: Any = None) -> logging.Handler:
    handler = StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(json_formatter() if log_format == "json" else TextFormatter(
        TEXT_FORMAT))
    setattr(handler, _OURS, True)
    return handler


def configure_logging(log_format: LogFormat = "text", level: int = logging.INFO,
                      stream: Any = None) -> logging.Handler:
    """One handler on the root logger, in the chosen format (a previous one of ours is
    replaced); uvicorn's loggers are handed to it too, so its lines share the format."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(old)
    handler = make_handler(log_format, stream)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return handler


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's `log_config`: keep its loggers' levels, leave the handlers to ours."""
    return {"version": 1, "disable_existing_loggers": False,
            "loggers": {"uvicorn": {"level": "INFO"}, "uvicorn.error": {"level": "INFO"},
                        "uvicorn.access": {"level": "INFO"}}}


# ------------------------------------------------------------------ tracing (optional)

def setup_tracing(service_name: str, exporter: Any = None) -> bool:
    """Install a tracer provider and instrument httpx (every provider call); True if
    tracing is on. `exporter`: a span exporter of your own (tests keep spans in memory);
    otherwise OTLP over HTTP. A no-op, with a warning, without the `otel` packages."""
    try:
        from opentelemetry import trace
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as exc:
        log.warning("tracing is set but the OpenTelemetry packages are not installed "
                    "(pip install 'refundbridge[otel]'); tracing stays off: %s", exc)
        return False
    if exporter is None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )
        except ImportError as exc:
            log.warning("tracing is set but the OTLP exporter is not installed "
                        "(pip install 'refundbridge[otel]'); tracing stays off: %s", exc)
            return False
        processor: Any = BatchSpanProcessor(OTLPSpanExporter())
    else:
        processor = SimpleSpanProcessor(exporter)
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    instrumentor = HTTPXClientInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()
    return True


def instrument_app(app: FastAPI) -> None:
    """Spans for every request the API answers (once `setup_tracing` has run)."""
    try:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    except ImportError:
        return
    FastAPIInstrumentor.instrument_app(app, excluded_urls="/metrics,/healthz,/readyz")


# ------------------------------------------------------------------ several API processes

@contextmanager
def multiprocess_metrics() -> Iterator[None]:
    """For `serve --workers N`: every process writes its counters to files in a fresh
    directory (prometheus_client's multi-process mode), so a scrape of any one process
    sees the sum of all. The processes read `PROMETHEUS_MULTIPROC_DIR` when they start;
    the directory goes when the server stops."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield  # the operator chose one
        return
    with tempfile.TemporaryDirectory(prefix="refundbridge-metrics-") as directory:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        try:
            yield
        finally:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
