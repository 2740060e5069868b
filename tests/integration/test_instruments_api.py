"""``POST/GET /v1/instruments`` of the running candle-builder (real broker and database): status
codes and messages, and the candles API of a registered session instrument (forming bars folded
from its 1m candles on the session grid, cut at an early close)."""

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


def bearer(settings: CandleBuilderSettings) -> dict[str, str]:
    """The test session's API key (state-changing requests need one)."""
    return {"Authorization": f"Bearer {settings.api_keys.get_secret_value()}"}


def ns(dt: datetime) -> int:
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def one_minute(exchange: str, symbol: str, start: datetime, price: float, trades: int) -> Candle:
    return Candle(exchange=exchange, symbol=symbol, timeframe="1m", ts_start=ns(start), ts_end=ns(start) + MINUTE_NS,
                  open=price, high=price + 1, low=price - 1, close=price + 0.5, volume=float(trades), trades=trades)


@pytest.fixture(params=["database_url", "plain_postgres_url"])
def settings(request, kafka_bootstrap, unique_name, api_key) -> CandleBuilderSettings:
    return CandleBuilderSettings(
        kafka_bootstrap=kafka_bootstrap, database_url=request.getfixturevalue(request.param), environment="test",
        api_keys=api_key,
        ticks_topic=f"ticks-{unique_name}", candles_topic=f"candles-{unique_name}",
        consumer_group=f"cb-{unique_name}", consumer_session_timeout_ms=6000, tick_retention_days=36_500)


async def store_1m(settings: CandleBuilderSettings, candles: list[Candle]) -> None:
    store = CandleStore(settings.libpq_url)
    await store.start()
    try:
        await store.upsert_candles_1m(candles)
    finally:
        await store.stop()


async def test_registering_an_instrument_needs_the_api_key(kafka_bootstrap, database_url, unique_name, api_key):
    settings = CandleBuilderSettings(
        kafka_bootstrap=kafka_bootstrap, database_url=database_url, environment="test", api_keys=api_key,
        ticks_topic=f"ticks-{unique_name}", candles_topic=f"candles-{unique_name}",
        consumer_group=f"cb-{unique_name}", consumer_session_timeout_ms=6000)
    exchange = f"key-{unique_name[-8:]}"
    instrument = {"exchange": exchange, "symbol": "AAPL", "calendar": "XNYS"}
    app = SERVICE.create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cb") as client:
        async with app.router.lifespan_context(app):
            await wait_ready(client)
            for headers in ({}, {"Authorization": f"Bearer {api_key[::-1]}"}, {"Authorization": api_key}):
                refused = await client.post("/v1/instruments", json=instrument, headers=headers)
                assert refused.status_code == 401 and "key" in refused.json()["detail"], refused.text
            listed = (await client.get("/v1/instruments")).json()  # reads need no key
            assert [i for i in listed if i["exchange"] == exchange] == []
            registered = await client.post("/v1/instruments", json=instrument, headers=bearer(settings))
            assert registered.status_code == 201, registered.text
            listed = (await client.get("/v1/instruments")).json()
            assert [i["symbol"] for i in listed if i["exchange"] == exchange] == ["AAPL"]


async def test_registration_status_codes_and_messages(settings, unique_name):
    exchange = f"reg-{unique_name[-8:]}"
    # One instrument already has (24/7) candles without being registered.
    await store_1m(settings, [one_minute(exchange, "TRADED", datetime(2025, 11, 26, 15, 0, tzinfo=UTC), 10.0, 1)])
    app = SERVICE.create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cb",
                                 headers=bearer(settings)) as client:
        async with app.router.lifespan_context(app):
            await wait_ready(client)

            async def post(symbol: str, **body):
                return await client.post("/v1/instruments", json={"exchange": exchange, "symbol": symbol, **body})

            resp = await post("AAPL", calendar="XNYS")
            assert resp.status_code == 201, resp.text
            assert resp.json() == {"exchange": exchange, "symbol": "AAPL", "calendar": "XNYS", "extended_hours": False}
            assert (await post("AAPL", calendar="XNYS")).status_code == 200  # identical
            assert (await post("AAPL", calendar="NYSE")).status_code == 200  # an alias of the same calendar
            assert (await post("BTC/USDT")).json()["calendar"] == "24/7"  # the default

            # No candles yet: the settings may still change.
            resp = await post("AAPL", calendar="XNYS", extended_hours=True)
            assert resp.status_code == 200 and resp.json()["extended_hours"] is True

            # Candles exist: they are cut one way, so other settings are refused.
            await store_1m(settings, [one_minute(exchange, "AAPL", datetime(2025, 11, 26, 15, 0, tzinfo=UTC), 10.0, 1)])
            resp = await post("AAPL", calendar="XLON")
            assert resp.status_code == 409
            assert "already has candles under calendar 'XNYS' with extended hours" in resp.json()["detail"]
            resp = await post("TRADED", calendar="XNYS")  # unregistered = 24/7, with candles
            assert resp.status_code == 409 and "'24/7'" in resp.json()["detail"]
            assert (await post("TRADED", calendar="24/7")).status_code == 201  # same settings: fine

            resp = await post("X", calendar="XNYZ")
            assert resp.status_code == 422
            assert "unknown calendar 'XNYZ'" in resp.json()["detail"] and "XNYS, XNAS, XLON, XTKS" in resp.json()["detail"]
            resp = await post("X", calendar="XLON", extended_hours=True)
            assert resp.status_code == 422 and "no extended session is known for XLON" in resp.json()["detail"]
            resp = await post("X", extended_hours=True)
            assert resp.status_code == 422 and "24/7" in resp.json()["detail"]
            resp = await client.post("/v1/instruments", json={"exchange": "bad exchange", "symbol": "X"})
            assert resp.status_code == 422 and resp.json()["detail"].startswith("exchange:")
            resp = await client.post("/v1/instruments", json={"exchange": exchange, "symbol": ""})
            assert resp.status_code == 422 and resp.json()["detail"].startswith("symbol:")
            resp = await client.post("/v1/instruments", json={"exchange": exchange})
            assert resp.status_code == 422 and "symbol" in resp.text

            listed = [i for i in (await client.get("/v1/instruments")).json() if i["exchange"] == exchange]
            assert listed == [
                {"exchange": exchange, "symbol": "AAPL", "calendar": "XNYS", "extended_hours": True},
                {"exchange": exchange, "symbol": "BTC/USDT", "calendar": "24/7", "extended_hours": False},
                {"exchange": exchange, "symbol": "TRADED", "calendar": "24/7", "extended_hours": False},
            ]


async def test_a_session_instruments_forming_bars_follow_the_session_grid(settings, unique_name):
    exchange = f"ses-{unique_name[-8:]}"
    # 2025-11-28, the early close at 13:00 New York (18:00 UTC): 1m candles 17:28 .. 17:59.
    minutes = [one_minute(exchange, "AAPL", datetime(2025, 11, 28, 17, 28, tzinfo=UTC) + timedelta(minutes=i),
                          100.0 + i, i + 1) for i in range(32)]
    app = SERVICE.create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cb",
                                 headers=bearer(settings)) as client:
        async with app.router.lifespan_context(app):
            await wait_ready(client)
            resp = await client.post("/v1/instruments", json={"exchange": exchange, "symbol": "AAPL", "calendar": "XNYS"})
            assert resp.status_code == 201, resp.text
            await store_1m(settings, minutes)

            def rolled(start: str, members: list[Candle]) -> dict:
                return {"ts": start, "open": members[0].open, "high": max(c.high for c in members),
                        "low": min(c.low for c in members), "close": members[-1].close,
                        "volume": sum(c.volume for c in members), "trades": sum(c.trades for c in members)}

            expected = {
                "1h": rolled("2025-11-28T17:30:00Z", minutes[2:]),  # 12:30-13:00 local, cut at the close
                "4h": rolled("2025-11-28T14:30:00Z", minutes),  # from the 09:30 open
                "1d": rolled("2025-11-28T14:30:00Z", minutes),
                "1w": rolled("2025-11-24T14:30:00Z", minutes),  # Monday's open
                "15m": rolled("2025-11-28T17:45:00Z", minutes[17:]),
            }
            for timeframe, want in expected.items():
                resp = await client.get("/v1/candles/latest",
                                        params={"exchange": exchange, "symbol": "AAPL", "timeframe": timeframe})
                assert resp.status_code == 200 and resp.json() == want, (timeframe, resp.text)
            resp = await client.get("/v1/candles", params={"exchange": exchange, "symbol": "AAPL", "timeframe": "1h",
                                                           "start": "2025-11-28T17:00:00Z"})
            # Closed bars come from session_candles (the pipeline writes them when they close; none
            # here), the forming one from its 1m candles.
            assert resp.json() == [expected["1h"]]
