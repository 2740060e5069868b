"""Which revisions of the one migration chain a database has: ``tradeflow_schema_history``.

Alembic keeps only the head in ``alembic_version``. A service knows just its own revisions
(its image carries no other service's migrations, ADR 0012), so it cannot tell from the head
alone whether its newest revision lies below it. After every migration run the Alembic
environment (migrations/env.py) records the whole chain from the current head down to the base
in this table; a service then asks for its revision by name (:class:`tradeflow_db.Database`).
"""

from __future__ import annotations

HISTORY_TABLE = "tradeflow_schema_history"

CREATE_HISTORY = f"""
CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (
    revision text PRIMARY KEY,
    recorded_at timestamptz NOT NULL DEFAULT now()
)
"""


def record_chain(connection, script, heads) -> None:
    """Make the table hold exactly the revisions from ``heads`` down to the base (SQLAlchemy connection)."""
    revisions = sorted({r.revision for r in script.iterate_revisions(tuple(heads), "base")}) if heads else []
    connection.exec_driver_sql(CREATE_HISTORY)
    if revisions:
        connection.exec_driver_sql(
            f"DELETE FROM {HISTORY_TABLE} WHERE NOT (revision = ANY(%(revisions)s))", {"revisions": revisions})
        connection.exec_driver_sql(
            f"INSERT INTO {HISTORY_TABLE} (revision) SELECT unnest(%(revisions)s::text[]) ON CONFLICT DO NOTHING",
            {"revisions": revisions})
    else:
        connection.exec_driver_sql(f"DELETE FROM {HISTORY_TABLE}")
