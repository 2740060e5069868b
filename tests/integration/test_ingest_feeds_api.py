"""GET /v1/feeds and the feed metrics of the ingest service, fed by a local fake Binance."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tradeflow_ingest.bootstrap import SERVICE
from tradeflow_ingest.settings import IngestSettings

from tests.fakes.fake_binance import FakeBinance
from tests.integration.test_ingest_service import wait_for

pytestmark = pytest.mark.integration


def samples(metrics_text: str, name: str, exchange: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of ``name`` labelled with ``exchange``, by their other labels."""
    found = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("exchange") == exchange:
                found[tuple(sorted((k, v) for k, v in sample.labels.items() if k != "exchange"))] = sample.value
    return found


async def test_feeds_report_mode_connection_trades_and_reconnects_per_exchange_and_symbol(
    kafka_bootstrap, unique_name
):
    fake = FakeBinance()
    await fake.start()
    exchange = f"bn-{unique_name}"
    settings = IngestSettings(kafka_bootstrap=kafka_bootstrap, exchanges=[{
        "id": "binance", "name": exchange, "symbols": ["BTC/USDT", "ETH/USDT"], "poll_interval_s": 0.2,
        "urls": {"public": fake.rest_url, "ws.spot": fake.ws_url},
    }])
    app = SERVICE.create_app(settings)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as client:
            async with app.router.lifespan_context(app):
                async def feed_when(condition):
                    (feed,) = (await client.get("/v1/feeds")).json()
                    return feed if condition(feed) else None

                async def connected():
                    return fake.connected_websockets == 1
                await wait_for(connected, 20, "the websocket subscription")
                made = [await fake.make_trade("BTCUSDT", 100 + i, 1.0) for i in range(3)]
                feed = await wait_for(lambda: feed_when(lambda f: f["symbols"][0]["published"] == 3), 20, "3 ticks")
                assert (feed["exchange"], feed["mode"], feed["connected"], feed["reconnects"], feed["breaker_state"]) \
                    == (exchange, "websocket", True, 0, "closed")
                btc, eth = feed["symbols"]
                assert (btc["symbol"], btc["received"], btc["published"], btc["rejected"]) == ("BTC/USDT", 3, 3, 0)
                assert datetime.fromisoformat(btc["last_trade_time"]) == datetime.fromtimestamp(
                    made[-1].ts_ms / 1000, tz=UTC)
                assert btc["trades_per_second"] > 0
                assert (eth["symbol"], eth["received"], eth["last_trade_time"], eth["trades_per_second"]) == (
                    "ETH/USDT", 0, None, 0.0)

                fake.refuse_websockets = True
                await fake.drop_websockets()
                feed = await wait_for(lambda: feed_when(lambda f: f["mode"] == "rest"), 20, "REST mode")
                assert feed["connected"] is False
                metrics = (await client.get("/metrics")).text
                assert samples(metrics, "tradeflow_ingest_feed_connected", exchange) == {(): 0.0}

                fake.refuse_websockets = False
                await wait_for(connected, 30, "the websocket reconnect")
                newest = await fake.make_trade("BTCUSDT", 104, 1.0)
                feed = await wait_for(lambda: feed_when(
                    lambda f: f["symbols"][0]["published"] == 4 and f["connected"]), 20, "the tick after it")
                assert feed["mode"] == "websocket" and feed["reconnects"] >= 1

                metrics = (await client.get("/metrics")).text
                btc_label = (("symbol", "BTC/USDT"),)
                assert samples(metrics, "tradeflow_ingest_feed_trades_received_total", exchange) == {btc_label: 4.0}
                assert samples(metrics, "tradeflow_ingest_feed_trades_published_total", exchange) == {btc_label: 4.0}
                reconnections = samples(metrics, "tradeflow_ingest_feed_reconnections_total", exchange)
                assert reconnections[(("outcome", "success"),)] == 1.0
                assert reconnections.get((("outcome", "failure"),), 0.0) == feed["reconnects"] - 1
                assert samples(metrics, "tradeflow_ingest_feed_connected", exchange) == {(): 1.0}
                assert samples(metrics, "tradeflow_ingest_feed_breaker_state", exchange) == {(): 0.0}
                lag = samples(metrics, "tradeflow_ingest_feed_lag_seconds", exchange)
                assert 0 <= lag[btc_label] < 30 and lag[(("symbol", "ETH/USDT"),)] != lag[(("symbol", "ETH/USDT"),)]
                assert abs(time.time() - lag[btc_label] - newest.ts_ms / 1000) < 1.0  # since the newest trade
                (exchange_lag,) = samples(metrics, "tradeflow_ingest_feed_exchange_lag_seconds", exchange).values()
                assert abs(time.time() - exchange_lag - newest.ts_ms / 1000) < 1.0  # newest of any symbol
                assert samples(metrics, "tradeflow_ingest_feed_symbols", exchange) == {(): 2.0}

                await fake.make_trade("BTCUSDT", 1_000, 1.0)  # ten times the last price: held back
                await wait_for(lambda: feed_when(lambda f: f["symbols"][0]["rejected"] == 1), 20, "the rejection")
                metrics = (await client.get("/metrics")).text
                assert samples(metrics, "tradeflow_ingest_feed_trades_rejected_total", exchange) == {btc_label: 1.0}
                assert samples(metrics, "tradeflow_ingest_feed_trades_received_total", exchange) == {btc_label: 5.0}
                assert samples(metrics, "tradeflow_ingest_feed_trades_published_total", exchange) == {btc_label: 4.0}
    finally:
        await fake.stop()
