"""Migrations and storage-mode detection against the session's real PostgreSQL cluster."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from alembic.script import ScriptDirectory
from psycopg import sql
from tradeflow.db import (
    create_async_engine,
    create_engine,
    detect_capabilities,
    detect_capabilities_async,
    downgrade,
    upgrade,
)
from tradeflow.db.migrate import alembic_config

HIGHER_RELATIONS = ("candles_5m", "candles_15m", "candles_1h", "candles_4h", "candles_1d", "candles_1w")
TRADEFLOW_RELATIONS = {
    "tradeflow_schema_info", "ticks", "candles_1m",
    "candles_5m", "candles_15m", "candles_1h", "candles_4h", "candles_1d", "candles_1w",
    "instruments", "session_candles", "candle_emissions",
}


def _with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def fresh_database_url(database_url: str) -> Iterator[str]:
    """An empty database in the session cluster (the shared ones stay migrated)."""
    name = f"migrations_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_database(database_url, name)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


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
            "SELECT hypertable_name, time_interval FROM timescaledb_information.dimensions"
        ).fetchall())


def test_timescaledb_schema_upgrades_downgrades_and_upgrades_again(fresh_database_url):
    caps = upgrade(fresh_database_url)
    assert caps.mode == "timescaledb-apache"
    relations = _relations(fresh_database_url)
    assert set(relations) == TRADEFLOW_RELATIONS
    # No continuous aggregates in the Apache build: the higher timeframes are tables (0002).
    assert {name for name, kind in relations.items() if kind == "r"} == TRADEFLOW_RELATIONS
    assert _hypertable_chunk_intervals(fresh_database_url) == {
        "ticks": timedelta(days=1), "candles_1m": timedelta(days=7)}

    downgrade(fresh_database_url)
    assert _relations(fresh_database_url) == {}

    assert upgrade(fresh_database_url) == caps
    assert set(_relations(fresh_database_url)) == TRADEFLOW_RELATIONS
    assert set(_hypertable_chunk_intervals(fresh_database_url)) == {"ticks", "candles_1m"}


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


def test_upgrade_is_a_no_op_when_already_at_head(database_url):
    with psycopg.connect(database_url) as conn:
        before = conn.execute("SELECT migrated_at FROM tradeflow_schema_info").fetchone()
    assert upgrade(database_url).mode == "timescaledb-apache"
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT migrated_at FROM tradeflow_schema_info").fetchone() == before
        head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (head,)


def test_the_chosen_mode_is_recorded_in_the_schema(database_url, plain_postgres_url):
    with psycopg.connect(database_url) as conn:
        mode, version = conn.execute("SELECT storage_mode, timescaledb_version FROM tradeflow_schema_info").fetchone()
    assert mode == "timescaledb-apache" and version
    with psycopg.connect(plain_postgres_url) as conn:
        assert conn.execute("SELECT storage_mode, timescaledb_version FROM tradeflow_schema_info").fetchone() == (
            "postgres", None)


def test_detection_reports_the_apache_build_and_plain_postgres(database_url, plain_postgres_url):
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            caps = detect_capabilities(conn)
    finally:
        engine.dispose()
    assert caps.mode == "timescaledb-apache"
    assert caps.timescaledb_version and caps.timescaledb_version[0].isdigit()
    assert (caps.continuous_aggregates, caps.compression, caps.policies) == (False, False, False)

    with psycopg.connect(plain_postgres_url) as conn:  # a raw psycopg connection works too
        plain = detect_capabilities(conn)
    assert plain.mode == "postgres" and plain.timescaledb_version is None


async def test_async_detection_matches_sync_detection(database_url, plain_postgres_url):
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            caps = await detect_capabilities_async(conn)
    finally:
        await engine.dispose()
    assert caps.mode == "timescaledb-apache"
    async with await psycopg.AsyncConnection.connect(plain_postgres_url) as conn:
        assert (await detect_capabilities_async(conn)).mode == "postgres"


def _higher_rows(url: str) -> dict[str, list[tuple]]:
    with psycopg.connect(url) as conn:
        return {relation: conn.execute(
            f"SELECT exchange, symbol, ts, open, high, low, close, volume, trades FROM {relation} "
            "ORDER BY exchange, symbol, ts").fetchall() for relation in HIGHER_RELATIONS}


@pytest.mark.parametrize("use_timescaledb", [True, False], ids=["timescaledb-apache", "postgres"])
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
