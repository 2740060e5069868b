"""tradeflow.clients.candles against the running candle-builder's GET /v1/candles."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from tradeflow.clients.candles import CandleApiError, CandleClient, closed_before
from tradeflow.messages import Candle
from tradeflow_candle_builder.adapters.candle_store import CandleStore
from tradeflow_candle_builder.bootstrap import SERVICE
from tradeflow_candle_builder.settings import CandleBuilderSettings

pytestmark = pytest.mark.integration

MINUTE_NS = 60_000_000_000
T0 = 1_767_225_600_000_000_000  # 2026-01-01 00:00 UTC
COUNT = 23_456  # more than two pages of 10,000


def minute(exchange: str, i: int) -> Candle:
    price = 100.0 + (i % 97) * 0.25
    return Candle(exchange=exchange, symbol="BTC/USDT", timeframe="1m", ts_start=T0 + i * MINUTE_NS,
                  ts_end=T0 + (i + 1) * MINUTE_NS, open=price, high=price + 1, low=price - 1, close=price + 0.5,
                  volume=1.5, trades=i % 7 + 1)


async def test_history_pages_through_every_candle_in_order_and_latest_counts_back(
        database_url, kafka_bootstrap, unique_name):
    exchange = f"client-{unique_name[-8:]}"
    candles = [minute(exchange, i) for i in range(COUNT)]
    store = CandleStore(database_url)
    await store.start()
    try:
        await store.upsert_candles_1m(candles)
    finally:
        await store.stop()
    settings = CandleBuilderSettings(
        kafka_bootstrap=kafka_bootstrap, database_url=database_url, environment="test",
        ticks_topic=f"ticks-{unique_name}", candles_topic=f"candles-{unique_name}",
        consumer_group=f"cb-{unique_name}", consumer_session_timeout_ms=6000, tick_retention_days=36_500)
    app = SERVICE.create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cb") as http:
        async with app.router.lifespan_context(app):
            deadline = time.monotonic() + 30
            while (await http.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
            client = CandleClient("http://cb", client=http)
            got = await client.history(exchange, "BTC/USDT", "1m", T0, T0 + COUNT * MINUTE_NS)
            assert [c.ts for c in got] == [c.ts_start for c in candles]
            assert (got[123].open, got[123].close, got[123].trades) == (candles[123].open, candles[123].close,
                                                                       candles[123].trades)
            middle = await client.history(exchange, "BTC/USDT", "1m", T0 + 5 * MINUTE_NS, T0 + 12_345 * MINUTE_NS)
            assert [c.ts for c in middle] == [c.ts_start for c in candles[5:12_345]]

            tail = await client.latest(exchange, "BTC/USDT", "1m", 12_000)
            assert [c.ts for c in tail] == [c.ts_start for c in candles[-12_000:]]
            before = await client.latest(exchange, "BTC/USDT", "1m", 3, end_ns=T0 + 10 * MINUTE_NS)
            assert [c.ts for c in before] == [c.ts_start for c in candles[7:10]]
            hourly = await client.history(exchange, "BTC/USDT", "1h", T0, T0 + 24 * 60 * MINUTE_NS)
            assert len(hourly) == 24 and hourly[0].trades == sum(c.trades for c in candles[:60])
            assert closed_before(hourly, "1h", T0 + 90 * MINUTE_NS) == hourly[:1]

            with pytest.raises(CandleApiError, match="422.*timeframe"):
                await client.page(exchange, "BTC/USDT", "2m")
    with pytest.raises(CandleApiError, match="unreachable"):
        await CandleClient("http://127.0.0.1:9", timeout_s=2).page(exchange, "BTC/USDT", "1m")
