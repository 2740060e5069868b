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
from collections import defaultdict
from collections.abc import Collection

from tradeflow.bus import Bus, from_time, partition_for_key
from tradeflow.clock import SYSTEM_CLOCK, Clock
from tradeflow.messages import Tick
from tradeflow.topics import MD_TICKS, market_key
from tradeflow_exchanges.ccxt_trades import NS_PER_MS

from tradeflow_ingest.domain.resume_point import ResumePoint

log = logging.getLogger(__name__)


class PublishedTail:
    def __init__(self, bus: Bus, *, client_id: str, lookback_s: float, clock: Clock = SYSTEM_CLOCK) -> None:
        self._reader = bus.reader(MD_TICKS, client_id=client_id)
        self._lookback_ms = int(lookback_s * 1000)
        self._clock = clock

    async def resume_points(self, exchange: str, symbols: Collection[str]) -> dict[str, ResumePoint]:
        """Per symbol, the newest trade published on md.ticks.v1 in the lookback window."""
        if not symbols:
            return {}
        scan_started_ms = self._clock.now_ms()
        from_ms = scan_started_ms - self._lookback_ms
        points = {s: ResumePoint(since_ms=from_ms, published_ids=frozenset()) for s in symbols}
        keys = {market_key(exchange, symbol) for symbol in symbols}
        all_partitions = await self._reader.partitions()
        partitions = {partition_for_key(key, all_partitions) for key in keys}
        # Up to where the partitions stood when the scan began: a record past the end written
        # after the scan started ends its partition (undecodable ones are skipped: the
        # candle-builder dead-letters them, they say nothing of the cursor).
        records = await self._reader.read(start=from_time(from_ms), partitions={MD_TICKS.name: partitions},
                                          keys=keys, until_ms=scan_started_ms)
        newest: dict[str, int] = {}
        ids: dict[str, set[str]] = defaultdict(set)
        for record in records:
            tick: Tick | None = record.value
            if tick is None:
                continue
            ids[tick.symbol].add(tick.trade_id)
            ts_ms = tick.ts_event // NS_PER_MS
            if ts_ms > newest.get(tick.symbol, -1):
                newest[tick.symbol] = ts_ms
        for symbol, ts_ms in newest.items():
            points[symbol] = ResumePoint(since_ms=ts_ms, published_ids=frozenset(ids[symbol]))
        log.info("%s: resume points of %d symbols from md.ticks.v1 (%d with recent trades)",
                 exchange, len(points), len(newest))
        return points
