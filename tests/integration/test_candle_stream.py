"""``/v1/stream/candles`` on the running candle-builder (real uvicorn, broker and database).

Two websocket clients with different subscriptions must each receive exactly the candles of
their keys and timeframes, in order, then the corrected candle after a late trade; bad
parameters close the socket with 1008 and a reason naming the parameter.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import pytest
import uvicorn
from tradeflow.bus import Producer
from tradeflow.messages import Tick
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry
from tradeflow.topics import market_key
from tradeflow_candle_builder.bootstrap import SERVICE
from tradeflow_candle_builder.settings import CandleBuilderSettings
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.integration

T0 = int(datetime(2026, 3, 2, 10, 0, tzinfo=UTC).timestamp()) * 1_000_000_000  # a Monday, in the past
S = 1_000_000_000
MINUTE = 60 * S
TF_NS = {"1m": MINUTE, "5m": 5 * MINUTE, "1h": 60 * MINUTE}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def settings(kafka_bootstrap, database_url, unique_name) -> CandleBuilderSettings:
    return CandleBuilderSettings(
        kafka_bootstrap=kafka_bootstrap, database_url=database_url, environment="test",
        ticks_topic=f"ticks-{unique_name}", candles_topic=f"candles-{unique_name}",
        consumer_group=f"cb-{unique_name}", consumer_session_timeout_ms=6000,
        candle_grace_ms=2000, idle_close_ms=60_000, tick_retention_days=36_500,
        http_host="127.0.0.1", http_port=free_port())


@asynccontextmanager
async def running(settings: CandleBuilderSettings) -> AsyncIterator[str]:
    """The candle-builder served by uvicorn on loopback until ready; yields its base URL."""
    app = SERVICE.create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.http_port, log_config=None,
                                           lifespan="on"))
    task = asyncio.create_task(server.serve())
    base = f"127.0.0.1:{settings.http_port}"
    try:
        async with httpx.AsyncClient(base_url=f"http://{base}") as http:
            deadline = time.monotonic() + 30
            while True:
                assert not task.done(), "the server stopped at start"
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "not ready in 30 s"
                await asyncio.sleep(0.2)
        yield base
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


def trades_for(exchange: str, symbol: str, seed: int) -> list[Tick]:
    """A trade every 20 s from 10:00 to 10:09:40, prices varying."""
    return [Tick(exchange=exchange, symbol=symbol, trade_id=f"{i}", price=100.0 + (i * seed) % 13, amount=1.0 + i % 3,
                 side="buy", ts_event=T0 + i * 20 * S, ts_recv=T0 + i * 20 * S + 1000) for i in range(30)]


def expected(trades: list[Tick], timeframe: str) -> list[tuple]:
    """(ts bucket, open, high, low, close, volume, trades) per bucket, ordered by time."""
    buckets: dict[int, list] = {}
    for t in sorted(trades, key=lambda t: (t.ts_event, t.ts_recv)):
        start = t.ts_event - t.ts_event % TF_NS[timeframe]
        c = buckets.get(start)
        if c is None:
            buckets[start] = [t.price, t.price, t.price, t.price, t.amount, 1]
        else:
            c[1], c[2], c[3], c[4], c[5] = max(c[1], t.price), min(c[2], t.price), t.price, c[4] + t.amount, c[5] + 1
    return [(datetime.fromtimestamp(k / S, UTC).isoformat().replace("+00:00", "Z"), *v)
            for k, v in sorted(buckets.items())]


def values(frame: dict) -> tuple:
    return (frame["ts"], frame["open"], frame["high"], frame["low"], frame["close"], frame["volume"], frame["trades"])


async def receive(ws: ClientConnection, count: int, timeout_s: float = 30) -> list[dict]:
    frames = []
    async with asyncio.timeout(timeout_s):
        while len(frames) < count:
            frames.append(json.loads(await ws.recv()))
    return frames


async def test_two_clients_receive_exactly_their_candles_in_order_then_the_correction(settings, unique_name):
    exchange = f"x{unique_name[-8:]}"
    btc, eth, sol = (trades_for(exchange, s, seed) for s, seed in (("BTC/USDT", 3), ("ETH/USDT", 5), ("SOL/USDT", 7)))
    # One trade per market at 11:30 closes 10:00-11:00 in every timeframe (stream time + grace).
    closing = [Tick(exchange=exchange, symbol=s, trade_id="close", price=100.0, amount=1.0, side="buy",
                    ts_event=T0 + 90 * MINUTE, ts_recv=T0 + 90 * MINUTE) for s in ("BTC/USDT", "ETH/USDT", "SOL/USDT")]
    late_btc = Tick(exchange=exchange, symbol="BTC/USDT", trade_id="late", price=500.0, amount=2.0, side="sell",
                    ts_event=T0 + 2 * MINUTE + 30 * S, ts_recv=T0 + 91 * MINUTE)
    late_eth = Tick(exchange=exchange, symbol="ETH/USDT", trade_id="late", price=1.0, amount=2.0, side="sell",
                    ts_event=T0 + 7 * MINUTE + 5 * S, ts_recv=T0 + 91 * MINUTE)
    producer_settings = CommonSettings(kafka_bootstrap=settings.kafka_bootstrap)
    producer = Producer(producer_settings, Telemetry("test-feed", producer_settings), client_id="test-feed")

    async with running(settings) as base:
        url = f"ws://{base}/v1/stream/candles"
        async with connect(f"{url}?keys={exchange}:BTC/USDT&timeframes=1m") as btc_1m, \
                connect(f"{url}?keys={exchange}:ETH/USDT,{exchange}:SOL/USDT&timeframes=5m,1h") as eth_sol:
            await producer.start()
            try:
                await producer.send_many(settings.ticks_topic, [
                    (market_key(t.exchange, t.symbol), t) for t in sorted(btc + eth + sol, key=lambda t: t.ts_recv)])
                await producer.send_many(settings.ticks_topic, [(market_key(t.exchange, t.symbol), t) for t in closing])

                # BTC 1m: 10 closed candles of 10:00-10:09, in time order; nothing else.
                frames = await receive(btc_1m, 10)
                assert {(f["exchange"], f["symbol"], f["timeframe"], f["revision"]) for f in frames} == {
                    (exchange, "BTC/USDT", "1m", 0)}
                assert [values(f) for f in frames] == expected(btc, "1m")

                # ETH and SOL, 5m and 1h: each key's candles in time order.
                frames = await receive(eth_sol, 2 * (2 + 1))
                for symbol, trades in (("ETH/USDT", eth), ("SOL/USDT", sol)):
                    for tf in ("5m", "1h"):
                        got = [values(f) for f in frames if (f["symbol"], f["timeframe"]) == (symbol, tf)]
                        assert got == expected(trades, tf), (symbol, tf)
                assert {f["revision"] for f in frames} == {0}

                # Late trades: each client gets the corrected candles of its subscription only.
                await producer.send_many(settings.ticks_topic, [
                    (market_key(t.exchange, t.symbol), t) for t in (late_btc, late_eth)])
                [corrected] = await receive(btc_1m, 1)
                assert (corrected["symbol"], corrected["timeframe"]) == ("BTC/USDT", "1m")
                assert corrected["revision"] >= 1
                assert values(corrected) == expected(btc + [late_btc], "1m")[2]
                corrections = await receive(eth_sol, 2)
                assert {(f["symbol"], f["timeframe"]) for f in corrections} == {("ETH/USDT", "5m"), ("ETH/USDT", "1h")}
                assert all(f["revision"] >= 1 for f in corrections)
                by_tf = {f["timeframe"]: values(f) for f in corrections}
                assert by_tf["5m"] == expected(eth + [late_eth], "5m")[1]
                assert by_tf["1h"] == expected(eth + [late_eth], "1h")[0]

                # Nothing else arrives for either client (e.g. SOL or the other timeframes).
                for ws in (btc_1m, eth_sol):
                    with pytest.raises(TimeoutError):
                        await asyncio.wait_for(ws.recv(), 1.0)
                async with httpx.AsyncClient(base_url=f"http://{base}") as http:
                    metrics = (await http.get("/metrics")).text
                assert "tradeflow_stream_clients 2.0" in metrics
                assert "tradeflow_stream_candles_pushed_total 19.0" in metrics  # 10 + 6 + 1 + 2
                assert "tradeflow_stream_clients_dropped_total 0.0" in metrics
            finally:
                await producer.stop()



async def test_bad_parameters_close_the_socket_with_1008_naming_the_parameter(settings):
    cases = [
        ("", "keys: required"),
        ("?keys=&timeframes=1m", "keys: required"),
        ("?keys=binance-BTC/USDT", "keys: 'binance-BTC/USDT' is not exchange:symbol"),
        ("?keys=binance:BTC/USDT&timeframes=1m,2m", "timeframes: unknown '2m'"),
    ]
    async with running(settings) as base:
        for query, reason in cases:
            async with connect(f"ws://{base}/v1/stream/candles{query}") as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd.code == 1008, query
            assert closed.value.rcvd.reason.startswith(reason), (query, closed.value.rcvd.reason)
