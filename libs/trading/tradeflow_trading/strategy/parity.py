"""Decisions over a whole history, and the checks that they equal live and ignore the future.

- :func:`decide_history`: a vectorised strategy's decisions on every candle of a history, its
  higher timeframes cut from the same candles (what the backtest runs).
- :func:`history_intents`: those decisions as intents, row by row.
- :func:`live_intents`: the same candles fed one at a time through :class:`LiveRunner`.
- :func:`compare_live`: the two, side by side; empty when they agree (the SDK's promise for
  a strategy whose decisions depend on its ``warmup()`` window only).
- :func:`truncation_changes`: decisions that change when later candles are removed (a
  strategy that reads the future); the look-ahead check of ``tradeflow`` builds on it.
"""

from __future__ import annotations

from collections.abc import Hashable, MutableMapping, Sequence
from typing import Any

from tradeflow.messages import Candle

from tradeflow_trading.strategy.base import Decisions, Strategy, StrategyData, VectorStrategy
from tradeflow_trading.strategy.candles import CandleFrame, resample
from tradeflow_trading.strategy.intents import Intent, intent_on
from tradeflow_trading.strategy.runner import LiveRunner, check_decisions


def history_data(strategy: Strategy, frame: CandleFrame, higher: dict[str, CandleFrame] | None = None,
                 memo: MutableMapping[Hashable, Any] | None = None) -> StrategyData:
    """The data ``decide`` reads over a whole history; higher timeframes not given are cut from it."""
    given = higher or {}
    frames = {tf.name: given[tf.name] if tf.name in given else resample(frame, tf)
              for tf in strategy.higher_timeframes(frame.timeframe)}
    return StrategyData(frame, frames, memo)


def decide_history(strategy: VectorStrategy, frame: CandleFrame, higher: dict[str, CandleFrame] | None = None,
                   memo: MutableMapping[Hashable, Any] | None = None) -> Decisions:
    decisions = strategy.decide(history_data(strategy, frame, higher, memo))
    check_decisions(decisions, len(frame), strategy)
    return decisions


def history_intents(strategy: VectorStrategy, frame: CandleFrame, symbol: str) -> list[Intent]:
    """Every intent of a vectorised strategy over ``frame`` (a row with both is an exit)."""
    decisions = decide_history(strategy, frame)
    intents = []
    for row in (decisions.enter_long | decisions.exit).nonzero()[0]:
        kind, reason = ("exit", decisions.exit_reason) if decisions.exit[row] else ("enter_long", decisions.enter_reason)
        intents.append(intent_on(frame, int(row), symbol, kind, reason))
    return intents


def frame_candles(frame: CandleFrame, exchange: str, symbol: str) -> list[Candle]:
    """The rows of ``frame`` as candle messages (what the live runner consumes)."""
    return [Candle(exchange=exchange, symbol=symbol, timeframe=frame.timeframe, ts_start=int(frame.ts_start[i]),
                   ts_end=int(frame.ts_end[i]), open=float(frame.open[i]), high=float(frame.high[i]),
                   low=float(frame.low[i]), close=float(frame.close[i]), volume=float(frame.volume[i]), trades=1)
            for i in range(len(frame))]


def live_intents(strategy: Strategy, frame: CandleFrame, symbol: str, *, warm_up: int = 0,
                 exchange: str = "parity", batches: Sequence[int] = ()) -> list[Intent]:
    """Intents of ``frame``'s candles fed to a live runner, one at a time (:meth:`LiveRunner.on_candle`)
    or, with ``batches``, in batches of those sizes in turn (:meth:`LiveRunner.on_candles`); the
    first ``warm_up`` candles go through :meth:`LiveRunner.warm_up` (and decide nothing)."""
    runner = LiveRunner(strategy, exchange=exchange, symbol=symbol, timeframe=frame.timeframe)
    candles = frame_candles(frame, exchange, symbol)
    runner.warm_up(candles[:warm_up])
    intents: list[Intent] = []
    if not batches:
        for candle in candles[warm_up:]:
            intents.extend(runner.on_candle(candle))
        return intents
    start, turn = warm_up, 0
    while start < len(candles):
        size = batches[turn % len(batches)]
        intents.extend(runner.on_candles(candles[start:start + size]))
        start, turn = start + size, turn + 1
    return intents


def compare_live(strategy_type: type[VectorStrategy], params: dict[str, Any] | None, frame: CandleFrame,
                 symbol: str = "BTC/USDT", *, warm_up: int = 0, batches: Sequence[int] = ()) -> list[str]:
    """Differences between the live runner's intents and the whole-history ones, from row
    ``warm_up`` on (each strategy gets a fresh instance); empty when they agree. ``batches``:
    see :func:`live_intents`."""
    history = [i for i in history_intents(strategy_type(params), frame, symbol)
               if warm_up == 0 or i.ts_start > int(frame.ts_start[warm_up - 1])]
    live = live_intents(strategy_type(params), frame, symbol, warm_up=warm_up, batches=batches)
    return _differences(history, live, "history", "live")


def truncation_changes(strategy_type: type[VectorStrategy], params: dict[str, Any] | None, frame: CandleFrame,
                       cuts: Sequence[int], symbol: str = "BTC/USDT") -> list[str]:
    """Intents on candles before each cut that differ when the candles from the cut on are removed."""
    full = history_intents(strategy_type(params), frame, symbol)
    changes: list[str] = []
    for cut in cuts:
        end = int(frame.ts_start[cut]) if cut < len(frame) else None
        before = [i for i in full if end is None or i.ts_start < end]
        truncated = history_intents(strategy_type(params), frame.rows(0, cut), symbol)
        changes.extend(f"cut at row {cut}: {d}" for d in _differences(before, truncated, "full", "truncated"))
    return changes


def _differences(left: list[Intent], right: list[Intent], left_name: str, right_name: str) -> list[str]:
    left_by = {(i.ts_start, i.kind): i for i in left}
    right_by = {(i.ts_start, i.kind): i for i in right}
    out = []
    for key in sorted(set(left_by) | set(right_by)):
        a, b = left_by.get(key), right_by.get(key)
        if a is None or b is None:
            out.append(f"{key[1]} at ts_start {key[0]} only in {left_name if b is None else right_name}")
        elif a != b:
            out.append(f"{key[1]} at ts_start {key[0]} differs: {a} != {b}")
    return out

