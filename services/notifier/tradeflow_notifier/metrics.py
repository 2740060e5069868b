"""The notifier's Prometheus metrics, defined once (the intake, the dispatcher and the upkeep share them)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram
from tradeflow.telemetry import Telemetry

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


def events(telemetry: Telemetry) -> Counter:
    return telemetry.counter("tradeflow_notifier_events_total", "Events taken in, by kind and outcome "
                             "(routed, unrouted, grouped, duplicate, dead_lettered)", ("kind", "outcome"))


def deliveries(telemetry: Telemetry) -> Counter:
    return telemetry.counter("tradeflow_notifier_deliveries_total", "Deliveries by channel and outcome "
                             "(queued, delivered, retried, deferred, failed)", ("channel", "outcome"))


def attempts(telemetry: Telemetry) -> Counter:
    return telemetry.counter("tradeflow_notifier_delivery_attempts_total", "Send attempts by channel and result "
                             "(delivered, retry, rejected)", ("channel", "result"))


def delivery_latency(telemetry: Telemetry) -> Histogram:
    return telemetry.histogram("tradeflow_notifier_delivery_latency_seconds",
                               "From a delivery's creation to the receiver's acceptance", ("channel",), LATENCY_BUCKETS)


def send_time(telemetry: Telemetry) -> Histogram:
    return telemetry.histogram("tradeflow_notifier_send_seconds", "Duration of one send attempt", ("channel",),
                               LATENCY_BUCKETS)


def queue_depth(telemetry: Telemetry) -> Gauge:
    return telemetry.gauge("tradeflow_notifier_queue_depth", "Pending deliveries per channel", ("channel",))
