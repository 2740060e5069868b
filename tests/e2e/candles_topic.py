"""What the candle-builder emitted on md.candles.v1 (or a test's own candles topic), read back by the tests."""

from __future__ import annotations

import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer
from tradeflow.codec import decode
from tradeflow.messages import Candle

CandleKey = tuple[str, str, str, int]  # (exchange, symbol, timeframe, ts_start)


async def emitted_candles(bootstrap: str, exchanges: set[str], *, wait_s: float = 60, idle_s: float = 5,
                          topic: str = "md.candles.v1") -> list[Candle]:
    """Every candle of ``exchanges`` on ``topic`` in topic order, read until nothing new came
    for ``idle_s`` (or ``wait_s`` passed)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    found: list[Candle] = []
    try:
        deadline = time.monotonic() + wait_s
        idle_since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - idle_since < idle_s:
            batch = await consumer.getmany(timeout_ms=500)
            if batch:
                idle_since = time.monotonic()
            for records in batch.values():
                for record in records:
                    candle = decode(Candle, record.value)
                    if candle.exchange in exchanges:
                        found.append(candle)
    finally:
        await consumer.stop()
    return found


def final_revisions(candles: Iterable[Candle]) -> dict[CandleKey, Candle]:
    """The highest revision of each candle (a later one of equal revision wins)."""
    final: dict[CandleKey, Candle] = {}
    for candle in candles:
        key = (candle.exchange, candle.symbol, candle.timeframe, candle.ts_start)
        if key not in final or final[key].revision <= candle.revision:
            final[key] = candle
    return final
