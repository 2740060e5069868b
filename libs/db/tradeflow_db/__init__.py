"""Database access: engines, capability detection and the Alembic migrations.

The schema lives in ``migrations/`` (Alembic, packaged with this module). Which storage
mode a database runs in (TimescaleDB with continuous aggregates, Apache-only TimescaleDB,
or plain PostgreSQL) is decided by :func:`tradeflow_db.migrate.upgrade` and recorded in the
``tradeflow_schema_info`` table; see docs/adr/0003.
"""

from tradeflow_db.capabilities import (
    DatabaseCapabilities,
    StorageMode,
    TimescaleDBNotPreloadedError,
    detect_capabilities,
    detect_capabilities_async,
)
from tradeflow_db.engine import create_async_engine, create_engine, sqlalchemy_url
from tradeflow_db.migrate import downgrade, upgrade

__all__ = [
    "DatabaseCapabilities",
    "StorageMode",
    "TimescaleDBNotPreloadedError",
    "create_async_engine",
    "create_engine",
    "detect_capabilities",
    "detect_capabilities_async",
    "downgrade",
    "sqlalchemy_url",
    "upgrade",
]
