"""Higher timeframes as maintained tables where there are no continuous aggregates.

Revision 0001 served candles_5m .. candles_1w as views over candles_1m in the modes
``timescaledb-apache`` and ``postgres``: every read aggregated the 1m rows again (one year of
one symbol as 1h or 1d took 217-450 ms). This revision replaces those views with tables of
the same names and columns, filled here from the existing candles_1m, and kept current by the
writers of candles_1m (the candle-builder's CandleStore, in the transaction that changes the
1m rows; see docs/adr/0007).

The tables are filled level by level along the same hierarchy as the continuous aggregates
(5m <- 1m, 15m <- 5m, 1h <- 15m, 4h <- 1h, 1d <- 1h, 1w <- 1d), which is also how CandleStore
maintains them, so every mode computes the same sums in the same order of levels.

Mode ``timescaledb`` (continuous aggregates) is left exactly as it is, both ways.

Like 0001, the SQL is written out here (not imported from live code) so the migration stays
what it was when applied.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

from typing import NamedTuple

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BUCKET_ORIGIN = "2000-01-03 00:00:00+00"  # a Monday, as in 0001


class Level(NamedTuple):
    relation: str
    width: str
    parent: str


# Parents first: each level is filled from its (already filled) parent.
LEVELS: tuple[Level, ...] = (
    Level("candles_5m", "5 minutes", "candles_1m"),
    Level("candles_15m", "15 minutes", "candles_5m"),
    Level("candles_1h", "1 hour", "candles_15m"),
    Level("candles_4h", "4 hours", "candles_1h"),
    Level("candles_1d", "1 day", "candles_1h"),
    Level("candles_1w", "7 days", "candles_1d"),
)


# --- SQL builders (pure) ---------------------------------------------------------------------


def create_table_sql(relation: str) -> str:
    """The table that replaces the view: the view's columns and types (trades was
    sum(integer) = bigint), keyed like candles_1m so reads and refreshes are index ranges.

    Plain tables in both modes, not hypertables: candles are kept forever and these modes
    have no compression, so chunks would buy nothing, while every batch upserts a few rows
    per level (see docs/adr/0007)."""
    return (
        f"CREATE TABLE {relation} ("
        "exchange text NOT NULL, symbol text NOT NULL, ts timestamptz NOT NULL, "
        "open double precision NOT NULL, high double precision NOT NULL, "
        "low double precision NOT NULL, close double precision NOT NULL, "
        "volume double precision NOT NULL, trades bigint NOT NULL, "
        "PRIMARY KEY (exchange, symbol, ts))"
    )


def fill_table_sql(level: Level) -> str:
    """Fill one level from its parent (date_bin and array_agg exist in both modes)."""
    bucket = f"date_bin(INTERVAL '{level.width}', ts, TIMESTAMPTZ '{BUCKET_ORIGIN}')"
    return (
        f"INSERT INTO {level.relation} (exchange, symbol, ts, open, high, low, close, volume, trades) "
        f"SELECT exchange, symbol, {bucket}, (array_agg(open ORDER BY ts))[1], max(high), min(low), "
        f"(array_agg(close ORDER BY ts DESC))[1], sum(volume), sum(trades)::bigint "
        f"FROM {level.parent} GROUP BY exchange, symbol, {bucket}"
    )


def upgrade_ddl() -> list[str]:
    """Views out (children first), tables in and filled (parents first)."""
    statements = [f"DROP VIEW {level.relation}" for level in reversed(LEVELS)]
    for level in LEVELS:
        statements += [create_table_sql(level.relation), fill_table_sql(level)]
    statements += [f"ANALYZE {level.relation}" for level in LEVELS]
    return statements


def restored_view_sql(mode: str, width: str) -> str:
    """0001's view over candles_1m for ``mode`` (copied, so downgrade restores exactly that)."""
    if mode == "postgres":
        bucket = f"date_bin(INTERVAL '{width}', ts, TIMESTAMPTZ '{BUCKET_ORIGIN}')"
        open_, close = "(array_agg(open ORDER BY ts))[1]", "(array_agg(close ORDER BY ts DESC))[1]"
    else:
        bucket = f"time_bucket(INTERVAL '{width}', ts, TIMESTAMPTZ '{BUCKET_ORIGIN}')"
        open_, close = "first(open, ts)", "last(close, ts)"
    return (
        f"SELECT exchange, symbol, {bucket} AS ts, {open_} AS open, max(high) AS high, "
        f"min(low) AS low, {close} AS close, sum(volume) AS volume, sum(trades::integer) AS trades "
        f"FROM candles_1m GROUP BY exchange, symbol, {bucket}"
    )


def downgrade_ddl(mode: str) -> list[str]:
    statements = [f"DROP TABLE {level.relation}" for level in reversed(LEVELS)]
    statements += [f"CREATE VIEW {level.relation} AS {restored_view_sql(mode, level.width)}" for level in LEVELS]
    return statements


def maintains_tables(mode: str) -> bool:
    """Whether this revision applies: every mode without continuous aggregates."""
    return mode != "timescaledb"


# --- Alembic entry points --------------------------------------------------------------------


def _recorded_mode(connection) -> str:
    return connection.exec_driver_sql("SELECT storage_mode FROM tradeflow_schema_info").scalar_one()


def upgrade() -> None:
    connection = op.get_bind()
    mode = _recorded_mode(connection)
    if not maintains_tables(mode):
        return
    for statement in upgrade_ddl():
        connection.exec_driver_sql(statement)


def downgrade() -> None:
    connection = op.get_bind()
    mode = _recorded_mode(connection)
    if not maintains_tables(mode):
        return
    for statement in downgrade_ddl(mode):
        connection.exec_driver_sql(statement)
