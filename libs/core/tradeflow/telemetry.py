"""Logs, metrics and traces of one service process.

A :class:`Telemetry` owns its Prometheus registry and its OpenTelemetry tracer provider, so
two instances (two services in one test process) never share counters. Nothing global is
touched at import; :meth:`Telemetry.configure` installs the log handler and, once per process,
the global tracer provider.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tradeflow.settings import CommonSettings

# The request/operation id carried in every log line of the work it belongs to. Set by the
# HTTP middleware (X-Correlation-ID) and by anyone starting a unit of work.
correlation_id_var: ContextVar[str | None] = ContextVar("tradeflow_correlation_id", default=None)

# Attributes every LogRecord has; anything else was passed through ``extra=`` and is logged.
_STANDARD_LOG_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys() | {"message", "asctime", "taskName"}
)

_global_provider_lock = threading.Lock()
_global_provider_set = False


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, service, trace/span ids, extras."""

    def __init__(self, service_name: str) -> None:
        super().__init__()
        self.service_name = service_name

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service_name,
        }
        entry.update(_trace_fields())
        correlation_id = correlation_id_var.get()
        if correlation_id:
            entry["correlation_id"] = correlation_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_LOG_ATTRS and not key.startswith("_") and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextLogFormatter(logging.Formatter):
    """Human-readable lines for a terminal (TRADEFLOW_LOG_FORMAT=text)."""

    def __init__(self, service_name: str) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self.service_name = service_name

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = [f"{k}={v}" for k, v in _trace_fields().items()]
        correlation_id = correlation_id_var.get()
        if correlation_id:
            context.append(f"correlation_id={correlation_id}")
        return f"{line} [{' '.join(context)}]" if context else line


def _trace_fields() -> dict[str, str]:
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return {}
    return {"trace_id": format(span_context.trace_id, "032x"), "span_id": format(span_context.span_id, "016x")}


def make_sampler(name: str, ratio: float) -> Sampler:
    """The sampler of ``TRADEFLOW_TRACE_SAMPLER`` (OpenTelemetry's names, as OTEL_TRACES_SAMPLER)
    with ``TRADEFLOW_TRACE_SAMPLE_RATIO`` for the ratio-based ones.

    ``parentbased_*`` keep the decision of the incoming ``traceparent`` (its sampled flag), so a
    trace started (and sampled, or not) by ingest is recorded, or not, all the way to the
    notifier: one ratio set at the root decides for the whole trade-to-notification trace.
    """
    roots = {"traceidratio": TraceIdRatioBased(ratio), "always_on": ALWAYS_ON, "always_off": ALWAYS_OFF}
    if name.startswith("parentbased_"):
        return ParentBased(roots[name.removeprefix("parentbased_")])
    if name not in roots:
        raise ValueError(f"unknown trace sampler {name!r}")
    return roots[name]


def _otlp_traces_url(endpoint: str) -> str:
    """Accept a collector base URL (http://otel:4318) or the full traces URL."""
    return endpoint if urlsplit(endpoint).path not in ("", "/") else endpoint.rstrip("/") + "/v1/traces"


class Telemetry:
    """Logging, Prometheus metrics and OpenTelemetry tracing for one service."""

    def __init__(self, service_name: str, settings: CommonSettings) -> None:
        self.service_name = service_name
        self.settings = settings
        self.registry = CollectorRegistry(auto_describe=True)
        self._metrics: dict[str, Counter | Gauge | Histogram] = {}
        self._metrics_lock = threading.Lock()
        self.tracer_provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}),
            sampler=make_sampler(getattr(settings, "trace_sampler", "parentbased_traceidratio"),
                                 getattr(settings, "trace_sample_ratio", 1.0)))
        # Spans only cost where they go somewhere: hot paths (ingest's publishing, candle
        # emission) make theirs only when this is true.
        self.tracing = bool(settings.otlp_endpoint)
        if settings.otlp_endpoint:
            # Imported here: the exporter pulls in protobuf/requests, not needed when tracing is off.
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=_otlp_traces_url(settings.otlp_endpoint))
            self.tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.tracer_provider.get_tracer("tradeflow")
        self._log_handler: logging.Handler | None = None
        self._shut_down = False

    # --- metrics ------------------------------------------------------------------------------

    def counter(self, name: str, documentation: str, labelnames: tuple[str, ...] = ()) -> Counter:
        """The counter ``name`` on this registry, created on first use (shared by every caller)."""
        return self._metric(Counter, name, documentation, labelnames)

    def gauge(self, name: str, documentation: str, labelnames: tuple[str, ...] = ()) -> Gauge:
        return self._metric(Gauge, name, documentation, labelnames)

    def histogram(
        self, name: str, documentation: str, labelnames: tuple[str, ...] = (), buckets: tuple[float, ...] | None = None
    ) -> Histogram:
        extra = {"buckets": buckets} if buckets else {}
        return self._metric(Histogram, name, documentation, labelnames, **extra)

    def _metric(self, kind, name: str, documentation: str, labelnames: tuple[str, ...], **kwargs):
        with self._metrics_lock:
            existing = self._metrics.get(name)
            if existing is not None:
                if not isinstance(existing, kind) or tuple(existing._labelnames) != tuple(labelnames):
                    raise ValueError(f"metric {name} already registered with a different type or labels")
                return existing
            metric = kind(name, documentation, labelnames, registry=self.registry, **kwargs)
            self._metrics[name] = metric
            return metric

    # --- logging and tracing ------------------------------------------------------------------

    def configure(self) -> None:
        """Install logging and make this tracer provider the process-wide one (first caller wins)."""
        global _global_provider_set
        self.configure_logging()
        with _global_provider_lock:
            if not _global_provider_set:
                trace.set_tracer_provider(self.tracer_provider)
                _global_provider_set = True

    def configure_logging(self) -> None:
        """Send the root logger to stderr as JSON lines (or text), at settings.log_level."""
        root = logging.getLogger()
        if self._log_handler is not None:
            root.removeHandler(self._log_handler)
        handler = logging.StreamHandler(sys.stderr)
        formatter_type = TextLogFormatter if self.settings.log_format == "text" else JsonLogFormatter
        handler.setFormatter(formatter_type(self.service_name))
        # Replace handlers of an earlier configure_logging (any Telemetry) so lines are not doubled.
        for existing in list(root.handlers):
            if getattr(existing, "_tradeflow", False):
                root.removeHandler(existing)
        handler._tradeflow = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.setLevel(self.settings.log_level)
        self._log_handler = handler

    def shutdown(self) -> None:
        """Flush and stop span export. Safe to call twice."""
        if self._shut_down:
            return
        self._shut_down = True
        self.tracer_provider.shutdown()
