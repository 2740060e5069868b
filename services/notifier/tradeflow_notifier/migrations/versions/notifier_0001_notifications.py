"""The notifier's tables (docs/adr/0016).

* ``notifier_channels``: channels created through the API; secret fields (tokens, webhook
  secrets and URLs that carry a token, SMTP passwords) only as a Fernet token in ``secrets``.
  Channels of TRADEFLOW_NOTIFIER_CHANNELS are never stored.
* ``notifier_routes``: routes set through the API (``PUT /v1/routes``), in order.
* ``notifier_events``: the inbox: every event taken in once (its id), so a redelivered message
  makes no second delivery, count or report figure.
* ``notifier_deliveries``: one row per (event, channel), written before the first attempt:
  status ``pending`` -> ``delivered`` | ``failed``, attempts, the next attempt's time, the lease
  of the replica sending it, the last error, and the rendered title/body sent on every retry.
* ``notifier_alert_groups``: the current grouping window of each identical-alert key.
* ``notifier_fills``, ``notifier_order_events``: what the daily report is computed from.
* ``notifier_outbox``: the alerts about failed deliveries, written with the failure (ADR 0015).

Revision ID: notifier_0001
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from tradeflow_db.migration_steps import drop_tables, execute_all
from tradeflow_db.outbox import outbox_table_ddl

revision = "notifier_0001"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = [
    """
    CREATE TABLE notifier_channels (
        id text PRIMARY KEY,
        kind text NOT NULL CHECK (kind IN ('telegram', 'discord', 'slack', 'email', 'webhook')),
        settings jsonb NOT NULL,
        secrets bytea,
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    """
    CREATE TABLE notifier_routes (
        position integer PRIMARY KEY,
        route jsonb NOT NULL
    )
    """,
    """
    CREATE TABLE notifier_events (
        event_id text PRIMARY KEY,
        kind text NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX notifier_events_received ON notifier_events (received_at)",
    """
    CREATE TABLE notifier_deliveries (
        id uuid PRIMARY KEY,
        seq bigserial NOT NULL,
        event_id text NOT NULL,
        event_kind text NOT NULL,
        event_type text NOT NULL,
        channel_id text NOT NULL,
        status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
        title text NOT NULL DEFAULT '',
        body text NOT NULL,
        ts_event bigint NOT NULL,
        traceparent text,
        alert_on_failure boolean NOT NULL DEFAULT true,
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL DEFAULT now(),
        lease_until timestamptz,
        last_error text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        delivered_at timestamptz,
        UNIQUE (event_id, channel_id)
    )
    """,
    """
    CREATE INDEX notifier_deliveries_due ON notifier_deliveries (channel_id, next_attempt_at, seq)
        WHERE status = 'pending'
    """,
    "CREATE INDEX notifier_deliveries_by_status ON notifier_deliveries (status, seq DESC)",
    "CREATE INDEX notifier_deliveries_updated ON notifier_deliveries (updated_at) WHERE status <> 'pending'",
    """
    CREATE TABLE notifier_alert_groups (
        group_key text PRIMARY KEY,
        window_start bigint NOT NULL,
        window_end bigint NOT NULL,
        suppressed integer NOT NULL DEFAULT 0,
        last_alert bytea NOT NULL,
        summarized boolean NOT NULL DEFAULT false
    )
    """,
    """
    CREATE INDEX notifier_alert_groups_due ON notifier_alert_groups (window_end)
        WHERE suppressed > 0 AND NOT summarized
    """,
    """
    CREATE TABLE notifier_fills (
        fill_id text PRIMARY KEY,
        seq bigserial NOT NULL,
        account_id text NOT NULL,
        client_order_id text NOT NULL,
        exchange text NOT NULL,
        symbol text NOT NULL,
        side text NOT NULL,
        quantity numeric NOT NULL,
        price numeric NOT NULL,
        fee numeric NOT NULL,
        fee_currency text NOT NULL,
        liquidity text NOT NULL,
        ts_event bigint NOT NULL
    )
    """,
    "CREATE INDEX notifier_fills_by_account ON notifier_fills (account_id, ts_event, seq)",
    """
    CREATE TABLE notifier_order_events (
        client_order_id text NOT NULL,
        seq integer NOT NULL,
        status text NOT NULL,
        account_id text NOT NULL,
        ts_event bigint NOT NULL,
        PRIMARY KEY (client_order_id, seq, status)
    )
    """,
    "CREATE INDEX notifier_order_events_by_account ON notifier_order_events (account_id, ts_event)",
    outbox_table_ddl("notifier_outbox"),
]

TABLES = ("notifier_outbox", "notifier_order_events", "notifier_fills", "notifier_alert_groups",
          "notifier_deliveries", "notifier_events", "notifier_routes", "notifier_channels")


def upgrade() -> None:
    execute_all(UPGRADE)


def downgrade() -> None:
    drop_tables(TABLES)
