"""Where md.ticks.v1 ends for a set of symbols: the resume point of a takeover.

When a replica takes over subscriptions (another replica died or left), the trades made since
the previous owner's last published one must be fetched, and none it already published may be
published again. Both follow from md.ticks.v1 itself: the tail of each symbol's partition over
the last ``lookback_s`` seconds (found with ``offsets_for_times``) holds the newest trade and the
recent trade ids. A symbol with nothing in that window resumes ``lookback_s`` back with no ids:
whatever it traded since then is not on the topic.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Collection

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from tradeflow.bus.connection import kafka_client_options, topic_partitions
from tradeflow.codec import DecodeError, decode
from tradeflow.messages import Tick
from tradeflow.settings import CommonSettings
from tradeflow.topics import MD_TICKS, market_key
from tradeflow_exchanges.ccxt_trades import NS_PER_MS

from tradeflow_ingest.domain.resume_point import ResumePoint

log = logging.getLogger(__name__)

FETCH_TIMEOUT_MS = 500


class PublishedTail:
    def __init__(self, settings: CommonSettings, *, client_id: str, lookback_s: float,
                 wall_clock_ms=lambda: time.time_ns() // 1_000_000) -> None:
        self._settings = settings
        self._client_id = client_id
        self._lookback_ms = int(lookback_s * 1000)
        self._wall_clock_ms = wall_clock_ms

    async def resume_points(self, exchange: str, symbols: Collection[str]) -> dict[str, ResumePoint]:
        """Per symbol, the newest trade published on md.ticks.v1 in the lookback window."""
        if not symbols:
            return {}
        scan_started_ms = self._wall_clock_ms()
        from_ms = scan_started_ms - self._lookback_ms
        points = {s: ResumePoint(since_ms=from_ms, published_ids=frozenset()) for s in symbols}
        consumer = AIOKafkaConsumer(**kafka_client_options(self._settings), group_id=None,
                                    enable_auto_commit=False, client_id=self._client_id)
        await consumer.start()
        try:
            partitions = [tp.partition for tp in await topic_partitions(consumer, MD_TICKS.name)]
            keys_by_partition: dict[int, set[bytes]] = defaultdict(set)
            partitioner = DefaultPartitioner()
            for symbol in symbols:
                key = market_key(exchange, symbol).encode()
                keys_by_partition[partitioner(key, partitions, partitions)].add(key)
            tps = [TopicPartition(MD_TICKS.name, p) for p in keys_by_partition]
            consumer.assign(tps)
            starts = await consumer.offsets_for_times({tp: from_ms for tp in tps})
            ends = await consumer.end_offsets(tps)
            pending = {tp for tp in tps if starts[tp] is not None and starts[tp].offset < ends[tp]}
            for tp in pending:
                consumer.seek(tp, starts[tp].offset)
            newest: dict[str, int] = {}
            ids: dict[str, set[str]] = defaultdict(set)
            while pending:
                batches = await consumer.getmany(*pending, timeout_ms=FETCH_TIMEOUT_MS)
                for tp in list(pending):
                    records = batches.get(tp, [])
                    # The end is where the partition stood when the scan began. end_offsets is only
                    # a lower bound of it (Tansu reports the last batch's base offset + 1), so a
                    # partition is done once past it and either quiet or on records newer than the scan.
                    done = not records and await consumer.position(tp) >= ends[tp]
                    wanted = keys_by_partition[tp.partition]
                    for record in records:
                        if record.offset >= ends[tp] and record.timestamp > scan_started_ms:
                            done = True
                            break
                        if record.key not in wanted or record.value is None:
                            continue
                        try:
                            tick = decode(Tick, record.value)
                        except DecodeError:
                            continue  # the candle-builder dead-letters it; it says nothing of the cursor
                        ids[tick.symbol].add(tick.trade_id)
                        ts_ms = tick.ts_event // NS_PER_MS
                        if ts_ms > newest.get(tick.symbol, -1):
                            newest[tick.symbol] = ts_ms
                    if done:
                        pending.discard(tp)
            for symbol, ts_ms in newest.items():
                points[symbol] = ResumePoint(since_ms=ts_ms, published_ids=frozenset(ids[symbol]))
        finally:
            await consumer.stop()
        log.info("%s: resume points of %d symbols from md.ticks.v1 (%d with recent trades)",
                 exchange, len(points), len(newest))
        return points
