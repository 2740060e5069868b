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
- **Batches.** :meth:`LiveRunner.on_candles` takes the candles of this market that arrived
  together (one consumer batch) and answers what :meth:`on_candle` one by one would. A
  vectorised strategy decides a run of consecutive new base candles with one ``decide`` over
  the window extended by the run: its decisions are window-exact, so each row equals the
  decision on that row's own window, and the per-call overhead (numpy, numba dispatch) is paid
  once per run instead of once per candle. Anything else (a correction, a higher-timeframe
  candle from the stream) first decides the run so far, so it changes only later decisions.
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
# Longest run of new candles one batched decide() covers: windows keep this many rows beyond
# warmup(), higher timeframes as many closed candles beyond what the strategy declared.
MAX_RUN = 64


def _bar(candle: Candle) -> Bar:
    return Bar(candle.ts_start, candle.ts_end, candle.open, candle.high, candle.low, candle.close, candle.volume)


class CandleWindow:
    """The newest ``size`` candles of one timeframe in preallocated columns (O(1) amortised append).

    The buffer holds up to ``size + MAX_RUN`` rows, so the rows of a run appended since the
    last decision can be read together with the ``size - 1`` rows before them (:meth:`frame`).
    """

    def __init__(self, timeframe: str, size: int) -> None:
        self.timeframe = timeframe
        self.size = size
        capacity = max(2 * size, size + MAX_RUN, MIN_BUFFER)
        self._columns = {c: np.empty(capacity, dtype=np.int64 if c.startswith("ts") else np.float64) for c in COLUMNS}
        self._column_list = [self._columns[c] for c in COLUMNS]
        self._stop = 0  # rows [max(0, stop - size), stop) are the window

    def __len__(self) -> int:
        return min(self._stop, self.size)

    @property
    def full(self) -> bool:
        """The next append moves rows (only the newest ``size - 1`` are kept then)."""
        return self._stop == self._columns["ts_start"].shape[0]

    def append(self, bar: Bar) -> None:
        columns = self._column_list
        stop = self._stop
        capacity = columns[0].shape[0]
        if stop == capacity:  # move the newest size - 1 rows to the front
            keep = self.size - 1
            for column in columns:
                column[:keep] = column[capacity - keep:capacity]
            stop = keep
        for column, value in zip(columns, bar):  # noqa: B905 - a Bar has exactly the 7 columns
            column[stop] = value
        self._stop = stop + 1

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

    def frame(self, rows: int | None = None) -> CandleFrame:
        """The window (or its newest ``rows`` rows, as many as the buffer holds) as views."""
        stop = self._stop
        first = max(0, stop - (self.size if rows is None else rows))
        return CandleFrame(self.timeframe, *(column[first:stop] for column in self._column_list))


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
        # Closed higher candles beyond the declared count: the first row of a batched run must
        # still see its own newest ``count`` after the run closed more (at most one per candle).
        self._builders = {tf.name: HigherTimeframeBuilder(tf, count + MAX_RUN)
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
        timeframes (oldest first). Nothing is emitted.

        A higher timeframe not given is built from ``candles``. A given one is taken as it is,
        and base candles in buckets after the last given candle build the next ones: give the
        closed higher candles and the base candles from the start of the newest (forming) higher
        bucket, and the forming candle is built from exactly those base candles, never from
        anything stored later (the database's forming candle may hold minutes the stream has not
        delivered yet). A given candle that ends after the newest base candle is taken as the
        forming one."""
        higher = {name: [_bar(c) for c in bars] for name, bars in (higher or {}).items()}
        unknown = set(higher) - set(self._builders)
        if unknown:
            raise ValueError(f"warm-up candles for undeclared timeframes: {', '.join(sorted(unknown))}")
        taken = dict.fromkeys(higher, 0)  # given higher candles already handed to their builder
        given_end = {name: bars[-1].ts_end if bars else None for name, bars in higher.items()}
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
                end = given_end[name]
                if end is None or builder.timeframe.bucket_start(bar.ts_start) >= end:
                    builder.add(bar)  # a bucket after the given candles: built from the base ones
            if self._ctx is not None:
                self._run_handler(warming_up=True)
        newest_end = self.timeframe.bucket_end(self.newest_ts_start) if self.newest_ts_start is not None else 0
        for name, bars in higher.items():
            self._builders[name].seed(bars[taken[name]:], newest_end)

    def on_candle(self, candle: Candle) -> list[Intent]:
        """A candle of this market from the stream: the intents it causes (often none)."""
        self._check_market(candle)
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

    def on_candles(self, candles: Sequence[Candle]) -> list[Intent]:
        """Candles of this market in arrival order (e.g. one consumer batch): the intents that
        :meth:`on_candle` one by one would give, in order. A vectorised strategy decides each
        run of consecutive new candles of its timeframe with one ``decide`` (module docstring)."""
        if self._ctx is not None:  # an event strategy's handler runs once per candle anyway
            intents: list[Intent] = []
            for candle in candles:
                intents += self.on_candle(candle)
            return intents
        intents = []
        run = 0  # new base candles appended and not decided yet
        base = self.timeframe.name
        window = self._window
        builders = self._builders
        for candle in candles:
            self._check_market(candle)
            if candle.timeframe == base and (self.newest_ts_start is None or candle.ts_start > self.newest_ts_start):
                if run and window.full:  # appending would drop rows the run is decided with
                    intents += self._decide_run(run)
                    run = 0
                bar = _bar(candle)
                window.append(bar)
                self.newest_ts_start = bar.ts_start
                for builder in builders.values():
                    builder.add(bar)
                self.candles_decided += 1
                run += 1
                if run == MAX_RUN:
                    intents += self._decide_run(run)
                    run = 0
                continue
            if run:  # a correction or a stream higher candle changes what later candles see only
                intents += self._decide_run(run)
                run = 0
            self.on_candle(candle)  # decides nothing: a correction, a redelivery or a higher candle
        if run:
            intents += self._decide_run(run)
        return intents

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
        frame = builder.frame()  # an event strategy sees the newest closed candles it declared
        return frame.rows(max(0, len(frame) - self._needed[name]), len(frame))

    def _check_market(self, candle: Candle) -> None:
        if candle.symbol != self.symbol or candle.exchange != self.exchange:
            raise ValueError(f"candle of {candle.exchange}:{candle.symbol} given to the runner of "
                             f"{self.exchange}:{self.symbol}")

    def _decide_vector(self) -> list[Intent]:
        return self._decide_run(1)

    def _decide_run(self, run: int) -> list[Intent]:
        """Decide the newest ``run`` rows with one call over their windows (``window + run - 1`` rows)."""
        frame = self._window.frame(self.window + run - 1)
        data = StrategyData(frame, {name: b.frame() for name, b in self._builders.items()})
        decisions = self.strategy.decide(data)  # type: ignore[union-attr]
        rows = len(frame)
        check_decisions(decisions, rows, self.strategy)
        first = rows - run
        exits = decisions.exit[first:]
        entries = decisions.enter_long[first:]
        if not (exits.any() or entries.any()):
            return []
        intents = []
        for offset in np.flatnonzero(exits | entries):
            row = first + int(offset)
            if exits[offset]:
                intents.append(intent_on(frame, row, self.symbol, "exit", decisions.exit_reason))
            else:
                intents.append(intent_on(frame, row, self.symbol, "enter_long", decisions.enter_reason))
        return intents

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
