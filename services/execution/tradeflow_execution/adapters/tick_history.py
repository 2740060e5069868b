"""A symbol's trades read back from md.ticks.v1 from a time (the paper broker's history).

A paper order that arrives after its first trades were consumed, and whose symbol's trade
window does not reach back to it (after a restart, or an order much older than the window),
must still meet those trades. They are read from the topic itself: the symbol's partition from
the first record published at or after ``ts_event - margin`` (Kafka ``offsets_for_times`` on
the records' publish time, which for live data is at or after the trade's event time), up to
where the live consumer takes over (it delivers the rest). The margin covers clock skew between the exchange and ingest; for a replay of
old trades every record was published after ``ts_event``, so the read starts at the beginning
of the retained log.

The reading is the bus's :class:`~tradeflow.bus.TopicReader` (from a time, up to given offsets).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from tradeflow.bus import Bus, TopicPartition, from_time, partition_for_key
from tradeflow.messages import Tick
from tradeflow.topics import MD_TICKS, market_key

from tradeflow_execution.domain.paper_exchange import LoggedTrade

log = logging.getLogger(__name__)

NS_PER_MS = 1_000_000
READ_TIMEOUT_S = 60.0


class TickHistory:
    """A service Component: one group-less reader that reads partitions back on request."""

    def __init__(self, bus: Bus, *, topic: str, group_id: str, client_id: str, margin_s: float,
                 read_timeout_s: float = READ_TIMEOUT_S) -> None:
        self._topic = topic
        # The group id only to ask for the live consumer's committed offsets (where it resumes
        # after a restart): the reader assigns partitions itself, never joins, never commits.
        self._reader = bus.reader(dataclasses.replace(MD_TICKS, name=topic), client_id=client_id, group_id=group_id,
                                  fetch_max_wait_ms=100)
        self._margin_ms = int(margin_s * 1000)
        self._read_timeout_s = read_timeout_s
        self.name = "tick-history"

    async def start(self) -> None:
        await self._reader.start()

    async def stop(self) -> None:
        await self._reader.stop()

    async def trades_since(self, exchange: str, symbol: str, since_ns: int,
                           consumed_through: Callable[[int], int]) -> tuple[list[LoggedTrade], int]:
        """The symbol's trades with an event time at or after ``since_ns`` that the live consumer
        will not deliver, in log order, and the offset the read ended at.

        ``consumed_through(partition)`` is the last offset the live consumer handled in this
        process (-1: none yet). Every record below the live consumer's next offset (that, or
        the group's committed offset) is read; the rest it will deliver.
        """
        key = market_key(exchange, symbol)
        tp = TopicPartition(self._topic, partition_for_key(key, await self._reader.partitions()))
        committed = await self._reader.committed(tp)
        live_next = max(consumed_through(tp.partition) + 1, committed or 0)
        records = await self._reader.read(
            start=from_time(max(0, since_ns // NS_PER_MS - self._margin_ms)), partitions={self._topic: [tp.partition]}, keys=[key],
            until_offsets={tp: live_next}, timeout_s=self._read_timeout_s)
        trades = [LoggedTrade(r.value, tp.partition, r.offset) for r in records
                  if isinstance(r.value, Tick) and r.value.ts_event >= since_ns]
        if records:
            log.info("read %d trades of %s:%s back from %s[%d] (offsets %d..%d)", len(trades), exchange, symbol,
                     self._topic, tp.partition, records[0].offset, records[-1].offset)
        return trades, live_next - 1
