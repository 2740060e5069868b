"""Log lines, metric registries and tracer providers of Telemetry."""

from __future__ import annotations

import io
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from tradeflow.bus.connection import Backoff
from tradeflow.bus.dead_letters import reason_code
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import JsonLogFormatter, Telemetry, TextLogFormatter, correlation_id_var


def log_through(formatter: logging.Formatter, emit) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("tradeflow.test.telemetry")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_json_log_line_has_service_trace_correlation_and_extra_fields():
    telemetry = Telemetry("candle-builder", CommonSettings())
    token = correlation_id_var.set("req-7")
    try:
        with telemetry.tracer.start_as_current_span("work") as span:
            output = log_through(
                JsonLogFormatter("candle-builder"),
                lambda log: log.warning("lag is %d", 42, extra={"topic": "md.ticks.v1", "partition": 3}),
            )
    finally:
        correlation_id_var.reset(token)
    [line] = output.splitlines()
    entry = json.loads(line)
    context = span.get_span_context()
    assert entry["message"] == "lag is 42"
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "tradeflow.test.telemetry"
    assert entry["service"] == "candle-builder"
    assert entry["trace_id"] == f"{context.trace_id:032x}"
    assert entry["span_id"] == f"{context.span_id:016x}"
    assert entry["correlation_id"] == "req-7"
    assert entry["topic"] == "md.ticks.v1" and entry["partition"] == 3
    assert entry["ts"].endswith("+00:00")


def test_json_log_line_without_span_or_correlation_and_with_exception():
    def emit(log):
        try:
            raise ValueError("bad tick")
        except ValueError:
            log.exception("handler failed")

    entry = json.loads(log_through(JsonLogFormatter("ingest"), emit))
    assert "trace_id" not in entry and "correlation_id" not in entry
    assert "ValueError: bad tick" in entry["exc"]


def test_text_format_is_one_readable_line():
    token = correlation_id_var.set("abc")
    try:
        output = log_through(TextLogFormatter("ingest"), lambda log: log.info("started"))
    finally:
        correlation_id_var.reset(token)
    assert "INFO" in output and "started" in output and "correlation_id=abc" in output
    assert not output.lstrip().startswith("{")


def test_configure_logging_replaces_its_own_handler_and_honours_the_format():
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        Telemetry("a", CommonSettings(log_format="text", log_level="DEBUG")).configure_logging()
        Telemetry("b", CommonSettings()).configure_logging()
        ours = [h for h in root.handlers if getattr(h, "_tradeflow", False)]
        assert len(ours) == 1 and isinstance(ours[0].formatter, JsonLogFormatter)
        assert ours[0].formatter.service_name == "b"
        assert root.level == logging.INFO
    finally:
        root.handlers[:] = before
        root.setLevel(level)


def test_each_telemetry_has_its_own_registry_and_metrics_are_shared_by_name():
    first = Telemetry("one", CommonSettings())
    second = Telemetry("two", CommonSettings())
    counter = first.counter("tradeflow_things_total", "things", ("topic",))
    assert first.counter("tradeflow_things_total", "things", ("topic",)) is counter
    counter.labels("t").inc(3)
    second.counter("tradeflow_things_total", "things", ("topic",)).labels("t").inc()
    assert first.registry.get_sample_value("tradeflow_things_total", {"topic": "t"}) == 3
    assert second.registry.get_sample_value("tradeflow_things_total", {"topic": "t"}) == 1
    with pytest.raises(ValueError, match="different type or labels"):
        first.gauge("tradeflow_things_total", "things", ("topic",))


class _CollectorHandler(BaseHTTPRequestHandler):
    received: list[tuple[str, str, int]] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, self.headers["Content-Type"], len(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_spans_are_exported_over_otlp_http_only_when_an_endpoint_is_set():
    collector = HTTPServer(("127.0.0.1", 0), _CollectorHandler)  # stands in for an OTLP collector
    thread = threading.Thread(target=collector.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{collector.server_port}"
        exporting = Telemetry("exporting", CommonSettings(otlp_endpoint=endpoint))
        plain = Telemetry("plain", CommonSettings())
        assert plain.tracer_provider is not exporting.tracer_provider
        with plain.tracer.start_as_current_span("not exported"):
            pass
        plain.shutdown()
        assert _CollectorHandler.received == []
        with exporting.tracer.start_as_current_span("exported"):
            pass
        exporting.shutdown()  # flushes the batch
        exporting.shutdown()  # twice is fine
        assert [(path, ctype) for path, ctype, _ in _CollectorHandler.received] == [
            ("/v1/traces", "application/x-protobuf")
        ]
    finally:
        collector.shutdown()
        collector.server_close()


def test_reason_code_is_the_part_before_the_colon():
    assert reason_code("undecodable: Expected `object`, got `int`") == "undecodable"
    assert reason_code("schema_mismatch: a: b") == "schema_mismatch"
    assert reason_code("") == "unspecified"


def test_backoff_grows_exponentially_with_jitter_and_is_capped():
    backoff = Backoff(initial_s=1.0, maximum_s=8.0)
    delays = [backoff.next_delay() for _ in range(8)]
    for attempt, delay in enumerate(delays):
        ceiling = min(8.0, 2.0**attempt)
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_the_sampler_follows_the_incoming_traceparent_and_samples_new_traces_by_ratio():
    from opentelemetry import propagate, trace
    from tradeflow.bus.trace_context import context_of

    telemetry = Telemetry("risk", CommonSettings(trace_sampler="parentbased_traceidratio", trace_sample_ratio=0.0))
    with telemetry.tracer.start_as_current_span("new trace") as root:
        assert not root.get_span_context().trace_flags.sampled  # ratio 0: no new trace is recorded
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
    assert int(carrier["traceparent"].rsplit("-", 1)[1], 16) & 1 == 0  # the decision travels with the context
    sampled_upstream = context_of(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    with telemetry.tracer.start_as_current_span("continued", context=sampled_upstream) as child:
        assert child.get_span_context().trace_flags.sampled  # a sampled parent is followed
        assert child.get_span_context().trace_id == 0x4bf92f3577b34da6a3ce929d0e0e4736
    assert trace.get_current_span() is not child

    everything = Telemetry("risk", CommonSettings(trace_sampler="always_on", trace_sample_ratio=0.0))
    with everything.tracer.start_as_current_span("new trace") as root:
        assert root.get_span_context().trace_flags.sampled
    nothing = Telemetry("risk", CommonSettings(trace_sampler="parentbased_always_off"))
    with nothing.tracer.start_as_current_span("new trace") as root:
        assert not root.get_span_context().trace_flags.sampled


def test_sampler_settings_are_checked_at_start_naming_the_variable(monkeypatch):
    from tradeflow.settings import ConfigurationError, load_settings

    monkeypatch.setenv("TRADEFLOW_TRACE_SAMPLE_RATIO", "1.5")
    with pytest.raises(ConfigurationError, match="TRADEFLOW_TRACE_SAMPLE_RATIO"):
        load_settings(CommonSettings)
    monkeypatch.setenv("TRADEFLOW_TRACE_SAMPLE_RATIO", "0.25")
    monkeypatch.setenv("TRADEFLOW_TRACE_SAMPLER", "sometimes")
    with pytest.raises(ConfigurationError, match="TRADEFLOW_TRACE_SAMPLER"):
        load_settings(CommonSettings)
    monkeypatch.setenv("TRADEFLOW_TRACE_SAMPLER", "traceidratio")
    assert load_settings(CommonSettings).trace_sample_ratio == 0.25
