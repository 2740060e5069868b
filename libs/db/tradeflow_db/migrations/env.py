"""Alembic environment: where the URL and the TimescaleDB choice come from.

tradeflow_db.migrate passes both as ``config.attributes`` (``-x database_url=...`` and
``-x use_timescaledb=false`` are read too); otherwise the URL comes from the TRADEFLOW_
settings. Migrations read the choice from ``context.config.attributes["use_timescaledb"]``.
"""

from __future__ import annotations

import logging.config

from alembic import context
from sqlalchemy.pool import NullPool
from tradeflow_db.engine import create_engine
from tradeflow_db.schema_history import record_chain

# Several replicas may migrate at once on first deploy (one initContainer each): a session
# advisory lock held on a separate connection makes them take turns.
MIGRATION_LOCK_ID = 0x7472616465666C6F  # "tradeflo"

config = context.config
if config.config_file_name is not None:
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)


def _database_url() -> str:
    url = config.attributes.get("database_url") or context.get_x_argument(as_dictionary=True).get("database_url")
    if url:
        return url
    from tradeflow.settings import CommonSettings, load_settings

    return load_settings(CommonSettings).database_url.get_secret_value()


def _use_timescaledb() -> bool:
    if "use_timescaledb" in config.attributes:
        return bool(config.attributes["use_timescaledb"])
    raw = context.get_x_argument(as_dictionary=True).get("use_timescaledb", "true")
    return raw.strip().lower() not in {"0", "false", "no", "off"}


def run_migrations_online() -> None:
    config.attributes["use_timescaledb"] = _use_timescaledb()
    engine = create_engine(_database_url(), poolclass=NullPool)
    try:
        with engine.connect() as lock_connection:
            lock_connection.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_ID})")
            lock_connection.commit()
            try:
                with engine.connect() as connection:
                    context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
                    with context.begin_transaction():
                        context.run_migrations()
                    # Which revisions the database now has, for services that check theirs at start.
                    record_chain(connection, context.script, context.get_context().get_current_heads())
                    connection.commit()
            finally:
                lock_connection.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_ID})")
                lock_connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    # The first migration inspects the server (extension, license) to choose its DDL.
    raise SystemExit("offline (--sql) migrations are not supported: the schema depends on the live server")
run_migrations_online()
