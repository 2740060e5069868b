"""The execution service's Prometheus metrics (orders by state, fills, notional, slippage, latency)."""

from __future__ import annotations

from tradeflow.telemetry import Telemetry

SLIPPAGE_BPS_BUCKETS = (-50.0, -20.0, -10.0, -5.0, -2.0, -1.0, 0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
ORDER_TO_FILL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0)


class ExecutionMetrics:
    def __init__(self, telemetry: Telemetry) -> None:
        self.transitions = telemetry.counter(
            "tradeflow_execution_order_transitions_total", "Order transitions by the state entered", ("status",))
        self.open_orders = telemetry.gauge(
            "tradeflow_execution_open_orders", "Open orders by state", ("status",))
        self.rejections = telemetry.counter(
            "tradeflow_execution_rejections_total", "Orders rejected, by reason code", ("reason",))
        self.duplicates = telemetry.counter(
            "tradeflow_execution_duplicate_orders_total", "Orders received again (redelivered): nothing new done")
        self.illegal = telemetry.counter(
            "tradeflow_execution_illegal_updates_total",
            "Broker updates refused by the order state table (reported, state kept)")
        self.unknown_outcomes = telemetry.counter(
            "tradeflow_execution_unknown_outcomes_total", "Broker calls whose outcome is unknown (order left in flight)")
        self.fills = telemetry.counter("tradeflow_execution_fills_total", "Fills by liquidity", ("liquidity",))
        self.notional = telemetry.counter(
            "tradeflow_execution_fill_notional_total", "Notional of fills, in their quote currency", ("currency",))
        self.slippage = telemetry.histogram(
            "tradeflow_execution_slippage_bps",
            "Fill price against the order's decision price in basis points (positive: worse for the order)",
            buckets=SLIPPAGE_BPS_BUCKETS)
        self.order_to_fill = telemetry.histogram(
            "tradeflow_execution_order_to_fill_seconds", "Wall time from an order's arrival to each of its fills",
            buckets=ORDER_TO_FILL_BUCKETS)
        self.history_reads = telemetry.counter(
            "tradeflow_execution_history_reads_total",
            "Paper orders whose trades were read back from md.ticks.v1 (the trade window did not reach back)")
        self.amendments = telemetry.counter(
            "tradeflow_execution_amendments_total", "Amendments of open orders by outcome (applied, refused)",
            ("outcome",))
        self.kill_switches = telemetry.counter(
            "tradeflow_execution_kill_switch_cancels_total", "Orders canceled by a kill switch")
