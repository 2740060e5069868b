"""Migrations and storage-mode detection in every storage mode available here.

The local cluster runs whatever TimescaleDB build is installed (tests/database_modes.py); the
licensed mode runs where it is available (PGlite + TimescaleDB here, docs/adr/0011). Each test
asserts the mode's own schema: hypertables and tables (Apache), plain tables (PostgreSQL),
hypertables and continuous aggregates with their refresh policies (licensed).
"""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from alembic.script import ScriptDirectory
from tradeflow_db import (
    create_async_engine,
    create_engine,
    detect_capabilities,
    detect_capabilities_async,
)
from tradeflow_db.migrate import alembic_config, downgrade, upgrade

from tests.database_modes import APACHE, LICENSED, POSTGRES, local_cluster_mode
from tests.integration.conftest import DATABASE_MODES

HIGHER_RELATIONS = ("candles_5m", "candles_15m", "candles_1h", "candles_4h", "candles_1d", "candles_1w")
TRADEFLOW_RELATIONS = {
    "tradeflow_schema_info", "ticks", "candles_1m",
    "candles_5m", "candles_15m", "candles_1h", "candles_4h", "candles_1d", "candles_1w",
    "instruments", "session_candles", "candle_emissions",
}


def _relations(url: str) -> dict[str, str]:
    """Tradeflow relations in the database and their kind (r table, v view, m matview)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT relname, relkind FROM pg_class WHERE relnamespace = 'public'::regnamespace "
            "AND relname = ANY(%s)", (sorted(TRADEFLOW_RELATIONS),),
        ).fetchall()
    return dict(rows)


def _hypertable_chunk_intervals(url: str) -> dict[str, timedelta]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute(
            "SELECT hypertable_name, time_interval FROM timescaledb_information.dimensions "
            "WHERE hypertable_schema = current_schema()"  # not the aggregates' materialization tables
        ).fetchall())


def _refresh_policies(url: str) -> dict[str, tuple[timedelta, timedelta, timedelta]]:
    """Each continuous aggregate's refresh policy: (start_offset, end_offset, schedule_interval)."""
    with psycopg.connect(url) as conn:
        return {name: tuple(conn.execute("SELECT %s::interval, %s::interval, %s::interval",
                                         (config["start_offset"], config["end_offset"], every)).fetchone())
                for name, config, every in conn.execute(
                    "SELECT hypertable_name, config, schedule_interval FROM timescaledb_information.jobs "
                    "WHERE proc_name = 'policy_refresh_continuous_aggregate'").fetchall()}


# Databases with TimescaleDB that a test may migrate from scratch: the local cluster's build
# (a fresh database in it) and the licensed one (a PGlite of its own where it runs here).
TIMESCALEDB_SOURCES = ([pytest.param("fresh_database_url", id=local_cluster_mode())]
                       if local_cluster_mode() != POSTGRES else [])
if local_cluster_mode() != LICENSED and any(m.mode == LICENSED for m in DATABASE_MODES):
    TIMESCALEDB_SOURCES.append(pytest.param("fresh_licensed_url", id="timescaledb-pglite"))


@pytest.fixture(params=TIMESCALEDB_SOURCES)
def empty_timescaledb_url(request) -> str:
    """A database with TimescaleDB available and no Tradeflow schema."""
    url = request.getfixturevalue(request.param)
    downgrade(url)  # the licensed one comes migrated
    return url


def test_timescaledb_schema_upgrades_downgrades_and_upgrades_again(empty_timescaledb_url):
    url = empty_timescaledb_url
    caps = upgrade(url)
    assert caps.mode in (APACHE, LICENSED)
    relations = _relations(url)
    assert set(relations) == TRADEFLOW_RELATIONS
    assert _hypertable_chunk_intervals(url) == {"ticks": timedelta(days=1), "candles_1m": timedelta(days=7)}
    if caps.mode == APACHE:
        # No continuous aggregates in the Apache build: the higher timeframes are tables (0002).
        assert {name for name, kind in relations.items() if kind == "r"} == TRADEFLOW_RELATIONS
    else:
        # Continuous aggregates (their user views), each with its refresh policy.
        assert {name for name, kind in relations.items() if kind == "v"} == set(HIGHER_RELATIONS)
        assert _refresh_policies(url) == {
            "candles_5m": (timedelta(days=1), timedelta(minutes=5), timedelta(minutes=1)),
            "candles_15m": (timedelta(days=2), timedelta(minutes=15), timedelta(minutes=5)),
            "candles_1h": (timedelta(days=3), timedelta(hours=1), timedelta(minutes=15)),
            "candles_4h": (timedelta(days=7), timedelta(hours=4), timedelta(minutes=30)),
            "candles_1d": (timedelta(days=30), timedelta(days=1), timedelta(hours=1)),
            "candles_1w": (timedelta(days=35), timedelta(days=7), timedelta(hours=1)),
        }

    downgrade(url)
    assert _relations(url) == {}
    if caps.mode == LICENSED:
        assert _refresh_policies(url) == {}

    assert upgrade(url) == caps
    assert set(_relations(url)) == TRADEFLOW_RELATIONS
    assert set(_hypertable_chunk_intervals(url)) == {"ticks", "candles_1m"}


def test_plain_schema_upgrades_downgrades_and_upgrades_again_without_the_extension(fresh_database_url):
    caps = upgrade(fresh_database_url, use_timescaledb=False)
    assert caps.mode == "postgres" and caps.timescaledb_version is None
    relations = _relations(fresh_database_url)
    assert set(relations) == TRADEFLOW_RELATIONS
    assert set(relations.values()) == {"r"}
    with psycopg.connect(fresh_database_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'").fetchone() == (0,)
        # The same indexes as the hypertables: the two unique keys.
        indexes = {row[0] for row in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename IN ('ticks', 'candles_1m')").fetchall()}
    assert any("(exchange, symbol, ts, trade_id)" in i and "UNIQUE" in i for i in indexes)
    assert any("candles_1m" in i and "(exchange, symbol, ts)" in i and "UNIQUE" in i for i in indexes)

    downgrade(fresh_database_url)
    assert _relations(fresh_database_url) == {}
    assert upgrade(fresh_database_url, use_timescaledb=False) == caps


@pytest.fixture(params=DATABASE_MODES, ids=[m.id for m in DATABASE_MODES])
def migrated(request) -> tuple[str, str]:
    """(the mode a session database was migrated in, its URL), for every available mode."""
    return request.param.mode, request.getfixturevalue(request.param.fixture)


def test_upgrade_is_a_no_op_when_already_at_head(migrated):
    mode, url = migrated
    with psycopg.connect(url) as conn:
        before = conn.execute("SELECT migrated_at FROM tradeflow_schema_info").fetchone()
    assert upgrade(url, use_timescaledb=mode != POSTGRES).mode == mode
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT migrated_at FROM tradeflow_schema_info").fetchone() == before
        head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (head,)


def test_the_chosen_mode_is_recorded_in_the_schema(migrated):
    mode, url = migrated
    with psycopg.connect(url) as conn:
        recorded, version = conn.execute("SELECT storage_mode, timescaledb_version FROM tradeflow_schema_info").fetchone()
    assert recorded == mode
    assert (version is None) == (mode == POSTGRES)


def test_detection_reports_each_mode_with_its_features(migrated):
    mode, url = migrated
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            caps = detect_capabilities(conn)
    finally:
        engine.dispose()
    with psycopg.connect(url) as conn:  # a raw psycopg connection works too
        assert detect_capabilities(conn) == caps
    assert caps.mode == mode
    assert (caps.timescaledb_version is not None) == (mode != POSTGRES)
    licensed = mode == LICENSED
    assert (caps.continuous_aggregates, caps.compression, caps.policies) == (licensed, licensed, licensed)


async def test_async_detection_matches_sync_detection(migrated):
    mode, url = migrated
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            caps = await detect_capabilities_async(conn)
    finally:
        await engine.dispose()
    async with await psycopg.AsyncConnection.connect(url) as conn:
        assert await detect_capabilities_async(conn) == caps
    with psycopg.connect(url) as conn:
        assert detect_capabilities(conn) == caps


def _higher_rows(url: str) -> dict[str, list[tuple]]:
    with psycopg.connect(url) as conn:
        return {relation: conn.execute(
            f"SELECT exchange, symbol, ts, open, high, low, close, volume, trades FROM {relation} "
            "ORDER BY exchange, symbol, ts").fetchall() for relation in HIGHER_RELATIONS}


@pytest.mark.parametrize("use_timescaledb", [True, False][0 if local_cluster_mode() == APACHE else 1:],
                         ids=[APACHE, POSTGRES][0 if local_cluster_mode() == APACHE else 1:])
def test_upgrading_to_tables_keeps_the_candles_and_downgrading_restores_the_views(fresh_database_url, use_timescaledb):
    upgrade(fresh_database_url, use_timescaledb=use_timescaledb, revision="0001")
    with psycopg.connect(fresh_database_url) as conn:
        # Two instruments, 10 days of irregular minutes (quarter values: exact sums) across
        # the week boundary of Monday 2024-01-08.
        conn.execute(
            "INSERT INTO candles_1m (exchange, symbol, ts, open, high, low, close, volume, trades) "
            "SELECT 'x', s, TIMESTAMPTZ '2024-01-03' + m * INTERVAL '1 minute', "
            "(m % 37) / 4.0, (m % 37) / 4.0 + 2, (m % 37) / 4.0 - 1, (m % 41) / 4.0, (m % 13) / 4.0 + 0.25, m % 7 + 1 "
            "FROM generate_series(0, 14400, 3) m, unnest(ARRAY['BTC/USDT', 'ETH/USDT']) s")
    with_views = _higher_rows(fresh_database_url)
    assert all(with_views.values())
    assert {_relations(fresh_database_url)[r] for r in HIGHER_RELATIONS} == {"v"}

    upgrade(fresh_database_url, use_timescaledb=use_timescaledb)
    assert {_relations(fresh_database_url)[r] for r in HIGHER_RELATIONS} == {"r"}
    assert _higher_rows(fresh_database_url) == with_views  # filled from the existing candles_1m

    downgrade(fresh_database_url, revision="0001")
    assert {_relations(fresh_database_url)[r] for r in HIGHER_RELATIONS} == {"v"}
    assert _higher_rows(fresh_database_url) == with_views


def test_in_the_licensed_mode_0002_leaves_the_continuous_aggregates_as_they_are_both_ways(fresh_licensed_url):
    url = fresh_licensed_url
    downgrade(url)
    upgrade(url, revision="0001")
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO candles_1m (exchange, symbol, ts, open, high, low, close, volume, trades) "
            "SELECT 'x', 'BTC/USDT', TIMESTAMPTZ '2024-01-03' + m * INTERVAL '1 minute', "
            "(m % 37) / 4.0, (m % 37) / 4.0 + 2, (m % 37) / 4.0 - 1, (m % 41) / 4.0, 0.25, 1 "
            "FROM generate_series(0, 14400, 3) m")
    served = _higher_rows(url)
    assert all(served.values()) and {_relations(url)[r] for r in HIGHER_RELATIONS} == {"v"}
    upgrade(url)
    assert {_relations(url)[r] for r in HIGHER_RELATIONS} == {"v"} and _higher_rows(url) == served
    downgrade(url, revision="0001")
    assert {_relations(url)[r] for r in HIGHER_RELATIONS} == {"v"} and _higher_rows(url) == served
    upgrade(url)
