"""Execution configuration: defaults, and bad values stop the service naming the variable."""

from __future__ import annotations

from decimal import Decimal

import pytest
from tradeflow.settings import load_settings
from tradeflow_execution.settings import ExecutionSettings


def test_defaults_are_the_designs_topics_and_no_participation_cap():
    settings = load_settings(ExecutionSettings)
    assert (settings.orders_topic, settings.ticks_topic, settings.fills_topic) == \
        ("risk.orders.v1", "md.ticks.v1", "exec.fills.v1")
    assert settings.max_participation is None and settings.accounts == []


def test_accounts_markets_and_the_cap_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("TRADEFLOW_ACCOUNTS", '[{"id": "p1", "exchange": "binance"}]')
    monkeypatch.setenv("TRADEFLOW_EXECUTION_MARKETS",
                       '[{"exchange": "binance", "symbol": "BTC/USDT", "price_step": 0.01, "quantity_step": "0.00001"}]')
    monkeypatch.setenv("TRADEFLOW_EXECUTION_MAX_PARTICIPATION", "0.1")
    settings = load_settings(ExecutionSettings)
    (market,) = settings.markets
    assert (market.price_step, market.quantity_step) == (Decimal("0.01"), Decimal("0.00001"))
    assert settings.max_participation == Decimal("0.1")
    assert settings.account("p1").mode == "paper"


@pytest.mark.parametrize("name, value, message", [
    ("TRADEFLOW_EXECUTION_MARKETS", "not json", "TRADEFLOW_EXECUTION_MARKETS: must be a JSON list of markets"),
    ("TRADEFLOW_EXECUTION_MARKETS", '[{"exchange": "x", "symbol": "BTCUSDT", "price_step": 1, "quantity_step": 1}]',
     "TRADEFLOW_EXECUTION_MARKETS"),
    ("TRADEFLOW_EXECUTION_MARKETS", '[{"exchange": "x", "symbol": "A/B", "price_step": 1, "quantity_step": 1},'
                                    ' {"exchange": "x", "symbol": "A/B", "price_step": 2, "quantity_step": 1}]',
     "repeated markets: x:A/B"),
    ("TRADEFLOW_EXECUTION_MAX_PARTICIPATION", "1.5", "TRADEFLOW_EXECUTION_MAX_PARTICIPATION"),
    ("TRADEFLOW_EXECUTION_FILLS_TOPIC", "exec.orders.v1", "the five topics must differ"),
    ("TRADEFLOW_EXECUTION_TICKS_TOPIC", "bad topic", "TRADEFLOW_EXECUTION_TICKS_TOPIC"),
    ("TRADEFLOW_ACCOUNTS", '[{"id": "a", "exchange": "x", "mode": "dry"}]', "TRADEFLOW_ACCOUNTS"),
])
def test_a_bad_value_stops_the_service_naming_the_variable(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit, match=message):
        load_settings(ExecutionSettings)
