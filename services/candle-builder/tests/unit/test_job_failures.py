"""One alert per failing episode of a TimescaleDB job, and one when it recovers (pure)."""

from tradeflow_candle_builder.domain.job_failures import JobFailureWatch
from tradeflow_db.jobs import JobStat


def job(status, runs, failures, job_id=1000, error=None) -> JobStat:
    return JobStat(job_id, "policy_refresh_continuous_aggregate", "candles_5m", status, runs, failures, error)


def test_a_job_that_never_ran_or_succeeds_raises_nothing():
    watch = JobFailureWatch()
    assert watch.observe([job(None, 0, 0)]) == []
    assert watch.observe([job("Success", 3, 0)]) == []


def test_failing_is_raised_once_per_episode_and_recovered_when_a_run_succeeds():
    watch = JobFailureWatch()
    assert watch.observe([job("Success", 3, 0)]) == []
    [failing] = watch.observe([job("Failed", 5, 2, error="cannot drop portal")])
    assert (failing.kind, failing.new_failures, failing.job.last_error) == ("failing", 2, "cannot drop portal")
    assert watch.observe([job("Failed", 9, 6)]) == []  # still the same episode
    [recovered] = watch.observe([job("Success", 10, 6)])
    assert (recovered.kind, recovered.new_failures) == ("recovered", 0)
    assert watch.observe([job("Success", 11, 6)]) == []
    [again] = watch.observe([job("Failed", 12, 7)])  # a new episode
    assert (again.kind, again.new_failures) == ("failing", 1)


def test_a_job_already_failing_at_the_first_look_is_raised():
    [event] = JobFailureWatch().observe([job("Failed", 40, 40)])
    assert (event.kind, event.new_failures) == ("failing", 40)


def test_jobs_are_told_apart_and_a_removed_job_is_forgotten():
    watch = JobFailureWatch()
    events = watch.observe([job("Failed", 1, 1, job_id=1), job("Success", 1, 0, job_id=2)])
    assert [(e.kind, e.job.job_id) for e in events] == [("failing", 1)]
    assert watch.observe([job("Success", 1, 0, job_id=2)]) == []  # job 1 removed (policy dropped)
    [event] = watch.observe([job("Failed", 2, 1, job_id=1), job("Success", 1, 0, job_id=2)])
    assert (event.kind, event.job.job_id) == ("failing", 1)
