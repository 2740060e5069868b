"""Periodic work: summaries of grouping windows that have passed, the queue-depth gauge,
deliveries of channels that no longer exist, and retention (finished deliveries, seen ids)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from tradeflow.clock import SYSTEM_CLOCK, Clock
from tradeflow.telemetry import Telemetry

from tradeflow_notifier import metrics
from tradeflow_notifier.adapters.delivery_store import DeliveryStore
from tradeflow_notifier.intake import Intake

log = logging.getLogger(__name__)
GROUP_FLUSH_S = 0.5
QUEUE_DEPTH_S = 5.0
ORPHANS_S = 60.0
ORPHAN_GRACE_S = 600.0  # a channel removed from one replica's environment may live on in another's for a rollout
PURGE_S = 3600.0
FAILURE_LOG_INTERVAL_S = 60.0


class Upkeep:
    name = "upkeep"

    def __init__(self, intake: Intake, store: DeliveryStore, channel_ids: Callable[[], list[str]],
                 telemetry: Telemetry, *, retention_days: int, clock: Clock = SYSTEM_CLOCK) -> None:
        self._intake = intake
        self._clock = clock
        self._store = store
        self._channel_ids = channel_ids
        self._retention_days = retention_days
        self._depth = metrics.queue_depth(telemetry)
        self._depth_series: set[str] = set()
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        jobs: list[tuple[str, float, Callable[[], Awaitable[object]]]] = [
            ("alert-group-summaries", GROUP_FLUSH_S, lambda: self._intake.flush_due_groups(self._clock.now_ns())),
            ("queue-depth", QUEUE_DEPTH_S, self.update_queue_depth),
            ("orphaned-deliveries", ORPHANS_S, lambda: self._store.fail_orphans(self._channel_ids(), ORPHAN_GRACE_S)),
            ("retention", PURGE_S, lambda: self._store.purge(self._retention_days, self._clock.now_ns())),
        ]
        self._tasks = [asyncio.create_task(self._every(name, interval, job), name=name) for name, interval, job in jobs]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _every(self, name: str, interval_s: float, job: Callable[[], Awaitable[object]]) -> None:
        failing_since: float | None = None
        logged_at = 0.0
        while True:
            try:
                await job()
                if failing_since is not None:
                    log.info("%s works again after %.0fs", name, self._clock.monotonic() - failing_since)
                failing_since = None
            except Exception:  # noqa: BLE001 - the database may be away; the next round tries again
                now = self._clock.monotonic()
                failing_since = failing_since or now
                if now - logged_at >= FAILURE_LOG_INTERVAL_S:  # a database outage: one line a minute
                    logged_at = now
                    log.exception("%s failing for %.0fs; retrying every %.1fs", name, now - failing_since, interval_s)
            await self._clock.sleep(interval_s)

    async def update_queue_depth(self) -> None:
        pending = await self._store.pending_by_channel()
        for channel in set(self._channel_ids()) | set(pending):
            self._depth.labels(channel).set(pending.get(channel, 0))
            self._depth_series.add(channel)
        for gone in self._depth_series - set(self._channel_ids()) - set(pending):
            self._depth.remove(gone)
            self._depth_series.discard(gone)
