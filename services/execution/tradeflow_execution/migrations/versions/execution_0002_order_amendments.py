"""Execution: amendments of open orders from risk.orders.v1 (OrderAmendment/1), each applied once.

* ``execution_amendments``: one row per ``amendment_id`` (its primary key: a redelivered
  amendment changes nothing), the quantity and limit price asked for, and where it stands:
  ``sent`` (stored before a live broker is asked: an answer that never came is resolved by asking
  the exchange, never by sending it again), ``applied`` or ``refused`` (with the reason, also
  published on exec.orders.v1 as the order's ``amend_refused: ...`` transition).

Revision ID: execution_0002
Revises: risk_0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "execution_0002"
down_revision = "risk_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE execution_amendments (
            amendment_id text PRIMARY KEY,
            client_order_id text NOT NULL,
            account_id text NOT NULL,
            quantity numeric,
            limit_price numeric,
            status text NOT NULL CHECK (status IN ('sent', 'applied', 'refused')),
            reason text NOT NULL DEFAULT '',
            message bytea NOT NULL,
            received_ns bigint NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        )
    """)
    op.execute("CREATE INDEX execution_amendments_order ON execution_amendments (client_order_id)")
    op.execute("CREATE INDEX execution_amendments_sent ON execution_amendments (account_id) WHERE status = 'sent'")


def downgrade() -> None:
    op.execute("DROP TABLE execution_amendments")
