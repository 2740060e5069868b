"""The live runner against the backtest: same decisions, warm-up, corrections, no look-ahead."""

from __future__ import annotations

from decimal import Decimal as D

import numpy as np
import pytest
from msgspec.structs import replace
from tradeflow.messages import Candle
from tradeflow_backtest.broker import SimulatedBroker
from tradeflow_backtest.data import Market
from tradeflow_backtest.engine import Backtest
from tradeflow_trading.fees import FeeSchedule
from tradeflow_trading.fills import FillRule
from tradeflow_trading.sizing import ALL_CASH
from tradeflow_trading.strategies.bollinger_reversion import BollingerReversion
from tradeflow_trading.strategies.breakout import Breakout
from tradeflow_trading.strategies.dca import Dca
from tradeflow_trading.strategies.grid import Grid
from tradeflow_trading.strategies.rsi import Rsi
from tradeflow_trading.strategies.sma_cross import SmaCross
from tradeflow_trading.strategies.sma_cross_trend import SmaCrossTrend
from tradeflow_trading.strategy import CandleFrame, EventStrategy, LiveRunner, StrategyContext
from tradeflow_trading.strategy.parity import (
    compare_live,
    frame_candles,
    history_intents,
    live_intents,
    truncation_changes,
)

from tests.strategy_candles import MINUTE, T0, frame_of, random_walk

VECTOR_CASES = [
    (SmaCross, {"fast": 5, "slow": 20}),
    (Rsi, {"period": 5}),
    (BollingerReversion, {"period": 15, "width": 1.5}),
    (Breakout, {"lookback": 30, "swing": 2, "volume_window": 10}),
    (SmaCrossTrend, {"fast": 5, "slow": 20, "trend": 3, "trend_timeframe": "1h"}),
]
CASE_IDS = [case[0].name for case in VECTOR_CASES]


def with_gaps(frame: CandleFrame, seed: int) -> CandleFrame:
    """The same candles with a tenth of them missing (minutes without trades)."""
    keep = np.random.default_rng(seed).random(len(frame)) > 0.1
    return CandleFrame(frame.timeframe, *(getattr(frame, c)[keep] for c in
                                          ("ts_start", "ts_end", "open", "high", "low", "close", "volume")))


@pytest.mark.parametrize(("strategy_type", "params"), VECTOR_CASES, ids=CASE_IDS)
def test_live_window_decisions_are_the_full_history_decisions(strategy_type, params):
    """Candles one at a time through the live runner (windows of warmup() candles) decide
    exactly what the whole-history vectorised call decides, with and without a warm-up, over
    gaps too. Both sides carry float indicators: equal only if they are window-exact."""
    frame = random_walk(2500, seed=11)
    assert len(history_intents(strategy_type(params), frame, "BTC/USDT")) > 20  # the check has something to see
    assert compare_live(strategy_type, params, frame) == []
    assert compare_live(strategy_type, params, frame, warm_up=700) == []
    assert compare_live(strategy_type, params, with_gaps(frame, 3)) == []


@pytest.mark.parametrize(("strategy_type", "params"), VECTOR_CASES, ids=CASE_IDS)
def test_candles_handed_over_in_batches_decide_as_one_at_a_time(strategy_type, params):
    """on_candles over batches of every size (one, a few, more than a run, more than the
    window) decides exactly what the whole history decides, after a warm-up and over gaps."""
    frame = random_walk(2500, seed=11)
    sizes = [int(n) for n in np.random.default_rng(1).integers(1, 150, 40)] + [1, 64, 65, 300]
    assert compare_live(strategy_type, params, frame, batches=sizes) == []
    assert compare_live(strategy_type, params, frame, warm_up=700, batches=sizes[::-1]) == []
    assert compare_live(strategy_type, params, with_gaps(frame, 3), batches=sizes) == []


@pytest.mark.parametrize(("strategy_type", "params"), [VECTOR_CASES[0], VECTOR_CASES[-1]],
                         ids=["sma_cross", "sma_cross_trend"])
def test_batches_with_corrections_and_stream_hours_in_them_decide_as_one_at_a_time(strategy_type, params):
    """A stream as the service sees it (corrections of recent minutes, the candle-builder's
    hours after the minute that closes them) through on_candles in batches gives the intents
    of on_candle one by one: a correction inside a batch changes only the later decisions."""
    rng = np.random.default_rng(7)
    minutes = frame_candles(random_walk(900, seed=3), "paper", "BTC/USDT")
    stream: list[Candle] = []
    for i, candle in enumerate(minutes):
        stream.append(candle)
        if i > 5 and rng.random() < 0.1:  # a late trade moves a recent close
            late = minutes[i - int(rng.integers(0, 5))]
            stream.append(replace(late, close=late.close * 1.004, high=max(late.high, late.close * 1.004), revision=1))
        if (candle.ts_end - T0) % (60 * MINUTE) == 0:
            hour = minutes[i - 59:i + 1]
            stream.append(Candle(exchange="paper", symbol="BTC/USDT", timeframe="1h", ts_start=hour[0].ts_start,
                                 ts_end=candle.ts_end, open=hour[0].open, high=max(c.high for c in hour),
                                 low=min(c.low for c in hour), close=candle.close * 1.001,
                                 volume=sum(c.volume for c in hour), trades=60))
    one_by_one = LiveRunner(strategy_type(params), exchange="paper", symbol="BTC/USDT", timeframe="1m")
    expected = [i for candle in stream for i in one_by_one.on_candle(candle)]
    assert len(expected) > 5
    batched = LiveRunner(strategy_type(params), exchange="paper", symbol="BTC/USDT", timeframe="1m")
    got, start = [], 0
    while start < len(stream):
        size = int(rng.integers(1, 120))
        got += batched.on_candles(stream[start:start + size])
        start += size
    assert got == expected


@pytest.mark.parametrize(("strategy_type", "params"), VECTOR_CASES, ids=CASE_IDS)
def test_removing_future_candles_never_changes_a_past_decision(strategy_type, params):
    frame = random_walk(1500, seed=5)
    assert truncation_changes(strategy_type, params, frame, cuts=[200, 777, 1201, 1499]) == []


def test_warm_up_candles_decide_nothing_and_every_later_candle_does():
    frame = frame_of([10, 10, 10, 10, 10, 13, 13, 7, 7, 7])  # sma_cross(2, 4): enter at 5, exit at 7
    candles = frame_candles(frame, "paper", "BTC/USDT")
    runner = LiveRunner(SmaCross({"fast": 2, "slow": 4}), exchange="paper", symbol="BTC/USDT", timeframe="1m")
    assert not runner.ready
    runner.warm_up(candles[:6])  # the entry candle is part of the warm-up: not emitted
    assert runner.ready
    assert [runner.on_candle(c) for c in candles[6:]] == [[], history_intents(SmaCross({"fast": 2, "slow": 4}),
                                                                             frame, "BTC/USDT")[1:], [], []]


def test_corrected_and_redelivered_candles_never_emit_but_later_decisions_use_them():
    frame = frame_of([10, 10, 10, 10, 10, 13, 13, 13, 13])
    candles = frame_candles(frame, "paper", "BTC/USDT")
    runner = LiveRunner(SmaCross({"fast": 2, "slow": 4}), exchange="paper", symbol="BTC/USDT", timeframe="1m")
    emitted = [runner.on_candle(c) for c in candles[:7]]
    assert [i.kind for batch in emitted for i in batch] == ["enter_long"]  # row 5
    # A late trade corrects row 5 (it would no longer be an entry) and row 6: the corrections
    # say nothing (nor does a redelivery), and the next candle decides on the corrected values.
    assert runner.on_candle(replace(candles[5], close=10.0, revision=1)) == []
    assert runner.on_candle(candles[3]) == []
    assert runner.on_candle(replace(candles[6], close=16.0, revision=1)) == []
    # With the candles as first sent, a close of 8 at row 7 is an exit; with the corrected ones not.
    first_sent = frame_of([10, 10, 10, 10, 10, 13, 13, 8])
    corrected = frame_of([10, 10, 10, 10, 10, 10, 16, 8])
    assert history_intents(SmaCross({"fast": 2, "slow": 4}), first_sent, "BTC/USDT")[-1].kind == "exit"
    assert [i for i in history_intents(SmaCross({"fast": 2, "slow": 4}), corrected, "BTC/USDT")
            if i.ts_start == T0 + 7 * MINUTE] == []
    assert runner.on_candle(replace(candles[7], close=8.0, low=8.0)) == []
    # and the exit that does come uses them too: row 8 at 3 (F 5.5 < S 9.25, F(7) 12 >= S(7) 11).
    (intent,) = runner.on_candle(replace(candles[8], close=3.0, low=3.0))
    assert (intent.kind, intent.ts_start) == ("exit", T0 + 8 * MINUTE)


class SeesHours(EventStrategy):
    """Records, for each 1m candle, the ends of the 1h candles it can see."""

    name = "sees_hours"

    def setup(self) -> None:
        self.seen: list[tuple[int, list[int], list[float]]] = []

    def informative(self) -> dict[str, int]:
        return {"1h": 3}

    def on_candle(self, ctx: StrategyContext) -> None:
        hours = ctx.higher("1h")
        self.seen.append((ctx.ts_end, hours.ts_end.tolist(), hours.close.tolist()))


def test_a_higher_timeframe_candle_is_seen_only_from_the_candle_that_closes_it():
    frame = with_gaps(random_walk(300, seed=9), seed=4)  # gaps: some hours end without their last minute
    live = SeesHours()
    runner = LiveRunner(live, exchange="paper", symbol="BTC/USDT", timeframe="1m")
    for candle in frame_candles(frame, "paper", "BTC/USDT"):
        runner.on_candle(candle)
    backtest = Backtest(Market("BTC/USDT", frame), timeframe="1m")
    backtest.run(SeesHours)
    hour = 60 * MINUTE
    for ts_end, ends, _ in live.seen:
        assert all(end <= ts_end for end in ends)  # never the forming hour
        newest_closed = (ts_end - T0) // hour * hour + T0
        assert ends == [e for e in range(newest_closed - 2 * hour, newest_closed + 1, hour) if e > T0]
    assert [seen[1] for seen in live.seen][-1] == [T0 + 2 * hour, T0 + 3 * hour, T0 + 4 * hour]
    engine_seen = next(run for run in _engine_strategies(backtest))
    assert engine_seen == live.seen  # the backtest shows the strategy exactly the same hours


def _engine_strategies(backtest):
    """The recorded views of a fresh SeesHours run through the engine's event loop."""
    recorded = []

    class Recording(SeesHours):
        def on_candle(self, ctx):
            super().on_candle(ctx)
            recorded.append(self.seen)

    backtest.run(Recording)
    yield recorded[-1]


class SeesWholeHours(SeesHours):
    """Records each visible hour's open, high, low, close and volume too."""

    name = "sees_whole_hours"

    def on_candle(self, ctx: StrategyContext) -> None:
        hours = ctx.higher("1h")
        self.seen.append((ctx.ts_end, hours.ts_end.tolist(), [hours.open.tolist(), hours.high.tolist(),
                                                              hours.low.tolist(), hours.close.tolist(),
                                                              hours.volume.tolist()]))


def test_warm_up_from_closed_hours_builds_the_forming_hour_from_its_minutes():
    """What the strategy service does at start: the closed hours as stored, and the minutes
    from the start of the forming hour. The minutes after the warm-up see exactly the hours a
    runner that saw everything from the start sees."""
    minutes = frame_candles(random_walk(300, seed=9), "paper", "BTC/USDT")
    everything = SeesWholeHours()
    from_start = LiveRunner(everything, exchange="paper", symbol="BTC/USDT", timeframe="1m")
    for candle in minutes:
        from_start.on_candle(candle)
    cut = 150  # 02:30: hours 0 and 1 closed, hour 2 forming
    hours = [Candle(exchange="paper", symbol="BTC/USDT", timeframe="1h", ts_start=T0 + h * 60 * MINUTE,
                    ts_end=T0 + (h + 1) * 60 * MINUTE, open=minutes[h * 60].open,
                    high=max(c.high for c in minutes[h * 60:h * 60 + 60]),
                    low=min(c.low for c in minutes[h * 60:h * 60 + 60]), close=minutes[h * 60 + 59].close,
                    volume=sum(c.volume for c in minutes[h * 60:h * 60 + 60]), trades=60) for h in range(2)]
    warmed = SeesWholeHours()
    runner = LiveRunner(warmed, exchange="paper", symbol="BTC/USDT", timeframe="1m")
    runner.warm_up(minutes[120:cut], higher={"1h": hours})
    warmed.seen.clear()
    for candle in minutes[cut:]:
        runner.on_candle(candle)
    assert warmed.seen == everything.seen[cut:]


def test_stream_higher_candles_correct_the_built_ones_and_a_forming_one_is_ignored():
    frame = frame_of([100.0 + i for i in range(130)])
    candles = frame_candles(frame, "paper", "BTC/USDT")
    strategy = SeesHours()
    runner = LiveRunner(strategy, exchange="paper", symbol="BTC/USDT", timeframe="1m")
    for candle in candles[:61]:
        runner.on_candle(candle)
    hour = Candle(exchange="paper", symbol="BTC/USDT", timeframe="1h", ts_start=T0, ts_end=T0 + 60 * MINUTE,
                  open=100.0, high=160.0, low=99.0, close=159.0, volume=60.0, trades=60)
    assert strategy.seen[-1][2] == [159.0]  # built from the minutes: hour 0 closed at 159
    runner.on_candle(replace(hour, close=158.5, revision=1))  # a late trade corrected it
    runner.on_candle(replace(hour, ts_start=T0 + 60 * MINUTE, ts_end=T0 + 120 * MINUTE, close=1.0))  # still forming
    runner.on_candle(candles[61])
    assert strategy.seen[-1][1:] == ([T0 + 60 * MINUTE], [158.5])


def test_an_intent_becomes_the_designs_signal():
    (intent,) = [i for i in history_intents(SmaCross({"fast": 2, "slow": 4}), frame_of([10, 10, 10, 10, 10, 13]),
                                            "BTC/USDT")]
    signal = intent.signal(instance_id="s1", account_id="paper-1", exchange="binance", strategy="sma_cross")
    assert signal.signal_id == f"s1:binance:BTC/USDT:1m:{(T0 + 5 * MINUTE) // 1_000_000}:enter_long"
    assert (signal.ts_event, signal.price, signal.intent, signal.account_id) == (T0 + 6 * MINUTE, D(13), "enter_long",
                                                                                 "paper-1")


@pytest.mark.parametrize(("strategy_type", "params"), [
    (Grid, {"step": 0.004, "lot": 1500.0, "levels": 4}),
    (Dca, {"every": 30, "amount": 400.0, "drawdown": 0.02, "take_profit": 0.02}),
], ids=["grid", "dca"])
def test_an_event_strategy_live_with_paper_fills_trades_as_in_the_backtest(strategy_type, params):
    """The live runner fed each candle and the fills of the same simulated account makes the
    backtest's trades: the handler, its state and its position are driven the same way."""
    frame = random_walk(3000, seed=21)
    rule = FillRule(FeeSchedule(D("0.001"), D("0.001")), slippage_bps=D(3))
    expected = Backtest(Market("BTC/USDT", frame), timeframe="1m", fill_rule=rule).run(strategy_type, params)
    broker = SimulatedBroker(account_id="backtest", exchange="backtest", quote_currency="USDT", cash=D(10_000),
                             fill_rule=rule, sizing=ALL_CASH)
    runner = LiveRunner(strategy_type(params), exchange="backtest", symbol="BTC/USDT", timeframe="1m",
                        account_id="backtest")
    candles = frame_candles(frame, "backtest", "BTC/USDT")
    for row, candle in enumerate(candles):
        for fill in broker.on_candle_open("BTC/USDT", candle.ts_start, candle.open, candle.high, candle.low):
            runner.on_fill(fill)
        for intent in runner.on_candle(candle):
            if row < len(candles) - 1:
                broker.decide(intent, equity=broker.cash + runner.position.quantity * D(repr(candle.close)))
    assert len(expected.trades) > 3
    assert broker.trades == expected.trades


def test_live_intents_of_an_instance_started_mid_history():
    frame = random_walk(1200, seed=2)
    everything = history_intents(SmaCross({"fast": 4, "slow": 12}), frame, "BTC/USDT")
    later = live_intents(SmaCross({"fast": 4, "slow": 12}), frame, "BTC/USDT", warm_up=600)
    assert later == [i for i in everything if i.ts_start >= int(frame.ts_start[600])] and later
