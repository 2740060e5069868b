"""W3C trace context in Kafka headers: inject on produce, link (or continue) on consume."""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link

from tradeflow.codec import HEADER_TRACEPARENT

# A batch span links to at most this many producer contexts: enough to navigate, bounded cost.
MAX_LINKS = 64


def current_trace_headers() -> list[tuple[str, bytes]]:
    """The W3C headers (traceparent, tracestate) of the current span; empty without one."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(key, value.encode()) for key, value in carrier.items()]


class TraceHeaders:
    """current_trace_headers() for a producer's hot path: computed once per active span.

    Every message sent inside one span carries the same headers, and outside any span there
    are none, so a send only looks up the current span instead of running the propagator.
    (Baggage changed inside one span would not be picked up; Tradeflow does not use baggage.)
    """

    def __init__(self) -> None:
        self._span_context = None
        self._headers: list[tuple[str, bytes]] = []

    def current(self) -> list[tuple[str, bytes]]:
        span_context = trace.get_current_span().get_span_context()
        if not span_context.is_valid:
            return []
        if span_context != self._span_context:
            self._headers = current_trace_headers()
            self._span_context = span_context
        return self._headers


def batch_trace_context(traceparents: Iterable[bytes]) -> tuple[Context | None, list[Link]]:
    """Parent context and links for the span that handles a batch.

    Links go to every distinct producer context (bounded). When all of them belong to one
    trace (e.g. one replay or one upstream batch), the batch span continues that trace as a
    child of the first, so the path shows as one trace end to end.
    """
    links: list[Link] = []
    first_context: Context | None = None
    trace_ids: set[int] = set()
    for raw in traceparents:
        if len(links) >= MAX_LINKS:
            break
        context = propagate.extract({HEADER_TRACEPARENT: raw.decode("ascii", "replace")})
        span_context = trace.get_current_span(context).get_span_context()
        if not span_context.is_valid:
            continue
        if first_context is None:
            first_context = context
        trace_ids.add(span_context.trace_id)
        links.append(Link(span_context))
    parent = first_context if len(trace_ids) == 1 else None
    return parent, links


def span_headers(span: trace.Span) -> list[tuple[str, bytes]]:
    """The W3C headers of ``span`` (not necessarily the current one): for messages sent on its behalf."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return [(key, value.encode()) for key, value in carrier.items()]


def context_of(traceparent: bytes | str | None) -> Context | None:
    """The trace context a ``traceparent`` header value carries (None without a valid one)."""
    if not traceparent:
        return None
    value = traceparent.decode("ascii", "replace") if isinstance(traceparent, bytes) else traceparent
    context = propagate.extract({HEADER_TRACEPARENT: value})
    return context if trace.get_current_span(context).get_span_context().is_valid else None


async def propagate_to_request(request) -> None:
    """An httpx request hook (``event_hooks={"request": [propagate_to_request]}``): the current
    span's ``traceparent`` on a call to another service, whose request span then joins the trace."""
    for key, value in current_trace_headers():
        if key not in request.headers:
            request.headers[key] = value.decode()
