"""Tick retention in the running candle-builder, in every storage mode available here.

Apache TimescaleDB drops whole chunks with ``drop_chunks``; plain PostgreSQL deletes in batches;
the licensed build gets a retention policy that TimescaleDB's scheduler runs (PGlite has no
scheduler: the test runs the policy's job itself, as the scheduler would). Either way, ticks
older than the retention are gone, newer ones stay, and every 1m candle (old ones too) stays
and is still served by ``/v1/candles``. A round counts as ``applied`` only when it changed
something (dropped, deleted, or added/replaced the policy), else ``unchanged``.

Retention is database-wide: it also removes other tests' months-old ticks. Tests that need old
ticks keep them by running the service with a long ``tick_retention_days``.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from tradeflow.messages import Candle, Tick
from tradeflow_candle_builder.adapters.candle_store import CandleStore
from tradeflow_candle_builder.adapters.tick_retention_plan import (
    TICK_RETENTION_LOCK_KEY,
    apply_tick_retention,
    plan_tick_retention,
)
from tradeflow_candle_builder.bootstrap import SERVICE
from tradeflow_candle_builder.settings import CandleBuilderSettings
from tradeflow_db.capabilities import detect_capabilities_async
from tradeflow_db.engine import libpq_url

from tests.integration.conftest import DATABASE_MODES

pytestmark = pytest.mark.integration

NS = 1_000_000_000
MINUTE_NS = 60 * NS


def ns(dt: datetime) -> int:
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def minute_start(dt: datetime) -> datetime:
    return dt.replace(second=0, microsecond=0)


async def store_history(url: str, exchange: str, ages_days: list[int]) -> dict[int, datetime]:
    """Two ticks and their 1m candle at each age (days before now); returns each minute's start."""
    now = datetime.now(UTC)
    minutes = {age: minute_start(now - timedelta(days=age)) for age in ages_days}
    ticks, candles = [], []
    for age, start in minutes.items():
        t = ns(start)
        ticks += [Tick(exchange=exchange, symbol="BTC/USDT", trade_id=f"{age}-{i}", price=100.0 + i, amount=1.0,
                       side="buy", ts_event=t + i * NS, ts_recv=t + i * NS) for i in range(2)]
        candles.append(Candle(exchange=exchange, symbol="BTC/USDT", timeframe="1m", ts_start=t, ts_end=t + MINUTE_NS,
                              open=100.0, high=101.0, low=100.0, close=101.0, volume=2.0, trades=2, revision=0))
    store = CandleStore(url)
    await store.start()
    try:
        assert await store.write_ticks(ticks) == len(ticks)
        await store.upsert_candles_1m(candles)
    finally:
        await store.stop()
    return minutes


def stored_ages(url: str, table: str, exchange: str, minutes: dict[int, datetime]) -> list[int]:
    by_start = {start: age for age, start in minutes.items()}
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute(f"SELECT DISTINCT date_trunc('minute', ts) FROM {table} WHERE exchange = %s",
                            (exchange,)).fetchall()
    return sorted(by_start[ts] for (ts,) in rows)


METHODS = {"timescaledb": "policy", "timescaledb-apache": "drop_chunks", "postgres": "delete"}


@pytest.fixture(params=DATABASE_MODES, ids=[m.id for m in DATABASE_MODES])
def mode_and_method(request) -> tuple[str, str]:
    return request.getfixturevalue(request.param.fixture), METHODS[request.param.mode]


# PGlite serves every connection from one PostgreSQL session, so one connection's advisory lock
# does not keep another out there (docs/adr/0011): the lock is shown on the real servers.
SEPARATE_SESSIONS = [m for m in DATABASE_MODES if m.fixture != "licensed_url"]


@pytest.fixture(params=SEPARATE_SESSIONS, ids=[m.id for m in SEPARATE_SESSIONS])
def lockable_mode_and_method(request) -> tuple[str, str]:
    return request.getfixturevalue(request.param.fixture), METHODS[request.param.mode]


def run_retention_job(url: str) -> None:
    """What TimescaleDB's scheduler does with the retention policy (PGlite has no scheduler)."""
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        [(job_id,)] = conn.execute("SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = "
                                   "'policy_retention' AND hypertable_name = 'ticks'").fetchall()
        conn.execute("CALL run_job(%s)", (job_id,))


def retention_runs(metrics: str, result: str) -> float:
    found = re.search(rf'^tradeflow_candles_ticks_retention_runs_total\{{result="{result}"\}} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


async def test_the_service_drops_ticks_older_than_the_retention_and_keeps_every_candle(
        mode_and_method, kafka_bootstrap, unique_name):
    mode_url, method = mode_and_method
    exchange = f"ret-{unique_name[-8:]}"
    minutes = await store_history(mode_url, exchange, [400, 45, 5, 0])
    settings = CandleBuilderSettings(
        kafka_bootstrap=kafka_bootstrap, database_url=mode_url, environment="test",
        ticks_topic=f"ticks-{unique_name}", candles_topic=f"candles-{unique_name}",
        consumer_group=f"cb-{unique_name}", consumer_session_timeout_ms=6000,
        tick_retention_days=30, retention_interval_s=1)
    app = SERVICE.create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cb") as client:
        async with app.router.lifespan_context(app):
            # The first round applies the retention (or finds it in force: other tests' rounds may
            # have been first in this shared database); the rounds after it have nothing to do.
            deadline = time.monotonic() + 30
            while retention_runs(metrics := (await client.get("/metrics")).text, "unchanged") < 1:
                assert time.monotonic() < deadline, "no retention round found the retention in force:\n" + "\n".join(
                    line for line in metrics.splitlines() if "retention" in line)
                await asyncio.sleep(0.2)
            assert retention_runs(metrics, "applied") <= 1 and retention_runs(metrics, "failed") == 0
            last_run = re.search(r"^tradeflow_candles_ticks_retention_last_run_timestamp_seconds (\S+)$", metrics, re.M)
            assert last_run and abs(float(last_run.group(1)) - time.time()) < 60

            if method == "policy":  # in force, carried out by TimescaleDB's job
                assert stored_ages(mode_url, "ticks", exchange, minutes) == [0, 5, 45, 400]
                run_retention_job(mode_url)
            assert stored_ages(mode_url, "ticks", exchange, minutes) == [0, 5]
            assert stored_ages(mode_url, "candles_1m", exchange, minutes) == [0, 5, 45, 400]
            # Old candles are still served, at 1m and from the higher timeframes built on them.
            old = minutes[400]
            for timeframe, start in (("1m", old), ("1d", old.replace(hour=0, minute=0))):
                resp = await client.get("/v1/candles", params={
                    "exchange": exchange, "symbol": "BTC/USDT", "timeframe": timeframe,
                    "start": start.isoformat(), "end": (start + timedelta(days=1)).isoformat()})
                assert resp.status_code == 200, resp.text
                assert resp.json() == [{"ts": start.isoformat().replace("+00:00", "Z"), "open": 100.0, "high": 101.0,
                                        "low": 100.0, "close": 101.0, "volume": 2.0, "trades": 2}], timeframe


async def test_only_the_session_holding_the_retention_lock_applies_it(lockable_mode_and_method, unique_name):
    mode_url, method = lockable_mode_and_method
    exchange = f"lock-{unique_name[-8:]}"
    minutes = await store_history(mode_url, exchange, [60, 1])
    url = libpq_url(mode_url)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as other_replica, \
            await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        plan = plan_tick_retention(await detect_capabilities_async(conn), 30)
        assert plan.method == method
        await other_replica.execute("SELECT pg_advisory_lock(%s)", (TICK_RETENTION_LOCK_KEY,))
        assert await apply_tick_retention(conn, plan) is None  # another replica is at work
        assert stored_ages(mode_url, "ticks", exchange, minutes) == [1, 60]

        await other_replica.execute("SELECT pg_advisory_unlock(%s)", (TICK_RETENTION_LOCK_KEY,))
        await check_one_round(mode_url, conn, plan, exchange, minutes)
        # The lock was released: the other replica can take it now.
        cursor = await other_replica.execute("SELECT pg_try_advisory_lock(%s)", (TICK_RETENTION_LOCK_KEY,))
        assert (await cursor.fetchone())[0] is True


async def test_a_round_reports_what_it_changed(mode_and_method, unique_name):
    mode_url, method = mode_and_method
    exchange = f"round-{unique_name[-8:]}"
    minutes = await store_history(mode_url, exchange, [60, 1])
    async with await psycopg.AsyncConnection.connect(libpq_url(mode_url), autocommit=True) as conn:
        plan = plan_tick_retention(await detect_capabilities_async(conn), 30)
        assert plan.method == method
        await check_one_round(mode_url, conn, plan, exchange, minutes)
        again = await apply_tick_retention(conn, plan)
        assert again is not None and not again.changed_anything  # nothing left to do


async def check_one_round(mode_url, conn, plan, exchange, minutes) -> None:
    """One round drops the 60-day-old ticks (or puts the policy that drops them in force) and
    keeps the 1-day-old ones and every candle."""
    outcome = await apply_tick_retention(conn, plan)
    assert outcome is not None and outcome.method == plan.method
    if plan.method == "drop_chunks":
        assert outcome.dropped_chunks and all(name.startswith("_timescaledb_internal.")
                                              for name in outcome.dropped_chunks)
    elif plan.method == "delete":
        assert outcome.deleted_rows >= 2
    else:  # the policy: in place now (maybe added by an earlier test); a new age replaces it
        assert outcome.dropped_chunks == () and outcome.deleted_rows == 0
        assert not (await apply_tick_retention(conn, plan)).changed_anything
        assert (await apply_tick_retention(conn, plan_tick_retention(await detect_capabilities_async(conn), 31))
                ).policy_changed
        assert (await apply_tick_retention(conn, plan)).policy_changed
        assert stored_ages(mode_url, "ticks", exchange, minutes) == [1, 60]  # the job drops them
        run_retention_job(mode_url)
    assert outcome.changed_anything or plan.method == "policy"
    assert stored_ages(mode_url, "ticks", exchange, minutes) == [1]
    assert stored_ages(mode_url, "candles_1m", exchange, minutes) == [1, 60]
