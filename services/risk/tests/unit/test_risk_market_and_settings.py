"""Marks and bars, trading hours from a real market calendar, ccxt market rules, and risk's settings."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest
from tradeflow.messages import Candle, Tick
from tradeflow.settings import ConfigurationError, load_settings
from tradeflow_risk.adapters.exchange_markets import rules_from_ccxt
from tradeflow_risk.adapters.instrument_calendars import load_calendar
from tradeflow_risk.domain.hours import SessionCalendar
from tradeflow_risk.domain.market import MarketData
from tradeflow_risk.domain.market_rules import MarketRules
from tradeflow_risk.settings import RiskSettings

S = 1_000_000_000
T = 1_772_445_600 * S


def ns(text: str) -> int:
    return int(datetime.fromisoformat(text).astimezone(UTC).timestamp()) * S


def candle(minute: int, close: float, revision: int = 0, timeframe: str = "1m", **prices: float) -> Candle:
    start = T + minute * 60 * S
    return Candle(exchange="x", symbol="BTC/USDT", timeframe=timeframe, ts_start=start, ts_end=start + 60 * S,
                  open=close, high=prices.get("high", close), low=prices.get("low", close), close=close, volume=1.0,
                  trades=1, revision=revision)


def test_the_mark_is_the_price_with_the_newest_event_time():
    market = MarketData("1m", 2, 5)
    market.on_candle(candle(0, 100.5))
    assert market.mark("x", "BTC/USDT") == D("100.5")
    market.on_tick(Tick(exchange="x", symbol="BTC/USDT", trade_id="1", price=0.1, amount=1.0, side="buy",
                        ts_event=T + 30 * S, ts_recv=T))  # inside the candle: older than its end
    assert market.mark("x", "BTC/USDT") == D("100.5")
    market.on_tick(Tick(exchange="x", symbol="BTC/USDT", trade_id="2", price=101.25, amount=1.0, side="buy",
                        ts_event=T + 61 * S, ts_recv=T))
    assert market.mark("x", "BTC/USDT") == D("101.25")


def test_atr_uses_the_configured_timeframe_and_a_correction_replaces_its_candle():
    market = MarketData("1m", 2, 5)
    market.on_candle(candle(0, 100, high=101, low=99))
    market.on_candle(candle(1, 102, high=103, low=100))
    assert market.atr("x", "BTC/USDT") is None  # two true ranges need three candles
    market.on_candle(candle(2, 101, high=104, low=100))
    assert market.atr("x", "BTC/USDT") == D("3.5")  # (3 + 4) / 2
    market.on_candle(candle(2, 101, revision=1, high=110, low=100))
    assert market.atr("x", "BTC/USDT") == D("6.5")
    market.on_candle(candle(2, 101, revision=0, high=104, low=100))  # the older emission comes late: ignored
    market.on_candle(candle(3, 50, timeframe="5m"))  # another timeframe: a mark, not a bar
    assert market.atr("x", "BTC/USDT") == D("6.5")


def test_session_calendars_are_open_between_open_and_close_and_honour_lunch_breaks():
    calendar = SessionCalendar("test", [(10, 20), (30, 40)])
    assert [calendar.is_open(t) for t in (9, 10, 19, 20, 25, 30, 39, 40)] == [
        False, True, True, False, False, True, True, False]
    xnys = load_calendar("XNYS")
    assert xnys.is_open(ns("2026-03-02T14:30:00+00:00"))  # Monday 09:30 New York
    assert not xnys.is_open(ns("2026-03-02T21:00:00+00:00"))  # 16:00: the close itself is closed
    assert not xnys.is_open(ns("2026-03-07T15:00:00+00:00"))  # Saturday
    assert not xnys.is_open(ns("2026-12-25T15:00:00+00:00"))  # Christmas
    assert not xnys.is_open(ns("2026-11-27T18:30:00+00:00"))  # day after Thanksgiving: closes at 13:00
    xhkg = load_calendar("XHKG")
    assert xhkg.is_open(ns("2026-03-02T03:00:00+00:00"))  # 11:00 Hong Kong
    assert not xhkg.is_open(ns("2026-03-02T04:30:00+00:00"))  # 12:30: lunch break


def test_ccxt_markets_give_steps_in_either_precision_mode_and_the_minimums():
    market = {"precision": {"amount": 0.00001, "price": 0.01},
              "limits": {"amount": {"min": 0.00001, "max": 9000.0}, "cost": {"min": 5.0}}}
    assert rules_from_ccxt(market, 4) == MarketRules(amount_step=D("0.00001"), price_step=D("0.01"),
                                                     min_amount=D("0.00001"), min_cost=D(5))
    places = {"precision": {"amount": 3, "price": 2}, "limits": {"amount": {"min": None}, "cost": {}}}
    assert rules_from_ccxt(places, 2) == MarketRules(amount_step=D("0.001"), price_step=D("0.01"))
    assert rules_from_ccxt({"precision": {"amount": 4}}, 3) == MarketRules()  # significant digits: no step


def test_settings_name_the_variable_of_a_bad_profile_and_accept_good_ones(monkeypatch):
    monkeypatch.setenv("TRADEFLOW_ACCOUNTS", '[{"id": "a", "exchange": "x", "balances": {"USDT": "10"}}]')
    monkeypatch.setenv("TRADEFLOW_RISK_ACCOUNT_PROFILES", '{"*": {"limits": {"max_open_orders": 3}, '
                                                          '"sizing": {"method": "fixed_quote", "amount": "50"}}}')
    monkeypatch.setenv("TRADEFLOW_RISK_STRATEGY_PROFILES", '{"inst": {"protective": {"stop_loss": {"atr": 2}}}}')
    settings = load_settings(RiskSettings)
    assert settings.account_profiles["*"].limits.max_open_orders == 3
    assert settings.strategy_profiles["inst"].protective.stop_loss.atr == D(2)
    monkeypatch.setenv("TRADEFLOW_RISK_ACCOUNT_PROFILES", '{"b": {}}')
    with pytest.raises(ConfigurationError, match="names accounts not in TRADEFLOW_ACCOUNTS: b"):
        load_settings(RiskSettings)
    monkeypatch.setenv("TRADEFLOW_RISK_ACCOUNT_PROFILES", '{"a": {"limits": {"max_drawdown_pct": 120}}}')
    with pytest.raises(ConfigurationError, match="TRADEFLOW_RISK_ACCOUNT_PROFILES"):
        load_settings(RiskSettings)
    monkeypatch.setenv("TRADEFLOW_RISK_ACCOUNT_PROFILES", "not json")
    with pytest.raises(ConfigurationError, match="TRADEFLOW_RISK_ACCOUNT_PROFILES: must be a JSON object"):
        load_settings(RiskSettings)
