"""The notifier's Alembic revisions (entry point ``tradeflow.migrations``, ADR 0012)."""
