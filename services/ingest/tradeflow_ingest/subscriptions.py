"""Subscriptions service layer: what the API asks for, and which symbols this replica's feeds serve.

* Add/remove/list go through the :class:`SubscriptionLog` (the compacted topic), after checks
  a client gets a clear 4xx for: the exchange must be configured (``TRADEFLOW_EXCHANGES`` holds
  its URLs and credentials), the symbol must look like a unified symbol and, once the feed has
  loaded the exchange's markets, exist there.
* Symbols of ``TRADEFLOW_EXCHANGES`` are subscriptions with source ``config``, written at every
  start; they are removed by changing the configuration, not by DELETE.
* :meth:`reconcile` sets each feed's symbols to the subscriptions on the partitions the
  replicas' group gave this replica (:func:`symbols_to_serve`). It runs when the book changes
  and when partitions are assigned or revoked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from tradeflow.messages import Subscription

from tradeflow_ingest.adapters.published_tail import PublishedTail
from tradeflow_ingest.adapters.subscription_log import SubscriptionLog
from tradeflow_ingest.domain.sources import SubscribableFeed
from tradeflow_ingest.domain.subscriptions import symbol_rejection_reason, symbols_to_serve

log = logging.getLogger(__name__)

CATCH_UP_WAIT_S = 60.0


class SubscriptionRejected(Exception):
    """A request the API answers with ``status`` and ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    subscription: Subscription
    served_here: bool


class Subscriptions:
    """A service Component (its start seeds the configured symbols once the book is read)."""

    def __init__(self, log_: SubscriptionLog, feeds: Mapping[str, SubscribableFeed],
                 configured: Mapping[str, tuple[str, ...]], tail: PublishedTail, *,
                 wall_clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._log = log_
        self._feeds = dict(feeds)
        self._configured = dict(configured)
        self._wall_clock_ns = wall_clock_ns
        self._tail = tail
        self._partitions: frozenset[int] = frozenset()

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if not await self._log.wait_caught_up(CATCH_UP_WAIT_S):
            raise RuntimeError(f"could not read ingest.subscriptions.v1 within {CATCH_UP_WAIT_S:.0f}s")
        for exchange, symbols in self._configured.items():
            for symbol in symbols:
                existing = self._log.book.get(exchange, symbol)
                if existing is None or existing.source != "config":
                    await self._log.put(self._new(exchange, symbol, "config"))
        self.reconcile()

    async def stop(self) -> None:
        pass

    # --- ownership (called by SubscriptionOwnership) ------------------------------------------

    async def partitions_assigned(self, partitions: frozenset[int]) -> None:
        """Serve the subscriptions of ``partitions``; those taken over from another replica resume
        after the last trade it published (read from md.ticks.v1), so nothing is lost or repeated."""
        self._partitions = partitions
        if not self._log.is_caught_up():
            return
        for exchange, symbols in self._to_serve().items():
            feed = self._feeds[exchange]
            taken_over = set(symbols) - set(feed.symbols)
            resume = await self._tail.resume_points(exchange, taken_over) if taken_over else {}
            if feed.symbols != symbols:
                log.info("%s: serving %d symbols (%d taken over)", exchange, len(symbols), len(taken_over))
                feed.set_symbols(symbols, resume=resume)

    async def partitions_revoked(self, partitions: frozenset[int]) -> None:
        """Stop serving the subscriptions of ``partitions`` before another replica may start them."""
        self._partitions = self._partitions - partitions
        self.reconcile()
        for feed in self._feeds.values():
            await feed.symbols_applied()

    def reconcile(self) -> None:
        """Feeds follow the book: a new subscription starts now, a removed one stops."""
        if not self._log.is_caught_up():
            return  # a partial book would stop symbols that are still subscribed
        for exchange, symbols in self._to_serve().items():
            feed = self._feeds[exchange]
            if feed.symbols != symbols:
                log.info("%s: serving %d symbols (was %d)", exchange, len(symbols), len(feed.symbols))
                feed.set_symbols(symbols)

    def _to_serve(self) -> dict[str, tuple[str, ...]]:
        """Per feed, the subscriptions on this replica's partitions that its exchange lists (one
        stored before the markets were known and absent from them is logged, not served)."""
        serve = {}
        for exchange, symbols in symbols_to_serve(self._log.book, self._partitions, self._feeds).items():
            feed = self._feeds[exchange]
            unknown = [s for s in symbols if feed.known_symbol(s) is False]
            if unknown:
                log.warning("%s lists no market %s; those subscriptions are not served", exchange, ", ".join(unknown))
            serve[exchange] = tuple(s for s in symbols if s not in unknown)
        return serve

    # --- API operations -----------------------------------------------------------------------

    def list(self) -> list[SubscriptionView]:
        self._require_book()
        return [
            SubscriptionView(s, self._log.book.partition_of(s.exchange, s.symbol) in self._partitions)
            for s in self._log.book.subscriptions()
        ]

    async def add(self, exchange: str, symbol: str) -> tuple[Subscription, bool]:
        """The subscription and whether it is new (False: it existed already, nothing changed)."""
        self._require_book()
        feed = self._feeds.get(exchange)
        if feed is None:
            configured = ", ".join(sorted(self._feeds)) or "none"
            raise SubscriptionRejected(422, f"exchange {exchange!r} is not configured in TRADEFLOW_EXCHANGES "
                                            f"(configured: {configured})")
        reason = symbol_rejection_reason(symbol)
        if reason is not None:
            raise SubscriptionRejected(422, reason)
        if feed.known_symbol(symbol) is False:
            raise SubscriptionRejected(422, f"{exchange} has no market {symbol!r}")
        existing = self._log.book.get(exchange, symbol)
        if existing is not None:
            return existing, False
        subscription = self._new(exchange, symbol, "api")
        await self._log.put(subscription)
        return subscription, True

    async def remove(self, exchange: str, symbol: str) -> Subscription:
        self._require_book()
        existing = self._log.book.get(exchange, symbol)
        if existing is None:
            raise SubscriptionRejected(404, f"{exchange}:{symbol} is not subscribed")
        if existing.source == "config" and symbol in self._configured.get(exchange, ()):
            raise SubscriptionRejected(
                409, f"{exchange}:{symbol} comes from TRADEFLOW_EXCHANGES; remove it there and restart")
        await self._log.remove(exchange, symbol)
        return existing

    def _require_book(self) -> None:
        if not self._log.is_caught_up():
            raise SubscriptionRejected(503, "subscriptions are still being read; retry shortly")

    def _new(self, exchange: str, symbol: str, source: str) -> Subscription:
        return Subscription(exchange=exchange, symbol=symbol, source=source, ts_created=self._wall_clock_ns())
