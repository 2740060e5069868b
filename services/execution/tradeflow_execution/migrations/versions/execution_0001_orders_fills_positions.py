"""Execution: accounts, orders and their transitions, fills, positions, balances, kill-switch
events and the outbox of exec.orders.v1 / exec.fills.v1 (docs/adr/0019).

* ``execution_orders``: one row per client order id (its primary key: an order is created at
  most once), the order as risk approved it (``order_message``: its Order/1 MessagePack bytes,
  amended in place), its state (status, seq, filled quantity,
  notional and fees) and what its broker needs to find it again after a restart
  (``broker_state``: the paper broker's cursor in md.ticks.v1). ``trace`` holds the W3C headers
  of the order's span, so fills continue its trace.
* ``execution_order_transitions``: every transition, numbered by ``seq`` as on exec.orders.v1.
* ``execution_fills``: one row per ``fill_id``; ``applied`` numbers them in the order they were
  stored.
* ``execution_positions``, ``execution_balances``: the folds, kept current with every fill; a
  position remembers its newest fill (``last_fill_ts``, ``last_fill_id``: the fold runs in
  event time, then fill id, and a fill older than that folds the position again).
* ``execution_accounts``: the balances each account started with (reconciliation folds the
  fills onto them).
* ``execution_kill_switch_events``: each kill-switch event of risk.events.v1 applied once.

Exact decimals are ``numeric`` without a scale; times are integer nanoseconds (the wire's).
Plain tables in every storage mode.

Revision ID: execution_0001
Revises: risk_0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op
from tradeflow_db.outbox import outbox_table_ddl

revision = "execution_0001"
down_revision = "risk_0001"
branch_labels = None
depends_on = None

OPEN_STATUSES = "('submitted', 'accepted', 'partially_filled')"

UPGRADE = [
    """
    CREATE TABLE execution_accounts (
        account_id text PRIMARY KEY,
        exchange text NOT NULL,
        mode text NOT NULL,
        initial_balances jsonb NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE execution_orders (
        client_order_id text PRIMARY KEY,
        account_id text NOT NULL,
        exchange text NOT NULL,
        symbol text NOT NULL,
        status text NOT NULL,
        seq integer NOT NULL,
        filled_quantity numeric NOT NULL,
        filled_notional numeric NOT NULL,
        filled_fees numeric NOT NULL,
        exchange_order_id text NOT NULL,
        reason text NOT NULL,
        broker_state jsonb NOT NULL,
        trace jsonb NOT NULL,
        received_ns bigint NOT NULL,
        order_message bytea NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX execution_orders_by_account ON execution_orders (account_id, received_ns)",
    f"CREATE INDEX execution_orders_open ON execution_orders (account_id) WHERE status IN {OPEN_STATUSES}",
    """
    CREATE TABLE execution_order_transitions (
        client_order_id text NOT NULL REFERENCES execution_orders (client_order_id),
        seq integer NOT NULL,
        status text NOT NULL,
        filled_quantity numeric NOT NULL,
        average_price numeric,
        exchange_order_id text NOT NULL,
        reason text NOT NULL,
        ts_event bigint NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (client_order_id, seq)
    )
    """,
    """
    CREATE TABLE execution_fills (
        fill_id text PRIMARY KEY,
        applied bigserial NOT NULL UNIQUE,
        client_order_id text NOT NULL REFERENCES execution_orders (client_order_id),
        account_id text NOT NULL,
        exchange text NOT NULL,
        symbol text NOT NULL,
        side text NOT NULL,
        quantity numeric NOT NULL,
        price numeric NOT NULL,
        fee numeric NOT NULL,
        fee_currency text NOT NULL,
        liquidity text NOT NULL,
        strategy_id text NOT NULL,
        ts_event bigint NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX execution_fills_by_account ON execution_fills (account_id, ts_event)",
    "CREATE INDEX execution_fills_by_order ON execution_fills (client_order_id)",
    """
    CREATE TABLE execution_positions (
        account_id text NOT NULL,
        exchange text NOT NULL,
        symbol text NOT NULL,
        quantity numeric NOT NULL,
        average_price numeric NOT NULL,
        realized_pnl numeric NOT NULL,
        fees jsonb NOT NULL,
        opened_at bigint NOT NULL,
        fills integer NOT NULL,
        last_fill_ts bigint NOT NULL,
        last_fill_id text NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (account_id, exchange, symbol)
    )
    """,
    """
    CREATE TABLE execution_balances (
        account_id text NOT NULL,
        currency text NOT NULL,
        amount numeric NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (account_id, currency)
    )
    """,
    """
    CREATE TABLE execution_kill_switch_events (
        event_id text PRIMARY KEY,
        applied bigserial NOT NULL UNIQUE,
        account_id text NOT NULL,
        engaged boolean NOT NULL,
        reason text NOT NULL,
        ts_event bigint NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    outbox_table_ddl("execution_outbox"),
]

DOWNGRADE = [
    "DROP TABLE execution_outbox",
    "DROP TABLE execution_kill_switch_events",
    "DROP TABLE execution_balances",
    "DROP TABLE execution_positions",
    "DROP TABLE execution_fills",
    "DROP TABLE execution_order_transitions",
    "DROP TABLE execution_orders",
    "DROP TABLE execution_accounts",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
