"""The ``backtest_runs`` table: the runs the backtest tools store through ``POST /v1/backtests``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from tradeflow_db import Database

_SUMMARY_COLUMNS = "id, kind, strategy, params, markets, timeframe, since, until, settings, metrics, summary, created_at"
_INSERT = """
INSERT INTO backtest_runs (id, kind, strategy, params, markets, timeframe, since, until, settings, metrics, summary,
                           trades, equity)
VALUES (%(id)s, %(kind)s, %(strategy)s, %(params)s, %(markets)s, %(timeframe)s, %(since)s, %(until)s, %(settings)s,
        %(metrics)s, %(summary)s, %(trades)s, %(equity)s)
RETURNING created_at
"""
# Newest first; the filters are optional (NULL: any).
_LIST = f"""
SELECT {_SUMMARY_COLUMNS} FROM backtest_runs
WHERE (%(strategy)s::text IS NULL OR strategy = %(strategy)s) AND (%(kind)s::text IS NULL OR kind = %(kind)s)
ORDER BY seq DESC LIMIT %(limit)s
"""
_GET = f"SELECT {_SUMMARY_COLUMNS}, trades, equity FROM backtest_runs WHERE id = %s"
_JSON_COLUMNS = ("params", "markets", "settings", "metrics", "summary", "trades", "equity")


class BacktestStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def add(self, run: dict[str, Any]) -> dict[str, Any]:
        """Store a validated run (``since``/``until`` as aware datetimes); returns its id and time."""
        values = {**run, "id": uuid.uuid4().hex}
        for column in _JSON_COLUMNS:
            values[column] = Jsonb(run[column])
        async with self._database.connection() as conn:
            (created_at,) = await (await conn.execute(_INSERT, values)).fetchone()
        return {"id": values["id"], "created_at": created_at.isoformat()}

    async def list(self, *, strategy: str | None, kind: str | None, limit: int) -> list[dict[str, Any]]:
        async with self._database.connection() as conn:
            cursor = await conn.execute(_LIST, {"strategy": strategy, "kind": kind, "limit": limit})
            names = [d.name for d in cursor.description]
            return [_json(dict(zip(names, row, strict=True))) for row in await cursor.fetchall()]

    async def get(self, run_id: str) -> dict[str, Any] | None:
        async with self._database.connection() as conn:
            cursor = await conn.execute(_GET, (run_id,))
            row = await cursor.fetchone()
            names = [d.name for d in cursor.description]
        return None if row is None else _json(dict(zip(names, row, strict=True)))


def _json(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
