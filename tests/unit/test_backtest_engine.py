"""The backtest engine on constructed candles with known trades, and its two executions agreeing."""

from __future__ import annotations

import io
import json
from decimal import ROUND_DOWN
from decimal import Decimal as D

import numpy as np
import pytest
from tradeflow.messages import Order
from tradeflow.timeframes import timeframe
from tradeflow_backtest.broker import SimulatedBroker
from tradeflow_backtest.data import CandleFileError, Market, read_candles_csv, write_candles_csv
from tradeflow_backtest.engine import Backtest
from tradeflow_trading.fees import NO_FEES, FeeSchedule
from tradeflow_trading.fills import FillRule
from tradeflow_trading.sizing import ALL_CASH, FractionOfEquity
from tradeflow_trading.strategies.bollinger_reversion import BollingerReversion
from tradeflow_trading.strategies.breakout import Breakout
from tradeflow_trading.strategies.dca import Dca
from tradeflow_trading.strategies.rsi import Rsi
from tradeflow_trading.strategies.sma_cross import SmaCross
from tradeflow_trading.strategies.sma_cross_trend import SmaCrossTrend
from tradeflow_trading.strategy import ParameterError

from tests.strategy_candles import MINUTE, T0, frame_of, random_walk

FEES = FeeSchedule(maker=D("0.0005"), taker=D("0.001"))
CROSS = {"fast": 2, "slow": 4}


def step(value: D) -> D:
    return value.quantize(D("1e-8"), rounding=ROUND_DOWN)


def test_a_round_trip_over_a_gap_with_fees_and_slippage():
    # sma_cross(2, 4) enters on row 5 and exits on row 7. Three hours pass between rows 5 and 6
    # and row 6 opens at 14 (the market moved while nothing traded): the entry fills there.
    closes = [10, 10, 10, 10, 10, 13, 13, 7, 7, 7]
    opens = [10, 10, 10, 10, 10, 10, 14, 13, 6.5, 7]
    starts = [T0 + i * MINUTE for i in range(6)] + [T0 + (180 + i) * MINUTE for i in range(4)]
    frame = frame_of(closes, opens=opens, starts=starts)
    rule = FillRule(FEES, slippage_bps=D(10))
    result = Backtest(Market("BTC/USDT", frame), timeframe="1m", cash=D(10_000), fill_rule=rule).run(SmaCross, CROSS)

    buy_price = D("14.014")  # 14 moved up by 10 bps
    quantity = step(D(10_000) / (buy_price * D("1.001")))  # all the cash, fee included (ADR 0015)
    buy_fee = quantity * buy_price * D("0.001")
    sell_price = D("6.4935")  # row 8's open moved down by 10 bps
    sell_fee = quantity * sell_price * D("0.001")
    (trade,) = result.trades
    assert trade.entry_ts == T0 + 180 * MINUTE and trade.exit_ts == T0 + 182 * MINUTE
    assert (trade.entry_price, trade.exit_price, trade.quantity) == (buy_price, sell_price, quantity)
    assert trade.fees == buy_fee + sell_fee
    assert trade.pnl == (sell_price - buy_price) * quantity - buy_fee - sell_fee
    cash = D(10_000) + trade.pnl
    assert result.final_cash == cash and result.positions == {} and result.unfilled == []
    # Equity at each close: cash until the fill, then cash left plus the position at the close.
    left = D(10_000) - quantity * buy_price - buy_fee
    expected = [10_000.0] * 6 + [float(left) + float(quantity) * 13, float(left) + float(quantity) * 7,
                                 float(cash), float(cash)]
    np.testing.assert_allclose(result.equity, expected, rtol=1e-12)
    assert result.metrics.trades == 1 and result.metrics.win_rate == 0.0
    assert result.metrics.total_return == pytest.approx(float(trade.pnl) / 10_000)
    assert result.metrics.exposure == pytest.approx(0.2)


def test_a_signal_on_the_last_candle_has_no_next_candle_to_fill_it():
    frame = frame_of([10, 10, 10, 10, 10, 13])  # the entry signal is on the last candle
    result = Backtest(Market("BTC/USDT", frame), timeframe="1m").run(SmaCross, CROSS)
    assert result.trades == [] and result.final_cash == D(10_000)
    ((intent, reason),) = [(u.intent, u.reason) for u in result.unfilled]
    assert (intent.kind, intent.ts_start, reason) == ("enter_long", T0 + 5 * MINUTE, "no_next_candle")
    assert (result.equity == 10_000.0).all()


def test_a_position_still_open_at_the_end_is_valued_at_the_last_close_not_sold():
    frame = frame_of([10, 10, 10, 10, 10, 13, 14, 15])
    result = Backtest(Market("BTC/USDT", frame), timeframe="1m", fill_rule=FillRule(NO_FEES)).run(SmaCross, CROSS)
    assert result.trades == []
    position = result.positions["BTC/USDT"]
    assert position.quantity == step(D(10_000) / D(13)) and position.average_price == D(13)
    assert result.equity[-1] == pytest.approx(float(result.final_cash) + float(position.quantity) * 15)
    assert result.metrics.trades == 0 and result.metrics.total_return > 0.15


@pytest.mark.parametrize(("strategy_type", "params"), [
    (SmaCross, {"fast": 5, "slow": 20}),
    (Rsi, {"period": 6}),
    (BollingerReversion, {"period": 12, "width": 1.0}),
    (Breakout, {"lookback": 20}),
    (SmaCrossTrend, {"fast": 4, "slow": 15, "trend": 2, "trend_timeframe": "1h"}),
], ids=["sma_cross", "rsi", "bollinger_reversion", "breakout", "sma_cross_trend"])
def test_the_direct_execution_trades_exactly_as_the_general_one(strategy_type, params):
    """Candle-by-candle orders, fills, positions and balances through the shared domain objects
    against the direct execution over the signal candles only: same trades to the last decimal,
    same equity curve, same metrics."""
    frame = random_walk(4000, seed=17)
    backtest = Backtest(Market("BTC/USDT", frame), timeframe="1m", fill_rule=FillRule(FEES, slippage_bps=D(4)))
    direct = backtest.run(strategy_type, params)
    general = backtest.run(strategy_type, params, execution="general")
    assert len(direct.trades) > 10
    assert direct.trades == general.trades
    assert direct.final_cash == general.final_cash
    np.testing.assert_array_equal(direct.equity, general.equity)
    assert direct.metrics == general.metrics
    assert [(u.intent, u.reason) for u in direct.unfilled] == [(u.intent, u.reason) for u in general.unfilled]


def test_a_backtest_runs_many_times_with_the_same_result_and_checks_parameters():
    backtest = Backtest(Market("BTC/USDT", random_walk(2000, seed=3)), timeframe="1m")
    first = backtest.run(SmaCross, {"fast": 3, "slow": 9})
    backtest.run(SmaCross, {"fast": 4, "slow": 9})
    assert backtest.run(SmaCross, {"fast": 3, "slow": 9}).trades == first.trades
    with pytest.raises(ParameterError, match="'slow': must be between 2 and 10000"):
        backtest.run(SmaCross, {"slow": 0})


def test_several_markets_share_one_account():
    btc = random_walk(1500, seed=30)
    eth = random_walk(1500, seed=31, start=T0 + 7 * MINUTE)  # starts later: the timelines differ
    markets = [Market("BTC/USDT", btc), Market("ETH/USDT", eth)]
    all_cash = Backtest(markets, timeframe="1m", sizing=ALL_CASH).run(SmaCross, {"fast": 5, "slow": 20})
    halves = Backtest(markets, timeframe="1m", sizing=FractionOfEquity(fraction=D("0.5"))).run(SmaCross, {"fast": 5, "slow": 20})
    for result in (all_cash, halves):
        assert {t.symbol for t in result.trades} == {"BTC/USDT", "ETH/USDT"}
        # One cash balance: the final equity is the cash plus what is held at the last closes.
        held = sum(float(p.quantity) * float({"BTC/USDT": btc, "ETH/USDT": eth}[s].close[-1])
                   for s, p in result.positions.items())
        assert result.equity[-1] == pytest.approx(float(result.final_cash) + held, rel=1e-12)
    # All the cash goes into whichever market enters first: the other one's entry meanwhile is
    # skipped, the cash left (less than one quantity step) being below the minimum size, as risk rejects it.
    assert any(u.reason == "below_minimum_size" for u in all_cash.unfilled)
    overlapping = [(a, b) for a in halves.trades for b in halves.trades
                   if a.symbol == "BTC/USDT" and b.symbol == "ETH/USDT" and a.entry_ts < b.exit_ts and b.entry_ts < a.exit_ts]
    assert overlapping  # with half the equity each, both markets hold positions at the same time


def test_an_event_strategy_adds_to_its_position_and_is_refused_without_cash():
    frame = random_walk(600, seed=8)
    result = Backtest(Market("BTC/USDT", frame), timeframe="1m", cash=D(1000)).run(
        Dca, {"every": 10, "amount": 150.0})
    position = result.positions["BTC/USDT"]
    assert position.fills == 6  # 1000 buys six lots of 150 with fees, not seven
    assert sum(1 for u in result.unfilled if u.reason == "insufficient_cash") > 50


def test_a_limit_order_fills_at_its_price_once_a_candle_reaches_it():
    broker = SimulatedBroker(account_id="a", exchange="x", quote_currency="USDT", cash=D(1000),
                             fill_rule=FillRule(FEES), sizing=ALL_CASH)
    order = Order(client_order_id="c1", account_id="a", exchange="x", symbol="BTC/USDT", side="buy",
                  order_type="limit", quantity=D(2), limit_price=D(95), ts_event=T0)
    state = broker.submit(order)
    assert broker.on_candle_open("BTC/USDT", T0, open_=100.0, high=101.0, low=96.0) == []
    (fill,) = broker.on_candle_open("BTC/USDT", T0 + MINUTE, open_=97.0, high=97.5, low=94.5)
    assert (fill.price, fill.quantity, fill.liquidity, fill.fee) == (D(95), D(2), "maker", D("0.0950"))
    assert broker.cash == D(1000) - D(190) - D("0.095") and state.status == "submitted"
    assert broker.orders["BTC/USDT"] == []


def test_the_json_output_is_designs_shape():
    frame = frame_of([10, 10, 10, 10, 10, 13, 13, 7, 7, 7])
    result = Backtest(Market("BTC/USDT", frame), timeframe="1m").run(SmaCross, CROSS)
    output = json.loads(json.dumps(result.to_json()))
    assert list(output) == ["trades", "metrics", "equity"]
    (trade,) = output["trades"]
    assert list(trade) == ["entry_ts", "entry_price", "exit_ts", "exit_price", "quantity", "pnl", "fees"]
    assert trade["entry_ts"] == "2026-01-05T00:06:00.000Z" and trade["entry_price"] == "13.0"
    assert D(trade["pnl"]) == result.trades[0].pnl
    assert list(output["metrics"]) == ["total_return", "sharpe", "sortino", "max_drawdown", "win_rate",
                                       "profit_factor", "trades"]
    assert output["metrics"]["trades"] == 1 and output["metrics"]["profit_factor"] == 0.0
    assert len(output["equity"]) == 10 and output["equity"][0] == {"ts": "2026-01-05T00:01:00.000Z", "equity": 10000.0}


def test_candle_files_in_epoch_ms_or_iso_8601():
    text = ("ts,open,high,low,close,volume\n"
            "1767571200000,10,11,9,10.5,3\n"
            "2026-01-05T00:01:00Z,10.5,12,10,11,4\n"
            "2026-01-05T01:02:00+01:00,11,11,10.5,10.75,0\n")
    frame = read_candles_csv(io.StringIO(text), timeframe("1m"))
    assert frame.ts_start.tolist() == [T0, T0 + MINUTE, T0 + 2 * MINUTE]
    assert frame.close.tolist() == [10.5, 11.0, 10.75]
    copy = io.StringIO()
    write_candles_csv(frame, copy)
    again = read_candles_csv(io.StringIO(copy.getvalue()), timeframe("1m"))
    assert again.ts_start.tolist() == frame.ts_start.tolist() and again.high.tolist() == frame.high.tolist()


@pytest.mark.parametrize(("text", "message"), [
    ("time,open,high,low,close,volume\n1,1,1,1,1,1\n", "line 1: expected the header 'ts,open,high,low,close,volume'"),
    ("ts,open,high,low,close,volume\n1767571200000,10,11,9,10,1\n1767571260000,10,abc,9,10,1\n",
     "line 3: high is not a number: 'abc'"),
    ("ts,open,high,low,close,volume\nMonday,10,11,9,10,1\n", "line 2: ts expected ISO 8601 (e.g. 2024-03-01T12:00Z) or epoch milliseconds, got 'Monday'"),
    ("ts,open,high,low,close,volume\n1767571230000,10,11,9,10,1\n", "line 2: ts 1767571230000000000 is not the start of a 1m"),
    ("ts,open,high,low,close,volume\n1767571260000,10,11,9,10,1\n1767571200000,10,11,9,10,1\n",
     "line 3: candles must be in strictly increasing time order"),
    ("ts,open,high,low,close,volume\n1767571200000,10,9,9,10,1\n", "line 2: impossible candle"),
])
def test_a_bad_candle_file_names_the_line(text, message):
    with pytest.raises(CandleFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_candles_csv(io.StringIO(text), timeframe("1m"))


def test_sizing_rules_give_the_quote_an_entry_spends_as_risk_sizes_it():
    from pydantic import ValidationError
    from tradeflow_trading.sizing import FixedQuote, entry_quote

    assert entry_quote(ALL_CASH, free_cash=D(500), equity=D(900)) == D(500)
    assert entry_quote(FractionOfEquity(fraction=D("0.25")), free_cash=D(500), equity=D(900)) == D(225)
    # More than the free cash: risk refuses it (insufficient balance), and so does the backtest.
    assert entry_quote(FractionOfEquity(fraction=D("0.75")), free_cash=D(500), equity=D(900)) == D(675)
    assert entry_quote(FixedQuote(amount=D(100)), free_cash=D(60), equity=D(900)) == D(100)
    with pytest.raises(ValidationError, match="fraction"):
        FractionOfEquity(fraction=D("1.5"))


def test_the_backtest_skips_an_entry_below_the_minimum_size_by_the_rule_risk_rejects_it_with():
    """Lots of one unit and 100.5 quote per entry around a price of 100: the same rule
    (tradeflow_trading.sizing.below_minimum) decides at each entry's decision price whether it
    is skipped (below_minimum_size), in both executions."""
    from tradeflow_trading.sizing import EntryMinimums, FixedQuote, Size, below_minimum

    frame = random_walk(3000, seed=17, volatility=0.004)
    rule = FillRule(FEES, quantity_step=D(1))
    backtest = Backtest(Market("BTC/USDT", frame), timeframe="1m", fill_rule=rule, sizing=FixedQuote(amount=D("100.5")))
    direct = backtest.run(SmaCross, {"fast": 5, "slow": 20})
    general = backtest.run(SmaCross, {"fast": 5, "slow": 20}, execution="general")
    assert [(u.intent, u.reason) for u in direct.unfilled] == [(u.intent, u.reason) for u in general.unfilled]
    assert direct.trades == general.trades

    def below(price: D):
        return below_minimum(Size(quote=D("100.5")), price, EntryMinimums(D(1)), taker_fee=FEES.taker)

    skipped = [u.intent for u in direct.unfilled if u.reason == "below_minimum_size"]
    assert skipped and all(below(intent.price) is not None for intent in skipped)
    assert {u.reason for u in direct.unfilled} <= {"below_minimum_size", "insufficient_cash", "no_next_candle"}
    # Each trade's entry was decided on the candle before its fill, at a price the rule lets through.
    starts = frame.ts_start.tolist()
    entered = [D(repr(float(frame.close[starts.index(t.entry_ts) - 1]))) for t in direct.trades]
    assert entered and all(below(price) is None and t.quantity == 1 for price, t in zip(entered, direct.trades, strict=True))
