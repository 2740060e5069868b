"""A takeover's resume point: the newest trade of each symbol on md.ticks.v1, and its recent ids."""

from __future__ import annotations

import time

import pytest
from tradeflow.admin import ensure_topics
from tradeflow.bus import KafkaBus, Producer
from tradeflow.messages import Tick
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry
from tradeflow.topics import MD_TICKS, market_key
from tradeflow_ingest.adapters.published_tail import PublishedTail

pytestmark = pytest.mark.integration


async def test_resume_points_are_the_newest_published_trade_and_the_recent_ids(kafka_bootstrap, unique_name):
    settings = CommonSettings(kafka_bootstrap=kafka_bootstrap)
    await ensure_topics(settings, [MD_TICKS])
    exchange = f"tail-{unique_name}"[:60]
    now_ms = time.time_ns() // 1_000_000
    producer = Producer(settings, Telemetry("test", settings))
    await producer.start()
    try:
        futures = []
        for n in range(1, 301):
            for symbol, offset_ms in (("BTC/USDT", 0), ("ETH/USDT", 5)):
                tick = Tick(exchange=exchange, symbol=symbol, trade_id=str(n), price=100.0, amount=1.0, side="buy",
                            ts_event=(now_ms - 60_000 + n * 100 + offset_ms) * 1_000_000,
                            ts_recv=time.time_ns())
                futures.append(producer.send(MD_TICKS, market_key(exchange, symbol), tick))
        for future in futures:
            await future
    finally:
        await producer.stop()

    tail = PublishedTail(KafkaBus(settings, Telemetry("test", settings)), client_id="test-tail", lookback_s=120)
    points = await tail.resume_points(exchange, ["BTC/USDT", "ETH/USDT", "SOL/USDT"])

    assert points["BTC/USDT"].since_ms == now_ms - 60_000 + 300 * 100
    assert points["ETH/USDT"].since_ms == now_ms - 60_000 + 300 * 100 + 5
    assert points["BTC/USDT"].published_ids == {str(n) for n in range(1, 301)}
    # Nothing published in the window: resume from the window's start, nothing to skip.
    assert points["SOL/USDT"].published_ids == frozenset()
    assert now_ms - 121_000 < points["SOL/USDT"].since_ms <= now_ms - 119_000
