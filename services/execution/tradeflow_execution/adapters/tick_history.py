"""A symbol's trades read back from md.ticks.v1 from a time (the paper broker's history).

A paper order that arrives after its first trades were consumed, and whose symbol's trade
window does not reach back to it (after a restart, or an order much older than the window),
must still meet those trades. They are read from the topic itself: the symbol's partition from
the first record published at or after ``ts_event - margin`` (Kafka ``offsets_for_times`` on
the records' publish time, which for live data is at or after the trade's event time), up to
where the live consumer takes over (it delivers the rest). The margin covers clock skew between the exchange and ingest; for a replay of
old trades every record was published after ``ts_event``, so the read starts at the beginning
of the retained log.

This is the one module that knows how to read the topic from a time; the bus's own "reader
from a time" will replace its Kafka code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from tradeflow.bus.connection import kafka_client_options, topic_partitions
from tradeflow.codec import DecodeError, decode
from tradeflow.messages import Tick
from tradeflow.settings import CommonSettings
from tradeflow.topics import market_key

from tradeflow_execution.domain.paper_exchange import LoggedTrade

log = logging.getLogger(__name__)

NS_PER_MS = 1_000_000
FETCH_TIMEOUT_MS = 100
READ_TIMEOUT_S = 60.0


class TickHistory:
    """A service Component: one group-less consumer that reads partitions back on request."""

    def __init__(self, settings: CommonSettings, *, topic: str, group_id: str, client_id: str, margin_s: float,
                 read_timeout_s: float = READ_TIMEOUT_S) -> None:
        self._settings = settings
        self._topic = topic
        self._group_id = group_id  # the live consumer's group: where it resumes after a restart
        self._client_id = client_id
        self._margin_ms = int(margin_s * 1000)
        self._read_timeout_s = read_timeout_s
        self._partitioner = DefaultPartitioner()  # the producers' (tradeflow.bus.Producer) choice of partition
        self._consumer: AIOKafkaConsumer | None = None
        self.name = "tick-history"

    async def start(self) -> None:
        # The group id only to ask for the live consumer's committed offsets: this consumer is
        # assigned partitions by hand, so it never joins the group, and it never commits.
        consumer = AIOKafkaConsumer(**kafka_client_options(self._settings), group_id=self._group_id,
                                    enable_auto_commit=False, client_id=self._client_id)
        await consumer.start()
        self._consumer = consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    async def trades_since(self, exchange: str, symbol: str, since_ns: int,
                           consumed_through: Callable[[int], int]) -> tuple[list[LoggedTrade], int]:
        """The symbol's trades with an event time at or after ``since_ns`` that the live consumer
        will not deliver, in log order, and the offset the read ended at.

        ``consumed_through(partition)`` is the last offset the live consumer handled in this
        process (-1: none yet). Every record below the live consumer's next offset (that, or
        the group's committed offset) is read; the rest it will deliver.
        """
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("tick history is not started")
        key = market_key(exchange, symbol).encode()
        partitions = [tp.partition for tp in await topic_partitions(consumer, self._topic)]
        tp = TopicPartition(self._topic, self._partitioner(key, partitions, partitions))
        consumer.assign([tp])
        found = (await consumer.offsets_for_times({tp: max(0, since_ns // NS_PER_MS - self._margin_ms)}))[tp]
        committed = await consumer.committed(tp)
        live_next = max(consumed_through(tp.partition) + 1, committed or 0)
        if found is None or found.offset >= live_next:
            return [], live_next - 1  # nothing published since then, or the live consumer delivers it all
        consumer.seek(tp, found.offset)
        trades: list[LoggedTrade] = []
        last = found.offset - 1
        deadline = time.monotonic() + self._read_timeout_s
        while last < live_next - 1:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {self._topic}[{tp.partition}] back for {exchange}:{symbol} took over "
                                   f"{self._read_timeout_s:.0f}s")
            for record in (await consumer.getmany(tp, timeout_ms=FETCH_TIMEOUT_MS)).get(tp, []):
                last = record.offset
                if record.key != key or record.value is None:
                    continue
                try:
                    tick = decode(Tick, record.value)
                except DecodeError:
                    continue  # the candle-builder dead-letters it; it is no trade
                if tick.ts_event >= since_ns:
                    trades.append(LoggedTrade(tick, tp.partition, record.offset))
        log.info("read %d trades of %s:%s back from %s[%d] (offsets %d..%d)", len(trades), exchange, symbol,
                 self._topic, tp.partition, found.offset, last)
        return trades, last
