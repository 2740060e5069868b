"""The database as a service component: a psycopg 3 connection pool, a ping, and a schema check.

Every service with tables builds one :class:`Database` in its bootstrap and hands it to its
stores. At start it opens the pool and checks that the schema has the revision the service
needs (``required_revision``: its newest migration). A database that was never migrated, or
migrated to an older chain, stops the service with a message that names the revision and the
command to run (``tradeflow db upgrade``), instead of an ``UndefinedTable`` traceback on the
first query. Where an operator turns on ``migrate_on_start``, the service runs the migrations
itself first (only sensible where every service's migrations are installed: ADR 0012).

Connections are autocommit and in UTC; ``transaction()`` opens an explicit transaction on a
pooled connection. ``ping()`` is the readiness check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import msgspec
import psycopg
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool
from tradeflow.errors import StartupError
from tradeflow.settings import redact_url

from tradeflow_db.engine import libpq_url
from tradeflow_db.pool_metrics import register_pool
from tradeflow_db.schema_history import HISTORY_TABLE

log = logging.getLogger(__name__)

ConnectionHook = Callable[[psycopg.AsyncConnection], Awaitable[None]]


class SchemaNotReadyError(StartupError):
    """The database lacks the revision a service needs; the message says what to run."""


class Database:
    """A service Component: the pool, opened at start (after the schema check), closed at stop."""

    def __init__(self, database_url: str, *, name: str, required_revision: str | None = None,
                 min_connections: int = 1, max_connections: int = 4, connect_timeout_s: float = 10.0,
                 configure: ConnectionHook | None = None, migrate_on_start: bool = False) -> None:
        self._url = libpq_url(database_url)
        self.name = name
        self._required_revision = required_revision
        self._min_connections = min_connections
        self._max_connections = max_connections
        self._connect_timeout_s = connect_timeout_s
        self._configure_hook = configure
        self._migrate_on_start = migrate_on_start
        self._pool: AsyncConnectionPool | None = None

    @property
    def url(self) -> str:
        return self._url

    def register_metrics(self, registry) -> None:
        """The pool's figures (tradeflow_db_pool_*) on ``registry`` (the service app factory calls it)."""
        register_pool(registry, self.name, lambda: self._pool)

    async def start(self) -> None:
        """Open the pool; fails when the database is unreachable or lacks the needed revision."""
        if self._pool is not None:
            return
        if self._migrate_on_start:
            from tradeflow_db.migrate import upgrade  # Alembic is only imported where it is wanted

            log.info("%s: migrating %s before start (migrate_on_start)", self.name, redact_url(self._url))
            await asyncio.to_thread(upgrade, self._url)
        pool = AsyncConnectionPool(
            self._url, min_size=self._min_connections, max_size=self._max_connections,
            kwargs={"autocommit": True}, configure=self._configure, timeout=self._connect_timeout_s,
            open=False, name=self.name)
        await pool.open(wait=True, timeout=self._connect_timeout_s)
        try:
            if self._required_revision is not None:
                await self._check_revision(pool, self._required_revision)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def stop(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _configure(self, conn: psycopg.AsyncConnection) -> None:
        # UTC so timestamptz values come back as UTC datetimes.
        await conn.execute("SET TIME ZONE 'UTC'")
        # json/jsonb through msgspec: the outbox's headers are a jsonb per row, read by the relay at
        # every publish; the standard library's json took 5% of risk's CPU in a burst of decisions.
        set_json_loads(msgspec.json.decode, conn)
        set_json_dumps(msgspec.json.encode, conn)
        if self._configure_hook is not None:
            await self._configure_hook(conn)

    async def _check_revision(self, pool: AsyncConnectionPool, revision: str) -> None:
        async with pool.connection() as conn:
            exists = (await (await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (HISTORY_TABLE,))).fetchone())[0]
            found = exists and (await (await conn.execute(
                f"SELECT 1 FROM {HISTORY_TABLE} WHERE revision = %s", (revision,))).fetchone()) is not None
        if not found:
            state = (f"has no Tradeflow schema (this service needs revision {revision})" if not exists
                     else f"is not migrated to revision {revision}, which this service needs")
            raise SchemaNotReadyError(
                f"{self.name}: the database {redact_url(self._url)} {state}; "
                f"run `tradeflow db upgrade` (or the tools image's migrate job) and start it again")

    def _require_pool(self) -> AsyncConnectionPool:
        if self._pool is None:
            raise RuntimeError(f"{self.name}: the database is not started (await database.start())")
        return self._pool

    def connection(self, timeout_s: float | None = None):
        """A pooled connection (async context manager; autocommit, UTC)."""
        return self._require_pool().connection(timeout=timeout_s)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled connection inside one transaction: committed on exit, rolled back on error."""
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def ping(self, timeout_s: float = 2.0) -> tuple[bool, str]:
        """Readiness: (reachable, detail)."""
        if self._pool is None:
            return False, "not started"
        try:
            async with self._pool.connection(timeout=timeout_s) as conn:
                await conn.execute("SELECT 1")
        except Exception as exc:  # noqa: BLE001 - any failure means not ready; the detail says why
            return False, f"{type(exc).__name__}: {str(exc).strip()[:200]}"
        return True, "reachable"
