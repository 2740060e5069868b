"""Reads md.candles.v1 for the live stream: every partition, from the newest offset, no group.

Why not hand the pipeline's own emissions to the stream: with several candle-builder replicas
each one only builds the candles of the tick partitions it owns, so a client connected to one
replica would miss the markets of the others. Reading the candles topic itself, without a
consumer group (so every replica reads all partitions), any replica serves every key. The cost
is one broker round trip of latency and every replica reading the (small) candles topic.

It starts at the end of each partition: a stream client wants what happens from now on (the
history is ``GET /v1/candles``). After a lost connection it resumes where it stopped, so the
connected clients miss nothing. Partitions added while running are picked up on the next
reconnect (a restart). The reading is the bus's :class:`~tradeflow.bus.TopicReader`.
"""

from __future__ import annotations

import asyncio
import logging

from tradeflow.bus import FROM_END, Bus, Record
from tradeflow.topics import MD_CANDLES, TopicSpec

from tradeflow_candle_builder.stream.broadcaster import CandleBroadcaster

log = logging.getLogger(__name__)


class CandleFeed:
    """A service Component: md.candles.v1 -> :meth:`CandleBroadcaster.publish`."""

    def __init__(self, bus: Bus, broadcaster: CandleBroadcaster, *, topic: TopicSpec = MD_CANDLES,
                 fetch_max_wait_ms: int, client_id: str) -> None:
        self._broadcaster = broadcaster
        self._topic = topic.name
        # From the end of every partition; the bus's reader resumes where it was after a lost
        # connection, so the connected clients miss nothing.
        self._reader = bus.reader(topic, client_id=client_id, start=FROM_END, fetch_max_wait_ms=fetch_max_wait_ms,
                                  on_undecodable=self._undecodable_candle)
        self._task: asyncio.Task | None = None
        self._undecodable = bus.telemetry.counter(
            "tradeflow_stream_undecodable_candles_total", "Records of the candles topic the stream could not decode")

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="candle-stream-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def is_positioned(self) -> bool:
        """Reading from a known offset of every partition (candles emitted from now on are streamed)."""
        return self._reader.positioned

    async def _run(self) -> None:
        async for batch in self._reader.follow():
            for record in batch.records:
                if record.value is not None:
                    self._broadcaster.publish(record.value)

    def _undecodable_candle(self, record: Record, error: Exception) -> None:
        # The topic's group consumers dead-letter it; the stream just skips it.
        self._undecodable.inc()
        log.warning("skipping undecodable candle at %s:%d@%d: %s", record.topic, record.partition, record.offset, error)
