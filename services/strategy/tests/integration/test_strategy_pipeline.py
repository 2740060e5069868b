"""The strategy service on the real broker and database, warming up through the real candle-builder API.

The candles are stored (all of them, as the candle-builder stores them, the "future" ones
included) and published to the service's candles topic from a later point on; the signals
topic must then hold exactly the backtest's decisions from that point, once each, also after
the group's offsets are rewound (a restart between handling and committing).
"""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import httpx
import pytest
from tradeflow.bus import Producer
from tradeflow.messages import Candle, Fill
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry
from tradeflow.timeframes import HOUR_NS
from tradeflow_candle_builder.adapters.candle_store import CandleStore
from tradeflow_candle_builder.bootstrap import SERVICE as CANDLE_BUILDER
from tradeflow_candle_builder.settings import CandleBuilderSettings
from tradeflow_strategy.settings import StrategySettings
from tradeflow_trading.strategy.parity import frame_candles

from tests.served_app import served
from tests.strategy_candles import random_walk
from tests.strategy_service import (
    publish_candles,
    read_signals,
    rewind_group,
    service_settings,
    sma_cross_signals,
    strategy_app,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def candle_api(kafka_bootstrap, database_url, unique_name):
    """The candle-builder's API over the session database (its own topics, nothing to consume)."""
    settings = CandleBuilderSettings(
        kafka_bootstrap=kafka_bootstrap, database_url=database_url, environment="test",
        ticks_topic=f"ticks-{unique_name}", candles_topic=f"cb-candles-{unique_name}",
        consumer_group=f"cb-{unique_name}", consumer_session_timeout_ms=6000, tick_retention_days=36_500)
    async with served(CANDLE_BUILDER.create_app(settings)) as base:
        yield base


async def store(database_url: str, candles: list[Candle]) -> None:
    candle_store = CandleStore(database_url)
    await candle_store.start()
    try:
        await candle_store.upsert_candles_1m(candles)
    finally:
        await candle_store.stop()


def strategy_settings(kafka_bootstrap, database_url, api_key, name, candle_api, exchange, **extra) -> StrategySettings:
    accounts = [{"id": "acct-1", "exchange": exchange}, {"id": "acct-2", "exchange": exchange}]
    return service_settings(kafka_bootstrap, database_url, api_key, name, accounts=accounts, candle_api=candle_api,
                            **extra)


def strategy_service(settings: StrategySettings, api_key: str):
    return strategy_app(settings, api_key, ready=True)


def in_time_order(*markets: list[Candle]) -> list[Candle]:
    return sorted((c for m in markets for c in m), key=lambda c: (c.ts_start, c.symbol))


async def test_two_markets_two_instances_give_exactly_the_expected_signals_also_after_a_redelivery(
        kafka_bootstrap, database_url, api_key, unique_name, candle_api):
    exchange = f"x{unique_name[-8:]}"
    frames = {"BTC/USDT": random_walk(300, seed=1), "ETH/USDT": random_walk(300, seed=2)}
    candles = {s: frame_candles(f, exchange, s) for s, f in frames.items()}
    await store(database_url, [c for m in candles.values() for c in m])
    first = 100  # the stream starts here; the store holds every candle
    settings = strategy_settings(kafka_bootstrap, database_url, api_key, unique_name, candle_api, exchange)
    one, two = f"one-{unique_name[-8:]}", f"two-{unique_name[-8:]}"
    definitions = [
        {"id": one, "strategy": "sma_cross", "account_id": "acct-1", "exchange": exchange,
         "symbols": ["BTC/USDT", "ETH/USDT"], "timeframe": "1m", "params": {"fast": 3, "slow": 8}},
        {"id": two, "strategy": "sma_cross", "account_id": "acct-2", "exchange": exchange,
         "symbols": ["ETH/USDT"], "timeframe": "1m", "params": {"fast": 5, "slow": 13}}]

    def expected(from_ts: dict[str, int]) -> dict[str, object]:
        signals = []
        for d in definitions:
            for symbol in d["symbols"]:
                signals += sma_cross_signals(d["id"], d["account_id"], exchange, symbol, d["params"], frames[symbol],
                                             from_ts[symbol])
        return {s.signal_id: s for s in signals}

    want = expected({s: m[first].ts_start for s, m in candles.items()})
    assert len(want) > 20
    async with strategy_service(settings, api_key) as api:
        for d in definitions:
            assert (await api.post("/v1/strategies", json=d)).status_code == 201
        await _send_raw(kafka_bootstrap, settings.topic_candles, f"{exchange}:BTC/USDT".encode(), b"\x93not a candle")
        await publish_candles(kafka_bootstrap, settings.topic_candles,
                              in_time_order(*(m[first:] for m in candles.values())))
        signals = await read_signals(kafka_bootstrap, settings.topic_signals, lambda got: len(got) >= len(want),
                                     timeout_s=60)
        (dead,) = await _records(kafka_bootstrap, settings.topic_candles + ".dlq")
        assert dead.value == b"\x93not a candle"
        assert dict(dead.headers)["error-reason"].startswith(b"undecodable:")
        assert sorted(s.signal_id for s in signals) == sorted(want)  # each exactly once
        assert all(s == want[s.signal_id] for s in signals)
        deadline = time.monotonic() + 10
        while (detail := (await api.get(f"/v1/strategies/{one}")).json())["status"] != "ready" or \
                detail["markets"][0]["last_candle"]["ts"] != "2026-01-05T04:59:00+00:00":
            assert time.monotonic() < deadline, detail
            await asyncio.sleep(0.1)
        btc = detail["markets"][0]
        assert btc["warm_up"] == {"candles": 9, "window": 9, "before": "2026-01-05T01:40:00+00:00"}
        assert btc["candles"] == 200 and btc["last_signals"][-1]["signal_id"] == max(
            (s for s in signals if s.strategy_id == one and s.symbol == "BTC/USDT"), key=lambda s: s.ts_event).signal_id

        # A fill of the instance's order, consumed by the group and stored, moves its position.
        fill = Fill(fill_id=f"f-{one}", client_order_id="c1", account_id="acct-1", exchange=exchange,
                    symbol="BTC/USDT", side="buy", quantity=Decimal("0.5"), price=Decimal("101.25"),
                    fee=Decimal("0.05"), fee_currency="USDT", strategy_id=one, ts_event=candles["BTC/USDT"][-1].ts_end)
        await _send_messages(kafka_bootstrap, settings.topic_fills, [("acct-1", fill), ("acct-1", fill)])
        deadline = time.monotonic() + 10
        while (position := (await api.get(f"/v1/strategies/{one}")).json()["markets"][0]["position"])["fills"] == 0:
            assert time.monotonic() < deadline, position
            await asyncio.sleep(0.1)
        assert position == {"quantity": "0.5", "average_price": "101.25", "realized_pnl": "0",
                            "fees": {"USDT": "0.05"}, "fills": 1}  # the repeated fill counted once

    # The service stopped after committing; the group's offsets go back to the middle of each
    # partition, as if it had died before its last commits: it gets those candles again.
    again = await rewind_group(kafka_bootstrap, settings.consumer_group, settings.topic_candles,
                               lambda partition, end: end // 2)
    assert again
    from_ts = {s: min(c.ts_start for c in again if c.symbol == s) if any(c.symbol == s for c in again) else 1 << 62
               for s in candles}
    republished = expected(from_ts)
    assert republished
    async with strategy_service(settings, api_key):
        signals = await read_signals(kafka_bootstrap, settings.topic_signals,
                                     lambda got: len(got) >= len(want) + len(republished), timeout_s=60)
    repeated = signals[len(want):] if len(signals) == len(want) + len(republished) else signals
    assert len(signals) == len(want) + len(republished), "a redelivered candle decided something new or nothing"
    assert {s.signal_id for s in signals} == set(want)
    assert all(s == want[s.signal_id] for s in repeated)


async def _send_messages(bootstrap: str, topic: str, items: list) -> None:
    settings = CommonSettings(kafka_bootstrap=bootstrap)
    producer = Producer(settings, Telemetry("test-fills", settings), client_id="test-fills")
    await producer.start()
    try:
        await producer.send_many(topic, items)
    finally:
        await producer.stop()


async def _send_raw(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    settings = CommonSettings(kafka_bootstrap=bootstrap)
    producer = Producer(settings, Telemetry("test", settings))
    await producer.start()
    try:
        await producer.send_raw(topic, key, value)
    finally:
        await producer.stop()


async def _records(bootstrap: str, topic: str) -> list:
    """Every record of ``topic`` (read from its start until caught up)."""
    from tradeflow.bus import TopicReader

    return await TopicReader(CommonSettings(kafka_bootstrap=bootstrap), topic, client_id="test-records").read()


HOUR_WATCH = '''
import json
from tradeflow_trading.strategy import EventStrategy


class HourWatch(EventStrategy):
    """Says, on every minute, which hours it can see."""

    name = "hour_watch"

    def informative(self):
        return {"1h": 2}

    def on_candle(self, ctx):
        hours = ctx.higher("1h")
        seen = [[int(e), float(c), float(v)] for e, c, v in zip(hours.ts_end, hours.close, hours.volume)]
        ctx.enter_long(json.dumps(seen))
'''


async def test_a_strategy_reading_hours_never_sees_the_forming_hour_nor_stored_minutes_not_delivered(
        kafka_bootstrap, database_url, api_key, unique_name, candle_api, tmp_path):
    """The store holds the minutes up to 03:20 (so its 02:00 and 03:00 hours are partial and
    hold minutes the stream has not delivered); the stream starts at 02:30. Every minute sees
    exactly the hours closed by its end, with the values of all their minutes."""
    exchange = f"h{unique_name[-8:]}"
    minutes = frame_candles(random_walk(200, seed=4), exchange, "BTC/USDT")
    await store(database_url, minutes)
    (tmp_path / "hour_watch.py").write_text(HOUR_WATCH)
    settings = strategy_settings(kafka_bootstrap, database_url, api_key, unique_name, candle_api, exchange,
                                 strategy_paths=str(tmp_path))
    start, stop = 150, 190  # 02:30 .. 03:09
    hours = {}
    for h in range(3):
        group = minutes[h * 60:(h + 1) * 60]
        hours[group[0].ts_start + HOUR_NS] = [float(group[-1].close), float(sum(c.volume for c in group))]
    stream: list[Candle] = []
    for candle in minutes[start:stop]:
        stream.append(candle)
        if (candle.ts_end - minutes[0].ts_start) % HOUR_NS == 0:  # the candle-builder's hour, after its last minute
            group = minutes[(candle.ts_end - minutes[0].ts_start) // HOUR_NS * 60 - 60:][:60]
            stream.append(Candle(exchange=exchange, symbol="BTC/USDT", timeframe="1h", ts_start=group[0].ts_start,
                                 ts_end=candle.ts_end, open=group[0].open, high=max(c.high for c in group),
                                 low=min(c.low for c in group), close=group[-1].close,
                                 volume=sum(c.volume for c in group), trades=60))
    async with strategy_service(settings, api_key) as api:
        created = await api.post("/v1/strategies", json={
            "id": f"hours-{unique_name[-8:]}", "strategy": "hour_watch", "account_id": "acct-1", "exchange": exchange,
            "symbols": ["BTC/USDT"], "timeframe": "1m"})
        assert created.status_code == 201, created.text
        await publish_candles(kafka_bootstrap, settings.topic_candles, stream)
        signals = await read_signals(kafka_bootstrap, settings.topic_signals, lambda got: len(got) >= stop - start,
                                     timeout_s=60)
    assert len(signals) == stop - start
    for signal in signals:
        closed = sorted(end for end in hours if end <= signal.ts_event)[-2:]
        seen = json.loads(signal.reason)
        assert [s[0] for s in seen] == closed, (signal.ts_event, seen)  # never the forming hour
        for end, close, volume in seen:
            assert close == hours[end][0] and volume == pytest.approx(hours[end][1], rel=1e-12), (signal.ts_event, end)


MINE = '''
from tradeflow_trading.strategy import EventStrategy


class Mine(EventStrategy):
    name = "mine"

    def on_candle(self, ctx):
        ctx.enter_long("{version}")
'''

BOOM = '''
from tradeflow_trading.strategy import EventStrategy


class Boom(EventStrategy):
    name = "boom"

    def on_candle(self, ctx):
        if not ctx.warming_up:
            raise ZeroDivisionError("boom on " + str(ctx.ts_end))
'''


async def test_user_code_reloads_without_a_restart_and_a_throwing_strategy_stops_alone_with_an_alert(
        kafka_bootstrap, database_url, api_key, unique_name, candle_api, tmp_path):
    exchange = f"u{unique_name[-8:]}"
    minutes = frame_candles(random_walk(120, seed=6), exchange, "BTC/USDT")
    await store(database_url, minutes)
    (tmp_path / "mine.py").write_text(MINE.format(version="v1"))
    (tmp_path / "boom.py").write_text(BOOM)
    settings = strategy_settings(kafka_bootstrap, database_url, api_key, unique_name, candle_api, exchange,
                                 strategy_paths=str(tmp_path))
    mine, boom = f"mine-{unique_name[-8:]}", f"boom-{unique_name[-8:]}"
    alerts_from = time.time_ns()
    async with strategy_service(settings, api_key) as api:
        for instance_id, strategy in ((mine, "mine"), (boom, "boom")):
            created = await api.post("/v1/strategies", json={
                "id": instance_id, "strategy": strategy, "account_id": "acct-1", "exchange": exchange,
                "symbols": ["BTC/USDT"], "timeframe": "1m"})
            assert created.status_code == 201, created.text

        async def publish_and_read(rows: slice, total: int) -> list:
            await publish_candles(kafka_bootstrap, settings.topic_candles, minutes[rows])
            return await read_signals(kafka_bootstrap, settings.topic_signals, lambda got: len(got) >= total,
                                      timeout_s=30, idle_s=0.5)

        signals = await publish_and_read(slice(10, 20), 10)
        assert {s.reason for s in signals} == {"v1"} and {s.strategy_id for s in signals} == {mine}
        failed = (await api.get(f"/v1/strategies/{boom}")).json()
        assert failed["state"] == "failed" and failed["error"].startswith("ZeroDivisionError: boom on")
        assert "boom.py, line" in failed["error"]
        assert (await api.get(f"/v1/strategies/{mine}")).json()["state"] == "running"
        alert = await _alert_about(kafka_bootstrap, boom, alerts_from)
        assert alert.kind == "strategy_failed" and alert.severity == "critical" and alert.service == "strategy"

        loaded = await _version(api, "mine")
        (tmp_path / "mine.py").write_text(MINE.format(version="v2"))
        deadline = time.monotonic() + 10
        while await _version(api, "mine") == loaded:  # reloaded within the reload interval (0.1 s)
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        signals = await publish_and_read(slice(20, 30), 20)
        assert [s.reason for s in signals[10:]] == ["v2"] * 10  # new code from the next candle on

        (tmp_path / "mine.py").write_text("class Broken(:\n")
        deadline = time.monotonic() + 10
        while not (code_error := (await api.get(f"/v1/strategies/{mine}")).json()["code_error"]):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert "SyntaxError" in code_error and "previous version runs" in code_error
        signals = await publish_and_read(slice(30, 35), 25)
        assert [s.reason for s in signals[20:]] == ["v2"] * 5  # the old code keeps running

        resumed = await api.post(f"/v1/strategies/{boom}/resume")
        assert resumed.json()["state"] == "running" and resumed.json()["error"] is None


async def _version(api: httpx.AsyncClient, name: str) -> str:
    """The content digest of the file the catalog's ``name`` was loaded from."""
    return next(e for e in (await api.get("/v1/strategies/catalog")).json() if e["name"] == name)["version"]


async def _alert_about(bootstrap: str, instance_id: str, since_ns: int):
    from tradeflow.bus import TopicReader
    from tradeflow.topics import OPS_ALERTS

    reader = TopicReader(CommonSettings(kafka_bootstrap=bootstrap), OPS_ALERTS, client_id="test-alerts")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for record in await reader.read():
            alert = record.value
            if alert.labels.get("instance") == instance_id and alert.ts_event >= since_ns:
                return alert
        await asyncio.sleep(0.3)
    raise AssertionError(f"no alert about {instance_id}")
