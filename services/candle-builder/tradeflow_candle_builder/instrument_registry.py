"""The instrument registry as every candle-builder replica sees it (a service Component).

Loaded from the ``instruments`` table at start, reloaded every
``TRADEFLOW_CANDLE_BUILDER_INSTRUMENT_REFRESH_S`` and right after a registration this replica served, so a
registration reaches every replica within one refresh interval. Instruments not registered (or
registered as "24/7") keep UTC-aligned candles. For the others :attr:`rules` holds their
:class:`SessionRules` (market calendars loaded once per calendar, in a worker thread).

Register an instrument before its trades flow: trades consumed under the old settings are
already in candles (which is why changing the settings of an instrument with candles is refused).
"""

from __future__ import annotations

import asyncio
import logging

from tradeflow.periodic import PeriodicTask

from tradeflow_candle_builder.adapters.instrument_store import InstrumentStore
from tradeflow_candle_builder.adapters.market_calendars import session_table
from tradeflow_candle_builder.domain.instruments import InstrumentSpec, SessionRules

log = logging.getLogger(__name__)


class InstrumentRegistry:
    """Registered instruments and the session rules of those with a market calendar."""

    def __init__(self, store: InstrumentStore, refresh_s: float) -> None:
        self._store = store
        # Keeps the last known registry when a refresh fails; the next one retries.
        self._refresher = PeriodicTask("instrument-registry-refresh", self.reload, interval_s=refresh_s,
                                       failure_message="instrument registry refresh failed")
        self._reload_lock = asyncio.Lock()
        self.specs: dict[tuple[str, str], InstrumentSpec] = {}
        self.rules: dict[tuple[str, str], SessionRules] = {}
        self.version = 0  # bumped whenever rules change, so the pipeline re-applies them

    async def start(self) -> None:
        await self.reload()
        await self._refresher.start()

    async def stop(self) -> None:
        await self._refresher.stop()

    def spec(self, exchange: str, symbol: str) -> InstrumentSpec:
        """The instrument's settings; an unregistered instrument is 24/7."""
        return self.specs.get((exchange, symbol)) or InstrumentSpec(exchange, symbol)

    async def reload(self) -> None:
        async with self._reload_lock:
            specs = await self._store.list()
            by_key = {s.key: s for s in specs}
            rules: dict[tuple[str, str], SessionRules] = {}
            for spec in specs:
                if not spec.has_sessions:
                    continue
                current = self.rules.get(spec.key)
                if current is not None and current.spec == spec:
                    rules[spec.key] = current
                    continue
                table = await asyncio.to_thread(session_table, spec.calendar, spec.extended_hours)
                rules[spec.key] = SessionRules(spec, table)
            changed = {k: r.spec for k, r in rules.items()} != {k: r.spec for k, r in self.rules.items()}
            self.specs = by_key
            self.rules = rules
            if changed:
                self.version += 1
                log.info("instrument registry: %d instruments, %d with trading sessions", len(specs), len(rules))
