"""tradeflow.markets: one validation of exchange names, symbols and exchange:symbol keys."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError
from tradeflow.markets import (
    ExchangeName,
    SpotPairName,
    SymbolName,
    exchange_problem,
    instrument_problem,
    market_key,
    parse_market_key,
    split_market_key,
    spot_pair_problem,
    symbol_problem,
)


@pytest.mark.parametrize("exchange", ["binance", "coinbase-pro", "okx.eu", "Kraken_2", "x" * 64])
def test_exchange_names_as_ccxt_writes_them(exchange):
    assert exchange_problem(exchange) is None


@pytest.mark.parametrize("exchange", ["", "bin:ance", "bin ance", "-binance", "x" * 65, "börse", None])
def test_other_exchange_names_are_refused_saying_what_is_allowed(exchange):
    assert exchange_problem(exchange).startswith(f"exchange: {exchange!r} must be 1-64 letters")


@pytest.mark.parametrize("symbol", ["BTC/USDT", "BTC/USDT:USDT", "AAPL", "BRK.B", "ES-F", "1000PEPE/USDT", "X+Y"])
def test_symbols_as_ccxt_writes_them(symbol):
    assert symbol_problem(symbol) is None


@pytest.mark.parametrize("symbol", ["", "BTC USDT", "/USDT", "BTC,ETH", "x" * 65, "BTC\n"])
def test_other_symbols_are_refused(symbol):
    assert symbol_problem(symbol).startswith(f"symbol: {symbol!r} must be")


def test_spot_pairs_are_base_slash_quote_without_settlement():
    assert spot_pair_problem("BTC/USDT") is None
    for symbol in ("BTCUSDT", "BTC/USDT:USDT", "BTC/", "A" * 33 + "/USDT"):
        assert spot_pair_problem(symbol) == f"symbol {symbol!r} is not a unified spot symbol like 'BTC/USDT'"


def test_instrument_problem_names_the_exchange_first():
    assert instrument_problem("binance", "BTC/USDT") is None
    assert instrument_problem("bad name", "bad symbol").startswith("exchange:")
    assert instrument_problem("binance", "bad symbol").startswith("symbol:")


def test_keys_split_at_the_first_colon_so_settled_symbols_survive():
    assert market_key("binance", "BTC/USDT:USDT") == "binance:BTC/USDT:USDT"
    assert parse_market_key("binance:BTC/USDT:USDT") == ("binance", "BTC/USDT:USDT")
    assert parse_market_key(b"binance:BTC/USDT") == ("binance", "BTC/USDT")
    assert split_market_key("kraken:ETH/USD") == ("kraken", "ETH/USD")
    for key in (None, b"", "binance", "binance:", ":BTC/USDT", "bin ance:BTC/USDT", "binance:BTC USDT"):
        assert parse_market_key(key) is None
    with pytest.raises(ValueError, match="market key must be 'exchange:symbol', got 'binance'"):
        split_market_key("binance")


def test_the_model_types_carry_the_same_rules():
    class Market(BaseModel):
        exchange: ExchangeName
        symbol: SymbolName
        pair: SpotPairName | None = None

    assert Market(exchange="binance", symbol="BTC/USDT:USDT", pair="BTC/USDT").symbol == "BTC/USDT:USDT"
    for bad in ({"exchange": "a:b", "symbol": "X"}, {"exchange": "a", "symbol": "X Y"},
                {"exchange": "a", "symbol": "X", "pair": "BTCUSDT"}):
        with pytest.raises(ValidationError):
            Market(**bad)
