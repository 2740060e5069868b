"""The execution store on PostgreSQL (tables of migration execution_0001).

One :class:`Changes` is one transaction of a few ``executemany`` statements (psycopg runs them
pipelined): order rows, transitions, fills, positions, balances, kill-switch events and the
outbox messages. A fill id stored before is an invariant broken (the paper broker never meets a
trade twice): the transaction fails and the service reloads its state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from types import MappingProxyType

import psycopg
from psycopg.types.json import Jsonb
from tradeflow.messages import Fill, Order
from tradeflow_db import Database
from tradeflow_db.outbox import Outbox
from tradeflow_trading.accounts import AccountConfig
from tradeflow_trading.orders import OPEN, OrderState
from tradeflow_trading.positions import Balances, Position

from tradeflow_execution.store import (
    Changes,
    FoldMark,
    KillSwitchEvent,
    LoadedState,
    PositionKey,
    TrackedOrder,
)

ORDER_COLUMNS = (
    "client_order_id, account_id, exchange, symbol, side, order_type, time_in_force, quantity, quote_quantity, "
    "limit_price, expires_at, reduce_only, origin, signal_id, strategy_id, decision_price, ts_event, "
    "status, seq, filled_quantity, filled_notional, filled_fees, exchange_order_id, reason, broker_state, trace, "
    "received_ns")
INSERT_ORDER = (f"INSERT INTO execution_orders ({ORDER_COLUMNS}) VALUES ({', '.join(['%s'] * 27)}) "
                "ON CONFLICT (client_order_id) DO NOTHING RETURNING client_order_id")
UPDATE_ORDER = """
    UPDATE execution_orders SET status = %s, seq = %s, filled_quantity = %s, filled_notional = %s, filled_fees = %s,
        exchange_order_id = %s, reason = %s, broker_state = %s, quantity = %s, limit_price = %s, updated_at = now()
    WHERE client_order_id = %s
"""
INSERT_TRANSITION = """
    INSERT INTO execution_order_transitions
        (client_order_id, seq, status, filled_quantity, average_price, exchange_order_id, reason, ts_event)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
"""
INSERT_FILL = """
    INSERT INTO execution_fills (fill_id, client_order_id, account_id, exchange, symbol, side, quantity, price, fee,
        fee_currency, liquidity, strategy_id, ts_event)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (fill_id) DO NOTHING RETURNING fill_id
"""
UPSERT_POSITION = """
    INSERT INTO execution_positions (account_id, exchange, symbol, quantity, average_price, realized_pnl, fees,
        opened_at, fills, last_fill_ts, last_fill_id)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (account_id, exchange, symbol) DO UPDATE SET quantity = excluded.quantity,
        average_price = excluded.average_price, realized_pnl = excluded.realized_pnl, fees = excluded.fees,
        opened_at = excluded.opened_at, fills = excluded.fills, last_fill_ts = excluded.last_fill_ts,
        last_fill_id = excluded.last_fill_id, updated_at = now()
"""
UPSERT_BALANCE = """
    INSERT INTO execution_balances (account_id, currency, amount) VALUES (%s, %s, %s)
    ON CONFLICT (account_id, currency) DO UPDATE SET amount = excluded.amount, updated_at = now()
"""
INSERT_KILL_SWITCH = """
    INSERT INTO execution_kill_switch_events (event_id, account_id, engaged, reason, ts_event)
    VALUES (%s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING
"""
OPEN_STATUSES = tuple(sorted(OPEN))


class StoredFillAgain(RuntimeError):
    """A fill id that is stored already was applied again: the in-memory state is not the stored one."""


def order_row(tracked: TrackedOrder) -> tuple:
    order, state = tracked.state.order, tracked.state
    return (order.client_order_id, order.account_id, order.exchange, order.symbol, order.side, order.order_type,
            order.time_in_force, order.quantity, order.quote_quantity, order.limit_price, order.expires_at,
            order.reduce_only, order.origin, order.signal_id, order.strategy_id, order.decision_price, order.ts_event,
            state.status, state.seq, state.filled_quantity, state.filled_notional, state.filled_fees,
            state.exchange_order_id, state.reason, Jsonb(dict(tracked.broker_state)), Jsonb(dict(tracked.trace)),
            tracked.received_ns)


def tracked_from_row(row: Sequence) -> TrackedOrder:
    """The inverse of :func:`order_row` (a SELECT of ORDER_COLUMNS)."""
    (client_order_id, account_id, exchange, symbol, side, order_type, time_in_force, quantity, quote_quantity,
     limit_price, expires_at, reduce_only, origin, signal_id, strategy_id, decision_price, ts_event, status, seq,
     filled_quantity, filled_notional, filled_fees, exchange_order_id, reason, broker_state, trace,
     received_ns) = row
    order = Order(client_order_id=client_order_id, account_id=account_id, exchange=exchange, symbol=symbol, side=side,
                  order_type=order_type, quantity=quantity, quote_quantity=quote_quantity, limit_price=limit_price,
                  time_in_force=time_in_force, expires_at=expires_at, reduce_only=reduce_only, origin=origin,
                  signal_id=signal_id, strategy_id=strategy_id, decision_price=decision_price, ts_event=ts_event)
    state = OrderState(order, status=status, seq=seq, filled_quantity=filled_quantity,
                       filled_notional=filled_notional, filled_fees=filled_fees,
                       exchange_order_id=exchange_order_id, reason=reason)
    return TrackedOrder(state, trace, received_ns, broker_state)


def fill_from_row(row: Sequence) -> Fill:
    (fill_id, client_order_id, account_id, exchange, symbol, side, quantity, price, fee, fee_currency, liquidity,
     strategy_id, ts_event) = row
    return Fill(fill_id=fill_id, client_order_id=client_order_id, account_id=account_id, exchange=exchange,
                symbol=symbol, side=side, quantity=quantity, price=price, fee=fee, fee_currency=fee_currency,
                liquidity=liquidity, strategy_id=strategy_id, ts_event=ts_event)


FILL_COLUMNS = ("fill_id, client_order_id, account_id, exchange, symbol, side, quantity, price, fee, fee_currency, "
                "liquidity, strategy_id, ts_event")


def _position_row(position: Position, mark: FoldMark) -> tuple:
    return (position.account_id, position.exchange, position.symbol, position.quantity, position.average_price,
            position.realized_pnl, Jsonb({c: str(a) for c, a in position.fees.items()}), position.opened_at,
            position.fills, *mark)


def _balance_rows(account_id: str, balances: Balances) -> list[tuple]:
    return [(account_id, currency, amount) for currency, amount in sorted(balances.amounts.items())]


class PostgresTransaction:
    def __init__(self, conn: psycopg.AsyncConnection, outbox: Outbox) -> None:
        self._conn = conn
        self._outbox = outbox

    async def insert_orders(self, orders: Sequence[TrackedOrder]) -> set[str]:
        if not orders:
            return set()
        new: set[str] = set()
        async with self._conn.cursor() as cursor:
            await cursor.executemany(INSERT_ORDER, [order_row(t) for t in orders], returning=True)
            while True:
                row = await cursor.fetchone()
                if row is not None:
                    new.add(row[0])
                if not cursor.nextset():
                    break
        return new

    async def position_fills(self, key: PositionKey) -> list[Fill]:
        cursor = await self._conn.execute(
            f"SELECT {FILL_COLUMNS} FROM execution_fills WHERE account_id = %s AND exchange = %s AND symbol = %s",
            key)
        return [fill_from_row(row) for row in await cursor.fetchall()]

    async def new_kill_switch_events(self, events: Sequence[KillSwitchEvent]) -> set[str]:
        ids = [event.event_id for event in events]
        cursor = await self._conn.execute(
            "SELECT event_id FROM execution_kill_switch_events WHERE event_id = ANY(%s)", (ids,))
        known = {row[0] for row in await cursor.fetchall()}
        return set(ids) - known

    async def save(self, changes: Changes) -> None:
        conn = self._conn
        async with conn.cursor() as cursor:
            if changes.orders:
                await cursor.executemany(UPDATE_ORDER, [
                    (s.status, s.seq, s.filled_quantity, s.filled_notional, s.filled_fees, s.exchange_order_id,
                     s.reason, Jsonb(dict(t.broker_state)), s.order.quantity, s.order.limit_price, cid)
                    for cid, t in changes.orders.items() for s in (t.state,)])
            if changes.events:
                await cursor.executemany(INSERT_TRANSITION, [
                    (e.client_order_id, e.seq, e.status, e.filled_quantity, e.average_price, e.exchange_order_id,
                     e.reason, e.ts_event) for e in changes.events])
            if changes.fills:
                await cursor.executemany(INSERT_FILL, [
                    (f.fill_id, f.client_order_id, f.account_id, f.exchange, f.symbol, f.side, f.quantity, f.price,
                     f.fee, f.fee_currency, f.liquidity, f.strategy_id, f.ts_event) for f in changes.fills],
                    returning=True)
                stored = 0
                while True:
                    stored += (await cursor.fetchone()) is not None
                    if not cursor.nextset():
                        break
                if stored != len(changes.fills):
                    raise StoredFillAgain(f"{len(changes.fills) - stored} of {len(changes.fills)} fills were stored "
                                          "before; rolling back")
            if changes.positions:
                await cursor.executemany(UPSERT_POSITION, [_position_row(p, changes.fold_marks[key])
                                                           for key, p in changes.positions.items()])
            if changes.balances:
                await cursor.executemany(UPSERT_BALANCE, [
                    row for account_id, balances in changes.balances.items()
                    for row in _balance_rows(account_id, balances)])
            if changes.kill_switch_events:
                await cursor.executemany(INSERT_KILL_SWITCH, [
                    (e.event_id, e.account_id, e.engaged, e.reason, e.ts_event) for e in changes.kill_switch_events])
        await self._outbox.put_traced(conn, ((m.topic, m.key, m.message, m.trace) for m in changes.messages))


class PostgresExecutionStore:
    """The store port on a :class:`tradeflow_db.Database` (the pool component)."""

    def __init__(self, database: Database, outbox: Outbox) -> None:
        self._database = database
        self._outbox = outbox

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        async with self._database.transaction() as conn:
            yield PostgresTransaction(conn, self._outbox)

    async def ensure_accounts(self, accounts: Sequence[AccountConfig]) -> list[str]:
        warnings = []
        async with self._database.transaction() as conn:
            for account in accounts:
                balances = {currency: str(amount) for currency, amount in account.balances.items()}
                cursor = await conn.execute(
                    "INSERT INTO execution_accounts (account_id, exchange, mode, initial_balances) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (account_id) DO NOTHING RETURNING account_id",
                    (account.id, account.exchange, account.mode, Jsonb(balances)))
                if await cursor.fetchone() is not None:
                    async with conn.cursor() as balance_cursor:
                        await balance_cursor.executemany(UPSERT_BALANCE, [
                            (account.id, currency, amount) for currency, amount in sorted(account.balances.items())])
                    continue
                stored = (await (await conn.execute(
                    "SELECT initial_balances FROM execution_accounts WHERE account_id = %s", (account.id,))).fetchone())[0]
                if {c: Decimal(a) for c, a in stored.items()} != dict(account.balances):
                    warnings.append(f"account {account.id}: TRADEFLOW_ACCOUNTS gives starting balances {balances}, "
                                    f"it started with {stored}; the stored start is kept (balances are its fills "
                                    "applied to it)")
        return warnings

    async def load(self, account_ids: Sequence[str]) -> LoadedState:
        ids = list(account_ids)
        async with self._database.connection() as conn:
            positions: dict[PositionKey, Position] = {}
            marks: dict[PositionKey, FoldMark] = {}
            for row in await (await conn.execute(
                    "SELECT account_id, exchange, symbol, quantity, average_price, realized_pnl, fees, opened_at, fills, "
                    "last_fill_ts, last_fill_id FROM execution_positions WHERE account_id = ANY(%s)", (ids,))).fetchall():
                (account_id, exchange, symbol, quantity, average, realized, fees, opened_at, fills, last_ts,
                 last_id) = row
                marks[(account_id, exchange, symbol)] = (last_ts, last_id)
                positions[(account_id, exchange, symbol)] = Position(
                    account_id, exchange, symbol, quantity, average, realized,
                    MappingProxyType({currency: Decimal(amount) for currency, amount in fees.items()}), opened_at, fills)
            amounts: dict[str, dict[str, Decimal]] = {}
            for account_id, currency, amount in await (await conn.execute(
                    "SELECT account_id, currency, amount FROM execution_balances WHERE account_id = ANY(%s)",
                    (ids,))).fetchall():
                amounts.setdefault(account_id, {})[currency] = amount
            open_orders = [tracked_from_row(row) for row in await (await conn.execute(
                f"SELECT {ORDER_COLUMNS} FROM execution_orders WHERE account_id = ANY(%s) AND status = ANY(%s)",
                (ids, list(OPEN_STATUSES)))).fetchall()]
            halted: set[str] = set()
            for account_id, engaged in await (await conn.execute(
                    "SELECT account_id, engaged FROM execution_kill_switch_events ORDER BY applied")).fetchall():
                if account_id == "*" and not engaged:
                    halted.clear()
                elif engaged:
                    halted.add(account_id)
                else:
                    halted.discard(account_id)
        return LoadedState(positions, marks, {a: Balances.of(v) for a, v in amounts.items()}, open_orders, halted)

    async def account_fills(self, account_id: str) -> list[Fill]:
        async with self._database.connection() as conn:
            rows = await (await conn.execute(
                f"SELECT {FILL_COLUMNS} FROM execution_fills WHERE account_id = %s ORDER BY ts_event, fill_id",
                (account_id,))).fetchall()
        return [fill_from_row(row) for row in rows]

    async def initial_balances(self, account_id: str) -> dict[str, Decimal]:
        async with self._database.connection() as conn:
            row = await (await conn.execute(
                "SELECT initial_balances FROM execution_accounts WHERE account_id = %s", (account_id,))).fetchone()
        return {} if row is None else {c: Decimal(a) for c, a in row[0].items()}

    async def replace_account_state(self, account_id: str, positions: Mapping[PositionKey, Position],
                                    fold_marks: Mapping[PositionKey, FoldMark], balances: Balances) -> None:
        async with self._database.transaction() as conn:
            await conn.execute("DELETE FROM execution_positions WHERE account_id = %s", (account_id,))
            await conn.execute("DELETE FROM execution_balances WHERE account_id = %s", (account_id,))
            async with conn.cursor() as cursor:
                if positions:
                    await cursor.executemany(UPSERT_POSITION, [_position_row(p, fold_marks[key])
                                                               for key, p in positions.items()])
                rows = _balance_rows(account_id, balances)
                if rows:
                    await cursor.executemany(UPSERT_BALANCE, rows)

    async def order_status(self, client_order_id: str) -> str | None:
        async with self._database.connection() as conn:
            row = await (await conn.execute(
                "SELECT status FROM execution_orders WHERE client_order_id = %s", (client_order_id,))).fetchone()
        return None if row is None else row[0]

    async def ping(self) -> tuple[bool, str]:
        return await self._database.ping()

