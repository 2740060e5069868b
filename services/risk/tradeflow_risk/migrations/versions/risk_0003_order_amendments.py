"""Risk: amendments of open orders (PATCH /v1/orders/{client_order_id}, docs/adr/0018).

* ``risk_amendments``: one row per amendment request (``decision_id``: the order and the
  request's Idempotency-Key), with its outcome and the message published for it (the
  OrderAmendment/1 on risk.orders.v1, or the RiskEvent of the rejection), published again when
  the request is retried. An approved one has its ``amendment_id`` (``<client_order_id>:<n>``,
  unique): n numbers the order's approved amendments from 1.

Revision ID: risk_0003
Revises: risk_0002
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "risk_0003"
down_revision = "risk_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE risk_amendments (
            decision_id text PRIMARY KEY,
            amendment_id text UNIQUE,
            account_id text NOT NULL,
            client_order_id text NOT NULL,
            outcome text NOT NULL CHECK (outcome IN ('approved', 'rejected')),
            reason text NOT NULL DEFAULT '',
            payload bytea NOT NULL,
            ts_event bigint NOT NULL,
            decided_at timestamptz NOT NULL DEFAULT now(),
            CHECK ((outcome = 'approved') = (amendment_id IS NOT NULL))
        )
    """)
    op.execute("CREATE INDEX risk_amendments_order ON risk_amendments (client_order_id)")


def downgrade() -> None:
    op.execute("DROP TABLE risk_amendments")
