"""Run the Alembic migrations of every installed service from code (``tradeflow db upgrade``, tests).

One Alembic environment and one chain of revisions (design.md: "schema changes are Alembic
migrations in one chain"), but each service owns its revisions: they live in the service's
package (``<package>/migrations/versions``) and the service registers that package under the
entry-point group ``tradeflow.migrations``. The chain is linear across services, so a new
revision names the current head as its ``down_revision`` whichever service owns it.

The Alembic ``Config`` is built here rather than read from an ini file, so the migrations
work from installed wheels and from any working directory; there is no ``alembic.ini`` (the
version locations are only known at run time): use ``tradeflow db upgrade``.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from importlib.resources import files
from pathlib import Path

from alembic import command
from alembic.config import Config

from tradeflow_db.capabilities import DatabaseCapabilities, StorageMode, detect_capabilities
from tradeflow_db.engine import create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MIGRATIONS_GROUP = "tradeflow.migrations"
SCHEMA_INFO_SQL = "SELECT storage_mode, timescaledb_version FROM tradeflow_schema_info"


def version_locations() -> list[str]:
    """The ``versions`` directory of every installed service that owns migrations, by service name."""
    locations = []
    for entry_point in sorted(entry_points(group=MIGRATIONS_GROUP), key=lambda ep: ep.name):
        locations.append(str(files(entry_point.value) / "versions"))
    return locations


def alembic_config(database_url: str, *, use_timescaledb: bool = True) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # A path list separated by os.pathsep (Alembic's default separator for this option).
    config.set_main_option("version_locations", os.pathsep.join(version_locations()))
    config.set_main_option("path_separator", "os")
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
