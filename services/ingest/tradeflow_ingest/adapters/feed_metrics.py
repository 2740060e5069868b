"""Prometheus metrics of one exchange feed (on the service's telemetry registry)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from tradeflow.telemetry import Telemetry
from tradeflow_exchanges.circuit_breaker import BreakerState

BREAKER_STATE_VALUES = {BreakerState.CLOSED: 0.0, BreakerState.HALF_OPEN: 1.0, BreakerState.OPEN: 2.0}


class FeedMetrics:
    """Counters the feed increments, and gauges read from the feed when scraped.

    Every feed of the service shares the metric families (labelled by exchange, and symbol
    where it applies); gauges are functions so that a scrape sees the state of that moment
    (lag keeps growing while a symbol is silent).
    """

    def __init__(self, telemetry: Telemetry, exchange: str) -> None:
        self._exchange = exchange
        self._last_trade_ns: Callable[[str], int | None] = lambda symbol: None
        self._received = telemetry.counter(
            "tradeflow_ingest_feed_trades_received_total",
            "Trades received from the exchange, each once (websocket/REST overlap removed)",
            ("exchange", "symbol"),
        )
        self._published = telemetry.counter(
            "tradeflow_ingest_feed_trades_published_total", "Trades published to md.ticks.v1", ("exchange", "symbol")
        )
        self._rejected = telemetry.counter(
            "tradeflow_ingest_feed_trades_rejected_total",
            "Trades held back to md.ticks.v1.dlq (invalid or implausible)",
            ("exchange", "symbol"),
        )
        self._reconnections = telemetry.counter(
            "tradeflow_ingest_feed_reconnections_total",
            "Websocket reconnection attempts by outcome (success: it delivered trades)",
            ("exchange", "outcome"),
        )
        self._cache_overflows = telemetry.counter(
            "tradeflow_ingest_feed_cache_overflows_total",
            "Times a symbol's ccxt trade cache evicted trades before the feed read them (refetched by REST)",
            ("exchange",),
        )
        self._connected = telemetry.gauge(
            "tradeflow_ingest_feed_connected", "1 while the websocket delivers, 0 otherwise", ("exchange",)
        )
        self._breaker = telemetry.gauge(
            "tradeflow_ingest_feed_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open", ("exchange",)
        )
        self._exchange_lag = telemetry.gauge(
            "tradeflow_ingest_feed_exchange_lag_seconds",
            "Now minus the event time of the newest trade received of any symbol (NaN before the first): "
            "how far behind the whole feed is, whatever quiet symbols do",
            ("exchange",),
        )
        self._symbols = telemetry.gauge(
            "tradeflow_ingest_feed_symbols", "Symbols the feed follows now", ("exchange",)
        )
        self._alerts = telemetry.counter(
            "tradeflow_ingest_feed_alerts_total",
            "Alerts of the feed by kind and outcome (sent to ops.alerts.v1, or suppressed by the rate limit)",
            ("exchange", "kind", "outcome"),
        )
        self._lag = telemetry.gauge(
            "tradeflow_ingest_feed_lag_seconds",
            "Now minus the event time of the symbol's last received trade (NaN before the first)",
            ("exchange", "symbol"),
        )

    def watch(
        self,
        connected: Callable[[], bool],
        breaker_state: Callable[[], BreakerState],
        last_trade_ns: Callable[[str], int | None],
        newest_trade_ns: Callable[[], int | None],
        symbol_count: Callable[[], int],
    ) -> None:
        """Bind the exchange's gauges to the feed's state (read at every scrape)."""
        self._connected.labels(self._exchange).set_function(lambda: 1.0 if connected() else 0.0)
        self._breaker.labels(self._exchange).set_function(lambda: BREAKER_STATE_VALUES[breaker_state()])
        self._exchange_lag.labels(self._exchange).set_function(lambda: _lag_s(newest_trade_ns()))
        self._symbols.labels(self._exchange).set_function(lambda: float(symbol_count()))
        self._last_trade_ns = last_trade_ns

    def follow(self, symbol: str) -> None:
        """Start the series of ``symbol`` (subscribed): its lag gauge reads the feed at each scrape."""
        self._lag.labels(self._exchange, symbol).set_function(lambda: _lag_s(self._last_trade_ns(symbol)))

    def unfollow(self, symbol: str) -> None:
        """Drop every series of ``symbol`` (unsubscribed), so /metrics lists only current symbols."""
        for family in (self._received, self._published, self._rejected, self._lag):
            try:
                family.remove(self._exchange, symbol)
            except KeyError:  # the symbol never had a value in this family
                pass

    def received(self, symbol: str, count: int) -> None:
        self._received.labels(self._exchange, symbol).inc(count)

    def outcome(self, published_by_symbol: dict[str, int], rejected_by_symbol: dict[str, int]) -> None:
        for symbol, count in published_by_symbol.items():
            self._published.labels(self._exchange, symbol).inc(count)
        for symbol, count in rejected_by_symbol.items():
            self._rejected.labels(self._exchange, symbol).inc(count)

    def cache_overflow(self, symbols: int) -> None:
        self._cache_overflows.labels(self._exchange).inc(symbols)

    def alert(self, kind: str, sent: bool) -> None:
        self._alerts.labels(self._exchange, kind, "sent" if sent else "suppressed").inc()

    def reconnection(self, outcome: str) -> None:
        self._reconnections.labels(self._exchange, outcome).inc()


def _lag_s(last_trade_ns: int | None) -> float:
    return math.nan if last_trade_ns is None else time.time_ns() / 1e9 - last_trade_ns / 1e9
