"""Users' strategy files (``TRADEFLOW_STRATEGY_PATHS``) reloaded when they change, without a restart.

Every ``TRADEFLOW_STRATEGY_RELOAD_INTERVAL_S`` the catalog re-reads the files whose content
changed (``StrategyCatalog.reload_changed``). A file whose new version fails to load keeps its
previous classes (the catalog reports the error, shown in the status of its instances); one
that loads gives the engine new classes, which each market of an instance runs from its next
candle on (docs/adr/0020).
"""

from __future__ import annotations

import asyncio
import logging

from tradeflow.service import BackgroundTask
from tradeflow_trading.strategy.loader import StrategyCatalog

from tradeflow_strategy.engine import StrategyEngine

log = logging.getLogger(__name__)


class CodeReloader(BackgroundTask):
    name = "strategy-code-reload"

    def __init__(self, catalog: StrategyCatalog, engine: StrategyEngine, *, interval_s: float) -> None:
        super().__init__()
        self._catalog = catalog
        self._engine = engine
        self._interval_s = interval_s

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

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                self.reload()
            except Exception:  # noqa: BLE001 - a reload must never stop the service
                log.exception("strategy file reload failed")
