"""An exchange's trades via ccxt: websocket first, REST polling while it is down, no gaps, no repeats."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import ccxt
import ccxt.pro
from tradeflow.bus.connection import Backoff, sleep_unless
from tradeflow.telemetry import Telemetry
from tradeflow.trades.receive_clock import ReceiveClock
from tradeflow_exchanges.ccxt_client import (
    ExchangeFeedSettings,
    create_ccxt_exchange,
    older_trades_request,
    serves_newest_page_only,
    trades_request,
)
from tradeflow_exchanges.ccxt_trades import (
    NS_PER_MS,
    UnusableTrade,
    in_exchange_order,
    tick_of_fields,
    trade_fields,
)
from tradeflow_exchanges.circuit_breaker import BreakerState, CircuitBreaker
from tradeflow_exchanges.reconnect_budget import ReconnectBudget
from tradeflow_exchanges.request_hold import RequestHold, retry_after_seconds

from tradeflow_ingest.adapters.feed_alerts import FeedAlerts
from tradeflow_ingest.adapters.feed_metrics import FeedMetrics
from tradeflow_ingest.adapters.source_task import stop_source_task
from tradeflow_ingest.adapters.tick_publisher import TickPublisher
from tradeflow_ingest.adapters.trade_cache_reader import TradeCacheReader
from tradeflow_ingest.domain.catch_up_paging import CaughtUp, Stuck, forward_paging, newest_trade_ms, reaches
from tradeflow_ingest.domain.feed_status import FeedStatus, SymbolFeedStatus
from tradeflow_ingest.domain.recent_trade_ids import RecentTradeIds
from tradeflow_ingest.domain.resume_point import ResumePoint
from tradeflow_ingest.domain.silence_watch import SilenceWatch
from tradeflow_ingest.domain.sources import SourceStatus
from tradeflow_ingest.domain.trade_cursor import TradeCursor
from tradeflow_ingest.domain.trade_rate import RecentTradeRate

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_SYMBOLS = 200  # one websocket subscription (ccxt's limit for watch_trades_for_symbols)
SYMBOL_CHANGE_SETTLE_S = 0.2  # set_symbols calls this close together make one resubscription


class StaleFeed(ccxt.NetworkError):
    """The websocket is open but an active symbol has been silent for longer than allowed."""


class CcxtTradeFeed:
    """The trades of ``feed.symbols`` on one exchange, published as ticks.

    * Websocket (``watch_trades_for_symbols``, else ``watch_trades`` per symbol) while it works; when it fails, REST polling
      (``fetch_trades`` from the cursor) every ``poll_interval_s`` until the next websocket
      attempt, which comes after a capped exponential backoff with jitter.
    * After every (re)connect, the first websocket batch is preceded by a REST catch-up from
      the last published trade, so trades made while disconnected are not lost. Forward (Kraken,
      Binance...) it pages until the exchange says it has nothing newer (never judged from how
      many trades ccxt handed back) or a page reaches the newest trade the websocket delivered
      (:mod:`~tradeflow_ingest.domain.catch_up_paging`). Where the trades endpoint serves only
      the newest page (OKX, Bybit, Coinbase) and it does not reach back to that trade, older
      pages are fetched where the exchange has them (OKX history-trades, at most
      ``catch_up_max_pages``). Stopping short, or a full page with no way past it, raises
      ``feed_catch_up_incomplete``.
    * Trades already published (by exchange trade id, per symbol, bounded window) are dropped.
    * A rate-limit refusal (HTTP 429/418, ccxt ``RateLimitExceeded``/``DDoSProtection``) holds
      every request to the exchange, REST and new websocket connections, for its Retry-After
      (``rate_limit_wait_s`` when it names none); the catch-up afterwards loses nothing.
    * A circuit breaker counts consecutive failed calls (connections and REST); once open, the
      exchange gets one probe call per ``breaker_cool_down_s``. At most ``max_reconnects``
      websocket attempts per ``reconnect_window_s``; REST polling fills the wait.
    * An open websocket on which a symbol that has traded stays silent for ``stale_after_s`` is
      treated as failed (:class:`StaleFeed`): closed, caught up by REST, resubscribed; the
      ``feed_stale_resubscribed`` alert names the silent symbols.
    * A batch that the broker does not acknowledge is forgotten (ids and cursor), so the next
      catch-up fetches it again: at-least-once toward the broker, exactly-once otherwise.
    * The symbols change at run time (:meth:`set_symbols`). An added symbol is followed from
      that moment (its cursor starts then); a removed one stops at once and its state and
      metric series are dropped. The websocket is then resubscribed on a fresh ccxt client
      (markets shared): a planned reconnect, not a failure (no breaker, no reconnect budget),
      whose first batch is preceded by the usual REST catch-up, so the symbols that stay lose
      nothing. With no symbols the feed holds no websocket and polls nothing.
    * Each websocket wake-up reads the new trades of every subscribed symbol from ccxt's
      caches (:class:`TradeCacheReader`), not only the one symbol ccxt woke the feed for; a
      symbol whose cache evicted trades before they were read is caught up by REST first.
    * Websocket lost, reconnect limit, breaker opened, stale resubscription, recovery and an
      incomplete catch-up are
      raised on ops.alerts.v1, at most one per kind every ``alert_interval_s`` (:class:`FeedAlerts`).
    """

    def __init__(
        self,
        feed: ExchangeFeedSettings,
        *,
        publisher: TickPublisher,
        clock: ReceiveClock,
        telemetry: Telemetry,
        exchange_factory: Callable[[ExchangeFeedSettings], ccxt.pro.Exchange] = create_ccxt_exchange,
        backoff: Backoff | None = None,
        wall_clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self._feed = feed
        self._exchange_name = feed.exchange_name
        self._symbols: tuple[str, ...] = ()
        self._symbols_changed = asyncio.Event()
        self._publish_lock = asyncio.Lock()
        self._publisher = publisher
        self._clock = clock
        self._exchange_factory = exchange_factory
        self._backoff = backoff or Backoff(initial_s=0.5, maximum_s=30.0)
        self._wall_clock_ms = wall_clock_ms
        self._seen = RecentTradeIds()
        self._hold = RequestHold()  # set by a rate-limit refusal; every request waits for it
        self._breaker = CircuitBreaker(feed.breaker_failures, feed.breaker_cool_down_s)
        self._reconnects = ReconnectBudget(feed.max_reconnects, feed.reconnect_window_s)
        self._silence = SilenceWatch(feed.stale_after_s)
        self._cursor = TradeCursor()
        self._caches = TradeCacheReader()  # what of ccxt's websocket trade caches was published
        self._exchange: ccxt.pro.Exchange | None = None
        self._mode = "ws"
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self._published = 0
        self._rejected = 0
        self._last_event_ns: int | None = None
        # per followed symbol, for /v1/feeds and the metrics
        self._activity: dict[str, _SymbolActivity] = {}
        self._connected = False
        self._connect_attempts = 0
        self._awaiting_first_batch = False  # a (re)connect attempt whose outcome is not known yet
        self._warned_unknown = False
        self._metrics = FeedMetrics(telemetry, self._exchange_name)
        self._alerts = FeedAlerts(publisher, self._metrics, self._exchange_name, feed.alert_interval_s)
        self._ws_lost_at: float | None = None  # since when the websocket is down (for the recovery alert)
        self._metrics.watch(lambda: self._connected, lambda: self._breaker.state, self._last_trade_ns,
                            self._newest_trade_ns, lambda: len(self._symbols))
        self._change_symbols(feed.symbols)

    # --- the symbols -----------------------------------------------------------------------

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols followed now, in the order they were given."""
        return self._symbols

    def known_symbol(self, symbol: str) -> bool | None:
        """Whether the exchange lists ``symbol``; None while its markets are not loaded yet."""
        markets = self._exchange.markets if self._exchange is not None else None
        if not markets:
            return None
        return symbol in markets

    def set_symbols(self, symbols: Iterable[str], resume: Mapping[str, ResumePoint] | None = None) -> None:
        """Follow exactly ``symbols`` from now on (takes effect on the exchange within about a second).

        An added symbol starts now, or, when ``resume`` has it (a takeover from another replica),
        from its resume point: the catch-up fetches from there and skips the trades already
        published. Never blocks; call it from the event loop's thread. Raises ValueError for more
        than MAX_SYMBOLS symbols, or for a symbol the exchange does not list once its markets are
        loaded (see :meth:`known_symbol`).
        """
        wanted = tuple(dict.fromkeys(symbols))  # repeats dropped, order kept
        if len(wanted) > MAX_SYMBOLS:
            raise ValueError(f"{self._exchange_name}: at most {MAX_SYMBOLS} symbols per feed, got {len(wanted)}")
        unknown = [symbol for symbol in wanted if self.known_symbol(symbol) is False]
        if unknown:
            raise ValueError(f"{self._exchange_name} lists no market {', '.join(unknown)}")
        self._change_symbols(wanted, resume or {})
        self._symbols_changed.set()

    async def symbols_applied(self) -> None:
        """Return once no publish that started before the last :meth:`set_symbols` is in flight:
        from then on a removed symbol has nothing more on its way to the broker."""
        async with self._publish_lock:
            pass

    def _change_symbols(self, wanted: tuple[str, ...], resume: Mapping[str, ResumePoint] | None = None) -> None:
        """Start the state of the added symbols (cursor at now) and drop that of the removed ones."""
        now_ms = self._wall_clock_ms()
        for symbol in set(self._symbols) - set(wanted):
            self._cursor.remove(symbol)
            self._seen.forget_symbol(symbol)
            self._silence.forget(symbol)
            self._caches.forget(symbol)
            self._activity.pop(symbol, None)
            self._metrics.unfollow(symbol)
            if self._exchange is not None:
                self._exchange.trades.pop(symbol, None)  # ccxt's cache of it
        for symbol in wanted:
            if symbol not in self._activity:
                point = resume.get(symbol) if resume else None
                self._cursor.add(symbol, now_ms if point is None else point.since_ms)
                for trade_id in point.published_ids if point is not None else ():
                    self._seen.add(symbol, trade_id)
                self._activity[symbol] = _SymbolActivity()
                self._metrics.follow(symbol)
        self._symbols = wanted

    def _last_trade_ns(self, symbol: str) -> int | None:
        activity = self._activity.get(symbol)
        return None if activity is None else activity.last_trade_ns

    def _newest_trade_ns(self) -> int | None:
        return max((a.last_trade_ns for a in self._activity.values() if a.last_trade_ns is not None), default=None)

    def _subscribable(self) -> tuple[str, ...]:
        """The symbols to subscribe: those the exchange lists (a configured unknown one is skipped)."""
        markets = self._exchange.markets if self._exchange is not None else None
        known = tuple(symbol for symbol in self._symbols if markets and symbol in markets)
        if len(known) < len(self._symbols) and not self._warned_unknown:
            self._warned_unknown = True
            log.error("%s lists no market %s; not followed", self._exchange_name,
                      ", ".join(symbol for symbol in self._symbols if symbol not in known))
        return known

    @property
    def breaker_state(self) -> BreakerState:
        return self._breaker.state

    @property
    def kind(self) -> str:
        return f"ccxt-{self._mode}"

    async def start(self) -> None:
        self._stopping.clear()
        self._exchange = self._exchange_factory(self._feed)
        self._task = asyncio.create_task(self._run(), name=f"ccxt-feed-{self._exchange_name}")

    async def stop(self) -> None:
        """Leave the websocket wait or REST poll in hand, finish a publish in flight, close ccxt."""
        await stop_source_task(self._task, self._stopping)

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

    def feed_status(self) -> FeedStatus:
        now = time.monotonic()
        return FeedStatus(
            exchange=self._exchange_name,
            mode="websocket" if self._mode == "ws" else "rest",
            connected=self._connected,
            reconnects=max(0, self._connect_attempts - 1),
            breaker_state=self._breaker.state.value,
            symbols=tuple(
                SymbolFeedStatus(symbol, a.received, a.published, a.rejected, a.last_trade_ns, a.rate.per_second(now))
                for symbol, a in self._activity.items()
            ),
        )

    # --- the loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._exchange is not None
        try:
            if not await self._retrying("load markets", self._exchange.load_markets):
                return
            planned = False  # the next subscription follows a change of symbols, not a failure
            while not self._stopping.is_set():
                if not self._subscribable():  # nothing to follow: no websocket, no polling
                    self._connected = False
                    self._symbols_changed.clear()
                    await self._unless_stopped(self._symbols_changed.wait())
                    planned = False
                    continue
                budget_wait = self._reconnects.wait_s(time.monotonic())
                if budget_wait > 0 and not planned:  # too many reconnects lately: REST until one more fits
                    log.warning("%s: reconnection limit reached; polling REST for %.1fs",
                                self._exchange_name, budget_wait)
                    self._alerts.reconnect_limit(self._feed.max_reconnects, self._feed.reconnect_window_s,
                                                 budget_wait)
                    self._mode = "rest"
                    await self._poll_rest(budget_wait)
                    continue
                try:
                    await self._stream(planned)
                    planned = False
                except _SymbolsChanged:
                    await self._fresh_client()
                    planned = True
                except ccxt.NetworkError as exc:
                    planned = False
                    self._connected = False
                    if self._awaiting_first_batch and self._connect_attempts > 1:
                        self._metrics.reconnection("failure")
                    self._awaiting_first_batch = False
                    delay = self._after_failure(exc)
                    log.warning("%s: websocket failed (%s); polling REST for %.1fs before reconnecting",
                                self._exchange_name, exc, delay)
                    if self._ws_lost_at is None:
                        self._ws_lost_at = time.monotonic()
                    if not isinstance(exc, StaleFeed):  # that one has its own alert
                        self._alerts.websocket_lost(exc, delay)
                    self._mode = "rest"
                    await self._poll_rest(delay)
        except Exception:  # shown as running=false in /v1/sources; the log says why
            log.exception("%s: feed stopped by an unexpected error", self._exchange_name)
        finally:
            self._connected = False
            await self._exchange.close()

    async def _fresh_client(self) -> None:
        """Replace the ccxt client by a new one with the same markets (a planned resubscription).

        A new client rather than a second subscription on the old one: ccxt keeps per-client
        subscription bookkeeping (Binance: streams and their subscription counts) that a
        different symbol list would otherwise grow until it refuses.
        """
        old = self._exchange
        assert old is not None
        fresh = self._exchange_factory(self._feed)
        fresh.set_markets_from_exchange(old)
        self._exchange = fresh
        self._caches.reset()
        self._connected = False
        try:
            await old.close()
        except Exception as exc:  # the old socket may be half gone already; the new one is what matters
            log.debug("%s: closing the previous ccxt client: %s", self._exchange_name, exc)

    async def _stream(self, planned: bool) -> None:
        """Publish websocket batches until stopped; raises ccxt.NetworkError when the socket fails
        and _SymbolsChanged when the subscription must change."""
        assert self._exchange is not None
        caught_up = False
        if not await self._before_request():
            return
        if not planned:
            self._reconnects.record_attempt(time.monotonic())  # the first watch call (re)connects
            self._connect_attempts += 1
            self._awaiting_first_batch = True
        self._silence.restart(time.monotonic())
        subscribed = self._subscribable()
        self._symbols_changed.clear()
        # ccxt's trade caches then hold this subscription's trades only: the newest of a symbol is
        # one from which the websocket delivers without a gap, where its REST catch-up may end.
        for symbol in subscribed:
            self._exchange.trades.pop(symbol, None)
        self._caches.reset()
        while not self._stopping.is_set():
            trades = await self._unless_stopped(
                self._watch_trades(subscribed),
                timeout_s=self._silence.seconds_until_stale(time.monotonic()),
                wake=self._symbols_changed,
            )
            if self._stopping.is_set():
                return
            if self._symbols_changed.is_set():
                await self._settle_symbol_changes(subscribed)
                if trades is None:
                    continue
            elif trades is None:
                if not self._silence.stale(time.monotonic()):  # the timer fired a hair early
                    continue
                await self._resubscribe_stale()
            if not caught_up:  # first batch since (re)connect: first what was missed before it
                self._breaker.record_success()
                self._connected = True
                if self._awaiting_first_batch and self._connect_attempts > 1:
                    self._metrics.reconnection("success")
                self._awaiting_first_batch = False
                self._mode = "ws"
                self._backoff.reset()
                if self._ws_lost_at is not None:
                    self._alerts.websocket_recovered(time.monotonic() - self._ws_lost_at)
                    self._ws_lost_at = None
                await self._catch_up()
                caught_up = True
            # The watch call only wakes the feed (with one symbol's trades); every subscribed
            # symbol's cache is read, so a busy feed takes all that arrived meanwhile at once,
            # and again until nothing more came while publishing (ccxt wakes only a waiting call).
            while await self._publish_from_caches(subscribed) and not self._stopping.is_set():
                pass

    def _watch_trades(self, symbols: Sequence[str]) -> Awaitable[Any]:
        """The next websocket wake-up with trades of ``symbols``: one ``watch_trades_for_symbols``
        call, or, on an exchange whose ccxt class lacks it (about half of them), the first of one
        ``watch_trades`` per symbol (the caches of all are read afterwards anyway)."""
        assert self._exchange is not None
        if self._exchange.has.get("watchTradesForSymbols"):
            return self._exchange.watch_trades_for_symbols(list(symbols))
        return _first_result([self._exchange.watch_trades(symbol) for symbol in symbols])

    async def _settle_symbol_changes(self, subscribed: tuple[str, ...]) -> None:
        """Wait briefly for more changes, then raise _SymbolsChanged when the subscription differs."""
        await sleep_unless(self._stopping, SYMBOL_CHANGE_SETTLE_S)
        self._symbols_changed.clear()
        if set(self._subscribable()) != set(subscribed):
            raise _SymbolsChanged()

    async def _resubscribe_stale(self) -> None:
        """Close the silent websocket and fail as a dropped one does: REST catch-up, then reconnect."""
        assert self._exchange is not None
        silent = self._silence.stale(time.monotonic())
        self._alerts.stale_resubscribed(silent, self._feed.stale_after_s)
        try:
            await self._exchange.close_ws_clients()
        except Exception as exc:  # a socket already half gone; the reconnect makes a new one
            log.debug("%s: closing the stale websocket: %s", self._exchange_name, exc)
        raise StaleFeed(f"no trades of {', '.join(silent)} for {self._feed.stale_after_s:g}s; resubscribing")

    async def _poll_rest(self, duration_s: float) -> None:
        deadline = time.monotonic() + duration_s
        while not self._stopping.is_set() and time.monotonic() < deadline:
            try:
                await self._catch_up(poll_until=deadline)
                pause = self._feed.poll_interval_s
            except ccxt.NetworkError as exc:
                pause = self._after_failure(exc)
                log.warning("%s: REST polling failed (%s); next try in %.1fs", self._exchange_name, exc, pause)
            await sleep_unless(self._stopping, min(pause, max(0.0, deadline - time.monotonic())))

    async def _catch_up(self, symbols: Sequence[str] | None = None, poll_until: float | None = None) -> None:
        """Fetch and publish, per symbol (default: all), the trades since the last published one.

        ``poll_until``: REST polling without a websocket; forward paging stops at that monotonic
        time (the next poll goes on from the cursor). Without it the websocket follows, and a
        symbol's forward paging ends once it reaches the newest trade the websocket delivered.
        """
        assert self._exchange is not None
        backwards = serves_newest_page_only(self._feed.id)
        for symbol in self._subscribable() if symbols is None else symbols:
            if symbol not in self._cursor:  # removed meanwhile
                continue
            if backwards:
                await self._catch_up_backwards(symbol)
            else:
                await self._catch_up_forwards(symbol, poll_until)

    async def _catch_up_forwards(self, symbol: str, poll_until: float | None) -> None:
        """Page forward from the cursor, publishing each page, until the exchange says it has
        nothing newer (:mod:`~tradeflow_ingest.domain.catch_up_paging`) or a page reaches the
        newest trade the websocket delivered. A full page with no way past it raises
        ``feed_catch_up_incomplete``: trades after it may be missing, never silently."""
        assert self._exchange is not None
        cache = None if poll_until is not None else self._exchange.trades.get(symbol)
        target = cache[-1] if cache else None  # read now: later ones come with the websocket anyway
        since = self._cursor.since_ms(symbol)
        limit, params = trades_request(self._feed.id, self._wall_clock_ms())
        paging = forward_paging(self._feed.id, limit, params)
        request = paging.first(since, self._wall_clock_ms())
        newest_fetched, fetched = since, 0
        while not self._stopping.is_set():
            page = await self._fetch_trades(symbol, request.since, request.limit, dict(request.params))
            if page is None:
                return
            if not await self._publish(page) or symbol not in self._cursor:
                return  # not acknowledged (the next catch-up fetches it again), or no longer followed
            fetched += len(page)
            newest_fetched = max(newest_fetched, newest_trade_ms(page) or newest_fetched)
            if target is not None and reaches(page, target):
                return
            outcome = paging.after(request, page, self._wall_clock_ms())
            if isinstance(outcome, CaughtUp):
                return
            if isinstance(outcome, Stuck):
                self._alerts.catch_up_stopped(symbol, fetched, since, newest_fetched, outcome.reason)
                return
            if poll_until is not None and time.monotonic() >= poll_until:
                return
            request = outcome

    async def _catch_up_backwards(self, symbol: str) -> None:
        """The newest page, then older pages while the last one was full (it may not reach back to
        the cursor), at most ``catch_up_max_pages``; then all of it published at once, in exchange
        order. Stopping short of the cursor (no older page, or the bound) publishes what was
        fetched and raises ``feed_catch_up_incomplete``: trades may be missing, never silently."""
        since = self._cursor.since_ms(symbol)
        limit, params = trades_request(self._feed.id, self._wall_clock_ms())
        page = await self._fetch_trades(symbol, since, limit, params)
        if page is None:
            return
        fetched = list(page)
        oldest = _oldest_trade(page)
        older_pages = 0
        while len(page) >= limit and oldest is not None and not self._stopping.is_set():
            if (symbol, oldest["id"]) in self._seen:  # reached what was published already
                break
            request = older_trades_request(self._feed.id, str(oldest["id"]))
            if request is None or older_pages >= self._feed.catch_up_max_pages:
                self._alerts.catch_up_incomplete(symbol, len(fetched), oldest["timestamp"], since,
                                                 older_pages, request is None)
                break
            limit, params = request
            page = await self._fetch_trades(symbol, since, limit, params)
            if page is None:
                return
            older_pages += 1
            fetched.extend(page)
            older = _oldest_trade(page)
            if older is not None and in_exchange_order([oldest, older])[0] is oldest:
                if len(page) >= limit:  # a full page none older than the last one: no way further back
                    self._alerts.catch_up_incomplete(symbol, len(fetched), oldest["timestamp"], since,
                                                     older_pages, no_older_page=True)
                break
            oldest = older
        await self._publish(fetched)

    async def _fetch_trades(self, symbol: str, since: int | None, limit: int,
                            params: dict[str, Any]) -> list[Mapping[str, Any]] | None:
        """One REST trades call (after any rate-limit hold or open breaker); None when stopped."""
        assert self._exchange is not None
        if not await self._before_request():
            return None
        page = await self._exchange.fetch_trades(symbol, since=since, limit=limit, params=params)
        self._breaker.record_success()
        return page

    async def _publish_from_caches(self, subscribed: Sequence[str]) -> int:
        """Publish what ccxt's caches of every subscribed symbol received since the last time; a
        symbol whose cache evicted trades unread is first caught up by REST from its cursor.
        The number of trades read from the caches."""
        assert self._exchange is not None
        read = self._caches.read(self._exchange.trades, subscribed)
        if read.overflowed:
            log.warning("%s: ccxt's trade cache overflowed for %s; fetching the evicted trades by REST",
                        self._exchange_name, ", ".join(read.overflowed))
            self._metrics.cache_overflow(len(read.overflowed))
            await self._catch_up(read.overflowed)
        await self._publish_in_order(read.trades)
        return len(read.trades)

    async def _publish(self, trades: Sequence[Mapping[str, Any]]) -> bool:
        """Publish the trades not seen before, in exchange order; False when the broker did not
        acknowledge them all."""
        ordered = in_exchange_order(trades)
        if len(ordered) < len(trades):
            self._rejected += len(trades) - len(ordered)
            log.warning("%s: %d trades without symbol, id or timestamp dropped",
                        self._exchange_name, len(trades) - len(ordered))
        return await self._publish_in_order(ordered)

    async def _publish_in_order(self, trades: Sequence[Mapping[str, Any]]) -> bool:
        """Publish, in the given order, the trades not seen before; False when the broker did not
        acknowledge them all (their ids are forgotten and the cursor stays, so they are fetched again).

        The hot path: per trade only dedup and the tick; the per-symbol bookkeeping (metrics,
        rates, silence, cursor) is done once per symbol of the batch.
        """
        fresh = []
        received: dict[str, list[int]] = {}  # symbol -> [count, newest ts_ms]
        exchange, next_recv, activities, seen = self._exchange_name, self._clock.next, self._activity, self._seen
        unusable = 0
        for trade in trades:
            try:
                symbol, trade_id, ts_ms = trade_fields(trade)
            except UnusableTrade:
                unusable += 1
                continue
            if symbol not in activities:  # not (or no longer) followed
                continue
            counts = received.get(symbol)
            if counts is None:
                counts = received[symbol] = [0, ts_ms]
            if seen.add(symbol, trade_id):
                fresh.append((symbol, trade_id, tick_of_fields(exchange, symbol, trade_id, ts_ms, trade, next_recv())))
                counts[0] += 1
                if ts_ms > counts[1]:
                    counts[1] = ts_ms
        if unusable:
            self._rejected += unusable
            log.warning("%s: %d trades without symbol, id or timestamp dropped", self._exchange_name, unusable)
        heard_at = time.monotonic()
        for symbol, (count, newest_ms) in received.items():
            self._silence.heard(symbol, heard_at)
            if count:
                activities[symbol].received_trades(heard_at, count, newest_ms * NS_PER_MS)
                self._metrics.received(symbol, count)
        if not fresh:
            return True
        async with self._publish_lock:  # see symbols_applied
            outcome = await self._publisher.publish([tick for *_, tick in fresh])
        self._published += outcome.published
        self._rejected += outcome.rejected
        # A symbol removed while its ticks were in flight keeps no series or state.
        published = {s: n for s, n in outcome.published_by_symbol.items() if s in self._activity}
        rejected = {s: n for s, n in outcome.rejected_by_symbol.items() if s in self._activity}
        self._metrics.outcome(published, rejected)
        for symbol, count in published.items():
            self._activity[symbol].published += count
        for symbol, count in rejected.items():
            self._activity[symbol].rejected += count
        if outcome.failed:
            log.error("%s: %d of %d ticks not acknowledged (%s); they will be fetched again",
                      self._exchange_name, outcome.failed, len(fresh), outcome.first_error)
            for symbol, trade_id, _tick in fresh:
                self._seen.discard(symbol, trade_id)
            return False
        if outcome.last_event_ns is not None:
            self._last_event_ns = outcome.last_event_ns
        for symbol, (count, newest_ms) in received.items():
            if count:
                self._cursor.advance(symbol, newest_ms)
        return True

    # --- waiting ---------------------------------------------------------------------------

    async def _unless_stopped(
        self, operation: Awaitable[T], timeout_s: float | None = None, wake: asyncio.Event | None = None
    ) -> T | None:
        """``operation``'s result, or None when the feed is stopped, ``wake`` is set or ``timeout_s``
        passes first (the operation is then cancelled)."""
        work = asyncio.ensure_future(operation)
        waits = {work, asyncio.ensure_future(self._stopping.wait())}
        if wake is not None:
            waits.add(asyncio.ensure_future(wake.wait()))
        try:
            await asyncio.wait(waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits - {work}:
                waiter.cancel()
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
        while await self._before_request():
            try:
                await self._unless_stopped(operation())
                self._breaker.record_success()
                self._backoff.reset()
                return not self._stopping.is_set()
            except ccxt.NetworkError as exc:
                delay = self._after_failure(exc)
                log.warning("%s: cannot %s (%s); retrying in %.1fs", self._exchange_name, what, exc, delay)
                await sleep_unless(self._stopping, delay)
        return False

    async def _before_request(self) -> bool:
        """Wait out a rate-limit hold and an open breaker; False when the feed is stopped meanwhile."""
        while not self._stopping.is_set():
            now = time.monotonic()
            remaining = max(self._hold.remaining_s(now), self._breaker.wait_s(now))
            if remaining == 0:
                # Refused only while half-open with a probe whose outcome was never recorded; the
                # feed makes one call at a time, so that probe was its own and this call replaces it.
                self._breaker.try_acquire(now)
                return True
            log.info("%s: %s; next request in %.1fs", self._exchange_name,
                     "circuit breaker open" if self._breaker.wait_s(now) else "rate limited", remaining)
            await sleep_unless(self._stopping, remaining)
        return False

    def _after_failure(self, exc: ccxt.NetworkError) -> float:
        """The next backoff delay; counts for the breaker; a rate-limit refusal holds every request."""
        was_open = self._breaker.state is BreakerState.OPEN
        self._breaker.record_failure(time.monotonic())
        if not was_open and self._breaker.state is BreakerState.OPEN:
            self._alerts.breaker_opened(self._feed.breaker_failures, self._feed.breaker_cool_down_s)
        if isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
            headers = getattr(self._exchange, "last_response_headers", None) or {}
            header = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
            retry_after = retry_after_seconds(header)
            wait_s = self._feed.rate_limit_wait_s if retry_after is None else retry_after
            self._hold.hold(time.monotonic(), wait_s)
            log.warning("%s: rate limited (%s); no request for %.1fs", self._exchange_name, exc, wait_s)
        return self._backoff.next_delay()


async def _first_result(calls: Sequence[Awaitable[T]]) -> T:
    """The result (or error) of whichever call finishes first; the others are cancelled (ccxt
    keeps their subscriptions and makes a new future at the next watch call)."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return next(iter(done)).result()
    finally:
        for task in tasks:
            if not task.done():
                task.cancel()
        for task in tasks:  # collect the errors of the cancelled and of other finished calls
            if task.done() and not task.cancelled():
                task.exception()


def _oldest_trade(page: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The first trade of ``page`` in exchange order; None when it has no usable trade."""
    ordered = in_exchange_order(page)
    return ordered[0] if ordered else None


class _SymbolsChanged(Exception):
    """The followed symbols differ from the websocket's subscription: resubscribe (planned)."""


class _SymbolActivity:
    """What one symbol of the feed has done so far (for /v1/feeds)."""

    def __init__(self) -> None:
        self.received = 0
        self.published = 0
        self.rejected = 0
        self.last_trade_ns: int | None = None  # event time of the newest trade received
        self.rate = RecentTradeRate()

    def received_trades(self, now: float, count: int, newest_ts_event_ns: int) -> None:
        self.received += count
        self.rate.add(now, count)
        if self.last_trade_ns is None or newest_ts_event_ns > self.last_trade_ns:
            self.last_trade_ns = newest_ts_event_ns
