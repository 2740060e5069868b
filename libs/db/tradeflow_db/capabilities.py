"""What the connected database can do for time series: one of three storage modes.

* ``timescaledb``: TimescaleDB under the Timescale license (the ``timescale/timescaledb-ha``
  image, Timescale Cloud): hypertables, continuous aggregates, compression, policies.
* ``timescaledb-apache``: the Apache-2 build (Debian's package): hypertables and
  hyperfunctions such as ``time_bucket``/``first``/``last``, but no continuous aggregates,
  compression or background policies.
* ``postgres``: no TimescaleDB in this database; plain tables only.

Detection looks at *this database* (``pg_extension``), not at what the server could install,
and at the license GUC the loaded library reports. An extension that is installed but whose
library the server has not loaded is unusable (every TimescaleDB call fails), so that case
raises :class:`TimescaleDBNotPreloadedError` with the fix instead of guessing a mode. The
library counts as loaded when ``shared_preload_libraries`` names it (every normal server) or
when this session already sees its license GUC: an embedded server that cannot preload
(PGlite, which the tests use for the licensed mode: docs/adr/0011) loads it with the extension.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import psycopg
    import sqlalchemy
    import sqlalchemy.ext.asyncio

StorageMode = Literal["timescaledb", "timescaledb-apache", "postgres"]

# One round trip: the installed version (NULL when the extension is not in this database),
# the preload list and the license the loaded library reports (NULL when not loaded).
CAPABILITIES_SQL = """
SELECT
    (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb') AS installed_version,
    current_setting('shared_preload_libraries') AS preload_libraries,
    current_setting('timescaledb.license', true) AS license
"""

_PRELOADED = re.compile(r"(^|[\s,/\"'])timescaledb([\s,\"']|$)")


class TimescaleDBNotPreloadedError(RuntimeError):
    """The extension exists in the database but the server does not load its library."""


@dataclass(frozen=True)
class DatabaseCapabilities:
    mode: StorageMode
    timescaledb_version: str | None
    continuous_aggregates: bool
    compression: bool
    policies: bool

    @property
    def hypertables(self) -> bool:
        return self.mode != "postgres"

    @classmethod
    def for_mode(cls, mode: StorageMode, timescaledb_version: str | None = None) -> DatabaseCapabilities:
        """The capabilities a storage mode implies (features are all-or-nothing per license)."""
        licensed = mode == "timescaledb"
        return cls(
            mode=mode,
            timescaledb_version=None if mode == "postgres" else timescaledb_version,
            continuous_aggregates=licensed,
            compression=licensed,
            policies=licensed,
        )


def is_preloaded(preload_libraries: str | None) -> bool:
    """Whether ``shared_preload_libraries`` names timescaledb (bare, quoted or with a path)."""
    return bool(preload_libraries and _PRELOADED.search(preload_libraries))


def capabilities_from_facts(
    installed_version: str | None, preload_libraries: str | None, license: str | None
) -> DatabaseCapabilities:
    """Decide the mode from what :data:`CAPABILITIES_SQL` returns (pure; unit-tested)."""
    if installed_version is None:
        return DatabaseCapabilities.for_mode("postgres")
    # The license GUC exists only once the library is loaded in this session; a server that
    # does not preload TimescaleDB refuses to load it later, so a visible license means usable.
    if not is_preloaded(preload_libraries) and license is None:
        raise TimescaleDBNotPreloadedError(
            f"the timescaledb extension {installed_version} is installed in this database but the "
            "server does not preload its library: set shared_preload_libraries = 'timescaledb' in "
            "postgresql.conf and restart PostgreSQL"
        )
    # 'timescale' unlocks the community features; anything else (apache, or unknown) is
    # treated as the Apache build so we never issue DDL the server would refuse.
    mode: StorageMode = "timescaledb" if license == "timescale" else "timescaledb-apache"
    return DatabaseCapabilities.for_mode(mode, installed_version)


def detect_capabilities(
    connection: sqlalchemy.Connection | psycopg.Connection,
) -> DatabaseCapabilities:
    """Capabilities of the database behind a synchronous SQLAlchemy or psycopg connection."""
    if hasattr(connection, "exec_driver_sql"):  # SQLAlchemy
        row = connection.exec_driver_sql(CAPABILITIES_SQL).one()
    else:
        row = connection.execute(CAPABILITIES_SQL).fetchone()
    return capabilities_from_facts(*row)


async def detect_capabilities_async(
    connection: sqlalchemy.ext.asyncio.AsyncConnection | psycopg.AsyncConnection,
) -> DatabaseCapabilities:
    """Capabilities of the database behind an asyncio SQLAlchemy or psycopg connection."""
    if hasattr(connection, "exec_driver_sql"):  # SQLAlchemy
        row = (await connection.exec_driver_sql(CAPABILITIES_SQL)).one()
    else:
        cursor = await connection.execute(CAPABILITIES_SQL)
        row = await cursor.fetchone()
    return capabilities_from_facts(*row)
