"""Start-up job: compress old ticks where the database can (see tradeflow_candle_builder.adapters.tick_compression_plan).

Once per start it opens its own connection, detects the storage mode and applies
:func:`tradeflow_candle_builder.adapters.tick_compression_plan.plan_tick_compression`. With the Timescale license that sets
up compression on ``ticks`` and a compression policy (the TimescaleDB scheduler does the
work from then on); in the other modes it logs once that compression is unavailable and does
nothing. A failure (database away) is retried with backoff in the background: it never
blocks the service's start.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg
from tradeflow.service import BackgroundTask, retry_until_done
from tradeflow_db.capabilities import detect_capabilities_async

from tradeflow_candle_builder.adapters.tick_compression_plan import (
    CompressionPlan,
    apply_tick_compression,
    plan_tick_compression,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10
RETRY_MAX_S = 300.0


class TickCompressionSetup(BackgroundTask):
    """A service Component that applies the tick compression setting once."""

    name = "TickCompressionSetup"

    def __init__(self, conninfo: str, *, days: int, first_retry_s: float = 5.0) -> None:
        super().__init__()
        self._conninfo = conninfo
        self._days = days
        self._first_retry_s = first_retry_s
        self.applied: CompressionPlan | None = None  # the plan carried out (or found unavailable)

    async def wait(self) -> CompressionPlan | None:
        """The outcome once there is one (None when not started)."""
        await super().wait()
        return self.applied

    async def run(self) -> None:
        await retry_until_done(self.run_once, first_delay_s=self._first_retry_s, max_delay_s=RETRY_MAX_S)

    async def run_once(self) -> CompressionPlan | None:
        """One attempt; the plan carried out (or found unavailable), None when it failed."""
        try:
            async with await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
            ) as conn:
                plan = plan_tick_compression(await detect_capabilities_async(conn), self._days)
                await apply_tick_compression(conn, plan)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is away or refused: try again later
            log.warning("tick compression setup failed: %s: %s", type(exc).__name__, exc)
            return None
        if plan.method == "unavailable":
            log.info("%s", plan.reason)
        elif plan.method == "disabled":
            log.info("tick compression is off (TRADEFLOW_CANDLE_BUILDER_TICK_COMPRESS_AFTER_DAYS=0): no compression policy on ticks")
        else:
            log.info("tick compression: chunks of ticks older than %d days are compressed by a policy "
                     "(segmented by exchange, symbol; ordered by ts)", plan.days)
        self.applied = plan
        return plan
