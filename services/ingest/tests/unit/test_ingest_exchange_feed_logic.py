"""Pure logic of the exchange feed: trade -> tick, order, dedup window, cursor, Retry-After, settings."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from tradeflow.settings import ConfigurationError, load_settings
from tradeflow_exchanges.ccxt_client import (
    ExchangeFeedSettings,
    older_trades_request,
    serves_newest_page_only,
)
from tradeflow_exchanges.ccxt_trades import UnusableTrade, in_exchange_order, trade_to_tick
from tradeflow_exchanges.request_hold import RequestHold, retry_after_seconds
from tradeflow_ingest.domain.recent_trade_ids import RecentTradeIds
from tradeflow_ingest.domain.trade_cursor import TradeCursor
from tradeflow_ingest.settings import IngestSettings


def ccxt_trade(trade_id="7", ts=1_700_000_000_123, symbol="BTC/USDT", **fields):
    return {"id": trade_id, "timestamp": ts, "symbol": symbol, "price": 30_000.5, "amount": 0.25,
            "side": "sell", **fields}


def test_a_ccxt_trade_becomes_a_tick_with_ns_event_time():
    tick = trade_to_tick("binance", ccxt_trade(), ts_recv=42)
    assert (tick.exchange, tick.symbol, tick.trade_id, tick.price, tick.amount, tick.side) == (
        "binance", "BTC/USDT", "7", 30_000.5, 0.25, "sell")
    assert tick.ts_event == 1_700_000_000_123_000_000 and tick.ts_recv == 42


def test_missing_price_and_side_are_kept_invalid_for_the_dlq():
    tick = trade_to_tick("binance", ccxt_trade(price=None, side=None), ts_recv=1)
    assert math.isnan(tick.price) and tick.side == ""


@pytest.mark.parametrize("broken", [{"id": None}, {"timestamp": None}, {"timestamp": 1.5}, {"symbol": ""}])
def test_a_trade_without_id_timestamp_or_symbol_is_unusable(broken):
    with pytest.raises(UnusableTrade):
        trade_to_tick("binance", ccxt_trade(**broken), ts_recv=1)


def test_trades_are_ordered_by_time_then_numeric_id_and_unusable_ones_left_out():
    trades = [ccxt_trade("10", 5), ccxt_trade("9", 5), ccxt_trade("2", 3), ccxt_trade(None, 1)]
    assert [t["id"] for t in in_exchange_order(trades)] == ["2", "9", "10"]


def test_recent_trade_ids_drop_repeats_per_symbol_and_forget_the_oldest():
    seen = RecentTradeIds(capacity=2)
    assert seen.add("A", "1") and not seen.add("A", "1")
    assert seen.add("B", "1")  # another symbol's id 1 is another trade
    seen.add("A", "2")
    seen.add("A", "3")  # window of 2: "1" is forgotten
    assert ("A", "1") not in seen and ("A", "3") in seen
    seen.discard("A", "3")
    assert seen.add("A", "3")


def test_the_cursor_starts_at_the_feed_start_and_never_goes_back():
    cursor = TradeCursor(("A", "B"), start_ms=1_000)
    cursor.advance("A", 1_500)
    cursor.advance("A", 1_200)  # a late trade
    assert (cursor.since_ms("A"), cursor.since_ms("B")) == (1_500, 1_000)


@pytest.mark.parametrize("header, expected", [
    ("3", 3.0), (" 0.5 ", 0.5), ("-4", 0.0), ("99999", 600.0), (None, None), ("", None), ("soon", None),
    ("Tue, 14 Nov 2023 22:13:25 GMT", 5.0),
])
def test_retry_after_is_read_as_seconds_or_http_date(header, expected):
    now = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert retry_after_seconds(header, now) == expected


def test_a_rate_limit_hold_lasts_its_seconds_and_a_shorter_one_does_not_cut_it():
    hold = RequestHold()
    assert hold.remaining_s(now=100.0) == 0.0
    hold.hold(now=100.0, seconds=30.0)
    hold.hold(now=101.0, seconds=2.0)  # a later, shorter refusal
    assert hold.remaining_s(now=110.0) == 20.0
    assert hold.remaining_s(now=131.0) == 0.0


def test_exchanges_come_from_json_in_the_environment(monkeypatch):
    monkeypatch.setenv("TRADEFLOW_EXCHANGES", '[{"id": "binance", "symbols": ["BTC/USDT"], '
                       '"urls": {"ws.spot": "ws://127.0.0.1:9/ws"}, "api_key": "k", "secret": "hunter2-secret"}]')
    (feed,) = load_settings(IngestSettings).exchanges
    assert feed.exchange_name == "binance" and feed.symbols == ("BTC/USDT",)
    assert feed.secret.get_secret_value() == "hunter2-secret" and "hunter2" not in repr(feed)


@pytest.mark.parametrize("entry", [
    '[{"id": "nosuchexchange", "symbols": ["BTC/USDT"]}]',
    '[{"id": "binance", "symbols": ["BTC/USDT", "BTC/USDT"]}]',
    '[{"id": "binance", "symbols": ["BTCUSDT"]}]',
    '[{"id": "binance", "symbols": ["BTC/USDT"], "urls": {"public": "ftp://x"}}]',
    '[{"id": "binance", "symbols": ["BTC/USDT"], "api_key": "k"}]',
    '[{"id": "binance", "symbols": ["BTC/USDT"], "colour": "red"}]',
    '[{"id": "binance", "symbols": ["BTC/USDT"], "stale_after_s": 0}]',
    '[{"id": "binance", "symbols": ["BTC/USDT"], "breaker_failures": 0}]',
    '[{"id": "binance", "symbols": ["BTC/USDT"], "max_reconnects": 0}]',
    '[{"id": "binance", "symbols": ["BTC/USDT"], "rate_limit_wait_s": -1}]',
    '[{"id": "okx", "symbols": ["BTC/USDT"], "catch_up_max_pages": 0}]',
    'not json',
])
def test_a_bad_exchange_entry_stops_the_service_naming_the_variable(monkeypatch, entry):
    monkeypatch.setenv("TRADEFLOW_EXCHANGES", entry)
    with pytest.raises(ConfigurationError, match="TRADEFLOW_EXCHANGES"):
        load_settings(IngestSettings)


def test_only_exchanges_serving_the_newest_trades_page_back_and_only_okx_has_an_older_page():
    assert [e for e in ("binance", "kraken", "okx", "bybit", "coinbase") if serves_newest_page_only(e)] == [
        "okx", "bybit", "coinbase"]
    assert older_trades_request("okx", "1234") == (
        100, {"method": "publicGetMarketHistoryTrades", "type": "1", "after": "1234"})
    assert older_trades_request("bybit", "1234") is None and older_trades_request("coinbase", "1234") is None


def test_a_url_override_must_name_an_existing_ccxt_url():
    from tradeflow_exchanges.ccxt_client import create_ccxt_exchange

    with pytest.raises(ValueError, match="names no URL"):
        create_ccxt_exchange(ExchangeFeedSettings(id="binance", symbols=("BTC/USDT",),
                                                 urls={"ws.nowhere": "ws://127.0.0.1:9/ws"}))
    with pytest.raises(ValidationError):
        ExchangeFeedSettings(id="binance", symbols=("BTC/USDT", "BTC/USDT"))


def test_a_non_positive_price_deviation_limit_stops_the_service_naming_the_variable(monkeypatch):
    monkeypatch.setenv("TRADEFLOW_INGEST_MAX_PRICE_DEVIATION", "0")
    with pytest.raises(ConfigurationError, match="TRADEFLOW_INGEST_MAX_PRICE_DEVIATION"):
        load_settings(IngestSettings)


def test_the_cache_reader_takes_every_symbols_new_trades_and_flags_a_cache_that_evicted_unread_ones():
    from ccxt.async_support.base.ws.cache import ArrayCache
    from tradeflow_ingest.adapters.trade_cache_reader import TradeCacheReader

    caches = {"A": ArrayCache(3), "B": ArrayCache(3)}
    reader = TradeCacheReader()
    for i in (1, 2):
        caches["A"].append(ccxt_trade(str(i), symbol="A"))
    caches["B"].append(ccxt_trade("1", symbol="B"))
    first = reader.read(caches, ["A", "B"])
    assert [(t["symbol"], t["id"]) for t in first.trades] == [("A", "1"), ("A", "2"), ("B", "1")]
    assert first.overflowed == []

    caches["A"].append(ccxt_trade("3", symbol="A"))  # fits: nothing lost
    for i in range(2, 6):  # B: 4 new trades in a cache of 3, one of them evicted unread
        caches["B"].append(ccxt_trade(str(i), symbol="B"))
    second = reader.read(caches, ["A", "B"])
    assert [(t["symbol"], t["id"]) for t in second.trades] == [("A", "3"), ("B", "3"), ("B", "4"), ("B", "5")]
    assert second.overflowed == ["B"]
    assert reader.read(caches, ["A", "B"]).trades == []  # nothing new, nothing read twice
    assert reader.read(caches, ["C"]).trades == []  # a symbol without a cache yet
