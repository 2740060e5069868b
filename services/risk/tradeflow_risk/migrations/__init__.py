"""The risk service's Alembic revisions (entry-point group ``tradeflow.migrations``, ADR 0012)."""
