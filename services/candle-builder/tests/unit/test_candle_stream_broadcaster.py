"""The live stream's fan-out: subscriptions, the JSON frame, and the slow-client policy."""

from __future__ import annotations

import asyncio
import json

import pytest
from prometheus_client import generate_latest
from tradeflow.messages import Candle
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry
from tradeflow_candle_builder.stream.broadcaster import TOO_SLOW, CandleBroadcaster
from tradeflow_candle_builder.stream.frames import InvalidSubscription, parse_subscription

T0 = 1_772_445_600 * 1_000_000_000  # 2026-03-02 10:00 UTC
MINUTE = 60 * 1_000_000_000


def candle(minute: int, symbol: str = "BTC/USDT", timeframe: str = "1m", revision: int = 0) -> Candle:
    start = T0 + minute * MINUTE
    return Candle(exchange="binance", symbol=symbol, timeframe=timeframe, ts_start=start, ts_end=start + MINUTE,
                  open=1.0, high=2.0, low=0.5, close=1.5, volume=3.25, trades=7, revision=revision)


def metric(telemetry: Telemetry, name: str) -> float:
    for line in generate_latest(telemetry.registry).decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry("stream-test", CommonSettings())


async def test_a_client_that_stops_reading_is_dropped_and_the_others_get_everything(telemetry):
    broadcaster = CandleBroadcaster(telemetry, client_queue=3)
    keys = parse_subscription("binance:BTC/USDT", "1m")
    reader = broadcaster.subscribe(keys)
    stalled = broadcaster.subscribe(keys)
    assert metric(telemetry, "tradeflow_stream_clients") == 2

    for minute in range(5):  # the stalled client's queue holds 3: the 4th candle overflows it
        broadcaster.publish(candle(minute))
        frame = await asyncio.wait_for(reader.next_frame(), 1)
        assert json.loads(frame)["ts"] == f"2026-03-02T10:0{minute}:00Z"

    # The stalled client learns it was dropped at once (its backlog freed), nothing else.
    assert stalled.dropped and not reader.dropped
    assert await asyncio.wait_for(stalled.next_frame(), 1) is TOO_SLOW
    assert metric(telemetry, "tradeflow_stream_clients") == 1
    assert metric(telemetry, "tradeflow_stream_clients_dropped_total") == 1
    broadcaster.unsubscribe(stalled)  # its handler unsubscribes again on close: no double count
    assert metric(telemetry, "tradeflow_stream_clients") == 1


async def test_clients_get_only_their_keys_and_timeframes_as_json_frames(telemetry):
    broadcaster = CandleBroadcaster(telemetry, client_queue=10)
    btc_1m = broadcaster.subscribe(parse_subscription("binance:BTC/USDT", "1m"))
    eth_both = broadcaster.subscribe(parse_subscription("binance:ETH/USDT", "1m,5m"))
    broadcaster.publish(candle(0, "BTC/USDT", "5m"))
    broadcaster.publish(candle(0, "ETH/USDT", "5m", revision=2))
    broadcaster.publish(candle(1, "BTC/USDT", "1m"))

    assert json.loads(await btc_1m.next_frame()) == {
        "exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1m", "ts": "2026-03-02T10:01:00Z",
        "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 3.25, "trades": 7, "revision": 0}
    eth = json.loads(await eth_both.next_frame())
    assert (eth["symbol"], eth["timeframe"], eth["revision"]) == ("ETH/USDT", "5m", 2)
    await asyncio.sleep(0)
    assert btc_1m._queue.empty() and eth_both._queue.empty()


@pytest.mark.parametrize(("keys", "timeframes", "reason"), [
    (None, "1m", "keys: required"),
    ("", "1m", "keys: required"),
    ("binance-BTC/USDT", "1m", "keys: 'binance-BTC/USDT' is not exchange:symbol"),
    ("binance:", "1m", "keys: 'binance:' is not exchange:symbol"),
    ("binance:BTC/USDT", "2m", "timeframes: unknown '2m'"),
    ("binance:BTC/USDT", ",", "timeframes: empty"),
])
def test_bad_subscriptions_are_refused_naming_the_parameter(keys, timeframes, reason):
    with pytest.raises(InvalidSubscription) as refused:
        parse_subscription(keys, timeframes)
    assert str(refused.value).startswith(reason)


def test_timeframes_default_to_1m():
    assert parse_subscription("binance:BTC/USDT,kraken:ETH/USD", None) == {
        ("binance", "BTC/USDT", "1m"), ("kraken", "ETH/USD", "1m")}
