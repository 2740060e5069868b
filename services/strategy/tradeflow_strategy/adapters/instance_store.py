"""The ``strategy_instances`` table (and the status rows its instances own), through the service's pool."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from tradeflow_db import Database

from tradeflow_strategy.domain.instances import InstanceDefinition, InstanceRecord

_COLUMNS = "id, strategy, account_id, exchange, symbols, timeframe, params, enabled, revision, error, created_at, updated_at"
_LIST = f"SELECT {_COLUMNS} FROM strategy_instances ORDER BY id"
_GET = f"SELECT {_COLUMNS} FROM strategy_instances WHERE id = %s"
# A create that finds the id taken returns nothing: the caller compares with the stored one.
_CREATE = f"""
INSERT INTO strategy_instances (id, strategy, account_id, exchange, symbols, timeframe, params, enabled)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING RETURNING {_COLUMNS}
"""
_SET_ENABLED = f"""
UPDATE strategy_instances SET enabled = %s, error = CASE WHEN %s THEN NULL ELSE error END,
    revision = revision + 1, updated_at = now()
WHERE id = %s RETURNING {_COLUMNS}
"""
_FAIL = """
UPDATE strategy_instances SET error = %s, revision = revision + 1, updated_at = now()
WHERE id = %s AND error IS NULL
"""
_DELETE = "DELETE FROM strategy_instances WHERE id = %s"
_DELETE_FILLS = "DELETE FROM strategy_fills WHERE strategy_id = %s"
_STATUS = "SELECT exchange, symbol, status, updated_at FROM strategy_market_status WHERE instance_id = %s ORDER BY symbol"
# Only for instances that still exist (one deleted meanwhile keeps no status).
_PUT_STATUS = """
INSERT INTO strategy_market_status (instance_id, exchange, symbol, status, updated_at)
SELECT %(instance)s, %(exchange)s, %(symbol)s, %(status)s, now()
WHERE EXISTS (SELECT 1 FROM strategy_instances WHERE id = %(instance)s)
ON CONFLICT (instance_id, exchange, symbol) DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at
"""


def _record(row: tuple) -> InstanceRecord:
    (instance_id, strategy, account_id, exchange, symbols, timeframe, params, enabled, revision, error,
     created_at, updated_at) = row
    definition = InstanceDefinition(instance_id, strategy, account_id, exchange, tuple(symbols), timeframe,
                                    params, enabled)
    return InstanceRecord(definition, revision, error, _iso(created_at), _iso(updated_at))


def _iso(moment: datetime) -> str:
    return moment.isoformat()


class InstanceStore:
    """Instances and their market status rows (the pool is the service's :class:`Database`)."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def list(self) -> list[InstanceRecord]:
        async with self._database.connection() as conn:
            return [_record(row) for row in await (await conn.execute(_LIST)).fetchall()]

    async def get(self, instance_id: str) -> InstanceRecord | None:
        async with self._database.connection() as conn:
            row = await (await conn.execute(_GET, (instance_id,))).fetchone()
        return None if row is None else _record(row)

    async def create(self, definition: InstanceDefinition) -> tuple[InstanceRecord, bool]:
        """(the stored instance, whether this call created it)."""
        d = definition
        async with self._database.connection() as conn:
            row = await (await conn.execute(_CREATE, (d.id, d.strategy, d.account_id, d.exchange, list(d.symbols),
                                                      d.timeframe, Jsonb(dict(d.params)), d.enabled))).fetchone()
            if row is not None:
                return _record(row), True
            existing = await (await conn.execute(_GET, (d.id,))).fetchone()
        return _record(existing), False

    async def set_enabled(self, instance_id: str, enabled: bool) -> InstanceRecord | None:
        """Pause, or resume (which also clears the error that stopped it)."""
        async with self._database.connection() as conn:
            row = await (await conn.execute(_SET_ENABLED, (enabled, enabled, instance_id))).fetchone()
        return None if row is None else _record(row)

    async def mark_failed(self, instance_id: str, error: str) -> None:
        async with self._database.connection() as conn:
            await conn.execute(_FAIL, (error, instance_id))

    async def delete(self, instance_id: str) -> bool:
        """The instance, its status rows and its stored fills; False when there was none."""
        async with self._database.transaction() as conn:
            deleted = (await conn.execute(_DELETE, (instance_id,))).rowcount
            await conn.execute(_DELETE_FILLS, (instance_id,))
        return bool(deleted)

    async def market_status(self, instance_id: str) -> list[dict[str, Any]]:
        async with self._database.connection() as conn:
            rows = await (await conn.execute(_STATUS, (instance_id,))).fetchall()
        return [{"exchange": exchange, "symbol": symbol, **status, "updated_at": _iso(updated_at)}
                for exchange, symbol, status, updated_at in rows]

    async def put_market_status(self, rows: list[tuple[InstanceDefinition, str, dict[str, Any]]]) -> None:
        if not rows:
            return
        params = [{"instance": d.id, "exchange": d.exchange, "symbol": symbol, "status": Jsonb(status)}
                  for d, symbol, status in rows]
        async with self._database.connection() as conn, conn.cursor() as cursor:
            await cursor.executemany(_PUT_STATUS, params)
