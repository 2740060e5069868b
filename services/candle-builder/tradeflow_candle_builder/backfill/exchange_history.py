"""Past trades and 1m candles of one exchange through ccxt, with the exchange's limits honoured.

ccxt's own throttle (``enableRateLimit``) spaces the requests. On top of it: a rate-limit
refusal (429/418, ccxt ``RateLimitExceeded``/``DDoSProtection``) waits the answer's Retry-After
(or the exchange's ``rate_limit_wait_s``); other network errors retry with a capped exponential
backoff. After ``max_attempts`` failures in a row the backfill gives up with
:class:`ExchangeUnavailable`, which says what failed last.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from tradeflow_exchanges.ccxt_client import ExchangeFeedSettings, create_ccxt_exchange
from tradeflow_exchanges.request_hold import retry_after_seconds

log = logging.getLogger(__name__)

# The widest time span one trade request may cover (Binance refuses more than an hour between
# startTime and endTime of aggTrades); exchanges not listed get the whole remaining range.
TRADE_WINDOW_MS: Mapping[str, int] = {"binance": 3_600_000}
TRADE_PAGE_LIMIT = 1000
OHLCV_PAGE_LIMIT = 1000


class ExchangeUnavailable(RuntimeError):
    """The exchange kept failing; the message names the last failure."""


class UnknownSymbol(ValueError):
    """The exchange lists no market of that symbol."""


class ExchangeHistory:
    """One ccxt client for one backfill: markets, trade pages, 1m candle pages."""

    def __init__(
        self,
        feed: ExchangeFeedSettings,
        *,
        max_attempts: int = 8,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        notify: Callable[[str], None] = log.warning,
    ) -> None:
        self._feed = feed
        self._exchange = create_ccxt_exchange(feed)
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._sleep = sleep
        self.notify = notify  # tells the operator about each wait (the runner shows it above the bar)
        self.waited_s = 0.0  # time spent waiting on refusals and retries (reported)

    @property
    def exchange_name(self) -> str:
        """The exchange name on ticks and candles (the configured name, else the ccxt id)."""
        return self._feed.exchange_name

    @property
    def trade_window_ms(self) -> int | None:
        return TRADE_WINDOW_MS.get(self._feed.id)

    @property
    def serves_trades(self) -> bool:
        return bool(self._exchange.has.get("fetchTrades"))

    @property
    def serves_ohlcv(self) -> bool:
        return bool(self._exchange.has.get("fetchOHLCV")) and "1m" in (self._exchange.timeframes or {})

    async def check_symbol(self, symbol: str) -> None:
        """Load the markets; :class:`UnknownSymbol` when ``symbol`` is not one of them."""
        markets = await self._call("load markets", self._exchange.load_markets)
        if symbol not in markets:
            similar = sorted(s for s in markets if s.split("/")[0] == symbol.split("/")[0])[:5]
            hint = f"; similar: {', '.join(similar)}" if similar else ""
            raise UnknownSymbol(f"{self._feed.exchange_name} has no market {symbol!r}{hint}")

    async def trades(self, symbol: str, since_ms: int, end_ms: int, limit: int = TRADE_PAGE_LIMIT) -> list[dict]:
        """Trades from ``since_ms`` (inclusive) towards ``end_ms`` (exclusive), oldest first."""
        return await self._call(
            "fetch trades", self._exchange.fetch_trades, symbol, since_ms, limit, {"until": end_ms - 1}
        )

    async def ohlcv_1m(self, symbol: str, since_ms: int, end_ms: int, limit: int = OHLCV_PAGE_LIMIT) -> list[list]:
        return await self._call(
            "fetch 1m candles", self._exchange.fetch_ohlcv, symbol, "1m", since_ms, limit, {"until": end_ms - 1}
        )

    async def close(self) -> None:
        await self._exchange.close()

    async def _call(self, what: str, method: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        import ccxt  # imported on use: ccxt takes a second to import

        for attempt in range(1, self._max_attempts + 1):
            try:
                return await method(*args)
            except (ccxt.RateLimitExceeded, ccxt.DDoSProtection) as exc:
                headers = getattr(self._exchange, "last_response_headers", None) or {}
                header = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
                wait_s = retry_after_seconds(header)
                wait_s = self._feed.rate_limit_wait_s if wait_s is None else wait_s
                failure = exc
            except ccxt.NetworkError as exc:
                wait_s = min(self._max_backoff_s, self._backoff_s * 2 ** (attempt - 1))
                failure = exc
            if attempt == self._max_attempts:
                break
            self.notify(f"{self._feed.exchange_name}: {what} failed ({_first_line(failure)}); "
                        f"retrying in {wait_s:.1f}s")
            self.waited_s += wait_s
            await self._sleep(wait_s)
        raise ExchangeUnavailable(
            f"{self._feed.exchange_name}: {what} failed {self._max_attempts} times in a row; "
            f"last: {_first_line(failure)}"
        )


def _first_line(exc: BaseException) -> str:
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def usable_ohlcv(rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
    """Rows ``[ts, o, h, l, c, v]`` with an integer time and five numbers (others are dropped)."""
    usable = []
    for row in rows:
        if len(row) >= 6 and isinstance(row[0], int) and all(isinstance(x, int | float) for x in row[1:6]):
            usable.append(row)
    return usable
