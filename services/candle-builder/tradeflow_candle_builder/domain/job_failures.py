"""Which TimescaleDB jobs started failing or recovered since the last look (pure).

One alert per failing episode, not one per failed run: a refresh policy that fails every minute
would otherwise flood ops.alerts.v1. The episode starts when a job's last run failed and its
failure count grew (or, at the first look, when its last run had failed) and ends when a run
succeeds again. The metrics carry the running counts in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tradeflow_db.jobs import JobStat


@dataclass(frozen=True)
class JobEvent:
    kind: Literal["failing", "recovered"]
    job: JobStat
    new_failures: int  # failed runs since the previous look (all of them at the first look)


class JobFailureWatch:
    def __init__(self) -> None:
        self._seen: dict[int, JobStat] = {}
        self._failing: set[int] = set()

    def observe(self, stats: list[JobStat]) -> list[JobEvent]:
        events: list[JobEvent] = []
        for job in stats:
            before = self._seen.get(job.job_id)
            new_failures = job.total_failures - (before.total_failures if before else 0)
            if job.failing and job.job_id not in self._failing and (before is None or new_failures > 0):
                self._failing.add(job.job_id)
                events.append(JobEvent("failing", job, max(new_failures, 0)))
            elif job.last_run_status == "Success" and job.job_id in self._failing:
                self._failing.discard(job.job_id)
                events.append(JobEvent("recovered", job, max(new_failures, 0)))
        present = {job.job_id for job in stats}
        self._seen = {job.job_id: job for job in stats}
        self._failing &= present  # a removed job is forgotten
        return events
