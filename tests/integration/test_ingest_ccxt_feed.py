"""The ccxt exchange feed against a local fake Binance and the real broker: every trade once, in order."""

from __future__ import annotations

import asyncio
import time

import pytest
from tradeflow.bus import DeadLetters, Producer
from tradeflow.telemetry import Telemetry
from tradeflow_ingest.adapters.ccxt_feed import CcxtTradeFeed
from tradeflow_ingest.adapters.tick_publisher import TickPublisher
from tradeflow_ingest.bootstrap import TopicsExist
from tradeflow_ingest.domain.receive_clock import ReceiveClock
from tradeflow_ingest.exchange_settings import ExchangeFeedSettings
from tradeflow_ingest.settings import IngestSettings

from tests.fakes.fake_binance import FakeBinance
from tests.integration.test_ingest_service import read_topic

pytestmark = pytest.mark.integration


async def wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.fixture
async def fake_binance():
    fake = FakeBinance()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def feed_of(kafka_bootstrap, fake_binance, unique_name):
    """Builds a running feed for the fake exchange (named uniquely); stops it and the producer after."""
    settings = IngestSettings(kafka_bootstrap=kafka_bootstrap)
    await TopicsExist(settings).start()
    telemetry = Telemetry("ingest-test", settings)
    producer = Producer(settings, telemetry, client_id=f"test-{unique_name}")
    await producer.start()
    feeds: list[CcxtTradeFeed] = []

    async def start_feed(**overrides) -> CcxtTradeFeed:
        feed_settings = ExchangeFeedSettings(
            id="binance", name=f"bn-{unique_name}", symbols=("BTC/USDT", "ETH/USDT"),
            urls={"public": fake_binance.rest_url, "ws.spot": fake_binance.ws_url},
            poll_interval_s=0.2, **overrides,
        )
        feed = CcxtTradeFeed(feed_settings, publisher=TickPublisher(producer, DeadLetters(producer, telemetry), telemetry),
                             clock=ReceiveClock())
        await feed.start()
        feeds.append(feed)
        return feed

    yield start_feed
    for feed in feeds:
        await feed.stop()
    await producer.stop()
    telemetry.shutdown()


async def published(kafka_bootstrap, exchange: str) -> dict[str, list[tuple[str, float, str]]]:
    """Per symbol, (trade id, price, side) of the ticks on md.ticks.v1, in offset order."""
    by_symbol: dict[str, list[tuple[str, float, str]]] = {}
    for _partition, _offset, key, tick, _headers in sorted(await read_topic(kafka_bootstrap, "md.ticks.v1", exchange)):
        assert key == f"{exchange}:{tick.symbol}"
        by_symbol.setdefault(tick.symbol, []).append((tick.trade_id, tick.price, tick.side))
    return by_symbol


async def test_websocket_trades_arrive_once_in_order_per_symbol(kafka_bootstrap, fake_binance, feed_of):
    feed = await feed_of()
    await wait_until(lambda: fake_binance.connected_websockets == 1, 20, "the websocket subscription")
    for i in range(20):
        await fake_binance.make_trade("BTCUSDT", 30_000 + i, 0.1, taker_side="sell" if i % 3 == 0 else "buy")
        await fake_binance.make_trade("ETHUSDT", 2_000 + i, 1.0)
    await wait_until(lambda: feed.status().published == 40, 20, "40 published ticks")

    ticks = await published(kafka_bootstrap, feed.status().exchange)
    assert ticks["BTC/USDT"] == [(str(i + 1), 30_000.0 + i, "sell" if i % 3 == 0 else "buy") for i in range(20)]
    assert ticks["ETH/USDT"] == [(str(i + 1), 2_000.0 + i, "buy") for i in range(20)]
    assert feed.status().kind == "ccxt-ws" and feed.status().rejected == 0
    assert fake_binance.subscriptions[0] == ["btcusdt@aggTrade", "ethusdt@aggTrade"]


async def test_trades_made_while_disconnected_are_published_once_after_reconnect(
    kafka_bootstrap, fake_binance, feed_of
):
    feed = await feed_of()
    await wait_until(lambda: fake_binance.connected_websockets == 1, 20, "the websocket subscription")
    for i in range(5):
        await fake_binance.make_trade("BTCUSDT", 100 + i, 1.0)
    await wait_until(lambda: feed.status().published == 5, 20, "5 published ticks")

    fake_binance.refuse_websockets = True  # the stream goes down and stays down for a while
    await fake_binance.drop_websockets()
    for i in range(5, 12):
        await fake_binance.make_trade("BTCUSDT", 100 + i, 1.0)
        await fake_binance.make_trade("ETHUSDT", 10 + i, 2.0)
    # REST polling picks up the trades made while the websocket is down.
    await wait_until(lambda: feed.status().published == 19, 20, "trades fetched by REST polling")
    assert feed.status().kind == "ccxt-rest"

    fake_binance.refuse_websockets = False
    await wait_until(lambda: fake_binance.connected_websockets == 1, 30, "the websocket reconnect")
    for i in range(12, 15):
        await fake_binance.make_trade("BTCUSDT", 100 + i, 1.0)
    await wait_until(lambda: feed.status().published == 22, 20, "trades after the reconnect")

    ticks = await published(kafka_bootstrap, feed.status().exchange)
    assert [trade_id for trade_id, _, _ in ticks["BTC/USDT"]] == [str(i) for i in range(1, 16)]
    assert [trade_id for trade_id, _, _ in ticks["ETH/USDT"]] == [str(i) for i in range(1, 8)]
    assert feed.status().kind == "ccxt-ws"


async def test_a_dropped_connection_reconnects_and_catches_up_without_duplicates(
    kafka_bootstrap, fake_binance, feed_of
):
    feed = await feed_of()
    await wait_until(lambda: fake_binance.connected_websockets == 1, 20, "the websocket subscription")
    for i in range(3):
        await fake_binance.make_trade("ETHUSDT", 50 + i, 1.0)
    await wait_until(lambda: feed.status().published == 3, 20, "3 published ticks")

    await fake_binance.drop_websockets()  # mid-stream; trades continue while the client reconnects
    for i in range(3, 10):
        await fake_binance.make_trade("ETHUSDT", 50 + i, 1.0)
        await asyncio.sleep(0.05)
    await wait_until(lambda: fake_binance.connected_websockets == 1, 30, "the websocket reconnect")
    await fake_binance.make_trade("ETHUSDT", 60, 1.0)
    await wait_until(lambda: feed.status().published == 11, 20, "every trade published")
    await asyncio.sleep(0.5)  # nothing more (no duplicates) arrives afterwards

    ticks = await published(kafka_bootstrap, feed.status().exchange)
    assert [trade_id for trade_id, _, _ in ticks["ETH/USDT"]] == [str(i) for i in range(1, 12)]
    assert "BTC/USDT" not in ticks
