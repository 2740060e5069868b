"""What the API reads: orders with their transitions and fills, and fills by account and time."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from tradeflow.messages import Fill, OrderEvent
from tradeflow_db import Database

from tradeflow_execution.adapters.postgres_store import (
    FILL_COLUMNS,
    ORDER_COLUMNS,
    fill_from_row,
    tracked_from_row,
)
from tradeflow_execution.store import TrackedOrder

MAX_ROWS = 1000


@dataclass(frozen=True, slots=True)
class AmendmentRow:
    amendment_id: str
    quantity: Decimal | None
    limit_price: Decimal | None
    status: str  # sent, applied, refused
    reason: str


@dataclass(frozen=True, slots=True)
class OrderDetail:
    order: TrackedOrder
    transitions: list[OrderEvent]
    fills: list[Fill]
    amendments: list[AmendmentRow] = field(default_factory=list)


class OrderQueries:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def orders(self, *, account_id: str | None = None, status: str | None = None, symbol: str | None = None,
                     limit: int = 100) -> list[TrackedOrder]:
        """Newest first."""
        conditions, params = [], []
        for column, value in (("account_id", account_id), ("status", status), ("symbol", symbol)):
            if value is not None:
                conditions.append(f"{column} = %s")
                params.append(value)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        async with self._database.connection() as conn:
            rows = await (await conn.execute(
                f"SELECT {ORDER_COLUMNS} FROM execution_orders {where} "
                "ORDER BY received_ns DESC, client_order_id LIMIT %s", (*params, min(limit, MAX_ROWS)))).fetchall()
        return [tracked_from_row(row) for row in rows]

    async def order(self, client_order_id: str) -> OrderDetail | None:
        async with self._database.connection() as conn:
            row = await (await conn.execute(
                f"SELECT {ORDER_COLUMNS} FROM execution_orders WHERE client_order_id = %s",
                (client_order_id,))).fetchone()
            if row is None:
                return None
            tracked = tracked_from_row(row)
            order = tracked.state.order
            transitions = [
                OrderEvent(client_order_id=client_order_id, account_id=order.account_id, exchange=order.exchange,
                           symbol=order.symbol, side=order.side, status=status, seq=seq, quantity=order.quantity,
                           exchange_order_id=exchange_order_id, filled_quantity=filled, average_price=average,
                           reason=reason, strategy_id=order.strategy_id, ts_event=ts_event)
                for seq, status, filled, average, exchange_order_id, reason, ts_event in await (await conn.execute(
                    "SELECT seq, status, filled_quantity, average_price, exchange_order_id, reason, ts_event "
                    "FROM execution_order_transitions WHERE client_order_id = %s ORDER BY seq",
                    (client_order_id,))).fetchall()]
            fills = [fill_from_row(r) for r in await (await conn.execute(
                f"SELECT {FILL_COLUMNS} FROM execution_fills WHERE client_order_id = %s ORDER BY applied",
                (client_order_id,))).fetchall()]
            amendments = [AmendmentRow(*r) for r in await (await conn.execute(
                "SELECT amendment_id, quantity, limit_price, status, reason FROM execution_amendments "
                "WHERE client_order_id = %s ORDER BY received_ns, amendment_id", (client_order_id,))).fetchall()]
        return OrderDetail(tracked, transitions, fills, amendments)

    async def fills(self, *, account_id: str | None = None, since_ns: int | None = None,
                    limit: int = 100) -> list[Fill]:
        """Oldest first from ``since_ns`` (event time, inclusive)."""
        conditions, params = [], []
        if account_id is not None:
            conditions.append("account_id = %s")
            params.append(account_id)
        if since_ns is not None:
            conditions.append("ts_event >= %s")
            params.append(since_ns)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        async with self._database.connection() as conn:
            rows = await (await conn.execute(
                f"SELECT {FILL_COLUMNS} FROM execution_fills {where} ORDER BY ts_event, applied LIMIT %s",
                (*params, min(limit, MAX_ROWS)))).fetchall()
        return [fill_from_row(row) for row in rows]
