"""Reads md.candles.v1 for the live stream: every partition, from the newest offset, no group.

Why not hand the pipeline's own emissions to the stream: with several candle-builder replicas
each one only builds the candles of the tick partitions it owns, so a client connected to one
replica would miss the markets of the others. Reading the candles topic itself, without a
consumer group (so every replica reads all partitions), any replica serves every key. The cost
is one broker round trip of latency and every replica reading the (small) candles topic.

It starts at the end of each partition: a stream client wants what happens from now on (the
history is ``GET /v1/candles``). After a lost connection it resumes where it stopped, so the
connected clients miss nothing. Partitions added while running are picked up on the next
reconnect (a restart).
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from tradeflow.bus.connection import Backoff, kafka_client_options, sleep_unless, topic_partitions
from tradeflow.codec import DecodeError, decode
from tradeflow.messages import Candle
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry

from tradeflow_candle_builder.stream.broadcaster import CandleBroadcaster

log = logging.getLogger(__name__)

FETCH_TIMEOUT_MS = 250


class CandleFeed:
    """A service Component: md.candles.v1 -> :meth:`CandleBroadcaster.publish`."""

    def __init__(self, settings: CommonSettings, telemetry: Telemetry, broadcaster: CandleBroadcaster, *,
                 topic: str, fetch_max_wait_ms: int, client_id: str) -> None:
        self._settings = settings
        self._broadcaster = broadcaster
        self._topic = topic
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._client_id = client_id
        self._next_offsets: dict[TopicPartition, int] = {}
        self._positioned = False
        self._stopping = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._undecodable = telemetry.counter(
            "tradeflow_stream_undecodable_candles_total", "Records of the candles topic the stream could not decode")

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="candle-stream-feed")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def is_positioned(self) -> bool:
        """Reading from a known offset of every partition (candles emitted from now on are streamed)."""
        return self._positioned

    async def _run(self) -> None:
        backoff = Backoff()
        while not self._stopping.is_set():
            delay = 0.0
            consumer = AIOKafkaConsumer(
                **kafka_client_options(self._settings), group_id=None, enable_auto_commit=False,
                auto_offset_reset="latest", fetch_max_wait_ms=self._fetch_max_wait_ms,
                client_id=self._client_id)
            try:
                await consumer.start()
                await self._position(consumer)
                backoff.reset()
                while True:
                    batches = await consumer.getmany(timeout_ms=FETCH_TIMEOUT_MS)
                    for tp, records in batches.items():
                        self._publish(records)
                        self._next_offsets[tp] = records[-1].offset + 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - broker away or metadata missing: retry
                self._positioned = False
                delay = backoff.next_delay()
                log.warning("candle stream feed of %s failed (%s: %s); retrying in %.1fs",
                            self._topic, type(exc).__name__, exc, delay)
            finally:
                await consumer.stop()
            await sleep_unless(self._stopping, delay)

    async def _position(self, consumer: AIOKafkaConsumer) -> None:
        tps = await topic_partitions(consumer, self._topic)
        consumer.assign(tps)
        fresh = [tp for tp in tps if tp not in self._next_offsets]
        for tp in tps:
            if tp in self._next_offsets:
                consumer.seek(tp, self._next_offsets[tp])
        if fresh:
            await consumer.seek_to_end(*fresh)
        for tp in fresh:  # resolve "the end" now: candles emitted after this point are streamed
            self._next_offsets[tp] = await consumer.position(tp)
        self._positioned = True
        log.info("candle stream feed reading %d partitions of %s", len(tps), self._topic)

    def _publish(self, records) -> None:
        for record in records:
            try:
                candle = decode(Candle, record.value)
            except DecodeError as exc:
                # The topic's group consumers dead-letter it; the stream just skips it.
                self._undecodable.inc()
                log.warning("skipping undecodable candle at %s:%d@%d: %s",
                            record.topic, record.partition, record.offset, exc)
                continue
            self._broadcaster.publish(candle)
