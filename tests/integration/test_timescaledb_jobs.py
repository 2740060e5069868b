"""TimescaleDB's job failures become metrics and one alert per failing episode on ops.alerts.v1.

Against a licensed TimescaleDB (PGlite + TimescaleDB here, docs/adr/0011) and the real broker.
PGlite has no background worker, so a failed run is recorded the way TimescaleDB's scheduler
records it: a row in ``_timescaledb_internal.bgw_job_stat`` and one in ``bgw_job_stat_history``
with the error (the message production saw from TimescaleDB 2.28.3 on PostgreSQL 15.20). What is
read back goes through TimescaleDB's own views (``timescaledb_information.job_stats``,
``job_errors``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from tradeflow.admin import ensure_topics
from tradeflow.bus import Producer
from tradeflow.codec import decode
from tradeflow.messages import Alert
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry
from tradeflow.topics import OPS_ALERTS
from tradeflow_candle_builder.timescaledb_jobs import FAILING, RECOVERED, TimescaleJobMonitor

PORTAL_ERROR = 'cannot drop portal "" while it is being set up'


def five_minute_policy(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = "
                            "'policy_refresh_continuous_aggregate' AND hypertable_name = 'candles_5m'").fetchone()[0]


def record_runs(url: str, job_id: int, *, runs: int, failures: int, last_ok: bool, error: str | None = None) -> None:
    """What the scheduler writes after a run of ``job_id``."""
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM _timescaledb_internal.bgw_job_stat WHERE job_id = %s", (job_id,))
        conn.execute(
            "INSERT INTO _timescaledb_internal.bgw_job_stat (job_id, last_start, last_finish, next_start, "
            "last_successful_finish, last_run_success, total_runs, total_duration, total_duration_failures, "
            "total_successes, total_failures, total_crashes, consecutive_failures, consecutive_crashes, flags) "
            "VALUES (%s, now() - INTERVAL '2 s', now() - INTERVAL '1 s', now() + INTERVAL '1 min', "
            "CASE WHEN %s THEN now() ELSE '-infinity' END, %s, %s, INTERVAL '1 s', INTERVAL '1 s', %s, %s, 0, "
            "CASE WHEN %s THEN 0 ELSE 1 END, 0, 0)",
            (job_id, last_ok, last_ok, runs, runs - failures, failures, last_ok))
        data = {"job": {"proc_schema": "_timescaledb_functions", "proc_name": "policy_refresh_continuous_aggregate"}}
        if error:
            data["error_data"] = {"message": error, "sqlerrcode": "55000"}
        conn.execute(
            "INSERT INTO _timescaledb_internal.bgw_job_stat_history (job_id, pid, execution_start, execution_finish, "
            "succeeded, data) VALUES (%s, 4242, now() - INTERVAL '2 s', now() - INTERVAL '1 s', %s, %s)",
            (job_id, last_ok, json.dumps(data)))


async def alerts_of(bootstrap: str, job_id: int, kinds: set[str], count: int, timeout_s: float = 20) -> list[Alert]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(OPS_ALERTS.name, p) for p in range(OPS_ALERTS.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: list[Alert] = []
        deadline = time.monotonic() + timeout_s
        while len(found) < count:
            assert time.monotonic() < deadline, f"{len(found)} of {count} alerts: {found}"
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                for record in batch:
                    alert = decode(Alert, record.value)
                    if alert.kind in kinds and alert.labels.get("job_id") == str(job_id):
                        assert record.key == b"candle-builder"
                        found.append(alert)
        return found
    finally:
        await consumer.stop()


async def test_a_failing_job_is_a_metric_and_one_alert_until_it_recovers(fresh_licensed_url, kafka_bootstrap):
    settings = CommonSettings(kafka_bootstrap=kafka_bootstrap)
    await ensure_topics(settings, [OPS_ALERTS])
    telemetry = Telemetry("candle-builder", settings)
    producer = Producer(settings, telemetry, client_id="test-jobs")
    await producer.start()
    try:
        monitor = TimescaleJobMonitor(fresh_licensed_url, telemetry, producer, service_name="candle-builder",
                                      interval_s=60)
        job_id = five_minute_policy(fresh_licensed_url)
        labels = {"job_id": str(job_id), "job": "policy_refresh_continuous_aggregate", "relation": "candles_5m"}

        def metric(name: str) -> float | None:
            return telemetry.registry.get_sample_value(f"tradeflow_candles_timescaledb_job_{name}", labels)

        assert await monitor.check_once() == []  # no run yet
        assert (metric("failed_runs"), metric("last_run_failed")) == (0, 0)

        record_runs(fresh_licensed_url, job_id, runs=3, failures=3, last_ok=False, error=PORTAL_ERROR)
        [event] = await monitor.check_once()
        assert (event.kind, event.job.job_id, event.new_failures) == ("failing", job_id, 3)
        assert (metric("failed_runs"), metric("last_run_failed")) == (3, 1)

        # Still failing: counted, not alerted again.
        record_runs(fresh_licensed_url, job_id, runs=5, failures=5, last_ok=False, error=PORTAL_ERROR)
        assert await monitor.check_once() == []
        assert metric("failed_runs") == 5

        record_runs(fresh_licensed_url, job_id, runs=6, failures=5, last_ok=True)
        [event] = await monitor.check_once()
        assert event.kind == "recovered"
        assert (metric("failed_runs"), metric("last_run_failed")) == (5, 0)
        assert telemetry.registry.get_sample_value("tradeflow_candles_timescaledb_job_checks_total",
                                                   {"result": "ok"}) == 4

        failing, recovered = await alerts_of(kafka_bootstrap, job_id, {FAILING, RECOVERED}, 2)
        assert (failing.kind, failing.severity, failing.service) == (FAILING, "critical", "candle-builder")
        assert PORTAL_ERROR in failing.message and "3 of 3 runs failed" in failing.message
        assert failing.labels == {**labels, "failed_runs": "3", "error": PORTAL_ERROR}
        assert (recovered.kind, recovered.severity) == (RECOVERED, "info")
    finally:
        await producer.stop()


async def test_without_the_license_there_are_no_jobs_to_watch(table_mode_url, kafka_bootstrap, caplog):
    settings = CommonSettings(kafka_bootstrap=kafka_bootstrap)
    telemetry = Telemetry("candle-builder", settings)
    producer = Producer(settings, telemetry, client_id="test-jobs")
    monitor = TimescaleJobMonitor(table_mode_url, telemetry, producer, service_name="candle-builder", interval_s=0.01)
    with caplog.at_level(logging.INFO, logger="tradeflow_candle_builder.timescaledb_jobs"):
        await monitor.start()
        deadline = time.monotonic() + 10
        while not [r for r in caplog.records if "no TimescaleDB background jobs" in r.getMessage()]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await monitor.stop()
    reports = [r.getMessage() for r in caplog.records if r.name == "tradeflow_candle_builder.timescaledb_jobs"]
    assert len(reports) == 1 and reports[0].startswith("no TimescaleDB background jobs to watch in storage mode")
    assert telemetry.registry.get_sample_value("tradeflow_candles_timescaledb_job_checks_total", {"result": "ok"}) is None
