"""How a REST catch-up pages forward from a cursor, and when the exchange says it is done (pure).

Exchanges that serve trades from a time or an id page forward. "Caught up" is decided from what
the exchange said, never from how many trades ccxt handed back: ccxt may ask the exchange for
more than the cursor (Kraken: ``since`` in whole seconds) and then drop the older trades, so a
page it shortened says nothing about what comes after it. Per exchange:

* Kraken: ``since`` in nanoseconds, sent as a request parameter (ccxt's own ``since`` is left
  out, so ccxt neither rounds it to seconds nor filters the page), and then Kraken's own cursor
  ``last``; a page shorter than ``count`` is Kraken saying there is nothing newer.
* Binance (``aggTrades``): the first page by time (``startTime``, and ``endTime`` an hour later
  as ccxt asks, given here as ``until`` so that the window is known), then by aggregate trade id
  (``fromId``, no time: one cursor, no window); a page by id shorter than the limit, or a first
  page shorter than the limit whose window reaches now, is Binance saying there is nothing newer.
* Any other exchange: by time, from the newest trade's millisecond (inclusive); a short page
  ends it (ccxt may have filtered it: not exact).

A full page that gives no way on (the cursor would not move) is :class:`Stuck`: trades after it
may be missing, and the feed says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tradeflow_exchanges.ccxt_trades import NS_PER_MS, UnusableTrade, trade_fields

# Binance refuses a startTime..endTime window wider than an hour; ccxt asks for exactly that.
BINANCE_WINDOW_MS = 3_600_000
# A first Binance page reaches "now" only if its window ends this far after our clock (the
# exchange's clock may run ahead of ours).
CLOCK_SKEW_MS = 60_000
# Kraken's REST trade row: price, volume, time, side, order type, misc, trade id. ccxt appends
# Kraken's `last` to the row of the page's last trade (ccxt issue 1794).
KRAKEN_ROW_FIELDS = 7


@dataclass(frozen=True, slots=True)
class PageRequest:
    """The arguments of one ccxt ``fetch_trades(symbol, since, limit, params)`` call."""

    since: int | None
    limit: int
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """The exchange has nothing newer than the last page."""


@dataclass(frozen=True, slots=True)
class Stuck:
    """A full page, and no request that would move past it: trades after it may be missing."""

    reason: str


PageOutcome = PageRequest | CaughtUp | Stuck
CAUGHT_UP = CaughtUp()


class TimePaging:
    """Pages by time: ccxt's ``since`` (ms, inclusive), then the newest trade's millisecond."""

    def __init__(self, limit: int, params: Mapping[str, Any] | None = None) -> None:
        self._limit = limit
        self._params = dict(params or {})

    def first(self, since_ms: int, now_ms: int) -> PageRequest:
        """The first page from the cursor ``since_ms`` (the last published trade's ms)."""
        return PageRequest(since_ms, self._limit, self._params)

    def after(self, request: PageRequest, page: Sequence[Mapping[str, Any]], now_ms: int) -> PageOutcome:
        """What comes after ``page``, the answer to ``request``."""
        if len(page) < request.limit:
            return CAUGHT_UP
        newest = newest_trade_ms(page)
        if newest is None or request.since is None or newest <= request.since:
            return Stuck(f"a full page of {len(page)} trades within one millisecond; the exchange pages by time only")
        return PageRequest(newest, self._limit, self._params)


class KrakenPaging(TimePaging):
    """Kraken ``Trades``: ``since`` in nanoseconds, then Kraken's ``last`` (see the module)."""

    def first(self, since_ms: int, now_ms: int) -> PageRequest:
        # Exclusive on Kraken: from just before the cursor's millisecond, so all of it comes back.
        return self._from(since_ms * NS_PER_MS - 1)

    def after(self, request: PageRequest, page: Sequence[Mapping[str, Any]], now_ms: int) -> PageOutcome:
        if len(page) < request.limit:  # ccxt did not filter it (no since): this is Kraken's count
            return CAUGHT_UP
        last = kraken_last(page)
        if last is None or last <= int(request.params["since"]):
            return Stuck("Kraken's `last` cursor is missing or did not move")
        return self._from(last)

    def _from(self, since_ns: int) -> PageRequest:
        return PageRequest(None, self._limit, {**self._params, "since": str(since_ns)})


class BinanceAggTradesPaging(TimePaging):
    """Binance ``aggTrades``: the first page by time, then by aggregate trade id (see the module)."""

    def first(self, since_ms: int, now_ms: int) -> PageRequest:
        return self._window(since_ms)

    def after(self, request: PageRequest, page: Sequence[Mapping[str, Any]], now_ms: int) -> PageOutcome:
        full = len(page) >= request.limit
        if "fromId" in request.params:
            if not full:
                return CAUGHT_UP
            return self._from_id(page, int(request.params["fromId"]))
        window_end = int(request.params["until"])
        if not full and window_end >= now_ms + CLOCK_SKEW_MS:  # the window reached now
            return CAUGHT_UP
        if not page:  # an hour without trades, before now: the next hour
            return self._window(window_end + 1)
        return self._from_id(page, None)

    def _window(self, since_ms: int) -> PageRequest:
        return PageRequest(since_ms, self._limit, {**self._params, "until": since_ms + BINANCE_WINDOW_MS})

    def _from_id(self, page: Sequence[Mapping[str, Any]], previous: int | None) -> PageOutcome:
        newest = newest_numeric_id(page)
        if newest is None or (previous is not None and newest < previous):
            return Stuck("the page has no aggregate trade id to continue from")
        return PageRequest(None, self._limit, {**self._params, "fromId": str(newest + 1)})


def forward_paging(exchange_id: str, limit: int, params: Mapping[str, Any] | None = None) -> TimePaging:
    """How ``exchange_id``'s trades are paged forward, ``limit`` trades a page."""
    if exchange_id == "kraken":
        return KrakenPaging(limit, params)
    if exchange_id == "binance":
        return BinanceAggTradesPaging(limit, params)
    return TimePaging(limit, params)


def kraken_last(page: Sequence[Mapping[str, Any]]) -> int | None:
    """Kraken's ``last`` (ns) of a ccxt ``fetch_trades`` page: the extra field ccxt appends to
    the raw row of the page's last trade. None when no row carries it."""
    for trade in reversed(page):  # ccxt sorts by (timestamp, id as text): usually the last one
        row = trade.get("info")
        if isinstance(row, list) and len(row) > KRAKEN_ROW_FIELDS and str(row[-1]).isdigit():
            return int(row[-1])
    return None


def newest_trade_ms(page: Sequence[Mapping[str, Any]]) -> int | None:
    """The newest usable trade time of ``page`` (ms); None when it has none."""
    times = [ts for ts in (_ts_ms(trade) for trade in page) if ts is not None]
    return max(times, default=None)


def newest_numeric_id(page: Sequence[Mapping[str, Any]]) -> int | None:
    """The largest numeric trade id of ``page``; None when it has none."""
    ids = [int(t["id"]) for t in page if str(t.get("id", "")).isdigit()]
    return max(ids, default=None)


def reaches(page: Sequence[Mapping[str, Any]], target: Mapping[str, Any]) -> bool:
    """Whether ``page`` (contiguous, from the cursor on) goes as far as the trade ``target``: it
    holds it, or a trade of a later millisecond (then everything up to it, ``target`` included)."""
    target_id = str(target.get("id", ""))
    if any(str(trade.get("id", "")) == target_id for trade in page):
        return True
    target_ms, newest = _ts_ms(target), newest_trade_ms(page)
    return target_ms is not None and newest is not None and newest > target_ms


def _ts_ms(trade: Mapping[str, Any]) -> int | None:
    try:
        return trade_fields(trade)[2]
    except UnusableTrade:
        return None
