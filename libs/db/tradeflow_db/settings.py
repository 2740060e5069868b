"""Settings of a service with a database, as a mixin of its settings class."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field


class DatabasePoolSettings(BaseModel):
    """``TRADEFLOW_<SERVICE>_DB_POOL_SIZE``: declared once here, read per service (ADR 0014), since
    each service sizes its own pool; unset, the service uses its own default."""

    per_service_fields: ClassVar[frozenset[str]] = frozenset({"db_pool_size"})

    db_pool_size: int | None = Field(
        default=None, ge=1, le=256, description="connections in this service's database pool; unset: its default")

    def pool_size(self, default: int) -> int:
        return self.db_pool_size if self.db_pool_size is not None else default
