"""Background job: keep ``tick_retention_days`` of raw ticks (candles stay forever).

Every ``retention_interval_s`` (the first run shortly after start) it opens its own database
connection, detects the storage mode and applies :func:`tradeflow_candle_builder.adapters.tick_retention_plan.plan_tick_retention`
under an advisory lock, so with several replicas only one does the work per round. A failed run
is logged and counted; the next round tries again.

Rounds are counted by what they did: ``applied`` (chunks dropped, rows deleted, or the licensed
build's retention policy added or replaced), ``unchanged`` (the retention was already in force:
nothing old enough, or the policy already there with the configured age), ``skipped`` (another
replica held the lock) and ``failed``. With the licensed build the chunks are dropped by
TimescaleDB's own job, whose failures tradeflow_candles_timescaledb_job_* report.
"""

from __future__ import annotations

import asyncio
import logging
import time

import psycopg
from tradeflow.periodic import PeriodicTask
from tradeflow.telemetry import Telemetry
from tradeflow_db.capabilities import detect_capabilities_async

from tradeflow_candle_builder.adapters.tick_retention_plan import (
    RetentionOutcome,
    apply_tick_retention,
    plan_tick_retention,
)

log = logging.getLogger(__name__)

# Soon after start, but not in the middle of start-up (consumer join, recovery reads).
FIRST_RUN_DELAY_S = 5.0
CONNECT_TIMEOUT_S = 10


class TickRetentionJob(PeriodicTask):
    """A service Component that periodically drops ticks older than the retention."""

    name = "TickRetentionJob"

    def __init__(self, conninfo: str, telemetry: Telemetry, *, days: int, interval_s: float) -> None:
        super().__init__(interval_s=interval_s, first_delay_s=min(FIRST_RUN_DELAY_S, interval_s))
        self._conninfo = conninfo
        self._days = days
        self._runs = telemetry.counter(
            "tradeflow_candles_ticks_retention_runs_total",
            "tick retention rounds by result (applied: dropped or deleted ticks, or added/replaced the retention "
            "policy; unchanged: nothing to do; skipped: another replica held the lock; failed)",
            ("result",))
        self._last_run = telemetry.gauge(
            "tradeflow_candles_ticks_retention_last_run_timestamp_seconds",
            "unix time of the last tick retention round that completed (applied or unchanged)")

    async def run_once(self) -> RetentionOutcome | None:
        """One round; returns what it did (None when skipped or failed)."""
        started = time.monotonic()
        try:
            async with await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
            ) as conn:
                plan = plan_tick_retention(await detect_capabilities_async(conn), self._days)
                outcome = await apply_tick_retention(conn, plan)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is away or refused: try again next round
            self._runs.labels(result="failed").inc()
            log.warning("tick retention failed: %s: %s", type(exc).__name__, exc)
            return None
        if outcome is None:
            self._runs.labels(result="skipped").inc()
            log.info("tick retention skipped: another replica holds the retention lock")
            return None
        self._runs.labels(result="applied" if outcome.changed_anything else "unchanged").inc()
        self._last_run.set(time.time())
        if outcome.method == "policy":
            log.info("tick retention (policy, %d days): %s in %.2fs", self._days,
                     "retention policy added or replaced" if outcome.policy_changed else "retention policy in place",
                     time.monotonic() - started)
        else:
            log.info(
                "tick retention (%s, %d days): dropped %d chunk(s)%s, deleted %d row(s) in %.2fs",
                outcome.method, self._days, len(outcome.dropped_chunks),
                f" {', '.join(outcome.dropped_chunks)}" if outcome.dropped_chunks else "",
                outcome.deleted_rows, time.monotonic() - started,
            )
        return outcome
