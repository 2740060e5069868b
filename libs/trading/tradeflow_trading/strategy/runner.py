"""The live driver of one strategy instance on one market: candles in, intents out (pure).

The strategy service keeps one :class:`LiveRunner` per (instance, symbol) and hands it every
candle of that market it consumes; the runner answers with the intents to publish (the
service turns each into a signal with :meth:`Intent.signal`). The runner owns what makes live
decisions equal the backtest's:

- **Windows.** It keeps the last ``warmup()`` candles of the instance's timeframe. A
  vectorised strategy decides on that window and the last row counts; an event strategy's
  handler runs once per candle with ``ctx.candles`` = the same window.
- **Warm-up.** :meth:`warm_up` takes stored candles (older than anything that will reach
  :meth:`on_candle`): the window fills, higher timeframes are seeded, an event strategy's
  handler runs so its state builds up, and nothing is emitted. After it, every new candle is
  decided, whatever its time (design.md).
- **Higher timeframes, no look-ahead.** Higher candles are built from the base candles as
  they close (:class:`HigherTimeframeBuilder`, the same cut as the backtest's ``resample``);
  one becomes visible with the base candle that reaches its end. Higher candles from the
  stream replace the built ones they correspond to (corrections after late trades), and are
  ignored while their bucket is still forming here.
- **Corrections and redeliveries.** A base candle at or before the newest one seen (a
  correction with revision > 0, or a redelivery) updates the window and decides nothing: no
  signal is ever emitted again, or anew, for an earlier candle. Later decisions use the
  corrected values.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
from tradeflow.messages import Candle, Fill
from tradeflow.timeframes import timeframe as timeframe_named

from tradeflow_trading.positions import Position
from tradeflow_trading.strategy.base import (
    Decisions,
    EventStrategy,
    Strategy,
    StrategyData,
    StrategyDefinitionError,
    VectorStrategy,
)
from tradeflow_trading.strategy.candles import COLUMNS, Bar, CandleFrame, HigherTimeframeBuilder
from tradeflow_trading.strategy.context import StrategyContext
from tradeflow_trading.strategy.intents import Intent, intent_on

MIN_BUFFER = 64


def _bar(candle: Candle) -> Bar:
    return Bar(candle.ts_start, candle.ts_end, candle.open, candle.high, candle.low, candle.close, candle.volume)


class CandleWindow:
    """The newest ``size`` candles of one timeframe in preallocated columns (O(1) amortised append)."""

    def __init__(self, timeframe: str, size: int) -> None:
        self.timeframe = timeframe
        self.size = size
        capacity = max(2 * size, MIN_BUFFER)
        self._columns = {c: np.empty(capacity, dtype=np.int64 if c.startswith("ts") else np.float64) for c in COLUMNS}
        self._stop = 0  # rows [max(0, stop - size), stop) are the window

    def __len__(self) -> int:
        return min(self._stop, self.size)

    def append(self, bar: Bar) -> None:
        columns = self._columns
        capacity = columns["ts_start"].shape[0]
        if self._stop == capacity:  # move the newest size - 1 rows to the front
            keep = self.size - 1
            for column in columns.values():
                column[:keep] = column[capacity - keep:capacity]
            self._stop = keep
        for name, value in zip(COLUMNS, bar, strict=True):
            columns[name][self._stop] = value
        self._stop += 1

    def find(self, ts_start: int) -> int:
        """Row (in the frame) of the candle starting at ``ts_start``, or -1."""
        first = self._stop - len(self)
        starts = self._columns["ts_start"][first:self._stop]
        i = int(np.searchsorted(starts, ts_start))
        return i if i < starts.shape[0] and starts[i] == ts_start else -1

    def replace(self, row: int, bar: Bar) -> None:
        index = self._stop - len(self) + row
        for name, value in zip(COLUMNS, bar, strict=True):
            self._columns[name][index] = value

    def frame(self) -> CandleFrame:
        first = self._stop - len(self)
        return CandleFrame(self.timeframe, *(self._columns[c][first:self._stop] for c in COLUMNS))


class LiveRunner:
    """One strategy instance on one market (see the module docstring for the rules it keeps)."""

    def __init__(self, strategy: Strategy, *, exchange: str, symbol: str, timeframe: str, account_id: str = "",
                 instance_id: str = "", logger: logging.Logger | logging.LoggerAdapter | None = None) -> None:
        if not isinstance(strategy, VectorStrategy | EventStrategy):
            raise StrategyDefinitionError(f"{type(strategy).__name__} is neither a VectorStrategy nor an EventStrategy")
        self.strategy = strategy
        self.exchange = exchange
        self.symbol = symbol
        self.timeframe = timeframe_named(timeframe)
        self.window = max(1, int(strategy.warmup()))
        self._window = CandleWindow(timeframe, self.window)
        self._builders = {tf.name: HigherTimeframeBuilder(tf, count)
                          for tf, count in strategy.higher_timeframes(timeframe).items()}
        self._needed = {tf.name: count for tf, count in strategy.higher_timeframes(timeframe).items()}
        self.position = Position(account_id, exchange, symbol)
        self.newest_ts_start: int | None = None
        self.candles_decided = 0
        self.log = logger or logging.getLogger(f"tradeflow.strategy.{strategy.name or type(strategy).__name__}")
        if isinstance(strategy, EventStrategy):
            self._ctx: StrategyContext | None = StrategyContext(
                symbol=symbol, timeframe=timeframe, params=strategy.params, window=self.window, position=self.position,
                logger=logging.LoggerAdapter(self.log, {"instance": instance_id, "symbol": symbol}))
        else:
            self._ctx = None

    # --- status ----------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """The window and every higher timeframe hold what the strategy declared it needs."""
        return len(self._window) >= self.window and all(
            len(self._builders[name]) >= count for name, count in self._needed.items())

    # --- input -----------------------------------------------------------------------------------

    def warm_up(self, candles: Sequence[Candle], higher: Mapping[str, Sequence[Candle]] | None = None) -> None:
        """Stored candles of the instance's timeframe (oldest first), and optionally of its higher
        timeframes up to the newest of them, the forming one included (the database serves it
        from its 1m rows). A higher timeframe given here is not rebuilt from ``candles``; one not
        given is built from them. Nothing is emitted."""
        higher = {name: [_bar(c) for c in bars] for name, bars in (higher or {}).items()}
        unknown = set(higher) - set(self._builders)
        if unknown:
            raise ValueError(f"warm-up candles for undeclared timeframes: {', '.join(sorted(unknown))}")
        taken = dict.fromkeys(higher, 0)  # given higher candles already handed to their builder
        for candle in candles:
            if candle.timeframe != self.timeframe.name:
                raise ValueError(f"warm-up candle of {candle.timeframe}, expected {self.timeframe.name}")
            if self.newest_ts_start is not None and candle.ts_start <= self.newest_ts_start:
                continue
            bar = _bar(candle)
            self._window.append(bar)
            self.newest_ts_start = bar.ts_start
            for name, builder in self._builders.items():
                if name not in higher:
                    builder.add(bar)
                    continue
                # Each handler call during warm-up sees the given higher candles closed by then.
                bars, first = higher[name], taken[name]
                last = first
                while last < len(bars) and bars[last].ts_end <= bar.ts_end:
                    last += 1
                builder.seed(bars[first:last], bar.ts_end)
                taken[name] = last
            if self._ctx is not None:
                self._run_handler(warming_up=True)
        newest_end = self.timeframe.bucket_end(self.newest_ts_start) if self.newest_ts_start is not None else 0
        for name, bars in higher.items():
            self._builders[name].seed(bars[taken[name]:], newest_end)

    def on_candle(self, candle: Candle) -> list[Intent]:
        """A candle of this market from the stream: the intents it causes (often none)."""
        if candle.symbol != self.symbol or candle.exchange != self.exchange:
            raise ValueError(f"candle of {candle.exchange}:{candle.symbol} given to the runner of "
                             f"{self.exchange}:{self.symbol}")
        bar = _bar(candle)
        if candle.timeframe != self.timeframe.name:
            builder = self._builders.get(candle.timeframe)
            if builder is not None and not builder.correct(bar):
                self._accept_stream_higher(builder, bar)
            return []
        if self.newest_ts_start is not None and bar.ts_start <= self.newest_ts_start:
            self._correct(bar)
            return []
        self._window.append(bar)
        self.newest_ts_start = bar.ts_start
        for builder in self._builders.values():
            builder.add(bar)
        self.candles_decided += 1
        if self._ctx is not None:
            return self._run_handler(warming_up=False)
        return self._decide_vector()

    def on_fill(self, fill: Fill) -> None:
        """A fill of this instance on this market: the position moves; an event strategy hears of it."""
        self.position = self.position.apply(fill)
        if self._ctx is not None:
            self._ctx.position = self.position
            self.strategy.on_fill(self._ctx, fill)  # type: ignore[union-attr]

    # --- internals ---------------------------------------------------------------------------------

    def _higher_frame(self, name: str) -> CandleFrame:
        builder = self._builders.get(name)
        if builder is None:
            raise StrategyDefinitionError(f"higher timeframe {name!r} was not declared in informative()")
        return builder.frame()

    def _decide_vector(self) -> list[Intent]:
        frame = self._window.frame()
        data = StrategyData(frame, {name: b.frame() for name, b in self._builders.items()})
        decisions = self.strategy.decide(data)  # type: ignore[union-attr]
        check_decisions(decisions, len(frame), self.strategy)
        row = len(frame) - 1
        if decisions.exit[row]:
            kind, reason = "exit", decisions.exit_reason
        elif decisions.enter_long[row]:
            kind, reason = "enter_long", decisions.enter_reason
        else:
            return []
        return [intent_on(frame, row, self.symbol, kind, reason)]

    def _run_handler(self, *, warming_up: bool) -> list[Intent]:
        ctx = self._ctx
        frame = self._window.frame()
        ctx.at(frame, len(frame) - 1, self._higher_frame if self._builders else None)
        ctx.warming_up = warming_up
        self.strategy.on_candle(ctx)  # type: ignore[union-attr]
        return [] if warming_up else list(ctx.intents)

    def _correct(self, bar: Bar) -> None:
        row = self._window.find(bar.ts_start)
        if row < 0:
            return  # older than the window: nothing here depends on it any more
        self._window.replace(row, bar)
        frame = self._window.frame()
        for builder in self._builders.values():
            start = builder.forming_start()
            if start is not None and builder.timeframe.bucket_start(bar.ts_start) == start and frame.ts_start[0] <= start:
                first = int(np.searchsorted(frame.ts_start, start))
                builder.rebuild_forming([frame.bar(i) for i in range(first, len(frame))])

    def _accept_stream_higher(self, builder: HigherTimeframeBuilder, bar: Bar) -> None:
        """A stream candle of a higher bucket not held closed here: taken when it has closed by now."""
        newest_end = self.timeframe.bucket_end(self.newest_ts_start) if self.newest_ts_start is not None else None
        forming = builder.forming_start()
        if newest_end is not None and bar.ts_end <= newest_end and forming != bar.ts_start:
            builder.seed([bar], newest_end)


def check_decisions(decisions: Decisions, rows: int, strategy: Strategy) -> None:
    """``decide`` must return boolean columns as long as its input."""
    for name in ("enter_long", "exit"):
        column = getattr(decisions, name)
        if not isinstance(column, np.ndarray) or column.dtype != np.bool_ or column.shape != (rows,):
            raise StrategyDefinitionError(
                f"{strategy.name or type(strategy).__name__}.decide must return a boolean array of {rows} rows "
                f"for {name}, got {getattr(column, 'dtype', type(column).__name__)} {getattr(column, 'shape', '')}")
