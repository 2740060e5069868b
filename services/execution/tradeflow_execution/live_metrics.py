"""Metrics of the live brokers (ADR 0022): reconciliations, adoptions, in-flight orders, exchange
refusals, malformed exchange messages, and slippage per strategy and symbol."""

from __future__ import annotations

from tradeflow.telemetry import Telemetry

from tradeflow_execution.metrics import SLIPPAGE_BPS_BUCKETS


class LiveMetrics:
    def __init__(self, telemetry: Telemetry) -> None:
        self.reconciliations = telemetry.counter(
            "tradeflow_execution_reconciliations_total", "Reconciliations of live accounts by outcome",
            ("account", "outcome"))
        self.adopted = telemetry.counter(
            "tradeflow_execution_adopted_orders_total", "Orders found at the exchange that execution never sent",
            ("account",))
        self.in_flight = telemetry.gauge(
            "tradeflow_execution_in_flight_orders", "Live orders whose create has no answer yet", ("account",))
        self.in_flight_resolved = telemetry.counter(
            "tradeflow_execution_in_flight_resolved_total",
            "In-flight orders settled by asking the exchange, by what it said", ("account", "outcome"))
        self.exchange_errors = telemetry.counter(
            "tradeflow_execution_exchange_errors_total", "Exchange refusals and failures by reason code",
            ("account", "reason"))
        self.malformed = telemetry.counter(
            "tradeflow_execution_malformed_exchange_messages_total",
            "Exchange answers that could not be read (logged and skipped)", ("account",))
        self.stream_events = telemetry.counter(
            "tradeflow_execution_user_stream_events_total",
            "Order events from the exchange's user data stream (each wakes a poll round)", ("account",))
        self.stream_losses = telemetry.counter(
            "tradeflow_execution_user_stream_losses_total", "User data stream connections lost or refused",
            ("account",))
        self.slippage_decision = telemetry.histogram(
            "tradeflow_execution_live_slippage_vs_decision_bps",
            "Live fill price against the order's decision price in basis points (positive: worse)",
            ("strategy", "symbol"), buckets=SLIPPAGE_BPS_BUCKETS)
        self.slippage_mid = telemetry.histogram(
            "tradeflow_execution_live_slippage_vs_mid_bps",
            "Live fill price against the order book's mid at submission in basis points (positive: worse)",
            ("strategy", "symbol"), buckets=SLIPPAGE_BPS_BUCKETS)
