"""The backtest engine: SDK strategies over candle history, through the shared fill rule.

    bt = Backtest(Market("BTC/USDT", read_candles_csv("btc.csv", timeframe("1m"))), timeframe="1m",
                  cash=Decimal(10_000), fill_rule=FillRule(FeeSchedule(Decimal("0.001"), Decimal("0.001")),
                                                           slippage_bps=Decimal(2)))
    result = bt.run(SmaCross, {"fast": 10, "slow": 30})
    print(json.dumps(result.to_json()))

A :class:`Backtest` holds prepared candles (columns, higher timeframes cut once, a bounded
cache of indicator columns shared by runs) and may be run many times with other parameters:
an optimiser's trial costs one ``run`` (docs/adr/0017 has the figures).

How a run goes (design.md, "Fills"; ADR 0015):

- Decisions are taken on closed candles: a vectorised strategy's over the whole history at
  once, an event strategy's candle by candle; a higher-timeframe candle is visible from the
  base candle whose end reaches its end.
- An intent on candle t becomes an order filled at the open of the market's next candle
  (after a gap in the data, the next candle there is), moved by the slippage, with the taker
  fee; entries without a quantity buy with all available cash by default (a quote-sized
  market buy). An intent on a market's **last candle has no next candle**: it is not filled
  and is reported in ``result.unfilled`` with reason ``no_next_candle``; a position still open
  at the end stays open (in ``result.positions``, valued at the last close in the equity
  curve and the metrics), it is not sold at a made-up price.
- Several markets run on one account (one cash balance): their candles are merged by time;
  at each time, fills at the opens come first (markets in the order given), then decisions.

Two executions of these rules give the same trades (``tests/unit/test_backtest_engine.py``
checks them against each other):

- the **general** one: every order, fill, position and balance through the shared domain
  objects (:class:`SimulatedBroker`); event strategies, several markets.
- the **direct** one, for a vectorised strategy on one market (the optimiser's case): only the
  candles where something happens are visited, and each fill is computed by the same
  :meth:`FillRule.market_fill` in Decimal, the cash carried exactly from fill to fill.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import numpy as np
from tradeflow.timeframes import Timeframe
from tradeflow.timeframes import timeframe as timeframe_named
from tradeflow_trading.fees import FeeSchedule
from tradeflow_trading.fills import FillRule
from tradeflow_trading.money import ZERO, mul, quantize_price, to_decimal
from tradeflow_trading.positions import Position, split_symbol
from tradeflow_trading.sizing import (
    ALL_CASH,
    MONEY_METHODS,
    FixedQuote,
    FractionOfCash,
    FractionOfEquity,
)
from tradeflow_trading.strategy.base import EventStrategy, Strategy, StrategyDefinitionError, VectorStrategy
from tradeflow_trading.strategy.candles import CandleFrame, resample, visible_counts
from tradeflow_trading.strategy.context import StrategyContext
from tradeflow_trading.strategy.intents import Intent, intent_on
from tradeflow_trading.strategy.parity import decide_history

from tradeflow_backtest import metrics as metrics_
from tradeflow_backtest.broker import SimulatedBroker, sized_entry
from tradeflow_backtest.data import Market
from tradeflow_backtest.result import BacktestResult, Trade, Unfilled

DEFAULT_CASH = Decimal(10_000)
PROGRESS_EVERY = 10_000  # candle-loop steps between progress reports
DEFAULT_FEES = FeeSchedule(maker=Decimal("0.001"), taker=Decimal("0.001"))


class _BoundedMemo(OrderedDict):
    """Indicator columns shared by runs on the same candles, least recently used dropped first."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def __getitem__(self, key: Hashable) -> Any:
        value = super().__getitem__(key)
        self.move_to_end(key)
        return value

    def __setitem__(self, key: Hashable, value: Any) -> None:
        super().__setitem__(key, value)
        while len(self) > self.size:
            self.popitem(last=False)


@dataclass(slots=True)
class _Prepared:
    """One market's candles as the engine reads them, kept across runs."""

    market: Market
    frame: CandleFrame
    higher: dict[str, CandleFrame]
    memo: _BoundedMemo

    def higher_frames(self, strategy: Strategy, base: str) -> dict[str, CandleFrame]:
        frames = {}
        for tf in strategy.higher_timeframes(base):
            if tf.name not in self.higher:
                given = self.market.higher.get(tf.name)
                self.higher[tf.name] = given if given is not None else resample(self.frame, tf)
            frames[tf.name] = self.higher[tf.name]
        return frames


class Backtest:
    """Prepared candles of one or more markets on one account; :meth:`run` many times."""

    def __init__(self, markets: Market | Sequence[Market], *, timeframe: str | Timeframe,
                 cash: Decimal = DEFAULT_CASH, fill_rule: FillRule | None = None,
                 sizing: FixedQuote | FractionOfCash | FractionOfEquity | None = None,
                 exchange: str = "backtest", account_id: str = "backtest", instance_id: str = "backtest",
                 memo_size: int = 32) -> None:
        markets = [markets] if isinstance(markets, Market) else list(markets)
        if not markets:
            raise ValueError("a backtest needs at least one market")
        self.timeframe = timeframe if isinstance(timeframe, Timeframe) else timeframe_named(timeframe)
        quotes = {split_symbol(m.symbol)[1] for m in markets}
        if len(quotes) != 1:
            raise ValueError(f"all markets of one account must share a quote currency, got {', '.join(sorted(quotes))}")
        symbols = [m.symbol for m in markets]
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"a market appears twice: {symbols}")
        for market in markets:
            if market.candles.timeframe != self.timeframe.name:
                raise ValueError(f"{market.symbol}: candles of {market.candles.timeframe}, expected {self.timeframe.name}")
            if len(market.candles) == 0:
                raise ValueError(f"{market.symbol}: no candles")
        self.quote_currency = quotes.pop()
        self.cash = to_decimal(cash)
        if self.cash <= 0:
            raise ValueError(f"cash must be positive, got {self.cash}")
        self.fill_rule = fill_rule or FillRule(fees=DEFAULT_FEES)
        self.sizing = sizing or ALL_CASH
        if not isinstance(self.sizing, MONEY_METHODS):
            # volatility_target and kelly need ATR / closed-trade statistics the engine does not keep yet
            raise ValueError(f"sizing {self.sizing.method!r} is not supported by the backtest: use fixed_quote, "
                             "fraction_of_cash or fraction_of_equity")
        self.exchange, self.account_id, self.instance_id = exchange, account_id, instance_id
        self._markets = [_Prepared(m, m.candles, {}, _BoundedMemo(memo_size)) for m in markets]
        self._timeline = _sorted_unique(np.concatenate([m.frame.ts_start for m in self._markets]))
        self._rows = []  # per market: its row at each timeline position, -1 where it has no candle
        for prepared in self._markets:
            rows = np.full(self._timeline.shape[0], -1, dtype=np.int64)
            rows[np.searchsorted(self._timeline, prepared.frame.ts_start)] = np.arange(len(prepared.frame))
            self._rows.append(rows)

    # --- running -----------------------------------------------------------------------------------

    def run(self, strategy_type: type[Strategy], params: Mapping[str, Any] | None = None, *,
            execution: Literal["auto", "general"] = "auto",
            progress: Callable[[int, int], None] | None = None) -> BacktestResult:
        """One run of ``strategy_type`` with ``params`` (validated; :class:`ParameterError` names a bad one).

        ``execution="general"`` forces the general execution where the direct one would run
        (to check one against the other). ``progress(done, total)`` is told how far the general
        execution's candle loop is, every :data:`PROGRESS_EVERY` steps (the direct one takes
        well under a second a year).
        """
        if not issubclass(strategy_type, VectorStrategy | EventStrategy):
            raise StrategyDefinitionError(f"{strategy_type.__name__} is neither a VectorStrategy nor an EventStrategy")
        validated = strategy_type.validate_params(params)
        if issubclass(strategy_type, VectorStrategy) and len(self._markets) == 1 and execution == "auto":
            return self._run_direct(strategy_type(validated))
        return self._run_general(strategy_type, validated, progress)

    def _run_direct(self, strategy: VectorStrategy) -> BacktestResult:
        prepared = self._markets[0]
        frame, symbol = prepared.frame, prepared.market.symbol
        decisions = decide_history(strategy, frame, prepared.higher_frames(strategy, frame.timeframe), prepared.memo)
        enter, leave = decisions.enter_long, decisions.exit
        rule, last = self.fill_rule, len(frame) - 1
        opens = frame.open
        cash, held = self.cash, ZERO
        entry = None  # (fill row, price, quantity, fee) of the open trade
        trades: list[Trade] = []
        unfilled: list[Unfilled] = []
        changes: list[tuple[int, Decimal, Decimal]] = []  # (row, cash after, quantity after)
        for row in np.flatnonzero(enter | leave).tolist():
            if held:
                if not leave[row]:
                    continue
                if row == last:
                    unfilled.append(Unfilled(intent_on(frame, row, symbol, "exit", decisions.exit_reason),
                                             "no_next_candle"))
                    continue
                fill = rule.market_fill("sell", to_decimal(float(opens[row + 1])), quantity=held)
                cash += mul(fill.quantity, fill.price) - fill.fee
                entry_row, entry_price, quantity, entry_fee = entry
                fees = entry_fee + fill.fee
                trades.append(Trade(symbol, int(frame.ts_start[entry_row]), entry_price, int(frame.ts_start[row + 1]),
                                    fill.price, quantity, mul(fill.price - entry_price, quantity) - fees, fees))
                held, entry = ZERO, None
                changes.append((row + 1, cash, held))
            elif enter[row] and not leave[row]:
                intent_reason = decisions.enter_reason
                if row == last:
                    unfilled.append(Unfilled(intent_on(frame, row, symbol, "enter_long", intent_reason),
                                             "no_next_candle"))
                    continue
                quote, refused = sized_entry(self.sizing, rule, cash=cash, equity=cash,  # flat: equity is cash
                                             price=to_decimal(float(frame.close[row])))
                fill = rule.market_fill("buy", to_decimal(float(opens[row + 1])), quote_quantity=quote) \
                    if refused is None else None
                if fill is None:  # refused, or the price moved below one quantity step by the fill
                    unfilled.append(Unfilled(intent_on(frame, row, symbol, "enter_long", intent_reason),
                                             refused or "insufficient_cash"))
                    continue
                cash -= mul(fill.quantity, fill.price) + fill.fee
                held = fill.quantity
                entry = (row + 1, fill.price, fill.quantity, fill.fee)
                changes.append((row + 1, cash, held))
        positions = {}
        if held:
            position = Position(self.account_id, self.exchange, symbol, held, quantize_price(entry[1]),
                                opened_at=int(frame.ts_start[entry[0]]), fills=1)
            positions[symbol] = position
        rows = np.array([c[0] for c in changes], dtype=np.int64)
        cash_after = np.array([float(c[1]) for c in changes])
        held_after = np.array([float(c[2]) for c in changes])
        return self._result(trades, unfilled, cash, positions, [(rows, cash_after, {symbol: held_after})])

    def _run_general(self, strategy_type: type[Strategy], params: Mapping[str, Any],
                     progress: Callable[[int, int], None] | None = None) -> BacktestResult:
        broker = SimulatedBroker(account_id=self.account_id, exchange=self.exchange, quote_currency=self.quote_currency,
                                 cash=self.cash, fill_rule=self.fill_rule, sizing=self.sizing,
                                 instance_id=self.instance_id)
        runs = [_MarketRun(self, prepared, rows, strategy_type(params))
                for prepared, rows in zip(self._markets, self._rows, strict=True)]
        if all(run.decisions is not None for run in runs):
            steps = _sorted_unique(np.concatenate([run.steps() for run in runs]))  # only where something happens
        else:
            steps = np.arange(self._timeline.shape[0])
        change_steps: list[int] = []
        change_cash: list[float] = []
        change_held: dict[str, list[float]] = {run.symbol: [] for run in runs}
        total = int(steps.shape[0])
        for done, step in enumerate(steps.tolist()):
            if progress is not None and done % PROGRESS_EVERY == 0:
                progress(done, total)
            filled = False
            for run in runs:
                row = run.rows[step]
                if row >= 0 and run.open_fills(broker, row):
                    filled = True
            for run in runs:
                row = run.rows[step]
                if row < 0:
                    continue
                for intent in run.intents(broker, row):
                    if row == run.last:
                        if broker.acts_on(intent):
                            broker.unfilled.append(Unfilled(intent, "no_next_candle"))
                    else:
                        broker.decide(intent, equity=self._equity(broker, runs, step))
            if filled:
                change_steps.append(step)
                change_cash.append(float(broker.cash))
                for run in runs:
                    change_held[run.symbol].append(float(broker.position(run.symbol).quantity))
        if progress is not None:
            progress(total, total)
        held_positions = {symbol: p for symbol, p in broker.positions.items() if p.quantity != 0}
        changes = [(np.array(change_steps, dtype=np.int64), np.array(change_cash),
                    {symbol: np.array(values) for symbol, values in change_held.items()})]
        return self._result(broker.trades, broker.unfilled, broker.cash, held_positions, changes, on_timeline=True)

    def _equity(self, broker: SimulatedBroker, runs: list[_MarketRun], step: int) -> Decimal:
        """Cash plus every position at its market's newest close, at this step (for sizing)."""
        equity = broker.cash
        for run in runs:
            quantity = broker.position(run.symbol).quantity
            if quantity:
                row = run.newest_row(step)
                equity += mul(quantity, to_decimal(float(run.frame.close[row])))
        return equity

    # --- results ---------------------------------------------------------------------------------

    def _result(self, trades: list[Trade], unfilled: list[Unfilled], cash: Decimal, positions: dict[str, Position],
                changes: list[tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]], *,
                on_timeline: bool = False) -> BacktestResult:
        """Equity per step (cash and positions after the last change at or before it, at the closes)."""
        steps, cash_after, held_after = changes[0]
        if on_timeline:
            points = self._timeline.shape[0]
            ends = self._timeline + self.timeframe.length_ns
        else:
            points = len(self._markets[0].frame)
            ends = self._markets[0].frame.ts_end
        latest = np.searchsorted(steps, np.arange(points), side="right") - 1  # newest change at or before each step
        known = latest >= 0
        equity = np.full(points, float(self.cash))
        equity[known] = cash_after[latest[known]]
        exposed = np.zeros(points, dtype=bool)
        for prepared, rows in zip(self._markets, self._rows, strict=True):
            symbol = prepared.market.symbol
            held = np.zeros(points)
            held[known] = held_after[symbol][latest[known]]
            if on_timeline:
                have = np.maximum.accumulate(np.where(rows >= 0, np.arange(points), -1))  # newest own candle
                closes = np.where(have >= 0, prepared.frame.close[rows[np.maximum(have, 0)]], 0.0)
            else:
                closes = prepared.frame.close
            equity += held * closes
            exposed |= held != 0
        computed = metrics_.compute(
            equity, float(self.cash), first_start_ns=int(self._timeline[0]), ends_ns=ends,
            candle_length_ns=self.timeframe.length_ns, pnls=[t.pnl for t in trades], exposed=exposed)
        return BacktestResult(trades=trades, metrics=computed, equity=equity, equity_ts=np.asarray(ends, dtype=np.int64),
                              initial_cash=self.cash, final_cash=cash, positions=positions, unfilled=unfilled)


class _MarketRun:
    """One market during one general run: its strategy instance and how it is driven."""

    def __init__(self, backtest: Backtest, prepared: _Prepared, rows: np.ndarray, strategy: Strategy) -> None:
        self.symbol = prepared.market.symbol
        self.frame = prepared.frame
        self.rows = rows
        self.row_steps = np.flatnonzero(rows >= 0)
        self.last = len(self.frame) - 1
        self.strategy = strategy
        higher = prepared.higher_frames(strategy, self.frame.timeframe)
        self.decisions = None
        self.ctx: StrategyContext | None = None
        if isinstance(strategy, VectorStrategy):
            self.decisions = decide_history(strategy, self.frame, higher, prepared.memo)
        else:
            needed = {tf.name: count for tf, count in strategy.higher_timeframes(self.frame.timeframe).items()}
            self._higher = {name: (frame, visible_counts(self.frame.ts_end, frame.ts_end), needed[name])
                            for name, frame in higher.items()}
            self._row = -1
            self.ctx = StrategyContext(symbol=self.symbol, timeframe=self.frame.timeframe, params=strategy.params,
                                       window=max(1, int(strategy.warmup())),
                                       position=Position(backtest.account_id, backtest.exchange, self.symbol),
                                       logger=_logger(strategy))

    def steps(self) -> np.ndarray:
        """Timeline positions where this market decides or fills (vectorised strategies)."""
        signalled = np.flatnonzero(self.decisions.enter_long | self.decisions.exit)
        fills = signalled[signalled < self.last] + 1
        return self.row_steps[np.concatenate((signalled, fills))]

    def newest_row(self, step: int) -> int:
        return int(self.rows[self.row_steps[np.searchsorted(self.row_steps, step, side="right") - 1]])

    def open_fills(self, broker: SimulatedBroker, row: int) -> bool:
        frame = self.frame
        fills = broker.on_candle_open(self.symbol, int(frame.ts_start[row]), float(frame.open[row]),
                                      float(frame.high[row]), float(frame.low[row]))
        if self.ctx is not None:
            self.ctx.position = broker.position(self.symbol)
            for fill in fills:
                self.strategy.on_fill(self.ctx, fill)  # type: ignore[union-attr]
        return bool(fills)

    def intents(self, broker: SimulatedBroker, row: int) -> list[Intent]:
        if self.decisions is not None:
            d = self.decisions
            if d.exit[row]:
                return [intent_on(self.frame, row, self.symbol, "exit", d.exit_reason)]
            if d.enter_long[row]:
                return [intent_on(self.frame, row, self.symbol, "enter_long", d.enter_reason)]
            return []
        ctx = self.ctx
        self._row = row
        ctx.at(self.frame, row, self._higher_frame if self._higher else None)
        ctx.position = broker.position(self.symbol)
        self.strategy.on_candle(ctx)  # type: ignore[union-attr]
        return ctx.intents

    def _higher_frame(self, name: str) -> CandleFrame:
        try:
            frame, counts, needed = self._higher[name]
        except KeyError:
            raise StrategyDefinitionError(f"higher timeframe {name!r} was not declared in informative()") from None
        visible = int(counts[self._row])
        return frame.rows(max(0, visible - needed), visible)


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique by sorting (numpy 2's hash-based unique takes seconds on a year of minutes)."""
    ordered = np.sort(values, kind="stable")
    if ordered.shape[0] < 2:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def _logger(strategy: Strategy) -> logging.Logger:
    return logging.getLogger(f"tradeflow.strategy.{strategy.name or type(strategy).__name__}")
