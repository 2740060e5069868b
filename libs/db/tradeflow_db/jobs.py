"""TimescaleDB's background jobs, as an operator has to watch them (licensed mode).

With the Timescale license the continuous aggregates' refresh policies, the tick retention policy
and the tick compression policy are jobs that TimescaleDB's scheduler runs inside the database.
A job that fails does so silently for the application (TimescaleDB 2.28.3 on PostgreSQL 15.20
failed every run with ``cannot drop portal "" while it is being set up``, docs/adr/0011), so
their statistics are read here for metrics and alerts: ``timescaledb_information.job_stats``
(runs, failures, last status) and the newest message of ``timescaledb_information.job_errors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg

# One row per job of this database; jobs that never ran have no statistics yet (zeros, NULL status).
JOB_STATS_SQL = """
SELECT j.job_id, j.proc_name,
       coalesce(j.hypertable_name, '') AS relation,
       s.last_run_status,
       coalesce(s.total_runs, 0), coalesce(s.total_failures, 0),
       (SELECT e.err_message FROM timescaledb_information.job_errors e
        WHERE e.job_id = j.job_id ORDER BY e.finish_time DESC NULLS LAST LIMIT 1) AS last_error
FROM timescaledb_information.jobs j
LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
ORDER BY j.job_id
"""


@dataclass(frozen=True)
class JobStat:
    job_id: int
    proc_name: str  # e.g. policy_refresh_continuous_aggregate, policy_retention
    relation: str  # the hypertable or continuous aggregate it works on ('' for none)
    last_run_status: str | None  # 'Success', 'Failed', or None before the first run
    total_runs: int
    total_failures: int
    last_error: str | None

    @property
    def failing(self) -> bool:
        return self.last_run_status == "Failed"


async def fetch_job_stats(conn: psycopg.AsyncConnection) -> list[JobStat]:
    cursor = await conn.execute(JOB_STATS_SQL)
    return [JobStat(int(job_id), proc, relation, status, int(runs), int(failures), error)
            for job_id, proc, relation, status, runs, failures, error in await cursor.fetchall()]
