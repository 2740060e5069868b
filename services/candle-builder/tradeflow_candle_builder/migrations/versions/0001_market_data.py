"""Market data: ticks, 1-minute candles and the higher timeframes over them.

The storage mode is chosen here, once, from what the server offers (see docs/adr/0003):

* ``timescaledb`` (Timescale license): hypertables; 5m..1w are hierarchical continuous
  aggregates with real-time aggregation and a refresh policy each.
* ``timescaledb-apache``: hypertables; 5m..1w are plain views over ``candles_1m`` using
  ``time_bucket``/``first``/``last``.
* ``postgres``: plain tables with the same indexes; views using ``date_bin`` and
  ``array_agg``.

Every mode serves the same relation names and columns (exchange, symbol, ts, open, high,
low, close, volume, trades) with the same bucket alignment (origin Monday 2000-01-03 00:00
UTC), so readers never branch on the mode. The SQL builders below are deliberately part of
this revision (not imported from live code) so the migration stays what it was when applied.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from typing import NamedTuple

from alembic import context, op
from tradeflow_db.capabilities import (
    DatabaseCapabilities,
    StorageMode,
    TimescaleDBNotPreloadedError,
    detect_capabilities,
    is_preloaded,
)

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# A Monday: buckets of every width are aligned to it, so weeks start Monday 00:00 UTC and
# days/4h/1h... are aligned to UTC midnight. It is also time_bucket's default origin.
BUCKET_ORIGIN = "2000-01-03 00:00:00+00"
# time_bucket's origin argument is accepted in continuous aggregates from TimescaleDB 2.15.
CAGG_ORIGIN_MIN_VERSION = (2, 15)


# A NamedTuple, not a dataclass: Alembic loads this file without registering it in
# sys.modules, which dataclasses need.
class Rollup(NamedTuple):
    """One higher timeframe: its relation, bucket width and (in cagg mode) its parent."""

    relation: str
    width: str
    parent: str
    # Refresh policy (cagg mode). The window spans several buckets; the newest bucket is
    # left to real-time aggregation (end_offset), corrections older than start_offset need
    # a manual refresh_continuous_aggregate.
    start_offset: str
    end_offset: str
    schedule_interval: str


ROLLUPS: tuple[Rollup, ...] = (
    Rollup("candles_5m", "5 minutes", "candles_1m", "1 day", "5 minutes", "1 minute"),
    Rollup("candles_15m", "15 minutes", "candles_5m", "2 days", "15 minutes", "5 minutes"),
    Rollup("candles_1h", "1 hour", "candles_15m", "3 days", "1 hour", "15 minutes"),
    Rollup("candles_4h", "4 hours", "candles_1h", "7 days", "4 hours", "30 minutes"),
    Rollup("candles_1d", "1 day", "candles_1h", "30 days", "1 day", "1 hour"),
    Rollup("candles_1w", "7 days", "candles_1d", "35 days", "7 days", "1 hour"),
)


# --- SQL builders (pure) ---------------------------------------------------------------------


def bucket_sql(mode: StorageMode, width: str, column: str = "ts", *, explicit_origin: bool = True) -> str:
    """The bucket start of ``column`` for a bucket ``width`` in this mode."""
    if mode == "postgres":
        return f"date_bin(INTERVAL '{width}', {column}, TIMESTAMPTZ '{BUCKET_ORIGIN}')"
    if not explicit_origin:  # older caggs: the default origin is the same Monday
        return f"time_bucket(INTERVAL '{width}', {column})"
    return f"time_bucket(INTERVAL '{width}', {column}, TIMESTAMPTZ '{BUCKET_ORIGIN}')"


def rollup_select_sql(
    mode: StorageMode, width: str, source: str, *, explicit_origin: bool = True
) -> str:
    """SELECT that rolls candles of ``source`` up into buckets of ``width``.

    open/close are the first/last by bucket time (unique per instrument in the source).
    ``sum(trades::integer)`` keeps ``trades`` a bigint at every level of a hierarchy
    (sum(bigint) would turn into numeric one level up).
    """
    bucket = bucket_sql(mode, width, explicit_origin=explicit_origin)
    if mode == "postgres":
        open_, close = "(array_agg(open ORDER BY ts))[1]", "(array_agg(close ORDER BY ts DESC))[1]"
    else:
        open_, close = "first(open, ts)", "last(close, ts)"
    return (
        f"SELECT exchange, symbol, {bucket} AS ts, {open_} AS open, max(high) AS high, "
        f"min(low) AS low, {close} AS close, sum(volume) AS volume, sum(trades::integer) AS trades "
        f"FROM {source} GROUP BY exchange, symbol, {bucket}"
    )


def higher_timeframe_ddl(mode: StorageMode, *, explicit_origin: bool = True) -> list[str]:
    """CREATE statements for candles_5m..candles_1w in ``mode``."""
    if mode != "timescaledb":
        # Views straight over candles_1m: no stacking, so no error compounds across levels.
        return [
            f"CREATE VIEW {r.relation} AS {rollup_select_sql(mode, r.width, 'candles_1m')}" for r in ROLLUPS
        ]
    statements = []
    for r in ROLLUPS:
        # Hierarchical: each level reads its parent aggregate. Every level uses the same
        # origin (TimescaleDB refuses a hierarchy whose origins differ). WITH NO DATA keeps
        # this inside the migration's transaction; real-time aggregation
        # (materialized_only = false) serves whatever is not materialized yet.
        select = rollup_select_sql(mode, r.width, r.parent, explicit_origin=explicit_origin)
        statements.append(
            f"CREATE MATERIALIZED VIEW {r.relation} "
            "WITH (timescaledb.continuous, timescaledb.materialized_only = false) "
            f"AS {select} WITH NO DATA"
        )
        statements.append(
            f"SELECT add_continuous_aggregate_policy('{r.relation}', "
            f"start_offset => INTERVAL '{r.start_offset}', end_offset => INTERVAL '{r.end_offset}', "
            f"schedule_interval => INTERVAL '{r.schedule_interval}')"
        )
    return statements


def drop_higher_timeframe_ddl(mode: StorageMode) -> list[str]:
    """DROP statements, children first (dropping a cagg also removes its policy)."""
    kind = "MATERIALIZED VIEW" if mode == "timescaledb" else "VIEW"
    return [f"DROP {kind} IF EXISTS {r.relation}" for r in reversed(ROLLUPS)]


def base_table_ddl(mode: StorageMode, timescaledb_version: str | None) -> list[str]:
    statements = [
        """
        CREATE TABLE tradeflow_schema_info (
            singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            storage_mode text NOT NULL
                CHECK (storage_mode IN ('timescaledb', 'timescaledb-apache', 'postgres')),
            timescaledb_version text,
            migrated_at timestamptz NOT NULL DEFAULT now()
        )
        """,
        "INSERT INTO tradeflow_schema_info (storage_mode, timescaledb_version) "
        f"VALUES ('{mode}', {_sql_literal(timescaledb_version)})",
        # The unique key is ordered (exchange, symbol, ts, trade_id) so the one index serves
        # both idempotent inserts and per-instrument time-range scans (recompute).
        """
        CREATE TABLE ticks (
            exchange text NOT NULL,
            symbol text NOT NULL,
            ts timestamptz NOT NULL,
            trade_id text NOT NULL,
            price double precision NOT NULL,
            amount double precision NOT NULL,
            side text NOT NULL,
            ts_recv timestamptz NOT NULL,
            CONSTRAINT ticks_trade_key UNIQUE (exchange, symbol, ts, trade_id)
        )
        """,
        """
        CREATE TABLE candles_1m (
            exchange text NOT NULL,
            symbol text NOT NULL,
            ts timestamptz NOT NULL,
            open double precision NOT NULL,
            high double precision NOT NULL,
            low double precision NOT NULL,
            close double precision NOT NULL,
            volume double precision NOT NULL,
            trades integer NOT NULL,
            revision integer NOT NULL DEFAULT 0,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (exchange, symbol, ts)
        )
        """,
    ]
    if mode != "postgres":
        # No default ts index: the keys above lead with the instrument, which is how we read.
        statements += [
            "SELECT create_hypertable('ticks', 'ts', chunk_time_interval => INTERVAL '1 day', "
            "create_default_indexes => false)",
            "SELECT create_hypertable('candles_1m', 'ts', chunk_time_interval => INTERVAL '7 days', "
            "create_default_indexes => false)",
        ]
    return statements


def _sql_literal(value: str | None) -> str:
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


def _version_tuple(version: str | None) -> tuple[int, ...]:
    parts = []
    for part in (version or "0").split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


# --- choosing the mode -----------------------------------------------------------------------


def choose_capabilities(connection, use_timescaledb: bool) -> DatabaseCapabilities:
    """Install the extension when wanted and available, then detect what we got."""
    if not use_timescaledb:
        return DatabaseCapabilities.for_mode("postgres")
    available = connection.exec_driver_sql(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).scalar()
    installed = connection.exec_driver_sql(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    ).scalar()
    if available is not None and installed is None:
        preload = connection.exec_driver_sql("SELECT current_setting('shared_preload_libraries')").scalar()
        if not is_preloaded(preload):
            raise TimescaleDBNotPreloadedError(
                "the timescaledb extension is available but the server does not preload it: set "
                "shared_preload_libraries = 'timescaledb' and restart PostgreSQL, or migrate with "
                "use_timescaledb=False to choose plain PostgreSQL deliberately"
            )
        connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS timescaledb")
    return detect_capabilities(connection)


def _recorded_mode(connection) -> StorageMode:
    return connection.exec_driver_sql("SELECT storage_mode FROM tradeflow_schema_info").scalar_one()


# --- Alembic entry points --------------------------------------------------------------------


def upgrade() -> None:
    connection = op.get_bind()
    use_timescaledb = context.config.attributes.get("use_timescaledb", True)
    caps = choose_capabilities(connection, use_timescaledb)
    explicit_origin = _version_tuple(caps.timescaledb_version) >= CAGG_ORIGIN_MIN_VERSION
    # exec_driver_sql: the DDL is sent as written (text() would read ':00' style bind markers).
    for statement in base_table_ddl(caps.mode, caps.timescaledb_version):
        connection.exec_driver_sql(statement)
    for statement in higher_timeframe_ddl(caps.mode, explicit_origin=explicit_origin):
        connection.exec_driver_sql(statement)


def downgrade() -> None:
    # The extension stays: other schemas may use it, and dropping it needs more privileges.
    connection = op.get_bind()
    for statement in drop_higher_timeframe_ddl(_recorded_mode(connection)):
        connection.exec_driver_sql(statement)
    for table in ("candles_1m", "ticks", "tradeflow_schema_info"):
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
