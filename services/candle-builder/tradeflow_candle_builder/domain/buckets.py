"""Mutable candle buckets: the aggregator's working state for one instrument and one bucket.

Plain ``__slots__`` classes, not dataclasses or Structs: they are updated in place on the hot
path (one attribute store per field per trade) and must stay small (1,000 instruments with a
few open buckets each). They become immutable :class:`tradeflow.messages.Candle` messages only
when stored or emitted.
"""

from __future__ import annotations

from tradeflow.messages import Candle, Tick

from tradeflow_candle_builder.domain.timeframes import MINUTE_NS, Timeframe


class MinuteBucket:
    """An open 1m bucket built from trades.

    open/close are decided by event time; equal event times by receive time (``ts_recv``,
    which ingest makes strictly increasing), and equal both by arrival (offset) order: the
    first arrival stays the open, the last one becomes the close.
    """

    __slots__ = (
        "exchange", "symbol", "partition", "start", "end",
        "open", "high", "low", "close", "volume", "trades",
        "open_ts", "open_recv", "close_ts", "close_recv",
        "first_offset", "close_offset", "batch_mark", "recovered",
    )

    def __init__(self, tick: Tick, partition: int, offset: int, start: int, recovered: bool) -> None:
        self.exchange = tick.exchange
        self.symbol = tick.symbol
        self.partition = partition
        self.start = start
        self.end = start + MINUTE_NS
        price = tick.price
        self.open = self.high = self.low = self.close = price
        self.volume = tick.amount
        self.trades = 1
        self.open_ts = self.close_ts = tick.ts_event
        self.open_recv = self.close_recv = tick.ts_recv
        # The committed offset never passes the first record of an open bucket, so a restart
        # re-reads every trade of it (see CandleAggregator.committable_offsets).
        self.first_offset = offset
        # The record of the close trade: the candle continues its trace (adapters/candle_traces.py).
        self.close_offset = offset
        self.batch_mark = 0
        # Recovered: the database may hold trades of this bucket consumed before a restart
        # or rebalance, so its final state comes from the database, not from memory.
        self.recovered = recovered

    def to_candle(self, revision: int = 0) -> Candle:
        return Candle(
            exchange=self.exchange, symbol=self.symbol, timeframe="1m",
            ts_start=self.start, ts_end=self.end,
            open=self.open, high=self.high, low=self.low, close=self.close,
            volume=self.volume, trades=self.trades, revision=revision,
        )


class HigherBucket:
    """An open bucket of a higher timeframe, built from the closed 1m candles inside it.

    Exact because 1m buckets nest in every higher bucket and close in time order per
    instrument: open = first 1m open, close = last 1m close, high/low = max/min, sums.
    ``dirty`` means memory does not hold all of it (a late trade, or 1m candles from before a
    restart): its values are read from the database when it closes.
    """

    __slots__ = (
        "exchange", "symbol", "partition", "timeframe", "start", "end",
        "open", "high", "low", "close", "volume", "trades", "dirty", "close_offset",
    )

    def __init__(self, exchange: str, symbol: str, partition: int, timeframe: Timeframe, start: int,
                 dirty: bool) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.partition = partition
        self.timeframe = timeframe
        self.start = start
        self.end = timeframe.bucket_end(start)
        self.open = self.high = self.low = self.close = 0.0
        self.volume = 0.0
        self.trades = 0
        self.dirty = dirty
        self.close_offset = -1  # of the close trade of its last 1m candle

    def add(self, minute: MinuteBucket) -> None:
        """Fold in a closed 1m bucket; minutes arrive in time order."""
        if self.trades == 0:
            self.open = minute.open
            self.high = minute.high
            self.low = minute.low
        else:
            if minute.high > self.high:
                self.high = minute.high
            if minute.low < self.low:
                self.low = minute.low
        self.close = minute.close
        self.close_offset = minute.close_offset
        self.volume += minute.volume
        self.trades += minute.trades

    def to_candle(self, revision: int = 0) -> Candle:
        return Candle(
            exchange=self.exchange, symbol=self.symbol, timeframe=self.timeframe.name,
            ts_start=self.start, ts_end=self.end,
            open=self.open, high=self.high, low=self.low, close=self.close,
            volume=self.volume, trades=self.trades, revision=revision,
        )
