"""The transactional outbox: a message is stored in the same transaction as the change it announces.

The trading services change state and announce it (risk stores a decision and publishes the
order; execution stores a fill and publishes it). Publishing after the commit loses the
message when the process dies in between; publishing before it announces what may never be
stored. So the message is written to the service's outbox table inside the state change's
transaction (:meth:`Outbox.put`), and the :class:`OutboxRelay` component publishes committed
rows in order and deletes them once the broker acknowledged them. A crash between the send and
the delete sends a row again: consumers dedupe by the message's own id (signal id, client order
id, fill id, event id), which is how the trading path turns at-least-once into exactly-once.

One relay works per outbox at a time (a PostgreSQL advisory lock), so rows go out in the order
they were committed, and per key in the order they were written. ``put`` also sends a
``NOTIFY`` (delivered at commit) that wakes the relay at once; without one it polls.
The stored row keeps the W3C ``traceparent`` of the span that wrote it, so the trace continues
through the outbox.

The table is the owning service's (its migration creates it with :func:`outbox_table_ddl`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import msgspec
import psycopg
from opentelemetry import propagate
from opentelemetry.context import Context
from psycopg import pq, sql
from tradeflow.bus.trace_context import current_trace_headers
from tradeflow.codec import CONTENT_TYPE, HEADER_CONTENT_TYPE, HEADER_SCHEMA, encode
from tradeflow.messages import Message
from tradeflow.telemetry import Telemetry
from tradeflow.topics import TopicSpec

from tradeflow_db.database import Database

log = logging.getLogger(__name__)

RELAY_BATCH = 1000
POLL_INTERVAL_S = 1.0
RETRY_DELAY_S = 1.0


def outbox_table_ddl(table: str) -> str:
    """The CREATE TABLE of an outbox (for the owning service's migration)."""
    return f"""
    CREATE TABLE {table} (
        id bigserial PRIMARY KEY,
        topic text NOT NULL,
        key text,
        schema text NOT NULL,
        payload bytea NOT NULL,
        headers jsonb NOT NULL DEFAULT '{{}}'::jsonb,
        created_at timestamptz NOT NULL DEFAULT now()
    )
    """


def _trace_headers(context: Context) -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    return carrier


def _quoted(identifier: str) -> str:
    """An SQL identifier quoted as PostgreSQL quotes it (what ``sql.Identifier`` renders).

    The statements are composed once, as text: a ``sql.Composed`` is rendered again on every
    execution, a cost paid per decision batch and per relay round on the trading path.
    """
    return '"' + identifier.replace('"', '""') + '"'


def _lock_key(table: str) -> int:
    """A stable advisory-lock key per outbox table (signed 64-bit, as PostgreSQL wants)."""
    return int.from_bytes(hashlib.sha256(f"outbox:{table}".encode()).digest()[:8], "big", signed=True)


class Outbox:
    """Writes messages into an outbox table on the caller's connection (inside its transaction)."""

    def __init__(self, table: str) -> None:
        self.table = table
        # A binary COPY: no statement per row; ids are taken in the order the rows are written.
        name = _quoted(table)
        self._copy = f"COPY {name} (topic, key, schema, payload, headers) FROM STDIN (FORMAT BINARY)"
        # COPY cannot run in pipeline mode: there, one statement for all rows, ordered by the arrays'
        # positions so the ids (the publishing order) follow the order of the items.
        self._insert = (
            f"INSERT INTO {name} (topic, key, schema, payload, headers) "
            "SELECT topic, key, schema, payload, headers::jsonb FROM unnest("
            "%b::text[], %b::text[], %b::text[], %b::bytea[], %b::text[]) "
            "WITH ORDINALITY AS row(topic, key, schema, payload, headers, position) ORDER BY position")
        # The NOTIFY names this writer, so a relay that its own writer wakes directly (``wake``) can
        # skip the NOTIFY of the same commit: a second round for nothing, per commit.
        self.writer_id = uuid.uuid4().hex
        self._notify = f"NOTIFY {name}, '{self.writer_id}'"

    async def put(self, conn: psycopg.AsyncConnection, topic: TopicSpec | str, key: str | None,
                  message: Message) -> None:
        await self.put_many(conn, [(topic, key, message)])

    async def put_many(self, conn: psycopg.AsyncConnection,
                       items: Iterable[tuple[TopicSpec | str, str | None, Message]], *,
                       contexts: Sequence[Context | None] | None = None) -> None:
        """Store every (topic, key, message) in order; they are published after the commit.

        Each row carries the trace headers of the current span, or, with ``contexts`` (one per
        item, None for the current span), of its own context: a batch of decisions written at
        once still continues each one's trace.
        """
        items = list(items)
        current = {name: value.decode() for name, value in current_trace_headers()}
        traces = [current if context is None else _trace_headers(context)
                  for context in (contexts if contexts is not None else [None] * len(items))]
        await self.put_traced(conn, ((topic, key, message, trace)
                                     for (topic, key, message), trace in zip(items, traces, strict=True)))

    async def put_traced(self, conn: psycopg.AsyncConnection,
                         items: Iterable[tuple[TopicSpec | str, str | None, Message, Mapping[str, str]]]) -> None:
        """Like :meth:`put_many`, each message with its own W3C trace headers (``traceparent``,
        ``tracestate``): for a batch whose messages continue different traces."""
        await self.put_rows(conn, [OutboxRow.of(topic, key, message, trace) for topic, key, message, trace in items])

    async def put_rows(self, conn: psycopg.AsyncConnection, rows: Sequence[OutboxRow]) -> None:
        """Store rows already encoded (a caller that stores the same payload elsewhere encodes it once)."""
        if not rows:
            return
        if conn.pgconn.pipeline_status != pq.PipelineStatus.OFF:
            # The headers go as JSON text, cast by the server: a jsonb array element is dumped one by
            # one in Python, and most rows share the empty object.
            await conn.execute(self._insert, (
                [r.topic for r in rows], [r.key for r in rows], [r.schema for r in rows], [r.payload for r in rows],
                [_headers_json(r.headers) for r in rows]))
        else:
            async with conn.cursor() as cursor, cursor.copy(self._copy) as copy:
                copy.set_types(["text", "text", "text", "bytea", "jsonb"])
                for r in rows:
                    await copy.write_row((r.topic, r.key, r.schema, r.payload, psycopg.types.json.Jsonb(dict(r.headers))))
        await conn.execute(self._notify)

    # --- rows inside a caller's own statement --------------------------------------------------

    def insert_from_json(self, rows_json: str) -> str:
        """The ``INSERT`` of rows given as a JSON array of :meth:`json_row` entries, for a writer that
        folds its outbox rows into one statement with its other writes (a data-modifying ``WITH``):
        ``rows_json`` is the SQL expression of that array (a ``jsonb``). Ids follow the array's order."""
        return (f"INSERT INTO {_quoted(self.table)} (topic, key, schema, payload, headers) "
                f"SELECT e->>0, e->>1, e->>2, decode(e->>3, 'base64'), e->4 "
                f"FROM jsonb_array_elements({rows_json}) WITH ORDINALITY AS r(e, position) ORDER BY position")

    @staticmethod
    def json_row(row: OutboxRow) -> tuple:
        """``row`` as an entry of :meth:`insert_from_json`'s array (msgspec writes bytes as base64)."""
        return (row.topic, row.key, row.schema, row.payload, row.headers)

    def notify_call(self) -> str:
        """The SQL call that wakes the relay at commit, as :meth:`put_rows`'s ``NOTIFY`` does (for a
        statement that wrote rows through :meth:`insert_from_json`)."""
        channel = self.table.replace("'", "''")  # a string literal here, not an identifier
        return f"pg_notify('{channel}', '{self.writer_id}')"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One message as its outbox row stores it."""

    topic: str
    key: str | None
    schema: str
    payload: bytes
    headers: Mapping[str, str]

    @classmethod
    def of(cls, topic: TopicSpec | str, key: str | None, message: Message, headers: Mapping[str, str],
           payload: bytes | None = None) -> OutboxRow:
        """``message``'s row; ``payload`` when it is encoded already."""
        return cls(topic.name if isinstance(topic, TopicSpec) else topic, key, type(message).SCHEMA,
                   payload if payload is not None else encode(message), headers)


_EMPTY_JSON = "{}"


def _headers_json(headers: Mapping[str, str]) -> str:
    return msgspec.json.encode(dict(headers)).decode() if headers else _EMPTY_JSON


class OutboxRelay:
    """A service Component: publishes an outbox's committed rows in order, then deletes them."""

    def __init__(self, database: Database, outbox: Outbox, producer, telemetry: Telemetry, *,
                 batch: int = RELAY_BATCH, poll_interval_s: float = POLL_INTERVAL_S,
                 woken_by_local_commits: bool = False) -> None:
        """``woken_by_local_commits``: the writer of ``outbox`` in this process calls :meth:`wake`
        after every commit that wrote rows, so the relay ignores that writer's NOTIFYs (other
        replicas' still wake it)."""
        self._database = database
        self._outbox = outbox
        self._ignored_notifier = outbox.writer_id if woken_by_local_commits else None
        self._producer = producer
        self._batch = batch
        self._poll_interval_s = poll_interval_s
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self._empty = asyncio.Event()
        self._wakeup = asyncio.Event()
        name = _quoted(outbox.table)
        # One statement, one round trip: delete the rows the broker acknowledged in the previous round
        # (exactly those ids: a row with a smaller id may commit between a SELECT and its DELETE) and
        # read the next rows. The SELECT sees the table as it was before the DELETE of the same
        # statement, hence the filter.
        self._delete_and_select = (
            f"WITH sent AS (DELETE FROM {name} WHERE id = ANY(%(sent)s)) "
            f"SELECT id, topic, key, schema, payload, headers FROM {name} WHERE NOT (id = ANY(%(sent)s)) "
            "ORDER BY id LIMIT %(limit)s")
        self._delete = f"DELETE FROM {name} WHERE id = ANY(%s)"
        self._sent: list[int] = []  # acknowledged by the broker, deleted by the next round
        self._is_empty = f"SELECT NOT EXISTS (SELECT 1 FROM {name})"
        self._published = telemetry.counter(
            "tradeflow_outbox_published_total", "Outbox messages published and removed", ("outbox",)
        ).labels(outbox.table)
        self._failures = telemetry.counter(
            "tradeflow_outbox_failures_total", "Outbox relay rounds that failed (retried)", ("outbox",)
        ).labels(outbox.table)
        self.name = f"outbox-relay:{outbox.table}"

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Publish what is committed (bounded by the caller's shutdown deadline), then stop."""
        self._stopping.set()
        self._wakeup.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def wake(self) -> None:
        """Look at the outbox now (after a local commit; the NOTIFY does the same across replicas)."""
        self._wakeup.set()

    async def drained(self, timeout_s: float = 10.0) -> bool:
        """Wait until a relay round found the outbox empty (tests, shutdown)."""
        self._empty.clear()
        self._wakeup.set()
        try:
            await asyncio.wait_for(self._empty.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                async with self._database.connection() as lock_conn:
                    await self._relay_while_holding_the_lock(lock_conn)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - database or broker away: retry, rows stay stored
                self._failures.inc()
                log.exception("%s: relay round failed; retrying in %.1fs", self.name, RETRY_DELAY_S)
                await self._sleep(RETRY_DELAY_S)

    async def _relay_while_holding_the_lock(self, lock_conn: psycopg.AsyncConnection) -> None:
        key = _lock_key(self._outbox.table)
        got = (await (await lock_conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))).fetchone())[0]
        if not got:  # another replica relays this outbox; look again later
            if (await (await lock_conn.execute(self._is_empty)).fetchone())[0]:
                self._empty.set()
            await self._sleep(self._poll_interval_s)
            return
        try:
            await lock_conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._outbox.table)))
            listener = asyncio.create_task(self._listen(lock_conn))
            try:
                while True:
                    # Cleared before looking, not after: a NOTIFY that lands while a round runs
                    # must wake the next one (clearing it after the round lost it until the poll).
                    self._wakeup.clear()
                    sent = await self._relay_batch()
                    if sent:
                        if sent < self._batch and not self._stopping.is_set():
                            # The read took every committed row and nothing woke the relay since: the
                            # next round (a wake-up or the poll) deletes these rows with its read, so a
                            # quiet outbox costs one statement per round, not an extra empty one.
                            await self._wait_for_wakeup(self._poll_interval_s)
                        continue
                    self._empty.set()
                    if self._stopping.is_set():
                        return
                    await self._wait_for_wakeup(self._poll_interval_s)
            finally:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)
        finally:
            if self._sent:  # before another relay may take over: what was acknowledged is not sent twice
                try:
                    await lock_conn.execute(self._delete, (self._sent,))
                    self._sent = []
                except psycopg.Error:
                    log.warning("%s: deleting %d published rows failed; the next round deletes them",
                                self.name, len(self._sent))
            await lock_conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
            await lock_conn.execute(sql.SQL("UNLISTEN {}").format(sql.Identifier(self._outbox.table)))

    async def _listen(self, conn: psycopg.AsyncConnection) -> None:
        async for notify in conn.notifies():
            if notify.payload != self._ignored_notifier:
                self._wakeup.set()

    async def _relay_batch(self) -> int:
        """Delete what the previous round published, read the next rows, publish them; how many.

        The delete of a round's rows is deferred to the next round's statement (a round that
        published something is always followed by another, at once when the batch was full, else
        at the next wake-up or poll; the lock's release deletes what is left), so publishing costs
        one round trip to the database instead of two.
        """
        async with self._database.connection() as conn:
            rows = await (await conn.execute(
                self._delete_and_select, {"sent": self._sent, "limit": self._batch})).fetchall()
        self._sent = []
        if not rows:
            return 0
        acks = [
            self._producer.send_raw(topic, key.encode() if key is not None else None, bytes(payload),
                                    [(HEADER_CONTENT_TYPE, CONTENT_TYPE.encode()), (HEADER_SCHEMA, schema.encode()),
                                     *((name, value.encode()) for name, value in headers.items())])
            for _, topic, key, schema, payload, headers in rows
        ]
        await asyncio.gather(*acks)  # a failure leaves every row of the batch stored: sent again
        self._sent = [row[0] for row in rows]
        self._published.inc(len(rows))
        return len(rows)

    async def _sleep(self, seconds: float) -> None:
        self._wakeup.clear()
        await self._wait_for_wakeup(seconds)

    async def _wait_for_wakeup(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wakeup.wait(), seconds)
        except TimeoutError:
            pass
