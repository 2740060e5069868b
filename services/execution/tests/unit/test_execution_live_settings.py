"""Live accounts' configuration: their exchange entry is required, credentials never printed."""

from __future__ import annotations

import json
import logging

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


async def test_credentials_from_mounted_files_are_read_once_and_never_shown_or_logged(monkeypatch, tmp_path, caplog):
    key_file, secret_file = tmp_path / "api-key", tmp_path / "secret"
    key_file.write_text("FILE-KEY-789\n")  # the trailing newline of `kubectl create secret --from-file`
    secret_file.write_text("  FILE-SECRET-012\n")
    monkeypatch.setenv("TRADEFLOW_ACCOUNTS", LIVE)
    monkeypatch.setenv("TRADEFLOW_EXCHANGES", json.dumps([{
        "id": "binance", "symbols": ["BTC/USDT"], "api_key_file": str(key_file), "secret_file": str(secret_file)}]))
    caplog.set_level(logging.DEBUG)
    settings = load_settings(ExecutionSettings)
    key_file.write_text("ROTATED")  # read once, when the settings load
    (feed,) = settings.exchanges
    assert (feed.api_key.get_secret_value(), feed.secret.get_secret_value()) == ("FILE-KEY-789", "FILE-SECRET-012")
    (broker,) = create_live_brokers(settings, Telemetry("test-execution", settings)).values()
    try:
        assert (broker._exchange.apiKey, broker._exchange.secret) == ("FILE-KEY-789", "FILE-SECRET-012")
    finally:
        await broker._exchange.close()
    shown = repr(settings) + str(settings) + repr(feed) + settings.model_dump_json() + caplog.text
    assert "FILE-KEY-789" not in shown and "FILE-SECRET-012" not in shown
    assert str(key_file) in repr(feed)  # where they come from is shown


@pytest.mark.parametrize(("entry", "problem"), [
    ({"api_key_file": "{missing}", "secret": "S-1"}, "api_key_file of exchange 'binance': cannot read {missing}: "
                                                     "FileNotFoundError"),
    ({"api_key_file": "{empty}", "secret": "S-1"}, "api_key_file of exchange 'binance': {empty} is empty"),
    ({"api_key": "K-1", "api_key_file": "{key}", "secret": "S-1"}, "give api_key or api_key_file, not both"),
    ({"api_key_file": "{key}"}, "api_key and secret must be given together"),
])
def test_a_credentials_file_that_cannot_be_used_stops_the_service_naming_it_without_any_secret(
        monkeypatch, tmp_path, entry, problem):
    paths = {"missing": tmp_path / "missing", "empty": tmp_path / "empty", "key": tmp_path / "key"}
    paths["empty"].write_text("\n")
    paths["key"].write_text("FILE-KEY-345")
    entry = {name: value.format(**paths) for name, value in entry.items()}
    monkeypatch.setenv("TRADEFLOW_EXCHANGES", json.dumps([{"id": "binance", **entry}]))
    with pytest.raises(SystemExit) as stopped:
        load_settings(ExecutionSettings)
    message = str(stopped.value)
    assert "TRADEFLOW_EXCHANGES" in message and problem.format(**paths) in message
    assert "FILE-KEY-345" not in message and "S-1" not in message and "K-1" not in message


def test_an_invalid_exchange_entry_is_reported_without_quoting_its_credentials(monkeypatch):
    monkeypatch.setenv("TRADEFLOW_EXCHANGES", json.dumps([{"id": "binance", "symbols": ["BTCUSDT"],
                                                           "api_key": "KEY-LEAK", "secret": "SECRET-LEAK"}]))
    with pytest.raises(SystemExit) as stopped:
        load_settings(ExecutionSettings)
    message = str(stopped.value)
    assert "TRADEFLOW_EXCHANGES" in message and "unified spot symbols" in message
    assert "KEY-LEAK" not in message and "SECRET-LEAK" not in message


async def test_an_okx_account_needs_its_passphrase_which_reaches_ccxt_and_is_never_shown(monkeypatch, tmp_path):
    okx = '[{"id": "o1", "exchange": "okx", "mode": "live", "balances": {"USDT": "100"}}]'
    monkeypatch.setenv("TRADEFLOW_ACCOUNTS", okx)
    monkeypatch.setenv("TRADEFLOW_EXCHANGES", '[{"id": "okx", "symbols": ["BTC/USDT"], "api_key": "K", "secret": "S"}]')
    settings = load_settings(ExecutionSettings)
    with pytest.raises(ValueError, match="needs password .* in the entry of 'okx'"):
        create_live_brokers(settings, Telemetry("test-execution", settings))
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("PASS-345\n")
    monkeypatch.setenv("TRADEFLOW_EXCHANGES", json.dumps([{"id": "okx", "symbols": ["BTC/USDT"], "api_key": "K",
                                                           "secret": "S", "password_file": str(passphrase)}]))
    settings = load_settings(ExecutionSettings)
    assert "PASS-345" not in repr(settings)
    (broker,) = create_live_brokers(settings, Telemetry("test-execution", settings)).values()
    try:
        assert broker._exchange.password == "PASS-345"
    finally:
        await broker._exchange.close()
