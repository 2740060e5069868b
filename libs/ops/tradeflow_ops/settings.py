"""Settings of operator commands of the ops package that need more than :class:`CommonSettings`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from tradeflow.settings import CommonSettings


class BackupSettings(CommonSettings):
    """``tradeflow db backup|restore``: the database of TRADEFLOW_DATABASE_URL, and which pg_dump."""

    pg_bindir: Path | None = Field(
        default=None,
        description="directory of the pg_dump/pg_restore to use (at least the server's major version); "
                    "default: Debian's PostgreSQL 15, then the PATH")
