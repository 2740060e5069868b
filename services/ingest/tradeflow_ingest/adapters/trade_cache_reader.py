"""What ccxt's websocket trade caches received since they were last read, and what they lost.

ccxt.pro appends every parsed trade to ``exchange.trades[symbol]``, a bounded ``ArrayCache``
(``tradesLimit`` entries, 1000 by default), and wakes ``watch_trades_for_symbols`` with one
symbol's trades only. While the feed is busy, trades of every other symbol keep arriving in
those caches, and in a burst the oldest are evicted before anyone saw them. Reading every
subscribed symbol's cache at each wake-up, from the last trade read on, gets them all; when
that last trade is no longer in a full cache, trades were evicted unseen (the caller fetches
them by REST).

Positions are kept by object identity (the last trade dict read per symbol), not by ccxt's
``getLimit`` counters, which ccxt's own ``watch_*`` calls reset as they please.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class CacheRead:
    trades: list[Mapping[str, Any]] = field(default_factory=list)  # per symbol in cache order
    overflowed: list[str] = field(default_factory=list)  # symbols whose cache dropped unread trades


class TradeCacheReader:
    """Per symbol, the position (cache, last trade read) in ccxt's trade cache."""

    def __init__(self) -> None:
        self._positions: dict[str, tuple[Sequence[Any], Mapping[str, Any]]] = {}

    def forget(self, symbol: str) -> None:
        self._positions.pop(symbol, None)

    def reset(self) -> None:
        """A new ccxt client: its caches start empty, nothing of them was read."""
        self._positions.clear()

    def read(self, caches: Mapping[str, Sequence[Any]], symbols: Iterable[str]) -> CacheRead:
        """The trades added to the caches of ``symbols`` since the last read, and which overflowed."""
        result = CacheRead()
        positions = self._positions
        for symbol in symbols:
            cache = caches.get(symbol)
            if cache is None or not len(cache):
                continue
            newest = cache[-1]
            position = positions.get(symbol)
            last = position[1] if position is not None and position[0] is cache else None
            if newest is last:
                continue
            fresh = []
            for trade in reversed(cache):
                if trade is last:
                    break
                fresh.append(trade)
            else:  # the last trade read is gone (or there was none): full means some were evicted
                max_size = getattr(cache, "max_size", None)
                if last is not None or (max_size and len(cache) >= max_size):
                    result.overflowed.append(symbol)
            fresh.reverse()
            result.trades.extend(fresh)
            positions[symbol] = (cache, newest)
        return result
