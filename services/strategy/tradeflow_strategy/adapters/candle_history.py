"""Warm-up candles from the candle-builder's ``GET /v1/candles`` (:class:`tradeflow.clients.candles.CandleClient`).

For a warm-up cut at ``before_ns`` (the start of the first candle the stream delivered for the
market, docs/adr/0020) an instance gets:

- the newest ``count`` candles of its timeframe starting before the cut: all closed, since
  the candle-builder emits a candle only after the ones before it closed;
- of each higher timeframe it reads, the newest candles that *ended* by the cut (closed), and
  of its own timeframe every candle from the start of the higher bucket the cut falls in, so
  the runner builds that forming higher candle from exactly the candles before the cut. The
  stored forming candle is never used: the database computes it from every stored minute,
  including minutes the stream has not delivered yet (look-ahead) and the forming minute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from tradeflow.clients.candles import StoredCandle
from tradeflow.messages import Candle
from tradeflow.timeframes import timeframe as timeframe_named

from tradeflow_strategy.engine import WarmUpCandles


class CandleApi(Protocol):
    """What is read of the candle-builder (``CandleClient``'s methods)."""

    async def latest(self, exchange: str, symbol: str, timeframe: str, count: int, *,
                     end_ns: int | None = None) -> list[StoredCandle]: ...

    async def history(self, exchange: str, symbol: str, timeframe: str, start_ns: int,
                      end_ns: int) -> list[StoredCandle]: ...


class CandleBuilderHistory:
    """:class:`tradeflow_strategy.engine.CandleHistory` over the candle-builder's API."""

    def __init__(self, api: CandleApi) -> None:
        self._api = api

    async def load(self, exchange: str, symbol: str, timeframe: str, count: int, higher: Mapping[str, int],
                   before_ns: int) -> WarmUpCandles:
        base = await self._api.latest(exchange, symbol, timeframe, count, end_ns=before_ns)
        first = base[0].ts if base else before_ns
        closed: dict[str, list[Candle]] = {}
        for name, needed in higher.items():
            higher_tf = timeframe_named(name)
            # ts_end <= before  <=>  ts < before - length + 1 (the API filters on the bucket start)
            stored = await self._api.latest(exchange, symbol, name, needed, end_ns=before_ns - higher_tf.length_ns + 1)
            closed[name] = _candles(stored, exchange, symbol, name)
            forming_start = higher_tf.bucket_start(before_ns - 1)
            if forming_start < first:
                base = await self._api.history(exchange, symbol, timeframe, forming_start, first) + base
                first = forming_start
        return WarmUpCandles(_candles(base, exchange, symbol, timeframe), closed)


def _candles(stored: Sequence[StoredCandle], exchange: str, symbol: str, timeframe: str) -> list[Candle]:
    length = timeframe_named(timeframe).length_ns
    return [Candle(exchange=exchange, symbol=symbol, timeframe=timeframe, ts_start=c.ts, ts_end=c.ts + length,
                   open=c.open, high=c.high, low=c.low, close=c.close, volume=c.volume, trades=c.trades)
            for c in stored]
