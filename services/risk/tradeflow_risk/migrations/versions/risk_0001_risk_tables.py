"""Risk's tables: accounts' trading state, limit versions, decisions, orders, fills, market state, outbox.

* ``risk_accounts``: one row per account: the kill switch, breaches, the day's starting equity
  and the equity peak, and ``version``, bumped by every change; a decision locks the row
  (``SELECT ... FOR UPDATE``) and reloads the account when its version moved (docs/adr/0018).
* ``risk_limits``: every version of an account's limits with who changed them and when (the
  audit log); the newest applies.
* ``risk_decisions``: one row per signal, manual request, or position and protective trigger
  (``decision_id`` unique): the outcome and the message published for it (the Order, or the
  RiskEvent of the rejection), published again when the input is redelivered.
* ``risk_orders``: the approved orders and their progress from exec.orders.v1 (status, seq,
  filled quantity) and exec.fills.v1 (``applied_quantity``); open and unsettled ones are loaded
  at start.
* ``risk_fills``: every fill applied (``fill_id`` unique), in arrival order (``seq``):
  positions, balances and closed trades are their fold.
* ``risk_marks``, ``risk_watermarks``: the newest price per symbol and the best/worst price of
  each position since it opened (trailing stops), kept across restarts.
* ``risk_outbox``: risk.orders.v1 and risk.events.v1 messages written with the decision
  (tradeflow_db.outbox).

Plain tables in every storage mode.

Revision ID: risk_0001
Revises: notifier_0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op
from tradeflow_db.outbox import outbox_table_ddl

revision = "risk_0001"
down_revision = "notifier_0001"
branch_labels = None
depends_on = None

OUTBOX_TABLE = "risk_outbox"

UPGRADE = [
    """
    CREATE TABLE risk_accounts (
        account_id text PRIMARY KEY,
        version bigint NOT NULL DEFAULT 0,
        kill_switch boolean NOT NULL DEFAULT false,
        kill_switch_reason text NOT NULL DEFAULT '',
        kill_switch_auto boolean NOT NULL DEFAULT false,
        breaches jsonb NOT NULL DEFAULT '{}'::jsonb,
        day integer,
        day_start_equity numeric,
        equity_peak numeric,
        clock bigint NOT NULL DEFAULT 0,
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE risk_limits (
        account_id text NOT NULL,
        version integer NOT NULL,
        limits jsonb NOT NULL,
        changed_by text NOT NULL,
        changed_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (account_id, version)
    )
    """,
    """
    CREATE TABLE risk_decisions (
        decision_id text PRIMARY KEY,
        account_id text NOT NULL,
        origin text NOT NULL,
        outcome text NOT NULL CHECK (outcome IN ('approved', 'rejected')),
        reason text NOT NULL DEFAULT '',
        client_order_id text,
        payload bytea NOT NULL,
        ts_event bigint NOT NULL,
        decided_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX risk_decisions_account ON risk_decisions (account_id, decided_at)",
    """
    CREATE TABLE risk_orders (
        client_order_id text PRIMARY KEY,
        account_id text NOT NULL,
        payload bytea NOT NULL,
        order_type text NOT NULL,
        origin text NOT NULL,
        ts_event bigint NOT NULL,
        status text NOT NULL DEFAULT 'submitted',
        seq integer NOT NULL DEFAULT 0,
        filled_quantity numeric NOT NULL DEFAULT 0,
        applied_quantity numeric NOT NULL DEFAULT 0,
        applied_notional numeric NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    # Tracked orders: not terminal, or terminal with fills still to apply (loaded at start).
    """
    CREATE INDEX risk_orders_tracked ON risk_orders (account_id)
        WHERE status NOT IN ('filled', 'canceled', 'rejected', 'expired') OR applied_quantity < filled_quantity
    """,
    "CREATE INDEX risk_orders_rate ON risk_orders (account_id, ts_event) WHERE origin <> 'protective'",
    """
    CREATE TABLE risk_fills (
        fill_id text PRIMARY KEY,
        account_id text NOT NULL,
        client_order_id text NOT NULL,
        payload bytea NOT NULL,
        seq bigserial NOT NULL
    )
    """,
    "CREATE INDEX risk_fills_account ON risk_fills (account_id, seq)",
    """
    CREATE TABLE risk_marks (
        exchange text NOT NULL,
        symbol text NOT NULL,
        price numeric NOT NULL,
        ts_event bigint NOT NULL,
        PRIMARY KEY (exchange, symbol)
    )
    """,
    """
    CREATE TABLE risk_watermarks (
        account_id text NOT NULL,
        symbol text NOT NULL,
        opened_at bigint NOT NULL,
        high numeric NOT NULL,
        low numeric NOT NULL,
        PRIMARY KEY (account_id, symbol)
    )
    """,
    outbox_table_ddl(OUTBOX_TABLE),
]

DOWNGRADE = [f"DROP TABLE IF EXISTS {table}" for table in (
    OUTBOX_TABLE, "risk_watermarks", "risk_marks", "risk_fills", "risk_orders", "risk_decisions", "risk_limits",
    "risk_accounts")]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE:
        op.execute(statement)
