"""Which replica serves which subscription: the book read from the compacted topic (pure)."""

from tradeflow.messages import Subscription
from tradeflow_ingest.domain.subscriptions import (
    SubscriptionBook,
    parse_key,
    symbol_rejection_reason,
    symbols_to_serve,
)


def sub(exchange: str, symbol: str, source: str = "api") -> Subscription:
    return Subscription(exchange=exchange, symbol=symbol, source=source, ts_created=1)


def book_of(*entries: tuple[int, Subscription]) -> SubscriptionBook:
    book = SubscriptionBook()
    for partition, s in entries:
        book.apply(partition, s, (s.exchange, s.symbol))
    return book


def test_the_newest_record_of_a_key_wins_and_a_tombstone_removes_it():
    book = book_of((0, sub("binance", "BTC/USDT")), (1, sub("binance", "ETH/USDT")))
    assert book.apply(0, None, ("binance", "BTC/USDT")) is True
    assert [s.symbol for s in book.subscriptions()] == ["ETH/USDT"]
    assert book.apply(0, None, ("binance", "BTC/USDT")) is False  # already gone: no change


def test_reasserting_a_subscription_changes_nothing_to_serve():
    book = book_of((3, sub("binance", "BTC/USDT", "api")))
    assert book.apply(3, sub("binance", "BTC/USDT", "config"), ("binance", "BTC/USDT")) is False
    assert book.get("binance", "BTC/USDT").source == "config"


def test_each_replica_serves_exactly_the_subscriptions_on_its_partitions():
    book = book_of((0, sub("binance", "BTC/USDT")), (1, sub("binance", "ETH/USDT")),
                   (2, sub("kraken", "BTC/USD")), (1, sub("okx", "SOL/USDT")))
    replica_a = symbols_to_serve(book, {0, 2}, ["binance", "kraken"])
    replica_b = symbols_to_serve(book, {1}, ["binance", "kraken"])
    assert replica_a == {"binance": ("BTC/USDT",), "kraken": ("BTC/USD",)}
    assert replica_b == {"binance": ("ETH/USDT",), "kraken": ()}  # okx has no feed here: not served


def test_when_a_replica_dies_the_survivor_serves_everything():
    book = book_of((0, sub("binance", "BTC/USDT")), (1, sub("binance", "ETH/USDT")))
    assert symbols_to_serve(book, {0, 1}, ["binance"]) == {"binance": ("BTC/USDT", "ETH/USDT")}


def test_keys_and_symbols_are_checked():
    assert parse_key(b"binance:BTC/USDT") == ("binance", "BTC/USDT")
    assert parse_key(b"nokey") is None and parse_key(None) is None
    assert symbol_rejection_reason("BTC/USDT") is None
    assert "unified" in symbol_rejection_reason("BTCUSDT")
    assert symbol_rejection_reason("BTC/USDT:USDT") is not None
