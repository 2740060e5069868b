"""The execution store on PostgreSQL (tables of migrations execution_0001 and execution_0002).

One :class:`Changes` is one transaction: new order rows, transitions and fills (by binary COPY when many),
changed order rows by one ``unnest`` UPDATE, positions, balances and kill-switch events, and the
outbox messages. An order or a fill stored twice breaks a primary key: the transaction rolls
back and the service reloads its state (the paper broker never meets a trade twice, so this
means another writer or a bug, never a redelivery).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from types import MappingProxyType

import psycopg
from psycopg.types.json import Jsonb
from tradeflow.codec import decode, encode
from tradeflow.messages import Fill, Order, OrderAmendment
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

# The order as risk sent it is kept whole (its Order/1 MessagePack bytes); the columns are what
# the queries filter on and what changes.
ORDER_COLUMNS = ("client_order_id, account_id, exchange, symbol, status, seq, filled_quantity, filled_notional, "
                 "filled_fees, exchange_order_id, reason, broker_state, trace, received_ns, order_message")
ORDER_TYPES = ("text", "text", "text", "text", "text", "int4", "numeric", "numeric", "numeric", "text", "text",
               "jsonb", "jsonb", "int8", "bytea")
UPDATE_ORDERS = """
    UPDATE execution_orders AS o SET status = u.status, seq = u.seq, filled_quantity = u.filled_quantity,
        filled_notional = u.filled_notional, filled_fees = u.filled_fees, exchange_order_id = u.exchange_order_id,
        reason = u.reason, broker_state = u.broker_state, order_message = u.order_message, updated_at = now()
    FROM unnest(%b::text[], %b::text[], %b::integer[], %b::numeric[], %b::numeric[], %b::numeric[], %b::text[],
                %b::text[], %b::jsonb[], %b::bytea[])
        AS u(client_order_id, status, seq, filled_quantity, filled_notional, filled_fees, exchange_order_id, reason,
             broker_state, order_message)
    WHERE o.client_order_id = u.client_order_id
"""
TRANSITION_COLUMNS = "client_order_id, seq, status, filled_quantity, average_price, exchange_order_id, reason, ts_event"
TRANSITION_TYPES = ("text", "int4", "text", "numeric", "numeric", "text", "text", "int8")
FILL_COLUMNS = ("fill_id, client_order_id, account_id, exchange, symbol, side, quantity, price, fee, fee_currency, "
                "liquidity, strategy_id, ts_event")
FILL_TYPES = ("text", "text", "text", "text", "text", "text", "numeric", "numeric", "numeric", "text", "text", "text",
              "int8")
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


def columns(rows: Sequence[tuple]) -> list[list]:
    """Rows as one list per column (the parameters of an ``unnest`` statement)."""
    return [list(column) for column in zip(*rows, strict=True)]


COPY_FROM_ROWS = 32  # fewer rows go in by one INSERT: a COPY costs more round trips than it saves them


async def insert_rows(conn: psycopg.AsyncConnection, table: str, column_names: str, types: Sequence[str],
                      rows: Sequence[tuple]) -> None:
    """``rows`` into ``table``: a batch by binary COPY (a row costs no statement), a few rows (an order
    at a time, the latency path) by one ``INSERT ... unnest``, about a tenth less CPU per row there."""
    if len(rows) < COPY_FROM_ROWS:
        arrays = ", ".join(f"%b::{column_type}[]" for column_type in types)
        await conn.execute(f"INSERT INTO {table} ({column_names}) SELECT * FROM unnest({arrays})",
                           columns(rows))
        return
    async with conn.cursor() as cursor, cursor.copy(
            f"COPY {table} ({column_names}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(list(types))
        for row in rows:
            await copy.write_row(row)


class StoredAgain(RuntimeError):
    """An order or fill stored already was written again: the in-memory state is not the stored one."""


def order_row(tracked: TrackedOrder) -> tuple:
    order, state = tracked.state.order, tracked.state
    return (order.client_order_id, order.account_id, order.exchange, order.symbol, state.status, state.seq,
            state.filled_quantity, state.filled_notional, state.filled_fees, state.exchange_order_id, state.reason,
            Jsonb(dict(tracked.broker_state)), Jsonb(dict(tracked.trace)), tracked.received_ns, encode(order))


def tracked_from_row(row: Sequence) -> TrackedOrder:
    """The inverse of :func:`order_row` (a SELECT of ORDER_COLUMNS)."""
    (_, _, _, _, status, seq, filled_quantity, filled_notional, filled_fees, exchange_order_id, reason, broker_state,
     trace, received_ns, order_message) = row
    state = OrderState(decode(Order, bytes(order_message)), status=status, seq=seq, filled_quantity=filled_quantity,
                       filled_notional=filled_notional, filled_fees=filled_fees,
                       exchange_order_id=exchange_order_id, reason=reason)
    return TrackedOrder(state, trace, received_ns, broker_state)


def fill_from_row(row: Sequence) -> Fill:
    (fill_id, client_order_id, account_id, exchange, symbol, side, quantity, price, fee, fee_currency, liquidity,
     strategy_id, ts_event) = row
    return Fill(fill_id=fill_id, client_order_id=client_order_id, account_id=account_id, exchange=exchange,
                symbol=symbol, side=side, quantity=quantity, price=price, fee=fee, fee_currency=fee_currency,
                liquidity=liquidity, strategy_id=strategy_id, ts_event=ts_event)



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

    async def known_orders(self, client_order_ids: Sequence[str]) -> set[str]:
        if not client_order_ids:
            return set()
        cursor = await self._conn.execute(
            "SELECT client_order_id FROM execution_orders WHERE client_order_id = ANY(%b)", (list(client_order_ids),))
        return {row[0] for row in await cursor.fetchall()}

    async def position_fills(self, key: PositionKey) -> list[Fill]:
        cursor = await self._conn.execute(
            f"SELECT {FILL_COLUMNS} FROM execution_fills WHERE account_id = %s AND exchange = %s AND symbol = %s",
            key)
        return [fill_from_row(row) for row in await cursor.fetchall()]

    async def known_amendments(self, amendment_ids: Sequence[str]) -> set[str]:
        if not amendment_ids:
            return set()
        cursor = await self._conn.execute(
            "SELECT amendment_id FROM execution_amendments WHERE amendment_id = ANY(%s)", (list(amendment_ids),))
        return {row[0] for row in await cursor.fetchall()}

    async def new_kill_switch_events(self, events: Sequence[KillSwitchEvent]) -> set[str]:
        ids = [event.event_id for event in events]
        cursor = await self._conn.execute(
            "SELECT event_id FROM execution_kill_switch_events WHERE event_id = ANY(%s)", (ids,))
        known = {row[0] for row in await cursor.fetchall()}
        return set(ids) - known

    async def save(self, changes: Changes) -> None:
        conn = self._conn
        if changes.new_orders:
            # known_orders said they are new; a unique violation here (another writer) rolls back.
            await insert_rows(conn, "execution_orders", ORDER_COLUMNS, ORDER_TYPES,
                            [order_row(t) for t in changes.new_orders])
        new = {t.client_order_id for t in changes.new_orders}
        updated = [(cid, t) for cid, t in changes.orders.items() if cid not in new]
        if updated:
            await conn.execute(UPDATE_ORDERS, columns([
                (cid, s.status, s.seq, s.filled_quantity, s.filled_notional, s.filled_fees, s.exchange_order_id,
                 s.reason, Jsonb(dict(t.broker_state)), encode(s.order))
                for cid, t in updated for s in (t.state,)]))
        if changes.events:
            await insert_rows(conn, "execution_order_transitions", TRANSITION_COLUMNS, TRANSITION_TYPES, [
                (e.client_order_id, e.seq, e.status, e.filled_quantity, e.average_price, e.exchange_order_id,
                 e.reason, e.ts_event) for e in changes.events])
        if changes.fills:
            # A fill id stored before (the primary key) fails the COPY: the transaction rolls back.
            await insert_rows(conn, "execution_fills", FILL_COLUMNS, FILL_TYPES, [
                (f.fill_id, f.client_order_id, f.account_id, f.exchange, f.symbol, f.side, f.quantity, f.price,
                 f.fee, f.fee_currency, f.liquidity, f.strategy_id, f.ts_event) for f in changes.fills])
        async with conn.cursor() as cursor:
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
            if changes.new_amendments:
                # known_amendments said they are new; a primary key violation here rolls back.
                await cursor.executemany(
                    "INSERT INTO execution_amendments (amendment_id, client_order_id, account_id, quantity, limit_price, "
                    "status, message, received_ns) VALUES (%s, %s, %s, %s, %s, 'sent', %s, %s)",
                    [(a.amendment_id, a.client_order_id, a.account_id, a.quantity, a.limit_price, encode(a),
                      a.ts_event) for a in changes.new_amendments])
            if changes.amendment_outcomes:
                await cursor.executemany(
                    "UPDATE execution_amendments SET status = %s, reason = %s, updated_at = now() "
                    "WHERE amendment_id = %s",
                    [(o.status, o.reason, o.amendment_id) for o in changes.amendment_outcomes.values()])
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

    async def sent_amendments(self, account_ids: Sequence[str]) -> list[OrderAmendment]:
        async with self._database.connection() as conn:
            rows = await (await conn.execute(
                "SELECT message FROM execution_amendments WHERE account_id = ANY(%s) AND status = 'sent' "
                "ORDER BY received_ns, amendment_id", (list(account_ids),))).fetchall()
        return [decode(OrderAmendment, bytes(row[0])) for row in rows]

    async def ping(self) -> tuple[bool, str]:
        return await self._database.ping()

