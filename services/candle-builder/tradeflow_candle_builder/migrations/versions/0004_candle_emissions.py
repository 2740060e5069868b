"""How far each instrument's candles were emitted on md.candles.v1 (docs/adr/0005).

``candle_emissions`` holds one row per instrument: ``emitted_through``, the end of the newest
candle (of any timeframe) the candle-builder emitted for it. Buckets close in time order, so
every bucket of the instrument ending at or before it was closed and emitted. A candle-builder
that starts (or takes over a partition) treats a trade for such a bucket like a late trade: a
replay of trades the database already holds then changes, and emits, nothing, while a bucket
that was never emitted still is (at-least-once across a crash).

A plain table in every storage mode (one small row per instrument).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.get_bind().exec_driver_sql("""
    CREATE TABLE candle_emissions (
        exchange text NOT NULL,
        symbol text NOT NULL,
        emitted_through timestamptz NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (exchange, symbol)
    )
    """)


def downgrade() -> None:
    op.get_bind().exec_driver_sql("DROP TABLE IF EXISTS candle_emissions")
