"""Writes the status of this replica's markets (``strategy_market_status``) every few seconds.

The markets of an instance may run on several replicas; each writes what it knows of its own
markets every ``TRADEFLOW_STRATEGY_STATUS_INTERVAL_S``, so ``GET /v1/strategies/{id}`` on any
replica shows all of them. Only what changed is written; the last state is written on stop.
"""

from __future__ import annotations

import logging

from tradeflow.clock import SYSTEM_CLOCK, Clock
from tradeflow.periodic import PeriodicTask

from tradeflow_strategy.adapters.instance_store import InstanceStore
from tradeflow_strategy.engine import StrategyEngine

log = logging.getLogger(__name__)


class StatusWriter(PeriodicTask):
    name = "strategy-status-writer"

    def __init__(self, engine: StrategyEngine, store: InstanceStore, *, interval_s: float,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        # A failed write is logged; the next change writes the market again.
        super().__init__(interval_s=interval_s, failure_message="writing the market status failed",
                         sleep=clock.sleep)
        self._engine = engine
        self._store = store

    async def flush(self) -> None:
        await self._store.put_market_status(self._engine.take_dirty_statuses())

    async def run_once(self) -> None:
        await self.flush()

    async def stop(self) -> None:
        await super().stop()
        try:
            await self.flush()
        except Exception:  # noqa: BLE001 - stopping must not fail the shutdown
            log.exception("writing the last market status failed")
