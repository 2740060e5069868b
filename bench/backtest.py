"""Backtest speed: one year of 1m candles through ``sma_cross`` with fees and slippage.

One seeded random walk of 525,600 1m candles (prices on a 0.01 grid), ``sma_cross`` with its
default parameters (fast 10, slow 30: the most trades, so the most exact fills), taker fee
10 bps, slippage 2 bps, 10,000 USDT, all cash per entry. Measured in one run, one core:

1. ``backtest_sma_cross_1y_1m``: ``Backtest(...)`` plus ``run`` (the indicator cache cold),
   best of 5, wall and CPU time and candles/s (the development box is shared by several
   people: the process's CPU time is its one-core cost when the wall clock is not). Target:
   < 0.5 s, >= 1,000,000 candles/s. Then a second run with
   other parameters on the same prepared candles (an optimiser's trial) and its parts:
   decisions (indicators and crossings), exact fills, equity and metrics.
2. numba with and without: the window mean (an exact rolling sum compiled with numba, against
   numpy's window sums and a Python loop over ``math.fsum`` on a slice); the order loop (the
   engine's direct execution over signal candles only, against a numba loop over every
   candle in floats and a plain Python loop over every candle).
3. The live runner's cost per candle (``LiveRunner.on_candle``, sma_cross) and an event
   strategy (``dca``) through the engine, candles/s.
4. Baseline, same candles, same run: backtesting.py (0.6, ``FractionalBacktest`` in 1e-8 units,
   commission 10 bps, spread 2 bps) running the same rule (design.md's crossover, its own
   pandas rolling means). Its seconds and candles/s, and both trade lists compared: how many
   trades agree on entry and exit times, and the differences explained on stderr.

Prints JSON lines ``{"name", "value", "unit", "baseline"}``; progress and explanations go to
stderr. Run: ``make bench`` or ``.venv/bin/python bench/backtest.py [--candles N]``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from decimal import Decimal
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, log  # noqa: E402

YEAR_OF_MINUTES = 525_600
T0 = 1_735_689_600_000_000_000  # 2025-01-01 00:00 UTC
MINUTE = 60_000_000_000
FEE = Decimal("0.001")
SLIPPAGE_BPS = Decimal(2)
CASH = Decimal(10_000)
TARGET_S = 0.5


def candles(n: int):
    from tradeflow.timeframes import timeframe
    from tradeflow_trading.strategy import CandleFrame

    rng = np.random.default_rng(20260101)
    close = np.round(30_000 * np.exp(np.cumsum(rng.normal(0, 0.0007, n))), 2)
    opens = np.r_[close[0], np.round(close[:-1] * (1 + rng.normal(0, 0.0002, n - 1)), 2)]
    high = np.round(np.maximum(opens, close) * (1 + rng.random(n) * 0.0005), 2)
    low = np.round(np.minimum(opens, close) * (1 - rng.random(n) * 0.0005), 2)
    volume = np.round(rng.random(n) * 5, 4)
    return CandleFrame.from_arrays(timeframe("1m"), T0 + np.arange(n) * MINUTE, opens, high, low, close, volume)


def best_of(runs: int, work):
    """(best wall seconds, result); the best CPU seconds of the same runs go to ``best_of.cpu``."""
    best, best_cpu, result = math.inf, math.inf, None
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        result = work()
        best = min(best, time.perf_counter() - started)
        best_cpu = min(best_cpu, time.process_time() - started_cpu)
    best_of.cpu = best_cpu
    return best, result


def engine(frame):
    from tradeflow_backtest.data import Market
    from tradeflow_backtest.engine import Backtest
    from tradeflow_trading.fees import FeeSchedule
    from tradeflow_trading.fills import FillRule

    return Backtest(Market("BTC/USDT", frame), timeframe="1m", cash=CASH,
                    fill_rule=FillRule(FeeSchedule(FEE, FEE), slippage_bps=SLIPPAGE_BPS))


def measure_engine(frame):
    from tradeflow_trading.strategies.sma_cross import SmaCross

    n = len(frame)
    engine(frame.rows(0, 2000)).run(SmaCross)  # compile the numba kernels (cached on disk after the first run)
    seconds, result = best_of(5, lambda: engine(frame).run(SmaCross))
    cpu = best_of.cpu
    log(f"sma_cross(10, 30): {len(result.trades)} trades, {len(result.unfilled)} unfilled, "
        f"total return {result.metrics.total_return:.4f}; wall {seconds:.3f} s, CPU {cpu:.3f} s "
        f"(on a shared box the CPU time is the one-core cost)")
    emit("backtest_sma_cross_1y_1m_ms", seconds * 1000, "ms", TARGET_S * 1000)
    emit("backtest_sma_cross_1y_1m_cpu_ms", cpu * 1000, "ms", TARGET_S * 1000)
    emit("backtest_sma_cross_1y_1m_candles_per_s", n / seconds, "candles/s", 1_000_000)
    emit("backtest_sma_cross_1y_1m_candles_per_cpu_s", n / cpu, "candles/s", 1_000_000)
    emit("backtest_sma_cross_1y_1m_trades", len(result.trades), "trades")
    if min(seconds, cpu) > TARGET_S:
        log(f"NOTE: {min(seconds, cpu):.3f} s misses the {TARGET_S} s target")

    prepared = engine(frame)
    prepared.run(SmaCross, {"fast": 12, "slow": 40})
    best_of(3, lambda: prepared.run(SmaCross, {"fast": 12, "slow": 40}))
    emit("backtest_sma_cross_trial_prepared_cpu_ms", best_of.cpu * 1000, "ms")
    parts(frame, prepared)
    return result


def parts(frame, prepared) -> None:
    """Where a run's time goes: decisions, exact fills, equity and metrics."""
    from tradeflow_trading.strategies.sma_cross import SmaCross
    from tradeflow_trading.strategy.parity import decide_history

    strategy = SmaCross()
    best_of(3, lambda: decide_history(strategy, frame))
    decisions = best_of.cpu
    _, result = best_of(3, lambda: engine(frame).run(SmaCross))
    whole = best_of.cpu
    no_changes = [(np.zeros(0, dtype=np.int64), np.zeros(0), {"BTC/USDT": np.zeros(0)})]
    best_of(3, lambda: prepared._result(result.trades, [], result.final_cash, {}, no_changes))
    results = best_of.cpu
    emit("backtest_part_decisions_cpu_ms", decisions * 1000, "ms")
    emit("backtest_part_equity_and_metrics_cpu_ms", results * 1000, "ms")
    emit("backtest_part_exact_fills_cpu_ms", max(whole - decisions - results, 0.0) * 1000, "ms")
    fills = 2 * len(result.trades) + len(result.unfilled)
    log(f"a run: decisions {decisions * 1000:.0f} ms, {fills} fills in Decimal about "
        f"{max(whole - decisions - results, 0) / max(fills, 1) * 1e6:.1f} us each, equity and metrics {results * 1000:.0f} ms")


def measure_numba(frame) -> None:
    """numba where it pays: the window mean, and the order loop."""
    from numba import njit
    from numpy.lib.stride_tricks import sliding_window_view
    from tradeflow_trading.strategy.indicators import crossed_above, crossed_below, sma

    close = frame.close
    best_of(3, lambda: sma(close, 30))
    compiled = best_of.cpu
    best_of(3, lambda: sliding_window_view(close, 30).sum(axis=1) / 30)
    numpy_sums = best_of.cpu
    part = close[:20_000]
    best_of(1, lambda: [math.fsum(part[t - 29:t + 1]) / 30 for t in range(29, part.shape[0])])
    python = best_of.cpu * close.shape[0] / part.shape[0]
    emit("sma30_1y_numba_cpu_ms", compiled * 1000, "ms", numpy_sums * 1000)
    emit("sma30_1y_python_fsum_cpu_ms", python * 1000, "ms", compiled * 1000)

    fast, slow = sma(close, 10), sma(close, 30)
    enter, leave = crossed_above(fast, slow), crossed_below(fast, slow)
    opens = frame.open

    @njit(cache=True)
    def every_candle_in_floats(enter, leave, opens, cash, fee, slip):
        held = 0.0
        for t in range(enter.shape[0] - 1):
            if held > 0.0 and leave[t]:
                price = opens[t + 1] * (1 - slip)
                cash += held * price * (1 - fee)
                held = 0.0
            elif held == 0.0 and enter[t] and not leave[t]:
                price = opens[t + 1] * (1 + slip)
                held = math.floor(cash / (price * (1 + fee)) * 1e8) / 1e8
                cash -= held * price * (1 + fee)
        return cash

    def every_candle_in_python():
        cash, held = 10_000.0, 0.0
        for t in range(enter.shape[0] - 1):
            if held > 0.0 and leave[t]:
                cash += held * opens[t + 1] * 0.9998 * 0.999
                held = 0.0
            elif held == 0.0 and enter[t] and not leave[t]:
                price = opens[t + 1] * 1.0002
                held = math.floor(cash / (price * 1.001) * 1e8) / 1e8
                cash -= held * price * 1.001
        return cash

    every_candle_in_floats(enter[:100], leave[:100], opens[:100], 10_000.0, 0.001, 0.0002)
    best_of(3, lambda: every_candle_in_floats(enter, leave, opens, 10_000.0, 0.001, 0.0002))
    emit("order_loop_numba_floats_every_candle_cpu_ms", best_of.cpu * 1000, "ms")
    best_of(1, every_candle_in_python)
    emit("order_loop_python_every_candle_cpu_ms", best_of.cpu * 1000, "ms")


def measure_live_and_events(frame) -> None:
    from tradeflow_trading.strategies.dca import Dca
    from tradeflow_trading.strategies.sma_cross import SmaCross
    from tradeflow_trading.strategy import LiveRunner
    from tradeflow_trading.strategy.parity import frame_candles

    part = frame.rows(0, 20_000)
    messages = frame_candles(part, "bench", "BTC/USDT")
    runner = LiveRunner(SmaCross(), exchange="bench", symbol="BTC/USDT", timeframe="1m")
    runner.warm_up(messages[:100])
    best_of(1, lambda: [runner.on_candle(candle) for candle in messages[100:]])
    emit("sdk_live_sma_cross_cpu_us_per_candle", best_of.cpu / (len(messages) - 100) * 1e6, "us")

    best_of(1, lambda: engine(frame).run(Dca, {"every": 60, "amount": 10.0}))
    emit("backtest_dca_event_strategy_1y_1m_candles_per_cpu_s", len(frame) / best_of.cpu, "candles/s")


def measure_backtesting_py(frame, ours) -> None:
    import pandas as pd
    from backtesting import Strategy
    from backtesting.lib import FractionalBacktest

    data = pd.DataFrame({"Open": frame.open, "High": frame.high, "Low": frame.low, "Close": frame.close,
                         "Volume": frame.volume}, index=pd.to_datetime(frame.ts_start, utc=True).tz_localize(None))

    class DesignSmaCross(Strategy):
        fast, slow = 10, 30

        def init(self):
            self.f = self.I(lambda c: pd.Series(c).rolling(self.fast).mean(), self.data.Close)
            self.s = self.I(lambda c: pd.Series(c).rolling(self.slow).mean(), self.data.Close)

        def next(self):
            f, s = self.f, self.s
            if len(f) < 2:
                return
            up = f[-1] > s[-1] and f[-2] <= s[-2]
            down = f[-1] < s[-1] and f[-2] >= s[-2]
            if down and self.position:
                self.position.close()
            elif up and not down and not self.position:
                self.buy()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = FractionalBacktest(data, DesignSmaCross, cash=float(CASH), commission=float(FEE),
                                spread=float(SLIPPAGE_BPS) / 10_000, fractional_unit=1e-8, finalize_trades=False)
        seconds, stats = best_of(1, bt.run)
    emit("backtesting_py_sma_cross_1y_1m_cpu_s", best_of.cpu, "s")
    emit("backtesting_py_sma_cross_1y_1m_candles_per_cpu_s", len(frame) / best_of.cpu, "candles/s")
    log(f"backtesting.py: wall {seconds:.1f} s, CPU {best_of.cpu:.1f} s")
    compare(ours, stats["_trades"], frame)


def compare(ours, theirs, frame) -> None:
    """Both trade lists side by side: times first, then prices and quantities."""
    theirs_times = list(zip((t.value for t in theirs["EntryTime"]), (t.value for t in theirs["ExitTime"]),
                            strict=True))
    ours_times = [(t.entry_ts, t.exit_ts) for t in ours.trades]
    same_times = set(ours_times) & set(theirs_times)
    emit("backtest_vs_backtesting_py_trades_same_times", len(same_times), "trades", len(theirs_times))
    log(f"trades: ours {len(ours_times)}, backtesting.py {len(theirs_times)}, same entry and exit time "
        f"{len(same_times)}")
    by_time = {(t.value, u.value): row for row, t, u in zip(theirs.index, theirs["EntryTime"], theirs["ExitTime"],
                                                            strict=True)}
    entry_diff = exit_diff = 0.0
    quantity_diffs = []
    for trade in ours.trades:
        row = by_time.get((trade.entry_ts, trade.exit_ts))
        if row is None:
            continue
        theirs_row = theirs.loc[row]
        entry_diff = max(entry_diff, abs(float(trade.entry_price) / theirs_row["EntryPrice"] - 1))
        exit_diff = max(exit_diff, abs(float(trade.exit_price) / (theirs_row["ExitPrice"] * (1 - float(SLIPPAGE_BPS) / 1e4)) - 1))
        quantity_diffs.append(abs(float(trade.quantity) / theirs_row["Size"] - 1))
    quantity_diffs.sort()
    median = quantity_diffs[len(quantity_diffs) // 2] if quantity_diffs else 0.0
    first_thousand = max(quantity_diffs[:1000]) if quantity_diffs else 0.0
    log(f"on trades at the same times, largest relative differences: entry price {entry_diff:.2e}, exit price "
        f"(theirs moved by our slippage) {exit_diff:.2e}; quantity: median {median:.2e}, largest over the "
        f"first 1,000 trades {first_thousand:.2e} (later ones are a few 1e-8 units, once fees have eaten the cash)")
    emit("backtest_vs_backtesting_py_quantity_median_rel_diff_ppm", median * 1e6, "ppm")
    log("why they differ: backtesting.py applies the spread to entries only (it closes at the raw open), so "
        "our exit prices are lower by the 2 bps slippage; it sizes by cash // (price x (1 + spread) + price x "
        "commission) in whole 1e-8 units while ADR 0015 spends cash / (slipped price x (1 + fee)), so quantities "
        "and then the cash drift apart in the last digits; its rolling means are pandas' running sums over prices "
        "scaled by 1e-8, ours the exact window means, so a crossing that hinges on a tie (prices on a 0.01 grid) "
        "can fall on either side; and its orders are cancelled by 'insufficient margin' slightly differently "
        "once fees have eaten the cash.")
    only_ours = sorted(set(ours_times) - set(theirs_times))[:3]
    only_theirs = sorted(set(theirs_times) - set(ours_times))[:3]
    if only_ours or only_theirs:
        first = min(only_ours[:1] + only_theirs[:1])
        row = int(np.searchsorted(frame.ts_start, first[0])) - 1
        log(f"first trade in one list only: entry at candle {row + 1} (signal candle {row}); "
            f"only ours {only_ours}, only theirs {only_theirs}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candles", type=int, default=YEAR_OF_MINUTES)
    parser.add_argument("--no-baseline", action="store_true", help="skip backtesting.py (it takes about a minute)")
    args = parser.parse_args()
    frame = candles(args.candles)
    log(f"{len(frame)} candles of 1m, sma_cross(10, 30), fee {FEE}, slippage {SLIPPAGE_BPS} bps")
    ours = measure_engine(frame)
    measure_numba(frame)
    measure_live_and_events(frame)
    if not args.no_baseline:
        measure_backtesting_py(frame, ours)


if __name__ == "__main__":
    main()
