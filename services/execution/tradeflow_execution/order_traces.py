"""Traces through execution: an order's span continues risk's trace; its fills continue the order's.

The order's span context is stored with the order (W3C headers), so a fill that happens much
later, or after a restart, still joins the order's trace; the outbox rows carry the span's
headers to exec.orders.v1 and exec.fills.v1 and on to their consumers.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Tracer
from tradeflow.codec import HEADER_TRACEPARENT
from tradeflow.messages import Fill, Order


def _context(headers: Mapping[str, str]) -> Context:
    return propagate.extract(dict(headers)) if headers else Context()


def span_headers(span: Span) -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def start_order_span(tracer: Tracer, order: Order, traceparent: str | None) -> Span:
    """The span of an order's handling, a child of the producer's (risk's) span when it sent one."""
    parent = _context({HEADER_TRACEPARENT: traceparent} if traceparent else {})
    return tracer.start_span("execution order", context=parent, kind=SpanKind.CONSUMER, attributes={
        "tradeflow.client_order_id": order.client_order_id})


def fill_trace(tracer: Tracer, order_trace: Mapping[str, str], fill: Fill) -> dict[str, str]:
    """A span for ``fill`` under the order's span; its headers for the messages it causes."""
    span = tracer.start_span("execution fill", context=_context(order_trace),
                             attributes={"tradeflow.fill_id": fill.fill_id})
    try:
        return span_headers(span)
    finally:
        span.end()
