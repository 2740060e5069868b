"""Instrument registry and session-aligned candles (docs/adr/0008).

* ``instruments``: one row per registered instrument: its market calendar ("24/7" or an
  exchange_calendars code) and whether extended hours count. Unregistered instruments are 24/7.
* ``session_candles``: the higher-timeframe candles (5m .. 1w) of instruments with trading
  sessions. Their buckets follow the market calendar (anchored at the session open in local
  time, cut at the close), which the UTC-aligned ``candles_5m`` .. ``candles_1w`` relations
  cannot express; the candle-builder writes them when a bucket closes or is corrected.
  ``ts_end`` is the (possibly cut) end of the bucket.

Plain tables in every storage mode (a few hundred rows per instrument and trading day).

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

from tradeflow_db.migration_steps import drop_tables, execute_all

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = [
    """
    CREATE TABLE instruments (
        exchange text NOT NULL,
        symbol text NOT NULL,
        calendar text NOT NULL DEFAULT '24/7',
        extended_hours boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (exchange, symbol)
    )
    """,
    """
    CREATE TABLE session_candles (
        exchange text NOT NULL,
        symbol text NOT NULL,
        timeframe text NOT NULL CHECK (timeframe IN ('5m', '15m', '1h', '4h', '1d', '1w')),
        ts timestamptz NOT NULL,
        ts_end timestamptz NOT NULL CHECK (ts_end > ts),
        open double precision NOT NULL,
        high double precision NOT NULL,
        low double precision NOT NULL,
        close double precision NOT NULL,
        volume double precision NOT NULL,
        trades integer NOT NULL,
        revision integer NOT NULL DEFAULT 0,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (exchange, symbol, timeframe, ts)
    )
    """,
]


def upgrade() -> None:
    execute_all(UPGRADE)


def downgrade() -> None:
    drop_tables(("session_candles", "instruments"))
