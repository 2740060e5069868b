"""Every packaged strategy on constructed candles, its signals asserted (row = candle index)."""

from __future__ import annotations

from decimal import Decimal as D

import numpy as np
from tradeflow.timeframes import timeframe
from tradeflow_backtest.data import Market
from tradeflow_backtest.engine import Backtest
from tradeflow_trading.fees import NO_FEES
from tradeflow_trading.fills import FillRule
from tradeflow_trading.strategies.bollinger_reversion import BollingerReversion
from tradeflow_trading.strategies.breakout import Breakout
from tradeflow_trading.strategies.dca import Dca
from tradeflow_trading.strategies.grid import Grid
from tradeflow_trading.strategies.rsi import Rsi
from tradeflow_trading.strategies.sma_cross import SmaCross
from tradeflow_trading.strategies.sma_cross_trend import SmaCrossTrend
from tradeflow_trading.strategy import CandleFrame
from tradeflow_trading.strategy.loader import load_catalog
from tradeflow_trading.strategy.parity import history_intents, live_intents

from tests.strategy_candles import MINUTE, T0, frame_of


def signals(strategy, frame: CandleFrame) -> list[tuple[int, str]]:
    """(row, intent) of every intent over ``frame``; the live runner must give the same ones."""
    history = history_intents(strategy, frame, "BTC/USDT")
    assert live_intents(type(strategy)(strategy.params), frame, "BTC/USDT") == history
    rows = {int(ts): i for i, ts in enumerate(frame.ts_start)}
    return [(rows[intent.ts_start], intent.kind) for intent in history]


def test_sma_cross_is_designs_definition_including_ties_and_the_first_possible_candle():
    # fast 2, slow 4. Row 5: F = 11.5 > S = 10.75 after F(4) = S(4) = 10 (a tie counts as <=).
    # Row 7: F = 10 < S = 10.75 after F(6) = 13 >= S(6) = 11.5.
    frame = frame_of([10, 10, 10, 10, 10, 13, 13, 7, 7, 7])
    assert signals(SmaCross({"fast": 2, "slow": 4}), frame) == [(5, "enter_long"), (7, "exit")]
    intent = history_intents(SmaCross({"fast": 2, "slow": 4}), frame, "BTC/USDT")[0]
    assert intent.ts_end == T0 + 6 * MINUTE  # the signal's ts_event: candle 5's end
    assert intent.price == D("13") and intent.reason == "SMA(2) crossed above SMA(4)"
    # F(3) = 11 > S(3) = 10.5 but S(2) does not exist: nothing before slow + 1 = 5 candles.
    assert signals(SmaCross({"fast": 2, "slow": 4}), frame_of([10, 10, 10, 12, 12, 12])) == []


def test_rsi_crosses_up_through_lower_and_down_through_upper():
    # period 2 over windows of 3 closes: RSI = 100 x gains / (gains + losses) of the two changes.
    # RSI by row: -, -, 0, 50, 100, 100, 50, 0.
    frame = frame_of([10, 9, 8, 9, 10, 11, 10, 9])
    assert signals(Rsi({"period": 2, "window": 3, "lower": 30, "upper": 70}), frame) == [
        (3, "enter_long"), (6, "exit")]


def test_bollinger_reversion_enters_below_the_lower_band_and_exits_at_the_middle():
    # period 3, width 1. Row 3: mean 9, deviation sqrt(2), close 7 < 7.59. Row 5: close 10 >=
    # mean 8.33. Rows 2 and 6: close at or above the middle (exits that do nothing when flat).
    frame = frame_of([10, 10, 10, 7, 8, 10, 11])
    assert signals(BollingerReversion({"period": 3, "width": 1.0}), frame) == [
        (2, "exit"), (3, "enter_long"), (5, "exit"), (6, "exit")]


def test_breakout_needs_a_close_above_swing_resistance_on_volume_and_leaves_below_support():
    # Swing high 12 at row 1 (confirmed at 2); swing low 8 at row 3 (confirmed at 4).
    highs = [10, 12, 11, 10.5, 11, 12.5, 12.6, 12.2]
    lows = [9, 9.4, 9.5, 8, 8.5, 10, 11, 7.5]
    closes = [9.5, 11, 10, 9, 10.5, 12.4, 12, 7.9]
    volumes = [1, 1, 1, 1, 1, 3, 1, 1]
    opens = [9.5] + closes[:-1]
    frame = CandleFrame.from_arrays(timeframe("1m"), T0 + np.arange(8) * MINUTE, opens, highs, lows, closes, volumes)
    strategy = Breakout({"lookback": 4, "swing": 1, "volume_window": 2})
    assert signals(strategy, frame) == [(5, "enter_long"), (7, "exit")]
    quiet = CandleFrame.from_arrays(timeframe("1m"), frame.ts_start, opens, highs, lows, closes, [1] * 8)
    assert signals(strategy, quiet) == [(7, "exit")]  # the same break on ordinary volume is no entry


def _trend_frame(hours: list[float]) -> CandleFrame:
    """1m candles: each of hours 0-2 flat at its value, then in hour 3 a cross up at minute 184
    (+20) and down at 191 (-30)."""
    closes = [hours[0]] * 60 + [hours[1]] * 60 + [hours[2]] * 64 + [hours[2] + 20] * 7 + [hours[2] - 30] * 49
    return frame_of(closes)


def test_sma_cross_trend_enters_only_when_the_closed_higher_timeframe_is_not_falling():
    strategy = SmaCrossTrend({"fast": 2, "slow": 4, "trend": 2, "trend_timeframe": "1h"})
    # Rising hours 100, 110, 120: rows 60 and 120 cross up too, but at 60 only hour 0 has closed
    # and at 120 the trend mean of the hour before hour 1 does not exist: no entry. At 184 the
    # mean of hours 1-2 (115) is above that of hours 0-1 (105).
    assert signals(strategy, _trend_frame([100, 110, 120])) == [(184, "enter_long"), (191, "exit")]
    # Falling hours: the crossing at 184 is blocked although the forming hour 3 (close 120 at
    # minute 184) would make the mean of hours 2-3 (110) above that of hours 1-2 (105).
    assert signals(strategy, _trend_frame([120, 110, 100])) == [(60, "exit"), (120, "exit"), (191, "exit")]


def _engine(frame: CandleFrame) -> Backtest:
    return Backtest(Market("BTC/USDT", frame), timeframe="1m", cash=D(10_000), fill_rule=FillRule(NO_FEES))


def test_grid_buys_a_lot_one_step_down_and_sells_it_one_step_up():
    # reference 100, step 1 %: levels 99, 98, (97 is below the 2 levels allowed), back up at 99 and 100.
    closes = [100, 99, 98, 97.5, 99.2, 100.1, 100.5]
    result = _engine(frame_of(closes)).run(Grid, {"reference": 100.0, "step": 0.01, "levels": 2, "lot": 1000.0})
    first, second = D("1000") / D("99"), D("1000") / D("98")
    first, second = first.quantize(D("1e-8"), rounding="ROUND_DOWN"), second.quantize(D("1e-8"), rounding="ROUND_DOWN")
    (trade,) = result.trades  # two buys then two sells: one round trip from flat to flat
    assert trade.entry_ts == T0 + 2 * MINUTE and trade.exit_ts == T0 + 6 * MINUTE  # fills at the next opens
    assert trade.quantity == first + second
    assert trade.pnl == second * (D("99.2") - D("98")) + first * (D("100.1") - D("99"))
    assert result.unfilled == [] and result.positions == {}


def test_dca_buys_on_schedule_more_on_a_drawdown_and_takes_profit():
    # Every 2 candles (on even minutes since the epoch): rows 0, 2 buy 100 at 100; row 4 is 20 %
    # below the average: 200 at 80; row 6 buys 100 at 90; row 7's close 110 is 5 % above the
    # average: exit at row 8's open. Row 8 buys again, on the last candle: no next candle.
    closes = [100, 100, 100, 100, 80, 80, 90, 110, 111]
    result = _engine(frame_of(closes)).run(
        Dca, {"every": 2, "amount": 100.0, "drawdown": 0.1, "boost": 2.0, "take_profit": 0.05})
    (trade,) = result.trades
    bought = D(1) + D(1) + D("2.5") + D("1.11111111")
    assert trade.quantity == bought
    assert (trade.entry_ts, trade.exit_ts, trade.exit_price) == (T0 + MINUTE, T0 + 8 * MINUTE, D("110"))
    assert trade.pnl == bought * D(110) - (D(100) + D(100) + D("2.5") * 80 + D("1.11111111") * 90)
    assert [(u.intent.kind, u.intent.ts_start, u.reason) for u in result.unfilled] == [
        ("enter_long", T0 + 8 * MINUTE, "no_next_candle")]


def test_every_packaged_strategy_is_in_the_catalog_under_its_name():
    catalog = load_catalog()
    assert catalog.names() == ["bollinger_reversion", "breakout", "dca", "grid", "rsi", "sma_cross", "sma_cross_trend"]
    assert catalog.errors == {}
    assert all(entry["name"] == entry_type.name for entry, entry_type in
               zip(catalog.catalog(), [e.strategy for e in catalog.entries()], strict=True))
