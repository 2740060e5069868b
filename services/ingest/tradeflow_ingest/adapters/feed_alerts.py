"""The operational alerts of one exchange feed on ops.alerts.v1, rate-limited per kind."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Literal

from tradeflow_ingest.adapters.feed_metrics import FeedMetrics
from tradeflow_ingest.adapters.tick_publisher import TickPublisher

WEBSOCKET_LOST = "feed_websocket_lost"
WEBSOCKET_RECOVERED = "feed_websocket_recovered"
RECONNECT_LIMIT = "feed_reconnect_limit"
BREAKER_OPEN = "feed_breaker_open"
STALE_RESUBSCRIBED = "feed_stale_resubscribed"
CATCH_UP_INCOMPLETE = "feed_catch_up_incomplete"


class FeedAlerts:
    """Raises the feed's alerts (key: the service name, labels: at least the exchange).

    At most one alert per kind every ``interval_s`` (:class:`tradeflow.bus.alerts.AlertPublisher`);
    an alert that follows suppressed ones says how many in its message and in the ``suppressed``
    label. Sending never blocks the feed: the ack is not awaited, a failure is logged.
    """

    def __init__(self, publisher: TickPublisher, metrics: FeedMetrics, exchange: str, interval_s: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._alerts = publisher.alert_publisher(interval_s=interval_s, monotonic=monotonic)
        self._metrics = metrics
        self._exchange = exchange

    def websocket_lost(self, reason: BaseException, rest_for_s: float) -> None:
        self._raise(WEBSOCKET_LOST, "warning",
                    f"{self._exchange}: websocket lost ({reason}); polling REST, reconnecting in {rest_for_s:.1f}s")

    def websocket_recovered(self, down_for_s: float) -> None:
        self._raise(WEBSOCKET_RECOVERED, "info",
                    f"{self._exchange}: websocket delivering again after {down_for_s:.1f}s; missed trades fetched by REST",
                    down_for_s=f"{down_for_s:.1f}")

    def reconnect_limit(self, max_reconnects: int, window_s: float, rest_for_s: float) -> None:
        self._raise(RECONNECT_LIMIT, "critical",
                    f"{self._exchange}: {max_reconnects} websocket reconnects within {window_s:g}s; "
                    f"polling REST for {rest_for_s:.1f}s before the next attempt")

    def breaker_opened(self, failures: int, cool_down_s: float) -> None:
        self._raise(BREAKER_OPEN, "critical",
                    f"{self._exchange}: circuit breaker open after {failures} consecutive failed calls; "
                    f"one probe every {cool_down_s:g}s")

    def stale_resubscribed(self, symbols: Sequence[str], silent_for_s: float) -> None:
        self._raise(STALE_RESUBSCRIBED, "warning",
                    f"{self._exchange}: no trades of {', '.join(symbols)} for {silent_for_s:g}s on an open "
                    f"websocket; resubscribing", symbols=",".join(symbols))

    def catch_up_incomplete(self, symbol: str, fetched: int, oldest_ms: int, since_ms: int, older_pages: int,
                            no_older_page: bool) -> None:
        """A REST catch-up stopped before reaching the last published trade: trades may be missing.
        Throttled per symbol, so one symbol's alerts do not hide another's."""
        why = ("the exchange serves no older page" if no_older_page
               else f"{older_pages} older pages fetched, the most allowed (catch_up_max_pages)")
        self._raise(CATCH_UP_INCOMPLETE, "critical",
                    f"{self._exchange}: trades of {symbol} may be missing between {since_ms} and {oldest_ms} "
                    f"(ms since epoch): the REST catch-up fetched {fetched} trades back to {oldest_ms} "
                    f"but did not reach the last published trade ({why})",
                    throttle_key=f"{CATCH_UP_INCOMPLETE}:{symbol}", symbol=symbol, since_ms=str(since_ms),
                    oldest_fetched_ms=str(oldest_ms))

    def catch_up_stopped(self, symbol: str, fetched: int, since_ms: int, newest_ms: int, reason: str) -> None:
        """A forward REST catch-up got a full page it cannot page past: trades after it may be
        missing. Same kind and per-symbol throttle as :meth:`catch_up_incomplete`."""
        self._raise(CATCH_UP_INCOMPLETE, "critical",
                    f"{self._exchange}: trades of {symbol} after {newest_ms} (ms since epoch) may be missing: "
                    f"the REST catch-up from {since_ms} fetched {fetched} trades up to {newest_ms} and cannot "
                    f"page further ({reason})",
                    throttle_key=f"{CATCH_UP_INCOMPLETE}:{symbol}", symbol=symbol, since_ms=str(since_ms),
                    newest_fetched_ms=str(newest_ms))

    def _raise(self, kind: str, severity: Literal["info", "warning", "critical"], message: str,
               throttle_key: str | None = None, **labels: str) -> None:
        sent = self._alerts.publish(kind, severity, message, {"exchange": self._exchange, **labels},
                                    throttle_key=throttle_key or kind)
        self._metrics.alert(kind, sent=sent)
