"""Background job: TimescaleDB's own job failures as metrics and alerts (licensed mode).

Every ``timescaledb_job_check_interval_s`` it reads the statistics of the database's TimescaleDB
jobs (tradeflow_db.jobs: continuous aggregate refresh policies, tick retention and compression
policies) and exposes, per job (labels ``job_id``, ``job``, ``relation``):

* ``tradeflow_candles_timescaledb_job_failed_runs``: failed runs so far (TimescaleDB's count);
* ``tradeflow_candles_timescaledb_job_last_run_failed``: 1 when the job's last run failed, else 0;

and raises an alert on ops.alerts.v1 (key: the service name) when a job starts failing
(``timescaledb_job_failing``, critical, with TimescaleDB's last error message) and when it
succeeds again (``timescaledb_job_recovered``, info): one per episode (domain/job_failures.py).
Every replica reports the same jobs (they belong to the database); alerts repeat per replica.

In the other storage modes there are no such jobs: it says so once in the log and stops.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg
from tradeflow.bus import Producer
from tradeflow.bus.alerts import AlertPublisher
from tradeflow.periodic import STOP, PeriodicTask
from tradeflow.telemetry import Telemetry
from tradeflow_db.capabilities import detect_capabilities_async
from tradeflow_db.jobs import fetch_job_stats

from tradeflow_candle_builder.domain.job_failures import JobEvent, JobFailureWatch

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10
FAILING = "timescaledb_job_failing"
RECOVERED = "timescaledb_job_recovered"


class TimescaleJobMonitor(PeriodicTask):
    """A service Component watching TimescaleDB's background jobs."""

    name = "TimescaleJobMonitor"

    def __init__(self, conninfo: str, telemetry: Telemetry, producer: Producer, *, service_name: str,
                 interval_s: float) -> None:
        super().__init__(interval_s=interval_s, first_delay_s=0)
        self._conninfo = conninfo
        self._alerts = AlertPublisher(producer, service_name)
        self._watch = JobFailureWatch()
        labels = ("job_id", "job", "relation")
        self._failed_runs = telemetry.gauge(
            "tradeflow_candles_timescaledb_job_failed_runs",
            "failed runs of each TimescaleDB background job (timescaledb_information.job_stats)", labels)
        self._last_failed = telemetry.gauge(
            "tradeflow_candles_timescaledb_job_last_run_failed",
            "1 when the last run of the TimescaleDB background job failed, else 0", labels)
        self._checks = telemetry.counter(
            "tradeflow_candles_timescaledb_job_checks_total",
            "reads of TimescaleDB's job statistics by result (ok, failed: the database could not be read)",
            ("result",))

    async def run_once(self) -> object:
        if await self.check_once() is None:
            return STOP  # no jobs in this storage mode
        return None

    async def check_once(self) -> list[JobEvent] | None:
        """One look; the events it raised ([] when nothing changed), None when the mode has no jobs."""
        try:
            async with await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
            ) as conn:
                caps = await detect_capabilities_async(conn)
                if not caps.policies:
                    log.info("no TimescaleDB background jobs to watch in storage mode %r", caps.mode)
                    return None
                stats = await fetch_job_stats(conn)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database is away: try again next round
            self._checks.labels(result="failed").inc()
            log.warning("reading TimescaleDB job statistics failed: %s: %s", type(exc).__name__, exc)
            return []
        self._checks.labels(result="ok").inc()
        for job in stats:
            labels = (str(job.job_id), job.proc_name, job.relation)
            self._failed_runs.labels(*labels).set(job.total_failures)
            self._last_failed.labels(*labels).set(1 if job.failing else 0)
        events = self._watch.observe(stats)
        for event in events:
            self._alert(event)
        return events

    def _alert(self, event: JobEvent) -> None:
        job = event.job
        what = f"TimescaleDB job {job.job_id} ({job.proc_name}{' on ' + job.relation if job.relation else ''})"
        if event.kind == "failing":
            severity, kind = "critical", FAILING
            message = (f"{what} is failing: {job.total_failures} of {job.total_runs} runs failed; "
                       f"last error: {job.last_error or 'unknown'}")
        else:
            severity, kind = "info", RECOVERED
            message = f"{what} succeeded again after failing ({job.total_failures} failed runs in all)"
        log.log(logging.ERROR if event.kind == "failing" else logging.INFO, "%s", message)
        self._alerts.publish(kind, severity, message,
                             {"job_id": str(job.job_id), "job": job.proc_name, "relation": job.relation,
                              "failed_runs": str(job.total_failures), "error": job.last_error or ""})
