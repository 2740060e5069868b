"""Risk: a live account's reconciliation status, as execution last reported it on exec.accounts.v1.

* ``risk_accounts.reconciliation``: ``pending`` (no successful reconciliation reported since
  execution's last start), ``agreed`` or ``mismatch``; only ``agreed`` lets risk approve orders
  of a live account (paper accounts ignore it). ``reconciliation_message`` says why.

Revision ID: risk_0002
Revises: strategy_0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "risk_0002"
down_revision = "strategy_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE risk_accounts ADD COLUMN reconciliation text NOT NULL DEFAULT 'pending', "
               "ADD COLUMN reconciliation_message text NOT NULL DEFAULT ''")


def downgrade() -> None:
    op.execute("ALTER TABLE risk_accounts DROP COLUMN reconciliation, DROP COLUMN reconciliation_message")
