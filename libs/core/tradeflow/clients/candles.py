"""The candle-builder's ``GET /v1/candles`` (design.md, "Operator surface"), read by strategy
warm-up and by ``tradeflow backtest``.

The endpoint answers at most 10,000 candles per request; :meth:`CandleClient.history` pages
through any range by bucket start. Times on the wire are ISO 8601 with offset (answers) and
epoch milliseconds (requests); here they are integer nanoseconds like everywhere else.

The newest stored 1m candle may still be forming (the API serves it so charts show it);
callers that want closed candles only pass an ``end`` they know is closed, or drop the bucket
that holds "now" (:func:`closed_before`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx
from pydantic import BaseModel, Field

from tradeflow.bus.trace_context import propagate_to_request
from tradeflow.time import NS_PER_MS, parse_time_ns
from tradeflow.timeframes import TIMEFRAMES

PAGE_LIMIT = 10_000  # the endpoint's maximum


DEFAULT_CANDLES_URL = "http://127.0.0.1:8002"


class CandleApiSettings(BaseModel):
    """``TRADEFLOW_CANDLE_BUILDER_URL``: where a tool or service finds the candle-builder (mix into its settings)."""

    candle_builder_url: str = Field(default=DEFAULT_CANDLES_URL, pattern=r"^https?://",
                             description="base URL of the candle-builder's REST API")


class CandleApiError(RuntimeError):
    """The candle-builder refused the request or could not be reached; the text says which and why."""


@dataclass(frozen=True, slots=True)
class StoredCandle:
    """One candle as the API serves it: ``ts`` is the bucket start in ns since the epoch (UTC)."""

    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int


def _from_json(item: dict) -> StoredCandle:
    return StoredCandle(parse_time_ns(item["ts"]), float(item["open"]), float(item["high"]), float(item["low"]), float(item["close"]),
                        float(item["volume"]), int(item["trades"]))


def closed_before(candles: Sequence[StoredCandle], timeframe: str, now_ns: int) -> list[StoredCandle]:
    """The candles whose bucket ended at or before ``now_ns`` (24/7 grid of ``timeframe``)."""
    length = TIMEFRAMES[timeframe].length_ns
    return [c for c in candles if c.ts + length <= now_ns]


class CandleClient:
    """Reads stored candles from a candle-builder at ``base_url`` (e.g. http://127.0.0.1:8002)."""

    def __init__(self, base_url: str, *, timeout_s: float = 10.0, client: httpx.AsyncClient | None = None) -> None:
        self._base_url = base_url.rstrip("/")
        self._client = client or httpx.AsyncClient(timeout=timeout_s,
                                                   event_hooks={"request": [propagate_to_request]})
        self._owns_client = client is None

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def page(self, exchange: str, symbol: str, timeframe: str, *, start_ns: int | None = None,
                   end_ns: int | None = None, limit: int = PAGE_LIMIT) -> list[StoredCandle]:
        """One request: with ``start_ns`` the first ``limit`` candles from it, without it the
        latest ``limit`` before ``end_ns`` (the endpoint's own rule), ordered by ``ts``."""
        params: dict[str, str | int] = {"exchange": exchange, "symbol": symbol, "timeframe": timeframe,
                                        "limit": min(limit, PAGE_LIMIT)}
        if start_ns is not None:
            params["start"] = start_ns // NS_PER_MS
        if end_ns is not None:
            params["end"] = -(-end_ns // NS_PER_MS)  # ceil: the exclusive end never cuts a bucket short
        try:
            response = await self._client.get(f"{self._base_url}/v1/candles", params=params)
        except httpx.HTTPError as exc:
            raise CandleApiError(f"candle-builder at {self._base_url} unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise CandleApiError(f"candle-builder answered {response.status_code} for {exchange} {symbol} "
                                 f"{timeframe}: {response.text[:300]}")
        return [_from_json(item) for item in response.json()]

    async def history(self, exchange: str, symbol: str, timeframe: str, start_ns: int,
                      end_ns: int, *, on_page: Callable[[list[StoredCandle]], None] | None = None) -> list[StoredCandle]:
        """Every candle with a bucket start in [start_ns, end_ns), in order, paging as needed
        (``on_page`` sees each page's new candles: a progress bar's hook)."""
        result: list[StoredCandle] = []
        cursor = start_ns
        while cursor < end_ns:
            page = await self.page(exchange, symbol, timeframe, start_ns=cursor, end_ns=end_ns)
            # The endpoint also returns the bucket holding ``start`` (a ms value): keep what is new.
            fresh = [c for c in page if cursor <= c.ts < end_ns]
            result.extend(fresh)
            if on_page is not None:
                on_page(fresh)
            if len(page) < PAGE_LIMIT:
                break
            cursor = page[-1].ts + 1
        return result

    async def latest(self, exchange: str, symbol: str, timeframe: str, count: int, *,
                     end_ns: int | None = None) -> list[StoredCandle]:
        """The latest ``count`` candles with a bucket start before ``end_ns`` (all stored when None)."""
        result: list[StoredCandle] = []
        end = end_ns
        while len(result) < count:
            batch = await self.page(exchange, symbol, timeframe, end_ns=end, limit=min(PAGE_LIMIT, count - len(result)))
            if end is not None:
                batch = [c for c in batch if c.ts < end]
            if not batch:
                break
            result[:0] = batch
            end = batch[0].ts
            if len(batch) < min(PAGE_LIMIT, count):
                break
        return result[-count:]
