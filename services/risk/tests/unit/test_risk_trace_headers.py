"""The trace headers a decision's outbox row carries: what the W3C propagator would write."""

from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from tradeflow_risk.adapters.store import trace_headers

SIGNAL_TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def propagated(span) -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def test_a_decision_span_gets_the_propagators_headers_continuing_the_signals_trace():
    tracer = TracerProvider().get_tracer("test")
    parent = propagate.extract({"traceparent": SIGNAL_TRACEPARENT})
    span = tracer.start_span("risk decide", context=parent)
    headers = trace_headers(span)
    span.end()
    assert headers == propagated(span)
    assert headers["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    assert headers["traceparent"].split("-")[2] != "b7ad6b7169203331", "the decision's own span, not the signal's"


def test_trace_state_and_unsampled_flags_are_kept():
    span = NonRecordingSpan(SpanContext(trace_id=0x1234, span_id=0x99, is_remote=False,
                                        trace_flags=TraceFlags(0), trace_state=TraceState([("vendor", "v1")])))
    assert trace_headers(span) == propagated(span) == {
        "traceparent": "00-00000000000000000000000000001234-0000000000000099-00", "tracestate": "vendor=v1"}


def test_no_trace_gives_no_headers_and_a_context_goes_through_the_propagator():
    assert trace_headers(None) == {}
    assert trace_headers(trace.INVALID_SPAN) == {}
    context = propagate.extract({"traceparent": SIGNAL_TRACEPARENT})
    assert trace_headers(context) == {"traceparent": SIGNAL_TRACEPARENT}


def test_a_traceparent_passed_on_as_it_came_is_the_rows_header():
    assert trace_headers(SIGNAL_TRACEPARENT) == {"traceparent": SIGNAL_TRACEPARENT}
