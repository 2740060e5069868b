"""Risk's tables (migrations risk_0001 to risk_0003) and the unit of work every decision is stored in.

A :class:`UnitOfWork` is one transaction over a set of accounts: it locks their
``risk_accounts`` rows (``SELECT ... FOR UPDATE``, in account order so two units never
deadlock) and reports each row's ``version``; the service reloads an account whose version
moved (another replica, or a failed transaction, changed it). Everything the decisions change
(decisions, orders, fills, the accounts' control) and announce (outbox rows) is written in that
transaction: either all of it is stored and published, or none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal

import msgspec
import psycopg
from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.trace import Span
from tradeflow.codec import decode, encode
from tradeflow.messages import Fill, Message, Order, OrderAmendment, RiskEvent
from tradeflow.topics import TopicSpec
from tradeflow_db import Database
from tradeflow_db.outbox import Outbox, OutboxRow

from tradeflow_risk.domain.account import AccountControl, Breach, TrackedOrder, Watermark
from tradeflow_risk.domain.limits import RiskLimits

log = logging.getLogger(__name__)

OUTBOX_TABLE = "risk_outbox"
_NO_TRACE: Mapping[str, str] = {}  # rows without trace headers
REQUIRED_REVISION = "risk_0003"
TERMINAL_SQL = "('filled', 'canceled', 'rejected', 'expired')"


@dataclass(slots=True)
class StoredAccount:
    """One account as the database has it (the service folds it into an AccountBook)."""

    account_id: str
    version: int = 0
    clock: int = 0
    control: AccountControl = field(default_factory=AccountControl)
    orders: list[TrackedOrder] = field(default_factory=list)
    order_times: list[int] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    watermarks: dict[str, Watermark] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LimitsVersion:
    account_id: str
    version: int
    limits: RiskLimits
    changed_by: str
    changed_at: str  # ISO 8601, UTC

    def json(self) -> dict:
        return {"account_id": self.account_id, "version": self.version, "changed_by": self.changed_by,
                "changed_at": self.changed_at, "limits": self.limits.model_dump(mode="json")}


@dataclass(frozen=True, slots=True)
class StoredDecision:
    decision_id: str
    outcome: str
    payload: bytes


def _control(row: dict) -> AccountControl:
    breaches = {reason: Breach(reason, b["action"], b["message"], b["ts_event"])
                for reason, b in (row["breaches"] or {}).items()}
    return AccountControl(kill_switch=row["kill_switch"], kill_switch_reason=row["kill_switch_reason"],
                          kill_switch_auto=row["kill_switch_auto"], breaches=breaches, day=row["day"],
                          day_start_equity=row["day_start_equity"], equity_peak=row["equity_peak"],
                          reconciliation=row["reconciliation"], reconciliation_message=row["reconciliation_message"])


def _iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _breaches(control: AccountControl) -> dict:
    return {reason: {"action": b.action, "message": b.message, "ts_event": b.ts_event}
            for reason, b in control.breaches.items()}


_JSON = msgspec.json.Encoder()  # Decimal as a string, bytes as base64: the statement casts and decodes them
_EMPTY_UNIT = {"decisions": [], "orders": [], "amendments": [], "progress": [], "controls": [], "outbox": []}


def _flush_statement(outbox: Outbox) -> str:
    """One statement for all of a unit's writes (data-modifying WITHs), its rows in one jsonb
    parameter: per table a JSON array of positional entries."""
    return f"""
    WITH unit AS (SELECT %s::jsonb AS j),
    decisions AS (
        INSERT INTO risk_decisions (decision_id, account_id, origin, outcome, reason, client_order_id, payload, ts_event)
        SELECT e->>0, e->>1, e->>2, e->>3, e->>4, e->>5, decode(e->>6, 'base64'), (e->>7)::bigint
        FROM unit, jsonb_array_elements(unit.j->'decisions') AS e
        ON CONFLICT (decision_id) DO NOTHING),
    orders AS (
        INSERT INTO risk_orders (client_order_id, account_id, payload, order_type, origin, ts_event)
        SELECT e->>0, e->>1, decode(e->>2, 'base64'), e->>3, e->>4, (e->>5)::bigint
        FROM unit, jsonb_array_elements(unit.j->'orders') AS e
        ON CONFLICT (client_order_id) DO NOTHING),
    amendments AS (
        INSERT INTO risk_amendments (decision_id, amendment_id, account_id, client_order_id, outcome, reason, payload,
                                     ts_event)
        SELECT e->>0, e->>1, e->>2, e->>3, e->>4, e->>5, decode(e->>6, 'base64'), (e->>7)::bigint
        FROM unit, jsonb_array_elements(unit.j->'amendments') AS e
        ON CONFLICT (decision_id) DO NOTHING),
    progress AS (
        -- The payload too: an amended order's quantity and limit price (exec.orders.v1) are its own.
        UPDATE risk_orders o SET status = e->>1, seq = (e->>2)::int, filled_quantity = (e->>3)::numeric,
            applied_quantity = (e->>4)::numeric, applied_notional = (e->>5)::numeric,
            payload = decode(e->>6, 'base64'), updated_at = now()
        FROM unit, jsonb_array_elements(unit.j->'progress') AS e
        WHERE o.client_order_id = e->>0),
    controls AS (
        UPDATE risk_accounts a SET version = a.version + 1, kill_switch = (e->>1)::boolean, kill_switch_reason = e->>2,
            kill_switch_auto = (e->>3)::boolean, breaches = e->4, day = (e->>5)::int,
            day_start_equity = (e->>6)::numeric, equity_peak = (e->>7)::numeric,
            clock = greatest(a.clock, (e->>8)::bigint), reconciliation = e->>9, reconciliation_message = e->>10,
            updated_at = now()
        FROM unit, jsonb_array_elements(unit.j->'controls') AS e
        WHERE a.account_id = e->>0),
    outbox AS ({outbox.insert_from_json("(SELECT j->'outbox' FROM unit)")})
    SELECT {outbox.notify_call()} FROM unit WHERE jsonb_array_length(j->'outbox') > 0
    """


class RiskStore:
    """Queries of risk's tables on the service's :class:`Database`."""

    def __init__(self, database: Database, outbox: Outbox, *, on_commit: Callable[[], None] | None = None) -> None:
        self.database = database
        self.outbox = outbox
        self._flush_statement = _flush_statement(outbox)
        # Called after a unit of work committed (the outbox relay's wake: no wait for the NOTIFY).
        self.on_commit = on_commit

    async def ensure_accounts(self, account_ids: Sequence[str]) -> None:
        async with self.database.connection() as conn:
            await conn.execute("INSERT INTO risk_accounts (account_id) SELECT unnest(%b::text[]) ON CONFLICT DO NOTHING",
                               (list(account_ids),))

    async def load(self, account_ids: Sequence[str], conn: psycopg.AsyncConnection | None = None) -> dict[str, StoredAccount]:
        """The stored state of ``account_ids`` (on ``conn``: inside a unit of work)."""
        if conn is None:
            async with self.database.connection() as own:
                return await _load(own, list(account_ids))
        return await _load(conn, list(account_ids))

    async def load_marks(self) -> list[tuple[str, str, Decimal, int]]:
        async with self.database.connection() as conn:
            return await (await conn.execute("SELECT exchange, symbol, price, ts_event FROM risk_marks")).fetchall()

    async def latest_limits(self) -> dict[str, LimitsVersion]:
        async with self.database.connection() as conn:
            rows = await (await conn.execute(
                "SELECT DISTINCT ON (account_id) account_id, version, limits, changed_by, changed_at FROM risk_limits "
                "ORDER BY account_id, version DESC")).fetchall()
        return {r[0]: LimitsVersion(r[0], r[1], RiskLimits.model_validate(r[2]), r[3], _iso(r[4])) for r in rows}

    async def limits_history(self, account_id: str) -> list[LimitsVersion]:
        async with self.database.connection() as conn:
            rows = await (await conn.execute(
                "SELECT version, limits, changed_by, changed_at FROM risk_limits WHERE account_id = %s ORDER BY version",
                (account_id,))).fetchall()
        return [LimitsVersion(account_id, r[0], RiskLimits.model_validate(r[1]), r[2], _iso(r[3])) for r in rows]

    async def save_market_state(self, marks: Iterable[tuple[str, str, Decimal, int]],
                                watermarks: Iterable[tuple[str, str, Watermark]],
                                controls: Iterable[tuple[str, AccountControl]]) -> None:
        """Marks, trailing-stop watermarks and the accounts' day and peak (no version bump: facts only)."""
        marks, watermarks, controls = list(marks), list(watermarks), list(controls)
        async with self.database.transaction() as conn, conn.cursor() as cursor:
            if marks:
                await cursor.executemany(
                    "INSERT INTO risk_marks (exchange, symbol, price, ts_event) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (exchange, symbol) DO UPDATE SET price = excluded.price, ts_event = excluded.ts_event "
                    "WHERE risk_marks.ts_event <= excluded.ts_event", marks)
            if watermarks:
                await cursor.executemany(
                    "INSERT INTO risk_watermarks (account_id, symbol, opened_at, high, low) VALUES (%s, %s, %s, %s, %s) "
                    "ON CONFLICT (account_id, symbol) DO UPDATE SET opened_at = excluded.opened_at, "
                    "high = excluded.high, low = excluded.low",
                    [(a, s, w.opened_at, w.high, w.low) for a, s, w in watermarks])
            if controls:
                await cursor.executemany(
                    "UPDATE risk_accounts SET day = %s, day_start_equity = %s, equity_peak = %s WHERE account_id = %s",
                    [(c.day, c.day_start_equity, c.equity_peak, a) for a, c in controls])

    async def version(self, account_id: str) -> int | None:
        async with self.database.connection() as conn:
            row = await (await conn.execute("SELECT version FROM risk_accounts WHERE account_id = %s",
                                            (account_id,))).fetchone()
        return row[0] if row else None

    async def order_row(self, client_order_id: str) -> tuple[str, str] | None:
        """(account id, status) of an order risk approved, None when it never approved one by that id."""
        async with self.database.connection() as conn:
            row = await (await conn.execute("SELECT account_id, status FROM risk_orders WHERE client_order_id = %s",
                                            (client_order_id,))).fetchone()
        return None if row is None else (row[0], row[1])

    async def ping(self) -> tuple[bool, str]:
        return await self.database.ping()

    @asynccontextmanager
    async def unit_of_work(self, account_ids: Iterable[str], *, fills: Sequence[Fill] = (),
                           decision_ids: Sequence[str] = ()):
        """One transaction in two round trips: its statements go in pipeline mode, ``BEGIN`` with the
        lock, the new fills and the stored decisions asked for (the first round trip), the unit's
        writes with ``COMMIT`` at the end (the second).

        ``BEGIN`` and ``COMMIT`` are statements of the pipeline, not psycopg's ``transaction()``
        (which syncs the pipeline on its own at entry and exit): at a steady rate every signal, order
        event and fill is a unit of its own, and each round trip adds to the time from signal to
        order (``bench/risk.py``). On any error the transaction is rolled back before the
        connection goes back to the pool."""
        async with self.database.connection() as conn:
            try:
                async with conn.pipeline():
                    await conn.execute("BEGIN")
                    unit = UnitOfWork(conn, self._flush_statement)
                    await unit.begin(sorted(set(account_ids)), fills, decision_ids)
                    yield unit
                    await unit.flush()
                    await conn.execute("COMMIT")
            except BaseException:
                if conn.pgconn.transaction_status not in (psycopg.pq.TransactionStatus.IDLE,
                                                          psycopg.pq.TransactionStatus.UNKNOWN):
                    try:
                        await conn.execute("ROLLBACK")
                    except psycopg.Error:  # a broken connection: the pool discards it; the first error counts
                        log.warning("rolling back a failed unit of work failed", exc_info=True)
                raise
        if unit.has_messages and self.on_commit is not None:
            self.on_commit()


async def _load(conn: psycopg.AsyncConnection, ids: list[str]) -> dict[str, StoredAccount]:
    accounts = {i: StoredAccount(i) for i in ids}
    async with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        await cursor.execute("SELECT * FROM risk_accounts WHERE account_id = ANY(%s)", (ids,))
        for row in await cursor.fetchall():
            stored = accounts[row["account_id"]]
            stored.version, stored.clock, stored.control = row["version"], row["clock"], _control(row)
        await cursor.execute(
            f"SELECT account_id, payload, status, seq, filled_quantity, applied_quantity, applied_notional "
            f"FROM risk_orders WHERE account_id = ANY(%s) AND (status NOT IN {TERMINAL_SQL} "
            f"OR applied_quantity < filled_quantity) ORDER BY created_at, client_order_id", (ids,))
        for row in await cursor.fetchall():
            accounts[row["account_id"]].orders.append(TrackedOrder(
                decode(Order, row["payload"]), row["status"], row["seq"], row["filled_quantity"],
                row["applied_quantity"], row["applied_notional"]))
        # The rate window: orders within a minute of each account's newest rate-counted order.
        await cursor.execute(
            "SELECT o.account_id, o.ts_event FROM risk_orders o JOIN ("
            "  SELECT account_id, max(ts_event) AS newest FROM risk_orders"
            "  WHERE account_id = ANY(%s) AND origin <> 'protective' GROUP BY account_id) n USING (account_id) "
            "WHERE o.origin <> 'protective' AND o.ts_event > n.newest - 60000000000 ORDER BY o.ts_event", (ids,))
        for row in await cursor.fetchall():
            accounts[row["account_id"]].order_times.append(row["ts_event"])
        await cursor.execute("SELECT account_id, payload FROM risk_fills WHERE account_id = ANY(%s) ORDER BY seq", (ids,))
        for row in await cursor.fetchall():
            accounts[row["account_id"]].fills.append(decode(Fill, row["payload"]))
        await cursor.execute("SELECT * FROM risk_watermarks WHERE account_id = ANY(%s)", (ids,))
        for row in await cursor.fetchall():
            accounts[row["account_id"]].watermarks[row["symbol"]] = Watermark(row["opened_at"], row["high"], row["low"])
    return accounts


class UnitOfWork:
    """One transaction of decisions over locked accounts; rows are buffered and written at the end."""

    def __init__(self, conn: psycopg.AsyncConnection, flush_statement: str) -> None:
        self.conn = conn
        self._flush_statement = flush_statement  # the store's _flush_statement(outbox), built once
        self.versions: dict[str, int] = {}
        self._decisions: list[tuple] = []
        self._new_orders: list[tuple] = []
        self._progress: dict[str, TrackedOrder] = {}
        self._controls: dict[str, tuple[AccountControl, int]] = {}
        self._messages: list[OutboxRow] = []
        self._serial = 0
        self.new_fills: list[Fill] = []
        self.stored: dict[str, StoredDecision] = {}
        self._amendments: list[tuple] = []

    def next_serial(self) -> int:
        """1, 2, ... within this unit: tells apart the events one unit publishes for an account version."""
        self._serial += 1
        return self._serial

    async def begin(self, account_ids: list[str], fills: Sequence[Fill], decision_ids: Sequence[str]) -> None:
        """Lock the accounts' rows (their versions), store ``fills`` (:attr:`new_fills`: those not
        stored before, in order) and look up ``decision_ids`` (:attr:`stored`)."""
        conn = self.conn
        locked = await conn.execute(
            "SELECT account_id, version FROM risk_accounts WHERE account_id = ANY(%b::text[]) ORDER BY account_id "
            "FOR UPDATE",
            (account_ids,)) if account_ids else None
        unique: dict[str, Fill] = {}
        for fill in fills:
            unique.setdefault(fill.fill_id, fill)
        inserted = await conn.execute(
            "INSERT INTO risk_fills (fill_id, account_id, client_order_id, payload) "
            "SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::bytea[]) "
            "ON CONFLICT (fill_id) DO NOTHING RETURNING fill_id",
            ([f.fill_id for f in unique.values()], [f.account_id for f in unique.values()],
             [f.client_order_id for f in unique.values()], [encode(f) for f in unique.values()])) if unique else None
        found = await conn.execute(
            "SELECT decision_id, outcome, payload FROM risk_decisions WHERE decision_id = ANY(%b::text[])",
            (list(decision_ids),)) if decision_ids else None
        self.versions = dict(await locked.fetchall()) if locked is not None else {}
        new = {row[0] for row in await inserted.fetchall()} if inserted is not None else set()
        self.new_fills = [fill for fill_id, fill in unique.items() if fill_id in new]
        self.stored = {r[0]: StoredDecision(r[0], r[1], bytes(r[2])) for r in await found.fetchall()} if found else {}

    async def save_limits(self, account_id: str, limits: RiskLimits, changed_by: str) -> LimitsVersion:
        """The next version of the account's limits (the account's row is locked: versions never collide)."""
        row = await (await self.conn.execute(
            "INSERT INTO risk_limits (account_id, version, limits, changed_by) "
            "SELECT %s, coalesce(max(version), 0) + 1, %s, %s FROM risk_limits WHERE account_id = %s "
            "RETURNING version, changed_at",
            (account_id, psycopg.types.json.Jsonb(limits.model_dump(mode="json")), changed_by, account_id))).fetchone()
        return LimitsVersion(account_id, row[0], limits, changed_by, _iso(row[1]))

    async def stored_decisions(self, decision_ids: Sequence[str]) -> dict[str, StoredDecision]:
        if not decision_ids:
            return {}
        rows = await (await self.conn.execute(
            "SELECT decision_id, outcome, payload FROM risk_decisions WHERE decision_id = ANY(%b::text[])",
            (list(decision_ids),))).fetchall()
        return {r[0]: StoredDecision(r[0], r[1], bytes(r[2])) for r in rows}

    def add_decision(self, decision_id: str, account_id: str, origin: str, message: Order | Message,
                     reason: str, ts_event: int) -> bytes:
        """Store the decision (and an approved order); the message's encoding, which its outbox row reuses."""
        approved = isinstance(message, Order)
        payload = encode(message)
        self._decisions.append((decision_id, account_id, origin, "approved" if approved else "rejected", reason,
                                message.client_order_id if approved else None, payload, ts_event))
        if approved:
            self._new_orders.append((message.client_order_id, message.account_id, payload, message.order_type,
                                     message.origin, message.ts_event))
        return payload

    async def amendment_lookup(self, decision_id: str, client_order_id: str) -> tuple[StoredDecision | None, int]:
        """The stored decision of an amendment request (a retry), and how many amendments of the
        order were approved so far (the next one is numbered after them; the account is locked)."""
        rows = await (await self.conn.execute(
            "SELECT decision_id, outcome, payload FROM risk_amendments WHERE decision_id = %s", (decision_id,))).fetchall()
        count = (await (await self.conn.execute(
            "SELECT count(*) FROM risk_amendments WHERE client_order_id = %s AND outcome = 'approved'",
            (client_order_id,))).fetchone())[0]
        prior = StoredDecision(rows[0][0], rows[0][1], bytes(rows[0][2])) if rows else None
        return prior, count

    def add_amendment(self, decision_id: str, account_id: str, client_order_id: str,
                      message: OrderAmendment | RiskEvent, reason: str, ts_event: int) -> None:
        approved = isinstance(message, OrderAmendment)
        self._amendments.append((decision_id, message.amendment_id if approved else None, account_id,
                                 client_order_id, "approved" if approved else "rejected", reason, encode(message),
                                 ts_event))

    def order_progress(self, tracked: TrackedOrder) -> None:
        """Write the order's status, seq and applied fills as they are at the end of the unit."""
        self._progress[tracked.order.client_order_id] = tracked

    def save_control(self, account_id: str, control: AccountControl, clock: int) -> None:
        self._controls[account_id] = (control, clock)

    def publish(self, trace_context: Span | Context | str | None, topic: TopicSpec | str, key: str,
                message: Message, payload: bytes | None = None) -> None:
        """Queue ``message`` for the outbox with the trace headers of ``trace_context``: a span (the
        decision's: its W3C ``traceparent`` written directly, the hot path), a context, a ``traceparent`` passed on
        as it came (tracing off), or None (no trace)."""
        self._messages.append(OutboxRow.of(topic, key, message, trace_headers(trace_context), payload))

    @property
    def has_messages(self) -> bool:
        return bool(self._messages)

    async def flush(self) -> None:
        """Write what the unit buffered in one statement: every row of every table as one JSON
        document (msgspec encodes it in one call; the server unpacks it), instead of a statement
        per table with a binary array per column, which cost psycopg more than the decisions."""
        if not (self._decisions or self._new_orders or self._amendments or self._progress or self._controls
                or self._messages):
            return
        progress = [(t.order.client_order_id, t.status, t.seq, t.filled_quantity, t.applied_quantity,
                     t.applied_notional, encode(t.order)) for t in self._progress.values()]
        # The statement's parts all see the tables as they were before it: an order created by this
        # unit and progressed in it too (not a path the service takes today) is updated by a second one.
        created = {row[0] for row in self._new_orders}
        later = [row for row in progress if row[0] in created]
        unit = {"decisions": self._decisions, "orders": self._new_orders, "amendments": self._amendments,
                "progress": [row for row in progress if row[0] not in created] if later else progress,
                "controls": [(account_id, c.kill_switch, c.kill_switch_reason, c.kill_switch_auto, _breaches(c), c.day,
                              c.day_start_equity, c.equity_peak, clock, c.reconciliation, c.reconciliation_message)
                             for account_id, (c, clock) in self._controls.items()],
                "outbox": [Outbox.json_row(row) for row in self._messages]}
        await self.conn.execute(self._flush_statement, (_JSON.encode(unit).decode(),))
        if later:
            await self.conn.execute(self._flush_statement, (_JSON.encode({**_EMPTY_UNIT, "progress": later}).decode(),))

    def new_versions(self) -> dict[str, int]:
        """The version each account row saved by this unit has once it commits."""
        return {account_id: self.versions.get(account_id, 0) + 1 for account_id in self._controls}


def trace_headers(trace_context: Span | Context | str | None) -> Mapping[str, str]:
    """The W3C trace headers an outbox row carries for ``trace_context``.

    For a span this is what the TraceContext propagator writes (``traceparent``, and
    ``tracestate`` when there is one), formatted here: the propagator's round through a
    Context cost about as much as the decision itself. A string is a ``traceparent`` passed on
    as it came (no span of risk's own: tracing off).
    """
    if trace_context is None:
        return _NO_TRACE
    if isinstance(trace_context, str):
        return {"traceparent": trace_context}
    if isinstance(trace_context, Span):
        span_context = trace_context.get_span_context()
        if not span_context.is_valid:
            return _NO_TRACE
        headers = {"traceparent": f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
                                  f"{span_context.trace_flags:02x}"}
        if span_context.trace_state:
            headers["tracestate"] = span_context.trace_state.to_header()
        return headers
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace_context)
    return carrier


def stored_message(decision: StoredDecision, approved_type: type[Message] = Order) -> Order | Message:
    """The message a stored decision published (its Order, or an amendment's OrderAmendment, or the
    RiskEvent of its rejection)."""
    return decode(approved_type if decision.outcome == "approved" else RiskEvent, decision.payload)

