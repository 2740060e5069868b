"""Start-up job (licensed mode): materialize what an earlier process committed but did not refresh.

With continuous aggregates, a write of candles_1m commits first and refreshes the buckets it left
stale after (``CALL refresh_continuous_aggregate`` cannot run in a transaction). A process that
dies in between leaves those buckets stale, and a refresh policy repairs them only inside its own
window (one day for candles_5m): a late correction older than that would stay wrong for good.
So once per start, in the background, every aggregate is refreshed over the span late trades
can reach (the tick retention, plus a day): TimescaleDB recomputes only the invalidated buckets
in it. In the other storage modes there is nothing to catch up (CandleStore.
refresh_continuous_aggregates_since does nothing). Failures are retried with backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time

from tradeflow.service import BackgroundTask, retry_until_done

from tradeflow_candle_builder.adapters.candle_store import CandleStore
from tradeflow_candle_builder.domain.timeframes import DAY_NS

log = logging.getLogger(__name__)

RETRY_MAX_S = 300.0


class AggregateCatchUp(BackgroundTask):
    """A service Component: one background catch-up refresh per start (licensed mode)."""

    name = "AggregateCatchUp"

    def __init__(self, store: CandleStore, *, days: int, first_retry_s: float = 5.0) -> None:
        super().__init__()
        self._store = store
        self._days = days
        self._first_retry_s = first_retry_s
        self.refreshes: int | None = None  # how many refreshes the catch-up ran, once it has

    async def wait(self) -> int | None:
        await super().wait()
        return self.refreshes

    async def run(self) -> None:
        await retry_until_done(self.run_once, first_delay_s=self._first_retry_s, max_delay_s=RETRY_MAX_S)

    async def run_once(self) -> int | None:
        """One attempt; the number of refreshes run, None when it failed."""
        started = time.monotonic()
        since = time.time_ns() - (self._days + 1) * DAY_NS
        try:
            refreshes = await self._store.refresh_continuous_aggregates_since(since)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is away: try again later
            log.warning("continuous aggregate catch-up failed: %s: %s", type(exc).__name__, exc)
            return None
        if refreshes:
            log.info("continuous aggregates brought up to date over the last %d days (%d refreshes, %.2fs)",
                     self._days + 1, refreshes, time.monotonic() - started)
        self.refreshes = refreshes
        return refreshes
