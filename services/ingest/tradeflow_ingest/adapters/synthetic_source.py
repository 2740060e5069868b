"""The synthetic market as a running tick source, paced in wall-clock time."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from tradeflow.bus.connection import sleep_unless
from tradeflow.messages import Tick
from tradeflow.trades.receive_clock import ReceiveClock

from tradeflow_ingest.adapters.source_task import stop_source_task
from tradeflow_ingest.adapters.tick_publisher import PublishOutcome, TickPublisher
from tradeflow_ingest.domain.sources import SourceStatus
from tradeflow_ingest.domain.synthetic_market import SyntheticMarket

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 0.02  # at most 50 publish rounds per second, however high the rate
MAX_INTERVAL_S = 1.0
MAX_BACKLOG_S = 1.0  # after a stall (broker away), skip ahead instead of bursting the backlog
RETRY_DELAY_S = 1.0


class SyntheticSource:
    """Emits ``rate`` trades per second of a :class:`SyntheticMarket`, stamped with the wall clock
    (with ``history_s``, the event clock starts that long in the past and runs ``speed`` times
    faster than the wall clock until it has caught up with it, then with it: the demo's candles
    close every few seconds at first; event times are never in the future, which every
    consumer refuses).

    Every round publishes the trades that are due since the start (so the long-run rate is
    exact whatever the round length) and waits for their acks before the next round, so a slow
    broker slows the source instead of queueing without bound.
    """

    kind = "synthetic"

    def __init__(
        self,
        market: SyntheticMarket,
        *,
        exchange: str,
        rate: float,
        publisher: TickPublisher,
        clock: ReceiveClock,
        wall_clock_ns: Callable[[], int] = time.time_ns,
        speed: float = 1.0,
        history_s: float = 0.0,
    ) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number of ticks per second, got {rate!r}")
        if not (speed >= 1 and math.isfinite(speed)):
            raise ValueError(f"speed must be a number >= 1, got {speed!r}")
        if not (history_s >= 0 and math.isfinite(history_s)):
            raise ValueError(f"history_s must be a number >= 0, got {history_s!r}")
        self._speed = speed
        self._history_ns = int(history_s * 1e9)
        self._origin_ns: int | None = None  # the wall clock at the first trade
        self._market = market
        self._exchange = exchange
        self._rate = rate
        self._publisher = publisher
        self._clock = clock
        self._wall_clock_ns = wall_clock_ns
        self._interval_s = min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, 1.0 / rate))
        self._max_backlog = max(2, int(rate * MAX_BACKLOG_S))
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self._published = 0
        self._rejected = 0
        self._last_event_ns: int | None = None

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="synthetic-source")

    async def stop(self) -> None:
        """Finish the round in hand (its acks are counted), then end. Cancelled if it hangs."""
        await stop_source_task(self._task, self._stopping)

    def status(self) -> SourceStatus:
        return SourceStatus(
            kind=self.kind,
            exchange=self._exchange,
            symbols=tuple(self._market.symbols),
            rate=self._rate,
            published=self._published,
            rejected=self._rejected,
            last_event_ns=self._last_event_ns,
            running=self._task is not None and not self._task.done(),
        )

    async def _run(self) -> None:
        try:
            await self._emit_until_stopped()
        except Exception:  # shown as running=false in /v1/sources; the log says why
            log.exception("synthetic source stopped by an unexpected error")

    async def _emit_until_stopped(self) -> None:
        started = time.monotonic()
        emitted = 0
        while not self._stopping.is_set():
            due = int((time.monotonic() - started) * self._rate) - emitted
            if due > self._max_backlog:
                log.warning("synthetic source fell behind by %d trades; skipping ahead", due)
                started, emitted, due = time.monotonic(), 0, 0
            if due > 0:
                outcome = await self._publish(due)
                emitted += due
                if outcome.failed:  # the broker is away: pause, then keep the pace once it is back
                    log.error("synthetic source: %d of %d trades not acknowledged (%s); pausing %.0fs",
                              outcome.failed, due, outcome.first_error, RETRY_DELAY_S)
                    await sleep_unless(self._stopping, RETRY_DELAY_S)
            await sleep_unless(self._stopping, self._interval_s)

    def _event_time_ns(self) -> int:
        """``history_s`` before the first trade's wall clock, then ``speed`` times faster than
        the wall clock until caught up with it (never ahead of it)."""
        now = self._wall_clock_ns()
        if not self._history_ns:
            return now
        if self._origin_ns is None:
            self._origin_ns = now
        return min(now, self._origin_ns - self._history_ns + int((now - self._origin_ns) * self._speed))

    async def _publish(self, count: int) -> PublishOutcome:
        ticks = []
        for _ in range(count):
            trade = self._market.next_trade()
            ticks.append(Tick(
                exchange=self._exchange,
                symbol=trade.symbol,
                trade_id=trade.trade_id,
                price=trade.price,
                amount=trade.amount,
                side=trade.side,
                ts_event=self._event_time_ns(),
                ts_recv=self._clock.next(),
            ))
        outcome = await self._publisher.publish(ticks)
        self._published += outcome.published
        self._rejected += outcome.rejected
        if outcome.last_event_ns is not None:
            self._last_event_ns = outcome.last_event_ns
        return outcome
