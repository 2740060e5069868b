"""Traces through execution: an order's span continues risk's trace; its fills continue the order's.

The order's span context is stored with the order (W3C headers), so a fill that happens much
later, or after a restart, still joins the order's trace; the outbox rows carry the headers to
exec.orders.v1 and exec.fills.v1 and on to their consumers. A fill made while its order is
placed, and a later one (a resting order met by a trade), each get a span of their own under
it, with the fill's price, quantity and fee as attributes (docs/adr/0023).

Spans are made only where they go somewhere (``TRADEFLOW_OTLP_ENDPOINT`` set: bootstrap passes a
tracer); without a tracer the producer's traceparent is passed on as it came, so the trace still
runs through execution's messages at no cost per order.
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


def _headers(span: Span) -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


class OrderTracing:
    def __init__(self, tracer: Tracer | None) -> None:
        self._tracer = tracer

    def start_order(self, order: Order, traceparent: str | None) -> tuple[Span | None, dict[str, str]]:
        """The span of an order's handling (a child of the producer's span when it sent one), and
        the headers its messages carry. The caller ends the span."""
        incoming = {HEADER_TRACEPARENT: traceparent} if traceparent else {}
        if self._tracer is None:
            return None, incoming
        span = self._tracer.start_span("execution order", context=_context(incoming), kind=SpanKind.CONSUMER,
                                       attributes={"tradeflow.client_order_id": order.client_order_id,
                                                   "tradeflow.market": f"{order.exchange}:{order.symbol}",
                                                   "tradeflow.order.side": order.side,
                                                   "tradeflow.order.type": order.order_type})
        return span, _headers(span)

    def fill(self, order_trace: Mapping[str, str], fill: Fill) -> dict[str, str]:
        """The headers of a fill made after its order was placed: a span of its own in the order's trace."""
        if self._tracer is None:
            return dict(order_trace)
        span = self._tracer.start_span("execution fill", context=_context(order_trace), attributes={
            "tradeflow.fill_id": fill.fill_id, "tradeflow.client_order_id": fill.client_order_id,
            "tradeflow.market": f"{fill.exchange}:{fill.symbol}", "tradeflow.fill.side": fill.side,
            "tradeflow.fill.price": str(fill.price), "tradeflow.fill.quantity": str(fill.quantity),
            "tradeflow.fill.fee": str(fill.fee), "tradeflow.fill.fee_currency": fill.fee_currency,
            "tradeflow.fill.liquidity": fill.liquidity})
        try:
            return _headers(span)
        finally:
            span.end()
