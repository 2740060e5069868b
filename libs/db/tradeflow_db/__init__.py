"""Database access shared by the services with tables.

- :class:`Database`: the pool component every such service builds (ping, schema check)
- :mod:`.outbox`: messages written in the same transaction as the state they announce
- :mod:`.capabilities`: which storage mode a database runs in (TimescaleDB with continuous
  aggregates, Apache-only TimescaleDB, plain PostgreSQL; docs/adr/0003)
- :mod:`.migrate`: the Alembic chain of every installed service's migrations (ADR 0012);
  imported on its own so services that only query do not load Alembic
"""

from tradeflow_db.capabilities import (
    DatabaseCapabilities,
    StorageMode,
    TimescaleDBNotPreloadedError,
    detect_capabilities,
    detect_capabilities_async,
)
from tradeflow_db.database import Database, SchemaNotReadyError
from tradeflow_db.engine import create_async_engine, create_engine, libpq_url, sqlalchemy_url

__all__ = [
    "Database",
    "DatabaseCapabilities",
    "SchemaNotReadyError",
    "StorageMode",
    "TimescaleDBNotPreloadedError",
    "create_async_engine",
    "create_engine",
    "detect_capabilities",
    "detect_capabilities_async",
    "libpq_url",
    "sqlalchemy_url",
]
