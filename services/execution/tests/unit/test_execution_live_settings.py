"""Live accounts' configuration: their exchange entry is required, credentials never printed."""

from __future__ import annotations

import pytest
from tradeflow.settings import load_settings
from tradeflow.telemetry import Telemetry
from tradeflow_execution.live_wiring import create_live_brokers
from tradeflow_execution.settings import ExecutionSettings

LIVE = '[{"id": "l1", "exchange": "binance", "mode": "live", "balances": {"USDT": "100"}}]'


def test_a_live_account_without_an_exchange_entry_stops_the_service_naming_the_settings(monkeypatch):
    monkeypatch.setenv("TRADEFLOW_ACCOUNTS", LIVE)
    with pytest.raises(SystemExit, match="live account 'l1' trades on 'binance', which has no TRADEFLOW_EXCHANGES"):
        load_settings(ExecutionSettings)


def test_a_live_account_needs_credentials_in_its_exchange_entry(monkeypatch):
    monkeypatch.setenv("TRADEFLOW_ACCOUNTS", LIVE)
    monkeypatch.setenv("TRADEFLOW_EXCHANGES", '[{"id": "binance", "symbols": ["BTC/USDT"]}]')
    settings = load_settings(ExecutionSettings)
    with pytest.raises(ValueError, match="needs api_key and secret in the entry of 'binance'"):
        create_live_brokers(settings, Telemetry("test-execution", settings))


async def test_the_broker_is_made_with_the_entrys_sandbox_and_credentials_which_are_never_shown(monkeypatch):
    monkeypatch.setenv("TRADEFLOW_ACCOUNTS", LIVE)
    monkeypatch.setenv("TRADEFLOW_EXCHANGES", '[{"id": "binance", "sandbox": true, "symbols": ["BTC/USDT"], '
                                              '"api_key": "KEY-123", "secret": "SECRET-456"}]')
    monkeypatch.setenv("TRADEFLOW_EXECUTION_LIVE_POLL_INTERVAL_S", "0.5")
    settings = load_settings(ExecutionSettings)
    assert "SECRET-456" not in repr(settings) and "KEY-123" not in repr(settings)
    (broker,) = create_live_brokers(settings, Telemetry("test-execution", settings)).values()
    exchange = broker._exchange
    try:
        assert exchange.isSandboxModeEnabled and "testnet" in exchange.urls["api"]["private"]
        assert (exchange.apiKey, exchange.secret) == ("KEY-123", "SECRET-456")
        assert broker._timings.poll_interval_s == 0.5 and broker._symbols == {"BTC/USDT"}
    finally:
        await exchange.close()
