"""An exchange's trades via ccxt: websocket first, REST polling while it is down, no gaps, no repeats."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import ccxt
import ccxt.pro
from tradeflow.bus.connection import Backoff, sleep_unless

from tradeflow_ingest.adapters.tick_publisher import TickPublisher
from tradeflow_ingest.domain.exchange_trades import in_exchange_order, trade_fields, trade_to_tick
from tradeflow_ingest.domain.receive_clock import ReceiveClock
from tradeflow_ingest.domain.recent_trade_ids import RecentTradeIds
from tradeflow_ingest.domain.retry_after import retry_after_seconds, wait_before_retry
from tradeflow_ingest.domain.sources import SourceStatus
from tradeflow_ingest.domain.trade_cursor import TradeCursor
from tradeflow_ingest.exchange_settings import ExchangeFeedSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

REST_PAGE_LIMIT = 1000
# Per exchange, ccxt options the feed needs. Binance: spot markets only, no currency/sapi calls
# at start, and aggregate trades on BOTH the websocket and REST, so a trade has the same id
# whichever way it arrives (the plain `trade` stream and `aggTrades` number trades differently).
EXCHANGE_DEFAULT_OPTIONS: Mapping[str, Mapping[str, Any]] = {
    "binance": {
        "fetchMarkets": {"types": ["spot"]},
        "fetchCurrencies": False,
        "watchTrades": {"name": "aggTrade"},
        "watchTradesForSymbols": {"name": "aggTrade"},
        "fetchTradesMethod": "publicGetAggTrades",
    },
}


def create_ccxt_exchange(feed: ExchangeFeedSettings) -> ccxt.pro.Exchange:
    """The ccxt.pro client of ``feed``: default options, sandbox, credentials, URL overrides."""
    config: dict[str, Any] = {
        "enableRateLimit": True,
        "options": {**EXCHANGE_DEFAULT_OPTIONS.get(feed.id, {}), **feed.options},
    }
    if feed.api_key is not None and feed.secret is not None:
        config["apiKey"] = feed.api_key.get_secret_value()
        config["secret"] = feed.secret.get_secret_value()
    exchange = getattr(ccxt.pro, feed.id)(config)
    if feed.sandbox:
        exchange.set_sandbox_mode(True)
    for path, url in feed.urls.items():
        _override_url(exchange.urls["api"], path, url, feed.id)
    return exchange


def _override_url(api_urls: dict, path: str, url: str, exchange_id: str) -> None:
    *parents, leaf = path.split(".")
    node = api_urls
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            break
    if not isinstance(node, dict) or not isinstance(node.get(leaf), str):
        raise ValueError(f"{exchange_id}: urls override {path!r} names no URL of urls['api']")
    node[leaf] = url


class CcxtTradeFeed:
    """The trades of ``feed.symbols`` on one exchange, published as ticks.

    * Websocket (``watch_trades_for_symbols``) while it works; when it fails, REST polling
      (``fetch_trades`` from the cursor) every ``poll_interval_s`` until the next websocket
      attempt, which comes after a capped exponential backoff with jitter.
    * After every (re)connect, the first websocket batch is preceded by a REST catch-up from
      the last published trade, so trades made while disconnected are not lost.
    * Trades already published (by exchange trade id, per symbol, bounded window) are dropped.
    * A batch that the broker does not acknowledge is forgotten (ids and cursor), so the next
      catch-up fetches it again: at-least-once toward the broker, exactly-once otherwise.
    """

    def __init__(
        self,
        feed: ExchangeFeedSettings,
        *,
        publisher: TickPublisher,
        clock: ReceiveClock,
        exchange_factory: Callable[[ExchangeFeedSettings], ccxt.pro.Exchange] = create_ccxt_exchange,
        backoff: Backoff | None = None,
        wall_clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._feed = feed
        self._exchange_name = feed.exchange_name
        self._symbols = tuple(feed.symbols)
        self._publisher = publisher
        self._clock = clock
        self._exchange_factory = exchange_factory
        self._backoff = backoff or Backoff(initial_s=0.5, maximum_s=30.0)
        self._wall_clock_ms = wall_clock_ms
        self._seen = RecentTradeIds()
        self._cursor: TradeCursor | None = None
        self._exchange: ccxt.pro.Exchange | None = None
        self._mode = "ws"
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self._published = 0
        self._rejected = 0
        self._last_event_ns: int | None = None

    @property
    def kind(self) -> str:
        return f"ccxt-{self._mode}"

    async def start(self) -> None:
        self._stopping.clear()
        self._exchange = self._exchange_factory(self._feed)
        self._task = asyncio.create_task(self._run(), name=f"ccxt-feed-{self._exchange_name}")

    async def stop(self) -> None:
        """Leave the websocket wait or REST poll in hand, finish a publish in flight, close ccxt."""
        if self._task is None:
            return
        self._stopping.set()
        try:
            await self._task
        except asyncio.CancelledError:
            self._task.cancel()
            raise

    def status(self) -> SourceStatus:
        return SourceStatus(
            kind=self.kind,
            exchange=self._exchange_name,
            symbols=self._symbols,
            rate=None,
            published=self._published,
            rejected=self._rejected,
            last_event_ns=self._last_event_ns,
            running=self._task is not None and not self._task.done(),
        )

    # --- the loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._exchange is not None
        try:
            if not await self._retrying("load markets", self._exchange.load_markets):
                return
            self._cursor = TradeCursor(self._symbols, self._wall_clock_ms())
            while not self._stopping.is_set():
                try:
                    await self._stream()
                except ccxt.NetworkError as exc:
                    delay = self._retry_delay()
                    log.warning("%s: websocket failed (%s); polling REST for %.1fs before reconnecting",
                                self._exchange_name, exc, delay)
                    self._mode = "rest"
                    await self._poll_rest(delay)
        except Exception:  # shown as running=false in /v1/sources; the log says why
            log.exception("%s: feed stopped by an unexpected error", self._exchange_name)
        finally:
            await self._exchange.close()

    async def _stream(self) -> None:
        """Publish websocket batches until stopped; raises ccxt.NetworkError when the socket fails."""
        assert self._exchange is not None
        caught_up = False
        while not self._stopping.is_set():
            trades = await self._unless_stopped(self._exchange.watch_trades_for_symbols(list(self._symbols)))
            if trades is None:
                return
            if not caught_up:  # first batch since (re)connect: first what was missed before it
                self._mode = "ws"
                self._backoff.reset()
                await self._catch_up()
                caught_up = True
            await self._publish(trades)

    async def _poll_rest(self, duration_s: float) -> None:
        deadline = time.monotonic() + duration_s
        while not self._stopping.is_set() and time.monotonic() < deadline:
            try:
                await self._catch_up()
                pause = self._feed.poll_interval_s
            except ccxt.NetworkError as exc:
                pause = self._retry_delay()
                log.warning("%s: REST polling failed (%s); next try in %.1fs", self._exchange_name, exc, pause)
            await sleep_unless(self._stopping, min(pause, max(0.0, deadline - time.monotonic())))

    async def _catch_up(self) -> None:
        """Fetch and publish, per symbol, the trades since the last published one (page by page)."""
        assert self._exchange is not None and self._cursor is not None
        for symbol in self._symbols:
            since = self._cursor.since_ms(symbol)
            while not self._stopping.is_set():
                page = await self._exchange.fetch_trades(symbol, since=since, limit=REST_PAGE_LIMIT)
                fresh = await self._publish(page)
                if len(page) < REST_PAGE_LIMIT or fresh == 0:
                    break
                since = self._cursor.since_ms(symbol)

    async def _publish(self, trades: Sequence[Mapping[str, Any]]) -> int:
        """Publish the trades not seen before, in exchange order; the number that were new."""
        assert self._cursor is not None
        ordered = in_exchange_order(trades)
        if len(ordered) < len(trades):
            self._rejected += len(trades) - len(ordered)
            log.warning("%s: %d trades without symbol, id or timestamp dropped",
                        self._exchange_name, len(trades) - len(ordered))
        fresh = []
        for trade in ordered:
            symbol, trade_id, ts_ms = trade_fields(trade)
            if symbol in self._symbols and self._seen.add(symbol, trade_id):
                fresh.append((symbol, trade_id, ts_ms, trade))
        if not fresh:
            return 0
        ticks = [trade_to_tick(self._exchange_name, trade, self._clock.next()) for *_, trade in fresh]
        outcome = await self._publisher.publish(ticks)
        self._published += outcome.published
        self._rejected += outcome.rejected
        if outcome.failed:
            log.error("%s: %d of %d ticks not acknowledged (%s); they will be fetched again",
                      self._exchange_name, outcome.failed, len(ticks), outcome.first_error)
            for symbol, trade_id, _ts_ms, _trade in fresh:
                self._seen.discard(symbol, trade_id)
            return len(fresh)
        if outcome.last_event_ns is not None:
            self._last_event_ns = outcome.last_event_ns
        for symbol, _trade_id, ts_ms, _trade in fresh:
            self._cursor.advance(symbol, ts_ms)
        return len(fresh)

    # --- waiting ---------------------------------------------------------------------------

    async def _unless_stopped(self, operation: Awaitable[T]) -> T | None:
        """``operation``'s result, or None when the feed is stopped first (the operation is cancelled)."""
        work = asyncio.ensure_future(operation)
        stopped = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if work.done():
            return work.result()
        work.cancel()
        try:
            await work
        except (asyncio.CancelledError, Exception):
            pass
        return None

    async def _retrying(self, what: str, operation: Callable[[], Awaitable[object]]) -> bool:
        """Run ``operation`` until it succeeds (True) or the feed is stopped (False)."""
        while not self._stopping.is_set():
            try:
                await self._unless_stopped(operation())
                self._backoff.reset()
                return not self._stopping.is_set()
            except ccxt.NetworkError as exc:
                delay = self._retry_delay()
                log.warning("%s: cannot %s (%s); retrying in %.1fs", self._exchange_name, what, exc, delay)
                await sleep_unless(self._stopping, delay)
        return False

    def _retry_delay(self) -> float:
        """The next backoff delay, stretched to the exchange's Retry-After after a 429/418."""
        headers = getattr(self._exchange, "last_response_headers", None) or {}
        retry_after = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
        return wait_before_retry(self._backoff.next_delay(), retry_after_seconds(retry_after))
