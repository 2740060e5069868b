"""Settings of a service with a database, as a mixin of its settings class."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from tradeflow_db.database import ConnectionHook, Database


class DatabasePoolSettings(BaseModel):
    """``TRADEFLOW_<SERVICE>_DB_POOL_SIZE``: declared once here, read per service (ADR 0014), since
    each service sizes its own pool; unset, the service uses its own default.
    ``TRADEFLOW_DB_MIGRATE_ON_START``: every service with tables migrates the database before it
    starts (off by default: a database without the service's revision stops the start, naming
    the revision and ``tradeflow db upgrade``)."""

    per_service_fields: ClassVar[frozenset[str]] = frozenset({"db_pool_size"})

    db_pool_size: int | None = Field(
        default=None, ge=1, le=256, description="connections in this service's database pool; unset: its default")
    db_migrate_on_start: bool = Field(
        default=False,
        description="run the installed migrations before a service starts; only where every service's migrations "
                    "are installed (local runs, the tools image): a service image carries only its own")

    def pool_size(self, default: int) -> int:
        return self.db_pool_size if self.db_pool_size is not None else default

    def service_database(self, name: str, *, required_revision: str, default_pool_size: int,
                         configure: ConnectionHook | None = None) -> Database:
        """The service's :class:`~tradeflow_db.Database`: its pool size, the revision it needs,
        and migrate-on-start when the operator turned it on."""
        from tradeflow_db.database import Database

        return Database(self.libpq_url, name=name, required_revision=required_revision,  # type: ignore[attr-defined]
                        max_connections=self.pool_size(default_pool_size), configure=configure,
                        migrate_on_start=self.db_migrate_on_start)
