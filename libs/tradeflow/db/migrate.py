"""Run the packaged Alembic migrations from code (``tradeflow db upgrade``, test fixtures).

The Alembic ``Config`` is built here rather than read from an ini file, so the migrations
work from an installed wheel and from any working directory. ``alembic.ini`` next to this
module is only for developers who want the ``alembic`` command itself::

    alembic -c libs/tradeflow/db/alembic.ini -x database_url=postgresql://... upgrade head
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from tradeflow.db.capabilities import DatabaseCapabilities, StorageMode, detect_capabilities
from tradeflow.db.engine import create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SCHEMA_INFO_SQL = "SELECT storage_mode, timescaledb_version FROM tradeflow_schema_info"


def alembic_config(database_url: str, *, use_timescaledb: bool = True) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Passed as attributes, not main options: configparser would choke on '%' in passwords.
    config.attributes["database_url"] = database_url
    config.attributes["use_timescaledb"] = use_timescaledb
    return config


def upgrade(database_url: str, *, use_timescaledb: bool = True, revision: str = "head") -> DatabaseCapabilities:
    """Migrate the database to ``revision`` and return the capabilities its schema uses.

    ``use_timescaledb=False`` builds the plain-PostgreSQL schema even where the extension is
    available (the mode is chosen once, by the first migration, and recorded in
    ``tradeflow_schema_info``).
    """
    command.upgrade(alembic_config(database_url, use_timescaledb=use_timescaledb), revision)
    return schema_capabilities(database_url)


def downgrade(database_url: str, revision: str = "base") -> None:
    """Migrate down to ``revision`` (``base`` drops every Tradeflow relation)."""
    command.downgrade(alembic_config(database_url), revision)


def recorded_storage_mode(connection) -> tuple[StorageMode, str | None] | None:
    """The storage mode (and TimescaleDB version) the migrations chose, or None before them."""
    exists = connection.exec_driver_sql("SELECT to_regclass('tradeflow_schema_info') IS NOT NULL").scalar()
    if not exists:
        return None
    row = connection.exec_driver_sql(SCHEMA_INFO_SQL).one_or_none()
    return (row[0], row[1]) if row else None


def schema_capabilities(database_url: str) -> DatabaseCapabilities:
    """What the migrated schema uses; the live detection when nothing was migrated yet."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            detected = detect_capabilities(connection)
            recorded = recorded_storage_mode(connection)
    finally:
        engine.dispose()
    if recorded is None or recorded[0] == detected.mode:
        return detected
    # e.g. a plain-mode schema in a database that has the extension: the schema decides.
    return DatabaseCapabilities.for_mode(recorded[0], detected.timescaledb_version)
