"""The strategy service's tables (plain tables in every storage mode).

* ``strategy_instances``: the instances of ``POST /v1/strategies`` (design.md: they survive
  restarts). ``error`` is set when the strategy threw (the instance is stopped on every replica
  until resumed); ``revision`` grows with every change so replicas re-apply only what changed.
* ``strategy_market_status``: what ``GET /v1/strategies/{id}`` shows per market, written by
  the replica that runs the market (warm-up, last candle, last signals, position, error).
* ``strategy_fills``: the fills of ``exec.fills.v1`` that name an instance, once each
  (``fill_id``); ``seq`` is their commit order (writers serialize), so every replica applies
  each once, and an instance's position is their fold after any restart.
* ``backtest_runs``: the runs that ``tradeflow backtest`` / ``optimize`` / walk-forward /
  Monte Carlo store through ``POST /v1/backtests``; ``seq`` orders them newest first.

Revision ID: strategy_0001
Revises: execution_0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from tradeflow_db.migration_steps import drop_tables, execute_all

revision = "strategy_0001"
down_revision = "execution_0001"
branch_labels = None
depends_on = None

UPGRADE = [
    """
    CREATE TABLE strategy_instances (
        id text PRIMARY KEY,
        strategy text NOT NULL,
        account_id text NOT NULL,
        exchange text NOT NULL,
        symbols text[] NOT NULL,
        timeframe text NOT NULL,
        params jsonb NOT NULL DEFAULT '{}'::jsonb,
        enabled boolean NOT NULL DEFAULT true,
        error text,
        revision bigint NOT NULL DEFAULT 1,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE strategy_market_status (
        instance_id text NOT NULL REFERENCES strategy_instances (id) ON DELETE CASCADE,
        exchange text NOT NULL,
        symbol text NOT NULL,
        status jsonb NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (instance_id, exchange, symbol)
    )
    """,
    """
    CREATE TABLE strategy_fills (
        seq bigserial PRIMARY KEY,
        fill_id text NOT NULL UNIQUE,
        strategy_id text NOT NULL,
        exchange text NOT NULL,
        symbol text NOT NULL,
        payload bytea NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX strategy_fills_by_market ON strategy_fills (strategy_id, exchange, symbol, seq)",
    """
    CREATE TABLE backtest_runs (
        seq bigserial UNIQUE,
        id text PRIMARY KEY,
        kind text NOT NULL CHECK (kind IN ('backtest', 'optimize', 'walk_forward', 'montecarlo')),
        strategy text NOT NULL,
        params jsonb NOT NULL,
        markets jsonb NOT NULL,
        timeframe text NOT NULL,
        since timestamptz NOT NULL,
        until timestamptz NOT NULL,
        settings jsonb NOT NULL,
        metrics jsonb NOT NULL,
        summary jsonb NOT NULL,
        trades jsonb NOT NULL,
        equity jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX backtest_runs_by_strategy ON backtest_runs (strategy, kind, seq DESC)",
]


def upgrade() -> None:
    execute_all(UPGRADE)


def downgrade() -> None:
    drop_tables(("backtest_runs", "strategy_fills", "strategy_market_status", "strategy_instances"))
