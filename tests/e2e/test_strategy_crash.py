"""End to end: the strategy service process is killed (SIGKILL) after it published the signals
of candles it has not committed yet, started again in the same consumer group, and the rest of
the candles are sent. The restarted process decides the uncommitted candles again, warmed up
from the store (which holds every candle, those included), and the signals topic holds exactly
the backtest's decisions: each id with one content however often it was sent (risk dedupes by id).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from tradeflow_candle_builder.adapters.candle_store import CandleStore
from tradeflow_trading.strategy.parity import frame_candles

from tests.e2e.service_process import ServiceProcess, free_port
from tests.strategy_candles import random_walk
from tests.strategy_service import publish_candles, read_signals, sma_cross_signals

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
COMMIT_INTERVAL_S = 8  # long enough that the kill lands between handling and committing


async def committed_and_end(bootstrap: str, group: str, topic: str) -> tuple[int, int]:
    """(offsets the group committed, end offsets) summed over the topic's partitions."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        committed = [await consumer.committed(tp) or 0 for tp in partitions]
        ends = await consumer.end_offsets(partitions)
        return sum(committed), sum(ends.values())
    finally:
        await consumer.stop()


async def test_a_killed_strategy_service_restarted_publishes_the_same_signals(
        service_env, database_url, kafka_bootstrap, candle_builder, unique_name, tmp_path):
    candle_api, _ = candle_builder
    exchange = f"k{unique_name[-8:]}"
    frames = {"BTC/USDT": random_walk(400, seed=7), "ETH/USDT": random_walk(400, seed=8)}
    candles = {s: frame_candles(f, exchange, s) for s, f in frames.items()}
    store = CandleStore(database_url)
    await store.start()
    try:
        await store.upsert_candles_1m([c for m in candles.values() for c in m])  # the store holds them all
    finally:
        await store.stop()
    instances = [
        {"id": f"one-{unique_name[-8:]}", "strategy": "sma_cross", "account_id": "acct-1", "exchange": exchange,
         "symbols": ["BTC/USDT", "ETH/USDT"], "timeframe": "1m", "params": {"fast": 3, "slow": 8}},
        {"id": f"two-{unique_name[-8:]}", "strategy": "sma_cross", "account_id": "acct-1", "exchange": exchange,
         "symbols": ["ETH/USDT"], "timeframe": "1m", "params": {"fast": 5, "slow": 13}}]
    first, committed_part, killed_after, last = 100, 180, 250, 400
    want = {s.signal_id: s for d in instances for symbol in d["symbols"]
            for s in sma_cross_signals(d["id"], d["account_id"], exchange, symbol, d["params"], frames[symbol],
                                       candles[symbol][first].ts_start)}

    def ids_until(row: int) -> set[str]:
        return {i for i, s in want.items() if s.ts_event <= candles["BTC/USDT"][row - 1].ts_end}

    uncommitted = ids_until(killed_after) - ids_until(committed_part)
    assert len(ids_until(committed_part)) > 5 and len(uncommitted) > 5 and len(want) - len(ids_until(killed_after)) > 5

    topics = {"candles": f"candles-{unique_name}", "signals": f"signals-{unique_name}"}
    group = f"strategy-{unique_name}"
    port = free_port()
    env = {**os.environ, **service_env,
           "TRADEFLOW_HTTP_PORT": str(port),
           "TRADEFLOW_LOG_FORMAT": "text",
           "TRADEFLOW_STRATEGY_TOPIC_CANDLES": topics["candles"],
           "TRADEFLOW_STRATEGY_TOPIC_FILLS": f"fills-{unique_name}",
           "TRADEFLOW_STRATEGY_TOPIC_SIGNALS": topics["signals"],
           "TRADEFLOW_STRATEGY_CONSUMER_GROUP": group,
           "TRADEFLOW_STRATEGY_COMMIT_INTERVAL_S": str(COMMIT_INTERVAL_S),
           "TRADEFLOW_CANDLE_BUILDER_URL": candle_api,
           "TRADEFLOW_ACCOUNTS": json.dumps([{"id": "acct-1", "exchange": exchange}]),
           "TRADEFLOW_STRATEGY_INSTANCES": json.dumps(instances)}  # created at start (the first life)

    def in_time_order(start: int, stop: int):
        return sorted((c for m in candles.values() for c in m[start:stop]), key=lambda c: (c.ts_start, c.symbol))

    async def signals_for(ids: set[str], **options):
        return await read_signals(kafka_bootstrap, topics["signals"], lambda got: ids <= {s.signal_id for s in got},
                                  **{"timeout_s": 60, **options})

    service = ServiceProcess("strategy", env, port, tmp_path / "strategy.log")
    restarted: ServiceProcess | None = None
    service.start()
    try:
        async with httpx.AsyncClient() as client:
            await service.wait_ready(client, timeout_s=60)
            await publish_candles(kafka_bootstrap, topics["candles"], in_time_order(first, committed_part))
            await signals_for(ids_until(committed_part), idle_s=0.1)
            deadline = time.monotonic() + 3 * COMMIT_INTERVAL_S
            while (offsets := await committed_and_end(kafka_bootstrap, group, topics["candles"]))[0] < offsets[1]:
                assert time.monotonic() < deadline, f"never committed: {offsets}"
                await asyncio.sleep(0.2)
            await publish_candles(kafka_bootstrap, topics["candles"], in_time_order(committed_part, killed_after))
            await signals_for(ids_until(killed_after), idle_s=0.1)
            service.kill()
            assert service.proc.returncode == -signal.SIGKILL
            committed, end = await committed_and_end(kafka_bootstrap, group, topics["candles"])
            assert committed < end, "the kill came after the commit: nothing would be redelivered"

            restarted = ServiceProcess("strategy", env, port, tmp_path / "strategy-restarted.log")
            restarted.start()
            await restarted.wait_ready(client, timeout_s=60)
            await publish_candles(kafka_bootstrap, topics["candles"], in_time_order(killed_after, last))
            signals = await signals_for(set(want), timeout_s=90)
    finally:
        if service.proc is not None and service.proc.poll() is None:
            service.proc.kill()
            service.proc.wait()
        if restarted is not None:
            code = restarted.stop()
            assert code in (0, -signal.SIGTERM), f"the restarted service did not stop cleanly:\n{restarted.log_tail()}"
    assert {s.signal_id for s in signals} == set(want), restarted.log_tail()
    assert all(s == want[s.signal_id] for s in signals)  # a repeated id always with the same content
    sent = Counter(s.signal_id for s in signals)
    assert {i for i, n in sent.items() if n > 1} == uncommitted  # decided again after the restart, and only those
