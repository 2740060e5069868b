"""The ccxt exchange feed against a local fake OKX (v5) and the real broker: every trade once, in order."""

from __future__ import annotations

import asyncio

import pytest
from tradeflow_ingest.adapters.ccxt_feed import CcxtTradeFeed

from tests.fakes.fake_okx import FakeOkx
from tests.integration.test_ingest_ccxt_feed import alerts_about, alerts_of_kind, published, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
async def fake_okx():
    fake = FakeOkx(("BTC-USDT", "ETH-USDT", "SOL-USDT"))
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def okx_feed_of(ccxt_feed_of, fake_okx, unique_name):
    """Builds a running feed of BTC/USDT and ETH/USDT on the fake OKX (named uniquely)."""

    async def start_feed(**overrides) -> CcxtTradeFeed:
        return await ccxt_feed_of(**{
            "id": "okx", "name": f"okx-{unique_name}", "symbols": ("BTC/USDT", "ETH/USDT"),
            "urls": {"rest": fake_okx.rest_url, "ws": fake_okx.ws_url}, **overrides,
        })

    return start_feed


@pytest.fixture
async def okx_feed(okx_feed_of):
    return await okx_feed_of()


async def test_okx_websocket_trades_of_two_symbols_arrive_once_in_order(kafka_bootstrap, fake_okx, okx_feed):
    await wait_until(lambda: fake_okx.connected_websockets == 1, 20, "the websocket subscription")
    await fake_okx.make_trade("SOL-USDT", 50, 1.0)  # not followed
    for i in range(15):
        await fake_okx.make_trade("BTC-USDT", 30_000 + i, 0.1, taker_side="sell" if i % 4 == 0 else "buy")
        await fake_okx.make_trade("ETH-USDT", 2_000 + i, 1.0)
    await wait_until(lambda: okx_feed.status().published == 30, 20, "30 published ticks")

    ticks = await published(kafka_bootstrap, okx_feed.status().exchange)
    assert ticks["BTC/USDT"] == [(str(i + 1), 30_000.0 + i, "sell" if i % 4 == 0 else "buy") for i in range(15)]
    assert ticks["ETH/USDT"] == [(str(i + 1), 2_000.0 + i, "buy") for i in range(15)]
    assert set(ticks) == {"BTC/USDT", "ETH/USDT"}
    assert okx_feed.status().kind == "ccxt-ws" and okx_feed.status().rejected == 0
    assert fake_okx.subscriptions[0] == ["BTC-USDT", "ETH-USDT"]  # one subscribe for both
    # only spot instruments are loaded (EXCHANGE_DEFAULT_OPTIONS)
    assert [r for r in fake_okx.requests if "instruments" in r] == ["GET /api/v5/public/instruments?instType=SPOT"]


async def test_okx_trades_keep_flowing_by_rest_while_the_websocket_is_down_and_it_comes_back(
    kafka_bootstrap, fake_okx, okx_feed
):
    await wait_until(lambda: fake_okx.connected_websockets == 1, 20, "the websocket subscription")
    for i in range(4):
        await fake_okx.make_trade("BTC-USDT", 100 + i, 1.0)
        await fake_okx.make_trade("ETH-USDT", 10 + i, 1.0)
    await wait_until(lambda: okx_feed.status().published == 8, 20, "8 ticks by websocket")

    fake_okx.refuse_websockets = True  # the stream goes down and stays down for a while
    await fake_okx.drop_websockets()
    await wait_until(lambda: okx_feed.status().kind == "ccxt-rest", 20, "REST polling")
    rest_polls_before = sum("/api/v5/market/trades" in r for r in fake_okx.requests)
    for i in range(4, 12):
        await fake_okx.make_trade("BTC-USDT", 100 + i, 1.0)
        await fake_okx.make_trade("ETH-USDT", 10 + i, 1.0)
    await wait_until(lambda: okx_feed.status().published == 24, 20, "the trades fetched by REST polling")
    assert okx_feed.status().kind == "ccxt-rest" and fake_okx.connected_websockets == 0
    assert sum("/api/v5/market/trades" in r for r in fake_okx.requests) > rest_polls_before
    # ccxt sends OKX no time; the feed asks at most the endpoint's 500 trades (more is refused)
    assert all("limit=500" in r for r in fake_okx.requests if "/api/v5/market/trades" in r)

    fake_okx.refuse_websockets = False
    await wait_until(lambda: fake_okx.connected_websockets == 1, 30, "the websocket reconnect")
    for i in range(12, 15):
        await fake_okx.make_trade("BTC-USDT", 100 + i, 1.0)
        await fake_okx.make_trade("ETH-USDT", 10 + i, 1.0)
    await wait_until(lambda: okx_feed.status().published == 30, 20, "the trades after the reconnect")
    await asyncio.sleep(0.5)  # nothing more (no duplicates) arrives afterwards

    ticks = await published(kafka_bootstrap, okx_feed.status().exchange)
    assert [trade_id for trade_id, _, _ in ticks["BTC/USDT"]] == [str(i) for i in range(1, 16)]
    assert [trade_id for trade_id, _, _ in ticks["ETH/USDT"]] == [str(i) for i in range(1, 16)]
    assert [price for _, price, _ in ticks["ETH/USDT"]] == [10.0 + i for i in range(15)]
    assert okx_feed.status().published == 30 and okx_feed.status().rejected == 0
    assert okx_feed.status().kind == "ccxt-ws"  # the last trades came by websocket again


async def _outage_with_trades(fake_okx, feed, before: int, during: int) -> None:
    """``before`` BTC trades by websocket, then the websocket dropped and refused while OKX makes
    ``during`` BTC trades (and one ETH trade) at once, then the websocket back."""
    await wait_until(lambda: fake_okx.connected_websockets == 1, 20, "the websocket subscription")
    for i in range(before):
        await fake_okx.make_trade("BTC-USDT", 30_000 + i, 0.1)
    await wait_until(lambda: feed.status().published == before, 20, "the trades before the outage")
    fake_okx.refuse_websockets = True
    await fake_okx.drop_websockets()
    await wait_until(lambda: feed.status().kind == "ccxt-rest", 20, "REST polling")
    for i in range(during):  # no await yields here (no websocket subscriber): one burst between two polls
        await fake_okx.make_trade("BTC-USDT", 30_000 + i % 50, 0.1, taker_side="sell" if i % 7 == 0 else "buy")
    await fake_okx.make_trade("ETH-USDT", 2_000, 1.0)
    fake_okx.refuse_websockets = False
    await wait_until(lambda: fake_okx.connected_websockets == 1, 30, "the websocket reconnect")


async def test_an_okx_outage_with_more_trades_than_the_newest_page_loses_none(kafka_bootstrap, fake_okx, okx_feed):
    await _outage_with_trades(fake_okx, okx_feed, before=3, during=1_200)  # market/trades serves 500
    await fake_okx.make_trade("BTC-USDT", 30_010, 0.1)  # and by websocket again
    await wait_until(lambda: okx_feed.status().published == 3 + 1_200 + 1 + 1, 30, "every trade")
    await asyncio.sleep(0.5)  # nothing more (no duplicates) arrives afterwards

    ticks = await published(kafka_bootstrap, okx_feed.status().exchange)
    assert [trade_id for trade_id, _, _ in ticks["BTC/USDT"]] == [str(i) for i in range(1, 1_205)]
    assert [side for _, _, side in ticks["BTC/USDT"][3:1_203]] == [
        "sell" if i % 7 == 0 else "buy" for i in range(1_200)]
    assert [trade_id for trade_id, _, _ in ticks["ETH/USDT"]] == ["1"]
    assert okx_feed.status().published == 1_205 and okx_feed.status().kind == "ccxt-ws"
    # the older trades came from history-trades, paged back by trade id, 100 at a time
    history = [r for r in fake_okx.requests if "/api/v5/market/history-trades" in r and "BTC-USDT" in r]
    assert len(history) >= 7 and all("limit=100" in r and "type=1" in r and "after=" in r for r in history)
    alerts = await alerts_about(kafka_bootstrap, okx_feed.status().exchange)
    assert "feed_catch_up_incomplete" not in {alert.kind for _, alert in alerts}


async def test_an_okx_outage_longer_than_the_catch_up_bound_publishes_the_newest_and_raises_an_alert(
    kafka_bootstrap, fake_okx, okx_feed_of
):
    feed = await okx_feed_of(catch_up_max_pages=2)  # the newest 500 + 2 older pages of 100
    await _outage_with_trades(fake_okx, feed, before=3, during=1_200)
    await fake_okx.make_trade("BTC-USDT", 30_010, 0.1)
    # 60 s: the catch-up pages through the fake's REST under ccxt's own rate limit, slow on a loaded box.
    await wait_until(lambda: feed.status().published == 3 + 700 + 1 + 1, 60,
                     lambda: f"the newest 700 and the rest (published {feed.status().published})")
    await asyncio.sleep(0.5)

    ticks = await published(kafka_bootstrap, feed.status().exchange)
    # trades 4..503 are beyond the bound: missing, in order around the gap, none twice
    assert [trade_id for trade_id, _, _ in ticks["BTC/USDT"]] == [str(i) for i in (*range(1, 4), *range(504, 1_205))]
    (alert,) = await alerts_of_kind(kafka_bootstrap, feed.status().exchange, "feed_catch_up_incomplete")
    assert alert.severity == "critical" and alert.labels["symbol"] == "BTC/USDT"
    assert "BTC/USDT may be missing" in alert.message and "catch_up_max_pages" in alert.message
    assert int(alert.labels["oldest_fetched_ms"]) >= int(alert.labels["since_ms"])
