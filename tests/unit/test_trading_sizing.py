"""Position sizing and the volatility measures it reads (tradeflow_trading.sizing, .volatility)."""

from __future__ import annotations

import statistics
from decimal import Decimal as D

import pytest
from pydantic import TypeAdapter, ValidationError
from tradeflow_trading.fees import FeeSchedule
from tradeflow_trading.fills import FillRule
from tradeflow_trading.sizing import (
    BelowMinimumSize,
    EntryMinimums,
    FixedQuote,
    FractionOfCash,
    FractionOfEquity,
    Kelly,
    Size,
    Sizing,
    SizingError,
    SizingInputs,
    VolatilityTarget,
    below_minimum,
    kelly_fraction,
    size_entry,
)
from tradeflow_trading.volatility import aligned_returns, average_true_range, correlation, returns_stdev

INPUTS = SizingInputs(price=D(200), equity=D(10_000), free_cash=D(4_000), atr=D(5), returns_stdev=D("0.02"))


def test_money_sizings_buy_by_quote_amount_so_all_cash_is_exact_at_any_fill_price():
    assert size_entry(FixedQuote(amount=D(250)), INPUTS, "buy").quote == D(250)
    assert size_entry(FractionOfCash(fraction=D(1)), INPUTS, "buy").quote == D(4_000)
    assert size_entry(FractionOfCash(fraction=D("0.333")), INPUTS, "buy").quote == D("1332.00000000")
    assert size_entry(FractionOfEquity(fraction=D("0.1")), INPUTS, "buy").quote == D(1_000)
    # A short entry needs a base quantity: the amount at the price, cut down to the step.
    assert size_entry(FixedQuote(amount=D(250)), INPUTS, "sell", D("0.1")).quantity == D("1.2")


def test_volatility_target_sizes_by_atr_or_by_the_standard_deviation_of_returns():
    atr = VolatilityTarget(risk_fraction=D("0.01"), measure="atr", atr_multiple=D(2))
    assert size_entry(atr, INPUTS, "buy").quantity == D(10)  # 10000 x 1% / (5 x 2)
    stdev = VolatilityTarget(risk_fraction=D("0.01"), measure="stdev")
    assert size_entry(stdev, INPUTS, "buy").quantity == D(25)  # 100 / (200 x 0.02)
    with pytest.raises(SizingError, match="no ATR yet"):
        size_entry(atr, SizingInputs(price=D(200), equity=D(10_000), free_cash=D(0)), "buy")


def test_kelly_is_scaled_capped_and_waits_for_enough_closed_trades():
    assert kelly_fraction(D("0.6"), D(2)) == D("0.4")  # 0.6 - 0.4 / 2
    assert kelly_fraction(D("0.3"), D(1)) == 0  # no edge: stake nothing
    method = Kelly(scale=D("0.5"), cap=D("0.15"), min_trades=10, fallback_fraction=D("0.01"))
    proven = SizingInputs(price=D(100), equity=D(10_000), free_cash=D(10_000), win_rate=D("0.6"), payoff_ratio=D(2),
                          closed_trades=12)
    assert size_entry(method, proven, "buy").quote == D(1_500)  # half of 0.4 is 0.2, capped at 0.15
    early = SizingInputs(price=D(100), equity=D(10_000), free_cash=D(10_000), win_rate=D("0.6"), payoff_ratio=D(2),
                         closed_trades=3)
    assert size_entry(method, early, "buy").quote == D(100)
    with pytest.raises(SizingError, match="nothing to spend"):
        size_entry(Kelly(fallback_fraction=D(0)), early, "buy")


def test_sizing_is_configured_as_json_with_its_method_and_validated():
    adapter = TypeAdapter(Sizing)
    assert adapter.validate_python({"method": "fraction_of_cash"}) == FractionOfCash(fraction=D(1))
    assert adapter.validate_json('{"method": "fixed_quote", "amount": 0.1}').amount == D("0.1")
    with pytest.raises(ValidationError, match="fraction"):
        adapter.validate_python({"method": "fraction_of_equity", "fraction": 2})
    with pytest.raises(ValidationError):
        adapter.validate_python({"method": "martingale"})


def test_atr_stdev_and_correlation_from_candles():
    highs, lows, closes = [11.0, 12.0, 13.0, 12.5], [9.0, 10.0, 11.5, 10.0], [10.0, 11.0, 12.0, 11.0]
    # True ranges from the second candle: max(h, prev c) - min(l, prev c) = 2, 2, 2.5.
    assert average_true_range(highs, lows, closes, 3) == pytest.approx(6.5 / 3)
    assert average_true_range(highs, lows, closes, 4) is None
    assert returns_stdev(closes, 3) == pytest.approx(statistics.stdev([0.1, 1 / 11, -1 / 12]))
    a = {t: 100.0 + t for t in range(10)}
    b = {t: 50.0 + t / 2 for t in range(0, 10, 2)}  # half the times: returns pair the common times only
    xs, ys = aligned_returns(a, b)
    assert len(xs) == len(ys) == 4 and correlation(xs, ys) == pytest.approx(1.0)
    assert correlation([0.1, 0.1, 0.1], [0.2, 0.1, 0.3]) is None  # a constant series
    assert correlation([0.1, 0.2], [0.2, 0.1]) is None  # too few points


def test_an_entry_below_the_markets_minimum_size_is_refused_by_one_rule():
    step = EntryMinimums(quantity_step=D("0.001"))
    # 0.2 quote at 200 with a 0.1% fee buys 0.000999.. -> 0 at a step of 0.001: it could never fill.
    short = below_minimum(Size(quote=D("0.2")), D(200), step, taker_fee=D("0.001"))
    assert short is not None and short.quantity == 0 and "less than one quantity step (0.001)" in short.message
    assert below_minimum(Size(quote=D("0.2002")), D(200), step, taker_fee=D("0.001")) is None  # exactly one step
    assert below_minimum(Size(quote=D("0.2")), D(200), step) is None  # without a fee it is one step
    assert below_minimum(Size(quantity=D("0.0009")), D(200), step).quantity == 0
    # The exchange's minimums, where known: quantity, then notional.
    market = EntryMinimums(quantity_step=D("0.001"), min_quantity=D("0.01"), min_notional=D(5))
    assert "minimum quantity 0.01" in below_minimum(Size(quantity=D("0.009")), D(1000), market).message
    assert "minimum notional 5" in below_minimum(Size(quote=D("4.99")), D(100), market).message
    assert below_minimum(Size(quote=D(5)), D(100), market) is None
    # A sized quantity that rounds to nothing is the same refusal (a SizingError, so callers that only know that still refuse).
    with pytest.raises(BelowMinimumSize, match="rounds to zero"):
        size_entry(FixedQuote(amount=D("0.01")), INPUTS, "sell", D("0.1"))
    assert issubclass(BelowMinimumSize, SizingError)


@pytest.mark.parametrize("quote", ["0.1", "0.2", "0.2002", "0.2003", "0.4", "0.4004", "0.40039", "7.3"])
def test_the_minimum_size_rule_agrees_with_what_the_fill_rule_buys(quote):
    """Below the minimum exactly when the fill rule (paper execution, the backtest) would buy nothing."""
    rule = FillRule(FeeSchedule(maker=D("0.0005"), taker=D("0.001")), quantity_step=D("0.001"))
    bought = rule.market_fill("buy", D(200), quote_quantity=D(quote))
    short = below_minimum(Size(quote=D(quote)), D(200), EntryMinimums(D("0.001")), taker_fee=D("0.001"))
    assert (short is not None) == (bought is None)
