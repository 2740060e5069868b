"""Users' strategy files (``TRADEFLOW_STRATEGY_PATHS``) reloaded when they change, without a restart.

Every ``TRADEFLOW_STRATEGY_RELOAD_INTERVAL_S`` the catalog re-reads the files whose content
changed (``StrategyCatalog.reload_changed``). A file whose new version fails to load keeps its
previous classes (the catalog reports the error, shown in the status of its instances); one
that loads gives the engine new classes, which each market of an instance runs from its next
candle on (docs/adr/0020).
"""

from __future__ import annotations

import logging

from tradeflow.clock import SYSTEM_CLOCK, Clock
from tradeflow.periodic import PeriodicTask
from tradeflow_trading.strategy.loader import StrategyCatalog

from tradeflow_strategy.engine import StrategyEngine

log = logging.getLogger(__name__)


class CodeReloader(PeriodicTask):
    name = "strategy-code-reload"

    def __init__(self, catalog: StrategyCatalog, engine: StrategyEngine, *, interval_s: float,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        # A reload must never stop the service: a failed one is logged, the next one comes.
        super().__init__(interval_s=interval_s, failure_message="strategy file reload failed",
                         sleep=clock.sleep)
        self._catalog = catalog
        self._engine = engine

    def reload(self) -> bool:
        """Check the files once; True when classes changed (the engine was told)."""
        report = self._catalog.reload_changed()
        for source, error in report.errors.items():
            log.warning("strategy file %s not reloaded, the previous version runs: %s", source, error)
        if report.loaded or report.removed:
            log.info("strategy files reloaded: %s", ", ".join(report.loaded + report.removed))
            self._engine.on_catalog_changed()
            return True
        return False

    async def run_once(self) -> None:
        self.reload()
