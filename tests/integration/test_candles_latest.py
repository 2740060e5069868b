"""``GET /v1/candles/latest`` of the running candle-builder, in both local storage modes.

1m candles are stored from a Sunday evening into a Monday morning (plus old history); the
newest candle of every timeframe is the bucket holding the newest 1m candle, aggregated from
the 1m candles in it (weeks start Monday 00:00 UTC, so the Sunday minutes are last week's).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from tradeflow.messages import Candle
from tradeflow_candle_builder.adapters.candle_store import CandleStore
from tradeflow_candle_builder.bootstrap import SERVICE
from tradeflow_candle_builder.settings import CandleBuilderSettings

from tests.integration.candle_builder_app import wait_ready

pytestmark = pytest.mark.integration

NS = 1_000_000_000
MINUTE_NS = 60 * NS
MONDAY = datetime(2026, 3, 9, tzinfo=UTC)


def ns(dt: datetime) -> int:
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def one_minute(exchange: str, start: datetime, open_: float, high: float, low: float, close: float,
               volume: float, trades: int) -> Candle:
    return Candle(exchange=exchange, symbol="BTC/USDT", timeframe="1m", ts_start=ns(start),
                  ts_end=ns(start) + MINUTE_NS, open=open_, high=high, low=low, close=close, volume=volume,
                  trades=trades, revision=0)


@pytest.fixture(params=["database_url", "plain_postgres_url"])
def settings(request, kafka_bootstrap, unique_name) -> CandleBuilderSettings:
    return CandleBuilderSettings(
        kafka_bootstrap=kafka_bootstrap, database_url=request.getfixturevalue(request.param), environment="test",
        ticks_topic=f"ticks-{unique_name}", candles_topic=f"candles-{unique_name}",
        consumer_group=f"cb-{unique_name}", consumer_session_timeout_ms=6000, tick_retention_days=36_500)


async def test_the_latest_candle_of_every_timeframe_is_the_bucket_of_the_newest_minute(settings, unique_name):
    exchange = f"latest-{unique_name[-8:]}"
    candles = [
        one_minute(exchange, datetime(2026, 1, 5, 12, 0, tzinfo=UTC), 10.0, 11.0, 9.0, 10.5, 1.0, 1),  # old history
        one_minute(exchange, MONDAY - timedelta(minutes=2), 90.0, 95.0, 89.0, 94.0, 2.0, 2),  # Sunday 23:58
        one_minute(exchange, MONDAY - timedelta(minutes=1), 94.0, 96.0, 93.0, 95.0, 1.5, 3),  # Sunday 23:59
    ]
    # Monday 00:00 .. 00:06; 00:06 is the forming candle.
    for i in range(7):
        price = 100.0 + i
        candles.append(one_minute(exchange, MONDAY + timedelta(minutes=i), price, price + 2.0, price - 1.0,
                                  price + 0.5, 0.25 * (i + 1), i + 1))
    store = CandleStore(settings.libpq_url)
    await store.start()
    try:
        await store.upsert_candles_1m(candles)
    finally:
        await store.stop()

    monday = [c for c in candles if c.ts_start >= ns(MONDAY)]

    def rolled_up(start: datetime, members: list[Candle]) -> dict:
        return {"ts": start.isoformat().replace("+00:00", "Z"), "open": members[0].open,
                "high": max(c.high for c in members), "low": min(c.low for c in members),
                "close": members[-1].close, "volume": sum(c.volume for c in members),
                "trades": sum(c.trades for c in members)}

    forming = monday[-1]
    expected = {
        "1m": rolled_up(MONDAY + timedelta(minutes=6), [forming]),
        "5m": rolled_up(MONDAY + timedelta(minutes=5), monday[5:]),
        "15m": rolled_up(MONDAY, monday),
        "1h": rolled_up(MONDAY, monday),
        "4h": rolled_up(MONDAY, monday),
        "1d": rolled_up(MONDAY, monday),
        "1w": rolled_up(MONDAY, monday),  # the Sunday minutes belong to the previous week
    }
    assert expected["1w"] == {"ts": "2026-03-09T00:00:00Z", "open": 100.0, "high": 108.0, "low": 99.0,
                              "close": 106.5, "volume": 7.0, "trades": 28}

    app = SERVICE.create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cb") as client:
        async with app.router.lifespan_context(app):
            await wait_ready(client)
            for timeframe, want in expected.items():
                resp = await client.get("/v1/candles/latest",
                                        params={"exchange": exchange, "symbol": "BTC/USDT", "timeframe": timeframe})
                assert resp.status_code == 200, (timeframe, resp.text)
                assert resp.json() == want, timeframe
                # The same candle /v1/candles returns last.
                listed = await client.get("/v1/candles", params={"exchange": exchange, "symbol": "BTC/USDT",
                                                                 "timeframe": timeframe, "limit": 1})
                assert listed.json() == [want], timeframe

            # A correction of the forming minute is what /latest answers next.
            store = CandleStore(settings.libpq_url)
            await store.start()
            try:
                await store.upsert_candles_1m([one_minute(exchange, MONDAY + timedelta(minutes=6), 106.0, 120.0,
                                                          105.0, 119.0, 3.0, 9)])
            finally:
                await store.stop()
            resp = await client.get("/v1/candles/latest",
                                    params={"exchange": exchange, "symbol": "BTC/USDT", "timeframe": "5m"})
            assert resp.json() == {"ts": "2026-03-09T00:05:00Z", "open": 105.0, "high": 120.0, "low": 104.0,
                                   "close": 119.0, "volume": 4.5, "trades": 15}

            resp = await client.get("/v1/candles/latest",
                                    params={"exchange": exchange, "symbol": "ETH/USDT", "timeframe": "1h"})
            assert resp.status_code == 404
            assert resp.json()["detail"] == f"no 1h candle stored for {exchange} ETH/USDT"
            resp = await client.get("/v1/candles/latest",
                                    params={"exchange": exchange, "symbol": "BTC/USDT", "timeframe": "2m"})
            assert resp.status_code == 422 and "timeframe: unknown timeframe '2m'" in resp.json()["detail"]
            resp = await client.get("/v1/candles/latest", params={"exchange": exchange, "symbol": "BTC/USDT"})
            assert resp.status_code == 422 and "timeframe" in resp.text
            resp = await client.get("/v1/candles/latest", params={"symbol": "BTC/USDT", "timeframe": "1m"})
            assert resp.status_code == 422 and "exchange" in resp.text
