"""The fills and order events the daily report is computed from (``notifier_fills``,
``notifier_order_events``): the notifier's own copy, written in the intake's transaction, each
fill once by its id and each order transition once by (client order id, seq, status)."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from tradeflow.messages import Fill, OrderEvent
from tradeflow_db import Database


class TradingFacts:
    def __init__(self, database: Database) -> None:
        self._database = database

    @staticmethod
    async def add(conn: psycopg.AsyncConnection, fills: Sequence[Fill], order_events: Sequence[OrderEvent]) -> None:
        if fills:
            columns = list(zip(*((f.fill_id, f.account_id, f.client_order_id, f.exchange, f.symbol, f.side, f.quantity,
                                  f.price, f.fee, f.fee_currency, f.liquidity, f.ts_event) for f in fills), strict=True))
            await conn.execute(
                "INSERT INTO notifier_fills (fill_id, account_id, client_order_id, exchange, symbol, side, quantity, "
                "price, fee, fee_currency, liquidity, ts_event) SELECT * FROM unnest(%b::text[], %b::text[], "
                "%b::text[], %b::text[], %b::text[], %b::text[], %b::numeric[], %b::numeric[], %b::numeric[], "
                "%b::text[], %b::text[], %b::bigint[]) ON CONFLICT (fill_id) DO NOTHING",
                [list(c) for c in columns])
        if order_events:
            columns = list(zip(*((e.client_order_id, e.seq, e.status, e.account_id, e.ts_event) for e in order_events),
                               strict=True))
            await conn.execute(
                "INSERT INTO notifier_order_events (client_order_id, seq, status, account_id, ts_event) "
                "SELECT * FROM unnest(%b::text[], %b::int[], %b::text[], %b::text[], %b::bigint[]) "
                "ON CONFLICT DO NOTHING", [list(c) for c in columns])

    async def active_accounts(self, since_ns: int, until_ns: int) -> list[str]:
        """Accounts with a fill ever (they may hold positions) or an order event in the period."""
        async with self._database.connection() as conn:
            rows = await (await conn.execute(
                "SELECT DISTINCT account_id FROM notifier_fills WHERE ts_event < %s UNION "
                "SELECT DISTINCT account_id FROM notifier_order_events WHERE ts_event >= %s AND ts_event < %s "
                "ORDER BY 1", (until_ns, since_ns, until_ns))).fetchall()
        return [row[0] for row in rows]

    async def fills(self, account_id: str, until_ns: int) -> list[Fill]:
        """Every fill of the account before ``until_ns``, in the order they happened."""
        async with self._database.connection() as conn:
            rows = await (await conn.execute(
                "SELECT fill_id, client_order_id, account_id, exchange, symbol, side, quantity, price, fee, "
                "fee_currency, liquidity, ts_event FROM notifier_fills WHERE account_id = %s AND ts_event < %s "
                "ORDER BY ts_event, seq", (account_id, until_ns))).fetchall()
        return [Fill(fill_id=r[0], client_order_id=r[1], account_id=r[2], exchange=r[3], symbol=r[4], side=r[5],
                     quantity=r[6], price=r[7], fee=r[8], fee_currency=r[9], liquidity=r[10], ts_event=r[11])
                for r in rows]

    async def order_events(self, account_id: str, since_ns: int, until_ns: int) -> list[OrderEvent]:
        async with self._database.connection() as conn:
            rows = await (await conn.execute(
                "SELECT client_order_id, seq, status, account_id, ts_event FROM notifier_order_events "
                "WHERE account_id = %s AND ts_event >= %s AND ts_event < %s ORDER BY ts_event",
                (account_id, since_ns, until_ns))).fetchall()
        return [OrderEvent(client_order_id=r[0], seq=r[1], status=r[2], account_id=r[3], exchange="", symbol="",
                           ts_event=r[4]) for r in rows]
