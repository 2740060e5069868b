"""What a backfill asks for, page by page (pure: no I/O, no clock of its own).

* :func:`check_range`: ``--since``/``--until`` (epoch ms, read by
  :func:`tradeflow.time.parse_time_option`) in order and not in the future.
* :class:`TradePageCursor`: pages forward through ``[since, until)`` by time. Each request asks
  for trades from the cursor (inclusive) to the end of its window; a page moves the cursor to
  its newest trade (that millisecond is asked again, its already-seen ids are dropped), and a
  page with nothing new closes the window. So a page cut short by the exchange's own limit
  loses nothing, whatever that limit is.
* :class:`OhlcvPageCursor`: the same for 1-minute candles (``fetch_ohlcv``).
* :func:`complete_minutes`: which minutes with new ticks can be recomputed already (no later
  page can add trades to them), so each minute is rebuilt once, with the live path's revision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tradeflow.time import NS_PER_MS, format_time_ms
from tradeflow_exchanges.ccxt_trades import UnusableTrade, trade_fields

MINUTE_MS = 60_000


class RangeError(ValueError):
    """A bad ``--since``/``--until``; the text names the option."""


def check_range(since_ms: int, until_ms: int, now_ms: int) -> None:
    """Raise :class:`RangeError` naming the option unless ``since < until <= now``."""
    if since_ms > now_ms:
        raise RangeError(f"--since {format_ms(since_ms)} is in the future (now is {format_ms(now_ms)})")
    if until_ms > now_ms:
        raise RangeError(f"--until {format_ms(until_ms)} is in the future (now is {format_ms(now_ms)}); "
                         "use --until now for everything so far")
    if until_ms <= since_ms:
        raise RangeError(f"--until ({format_ms(until_ms)}) must be after --since ({format_ms(since_ms)})")


def format_ms(ms: int) -> str:
    return format_time_ms(ms * NS_PER_MS)


class PagingStuck(RuntimeError):
    """A full page holds only already-seen trades of one millisecond: time paging cannot move on."""


@dataclass(frozen=True)
class PageRequest:
    since_ms: int  # inclusive
    end_ms: int  # exclusive: ask the exchange for trades up to end_ms - 1


@dataclass
class TradePageCursor:
    """Forward time paging over ``[since_ms, until_ms)`` for one symbol.

    ``window_ms`` is the widest time span one request may cover (Binance's aggTrades: one hour);
    None means the whole remaining range.
    """

    since_ms: int
    until_ms: int
    window_ms: int | None = None
    position_ms: int = field(init=False)
    _window_end_ms: int = field(init=False)
    _seen_at_position: set[str] = field(init=False, default_factory=set)
    _anything_fresh: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.position_ms = self.since_ms
        self._window_end_ms = self._next_window_end(self.since_ms)

    def _next_window_end(self, start_ms: int) -> int:
        if self.window_ms is None:
            return self.until_ms
        return min(self.until_ms, start_ms + self.window_ms)

    @property
    def done(self) -> bool:
        return self.position_ms >= self.until_ms

    @property
    def covered_ms(self) -> int:
        """How much of the range lies behind the cursor (for progress)."""
        return min(self.position_ms, self.until_ms) - self.since_ms

    def request(self) -> PageRequest:
        return PageRequest(self.position_ms, self._window_end_ms)

    def accept(self, page: Sequence[Mapping[str, Any]], limit: int) -> list[Mapping[str, Any]]:
        """The trades of ``page`` not seen before and inside the window; moves the cursor.

        ``limit`` is what the request asked for: a full page of nothing new means more trades
        share one millisecond than one page holds, which time paging cannot get past.
        """
        start, end = self.position_ms, self._window_end_ms
        fresh: list[tuple[int, str, Mapping[str, Any]]] = []
        for trade in page:
            try:
                _symbol, trade_id, ts_ms = trade_fields(trade)
            except UnusableTrade:
                continue
            if start <= ts_ms < end and not (ts_ms == start and trade_id in self._seen_at_position):
                fresh.append((ts_ms, trade_id, trade))
        if not fresh:
            if len(page) >= limit and all(_ts(t) == start for t in page):
                raise PagingStuck(f"more than {limit} trades at {format_ms(start)}: paging by time cannot go on")
            self._move_to(end)
            return []
        self._anything_fresh = True
        newest = max(ts for ts, _, _ in fresh)
        at_newest = {trade_id for ts, trade_id, _ in fresh if ts == newest}
        if newest == start:
            self._seen_at_position |= at_newest
        else:
            self.position_ms, self._seen_at_position = newest, at_newest
        return [trade for _, _, trade in fresh]

    def ignores_time_range(self, page: Sequence[Mapping[str, Any]]) -> bool:
        """True when, before anything was found, the exchange answered only with trades after
        the window asked for: it serves recent trades, not the history of a past range."""
        if self._anything_fresh or not page:
            return False
        return all(_ts(t) >= self._window_end_ms for t in page)

    def _move_to(self, window_end_ms: int) -> None:
        self.position_ms = window_end_ms
        self._seen_at_position = set()
        self._window_end_ms = self._next_window_end(window_end_ms)


def _ts(trade: Mapping[str, Any]) -> int:
    ts = trade.get("timestamp")
    return ts if isinstance(ts, int) else -1


@dataclass
class OhlcvPageCursor:
    """Forward paging over 1-minute candles whose start lies in ``[since_ms, until_ms)``."""

    since_ms: int
    until_ms: int
    position_ms: int = field(init=False)

    def __post_init__(self) -> None:
        self.position_ms = self.since_ms

    @property
    def done(self) -> bool:
        return self.position_ms >= self.until_ms

    @property
    def covered_ms(self) -> int:
        return min(self.position_ms, self.until_ms) - self.since_ms

    def accept(self, page: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
        """Candles ``[ts, open, high, low, close, volume]`` of the page inside the range and not
        before the cursor; the cursor moves past the newest, or to the end on an empty page."""
        fresh = [row for row in page if row and isinstance(row[0], int) and self.position_ms <= row[0] < self.until_ms]
        if not fresh:
            self.position_ms = self.until_ms
            return []
        self.position_ms = max(row[0] for row in fresh) + MINUTE_MS
        return sorted(fresh, key=lambda row: row[0])


def minute_start_ms(ts_ms: int) -> int:
    return ts_ms - ts_ms % MINUTE_MS


def complete_minutes(pending_ms: Iterable[int], position_ms: int) -> list[int]:
    """The pending minute starts whose minute ends at or before ``position_ms`` (no later page,
    which starts at ``position_ms``, can add a trade to them), sorted."""
    return sorted(m for m in pending_ms if m + MINUTE_MS <= position_ms)
