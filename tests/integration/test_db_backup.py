"""``tradeflow db backup|restore``: a migrated database with candles, ticks and trading rows is
backed up and restored into a fresh PostgreSQL cluster, and every table compares row for row."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from tradeflow_db.migrate import upgrade
from tradeflow_ops.infra.postgres import PostgresCluster, cluster_root_for, timescaledb_installed

from tests.e2e.service_process import free_port

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent

FILL_SQL = [
    """INSERT INTO ticks (exchange, symbol, ts, trade_id, price, amount, side, ts_recv)
       SELECT 'bk', 'BTC/USDT', t, 't' || n, 100 + n * 0.01, 0.5, 'buy', t
       FROM generate_series(1, 3000) AS n, LATERAL (SELECT timestamptz '2026-03-02 10:00Z' + n * interval '7 s') AS x(t)""",
    """INSERT INTO candles_1m (exchange, symbol, ts, open, high, low, close, volume, trades)
       SELECT 'bk', 'BTC/USDT', timestamptz '2026-03-02 10:00Z' + n * interval '1 min', 100 + n, 101 + n, 99 + n,
              100.5 + n, 4.5, 9
       FROM generate_series(0, 349) AS n""",
    """INSERT INTO execution_orders (client_order_id, account_id, exchange, symbol, status, seq, filled_quantity,
         filled_notional, filled_fees, exchange_order_id, reason, broker_state, trace, received_ns, order_message)
       SELECT 'o' || n, 'acct', 'bk', 'BTC/USDT', 'filled', 2, 0.5, 50.25, 0.05025, 'x' || n, '', '{}',
              '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}', n, '\\x8201'
       FROM generate_series(1, 40) AS n""",
    """INSERT INTO execution_order_transitions (client_order_id, seq, status, filled_quantity, average_price,
         exchange_order_id, reason, ts_event)
       SELECT 'o' || n, s, CASE s WHEN 1 THEN 'submitted' ELSE 'filled' END, CASE s WHEN 1 THEN 0 ELSE 0.5 END,
              CASE s WHEN 1 THEN NULL ELSE 100.5 END, 'x' || n, '', n * 1000 + s
       FROM generate_series(1, 40) AS n, generate_series(1, 2) AS s""",
    """INSERT INTO execution_fills (fill_id, client_order_id, account_id, exchange, symbol, side, quantity, price,
         fee, fee_currency, liquidity, strategy_id, ts_event)
       SELECT 'f' || n, 'o' || n, 'acct', 'bk', 'BTC/USDT', 'buy', 0.5, 100.5, 0.05025, 'USDT', 'taker', 'sma', n
       FROM generate_series(1, 40) AS n""",
]


def tables(url: str) -> list[str]:
    """Every user table (hypertables by their own name; their chunks are read through them)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("""
            SELECT schemaname || '.' || tablename FROM pg_tables
            WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
              AND schemaname NOT LIKE '\\_timescaledb%' AND schemaname NOT IN ('timescaledb_information',
                  'timescaledb_experimental', '_timescaledb_cache', '_timescaledb_catalog', '_timescaledb_config',
                  '_timescaledb_internal', '_timescaledb_functions')
            ORDER BY 1""").fetchall()
    return [r[0] for r in rows]


def contents(url: str, table: str) -> list[tuple]:
    schema, name = table.split(".", 1)
    with psycopg.connect(url) as conn:
        columns = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
            "ORDER BY ordinal_position", (schema, name)).fetchall()]
        query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
            sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns),
            sql.Identifier(schema, name),
            sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns))
        return conn.execute(query).fetchall()


def tradeflow(*args: str, database_url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TRADEFLOW_DATABASE_URL": database_url}
    return subprocess.run([str(BIN / "tradeflow"), *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def source_url(local_infra, database_url) -> str:
    """A fresh migrated database in the session's cluster, filled with rows of every kind."""
    url = local_infra.create_database(f"backup_{uuid.uuid4().hex[:10]}")
    upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in FILL_SQL:
            conn.execute(statement)
    return url


@pytest.fixture
def fresh_cluster(tmp_path) -> str:
    """A new PostgreSQL cluster of its own (initdb), its empty ``tradeflow`` database's URL."""
    cluster = PostgresCluster(cluster_root_for(tmp_path / "restore"), free_port())
    running = cluster.start()
    try:
        yield cluster.url()
    finally:
        cluster.stop(running)
        cluster.purge()


def test_backup_then_restore_into_a_fresh_cluster_gives_every_row_back(source_url, fresh_cluster, tmp_path):
    archive = tmp_path / "tradeflow.dump"
    backed_up = tradeflow("db", "backup", str(archive), database_url=source_url)
    assert backed_up.returncode == 0, backed_up.stderr
    assert archive.is_file() and not (tmp_path / "tradeflow.dump.partial").exists()
    assert archive.read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format
    timescale = timescaledb_installed()
    assert ("with TimescaleDB" if timescale else "plain PostgreSQL") in backed_up.stdout

    restored = tradeflow("db", "restore", str(archive), "--database-url", fresh_cluster, database_url=source_url)
    assert restored.returncode == 0, restored.stderr
    assert "restored" in restored.stdout

    source_tables = tables(source_url)
    assert {"public.ticks", "public.candles_1m", "public.execution_orders", "public.execution_fills",
            "public.alembic_version"} <= set(source_tables)
    assert tables(fresh_cluster) == source_tables
    counts = {}
    for table in source_tables:
        rows = contents(source_url, table)
        assert contents(fresh_cluster, table) == rows, f"{table} differs after the restore"
        counts[table] = len(rows)
    assert counts["public.ticks"] == 3000 and counts["public.candles_1m"] == 350
    assert counts["public.execution_fills"] == 40 and counts["public.execution_order_transitions"] == 80

    with psycopg.connect(fresh_cluster) as conn:
        # the restored database takes writes (with TimescaleDB: a new chunk, restoring mode is off),
        # and its unique keys hold as before
        conn.execute("INSERT INTO ticks (exchange, symbol, ts, trade_id, price, amount, side, ts_recv) "
                     "VALUES ('bk', 'BTC/USDT', '2026-09-01 00:00Z', 'later', 1, 1, 'buy', now())")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO execution_fills (fill_id, client_order_id, account_id, exchange, symbol, side, "
                         "quantity, price, fee, fee_currency, liquidity, strategy_id, ts_event) VALUES ('f1', 'o1', "
                         "'acct', 'bk', 'BTC/USDT', 'buy', 1, 1, 0, 'USDT', 'taker', '', 1)")
        conn.rollback()
        if timescale:
            hypertables = {r[0] for r in conn.execute(
                "SELECT hypertable_name FROM timescaledb_information.hypertables").fetchall()}
            assert {"ticks", "candles_1m"} <= hypertables
            assert conn.execute("SELECT current_setting('timescaledb.restoring', true)").fetchone()[0] in (
                None, "", "off")
    assert upgrade(fresh_cluster) is not None  # already at the head: the migration is a no-op


def test_restore_refuses_a_database_that_holds_a_schema_and_a_missing_file(source_url, tmp_path):
    archive = tmp_path / "tradeflow.dump"
    assert tradeflow("db", "backup", str(archive), database_url=source_url).returncode == 0
    again = tradeflow("db", "restore", str(archive), database_url=source_url)
    assert again.returncode != 0
    assert "already holds a Tradeflow schema" in again.stderr
    assert "restore into an empty database" in again.stderr
    missing = tradeflow("db", "restore", str(tmp_path / "nope.dump"), database_url=source_url)
    assert missing.returncode != 0 and "no such file" in missing.stderr
    bad_target = tradeflow("db", "restore", str(archive), "--database-url", "mysql://x", database_url=source_url)
    assert bad_target.returncode != 0 and "--database-url: must be a postgresql:// URL" in bad_target.stderr


def test_backup_of_an_unreachable_database_says_so_without_the_password(tmp_path):
    url = f"postgresql://tradeflow:s3cret-pw@127.0.0.1:{free_port()}/tradeflow"
    failed = tradeflow("db", "backup", str(tmp_path / "x.dump"), database_url=url)
    assert failed.returncode != 0
    assert "pg_dump of postgresql://tradeflow:***@127.0.0.1" in failed.stderr
    assert "s3cret-pw" not in failed.stderr + failed.stdout
    assert not (tmp_path / "x.dump").exists() and not (tmp_path / "x.dump.partial").exists()
