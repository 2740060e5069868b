"""Every replica applies the stored instances and fills: polled, and at once after a local change.

Instances live in ``strategy_instances``; each replica reloads the list every
``TRADEFLOW_STRATEGY_INSTANCE_REFRESH_S`` (2 s by default) and right after a change it served
itself (API, a strategy that failed here), and hands it to the engine, which starts, pauses,
resumes and stops instances by their revision. The same pass reads the fills stored since the
last one (``strategy_fills``, in commit order) and moves the positions of the markets that run
here. Polling rather than LISTEN/NOTIFY: instances change rarely, a poll of a few hundred rows
costs nothing, and it needs no connection held per replica (docs/adr/0020).
"""

from __future__ import annotations

import asyncio
import logging

from tradeflow.clock import SYSTEM_CLOCK, Clock
from tradeflow.periodic import PeriodicTask

from tradeflow_strategy.adapters.fill_store import FillStore
from tradeflow_strategy.adapters.instance_store import InstanceStore
from tradeflow_strategy.engine import StrategyEngine

log = logging.getLogger(__name__)


class InstanceSync(PeriodicTask):
    """A service Component: the first pass at start (before the consumer), then every interval."""

    name = "instance-sync"

    def __init__(self, engine: StrategyEngine, instances: InstanceStore, fills: FillStore, *,
                 interval_s: float, clock: Clock = SYSTEM_CLOCK) -> None:
        # The database may be away: a failed pass keeps what is known, the next one retries.
        super().__init__(interval_s=interval_s, failure_message=f"instance sync failed; retrying in {interval_s:.1f}s",
                         sleep=clock.sleep)
        self._engine = engine
        self._instances = instances
        self._fills = fills
        self._fills_seen = 0
        self._lock = asyncio.Lock()
        self._clock = clock
        self._instances_read_at = float("-inf")  # monotonic seconds of the last read of the instances
        self._fills_only = False  # woken for new fills: the instances wait for their interval

    async def start(self) -> None:
        # Fills stored before start reach each market through its warm-up (its stored fills).
        self._fills_seen = await self._fills.newest()
        await self.refresh()
        await super().start()

    async def refresh(self) -> None:
        """One pass: the instances, then the fills stored since the last pass."""
        async with self._lock:
            self._engine.apply_instances(await self._instances.list())
            self._instances_read_at = self._clock.monotonic()
            await self._apply_new_fills()
            await self._engine.record_failures()

    def wake_for_fills(self) -> None:
        """New fills were stored here: read them now. The instances are not read again before their
        interval: under load fills arrive many times a second, and every instance row each time
        cost more than the fills (docs/adr/0020)."""
        self._fills_only = True
        self.wake()

    async def run_once(self) -> None:
        """A pass every interval, or at once when woken (new fills: only the fills, unless the
        instances are due too)."""
        fills_only, self._fills_only = self._fills_only, False
        if fills_only and self._clock.monotonic() - self._instances_read_at < self.interval_s:
            async with self._lock:
                await self._apply_new_fills()
            return
        await self.refresh()

    async def _apply_new_fills(self) -> None:
        while batch := await self._fills.after(self._fills_seen):
            self._engine.apply_fills(batch)
            self._fills_seen = batch[-1].seq
