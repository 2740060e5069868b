"""Steps a service's Alembic revision is made of (imported by revisions only, under Alembic).

A revision's DDL is sent as written (``exec_driver_sql``: SQLAlchemy's ``text()`` would read
``:00``-style text as bind markers).
"""

from __future__ import annotations

from collections.abc import Iterable

from alembic import op


def execute_all(statements: Iterable[str]) -> None:
    """Run each statement, in order, on the migration's connection."""
    connection = op.get_bind()
    for statement in statements:
        connection.exec_driver_sql(statement)


def drop_tables(tables: Iterable[str]) -> None:
    """``DROP TABLE IF EXISTS`` each table, in order (dependents first)."""
    execute_all(f"DROP TABLE IF EXISTS {table}" for table in tables)
