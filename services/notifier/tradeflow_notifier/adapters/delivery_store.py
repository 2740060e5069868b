"""Deliveries, the inbox of seen events and the alert groups (psycopg, one pool).

Every write that takes an event in happens on the caller's connection inside the caller's
transaction (the intake commits inbox, facts, groups and deliveries together). The dispatcher's
statements are single round trips over whole batches. Batches go as arrays in binary format
(``%b``: psycopg quotes text arrays element by element with a regular expression, which was the
notifier's largest cost at 1,000 deliveries/s):

- :meth:`claim` leases the due deliveries of each channel, at most that channel's capacity,
  oldest first (``FOR UPDATE SKIP LOCKED``: replicas never claim the same row; a lease that
  runs out, e.g. of a killed replica, makes the row claimable again).
- :meth:`record` writes a batch of outcomes, and puts the alerts about deliveries that failed
  for good into the outbox in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import msgspec
import psycopg
from tradeflow.codec import encode
from tradeflow.messages import Alert
from tradeflow_db import Database
from tradeflow_db.outbox import Outbox

from tradeflow_notifier.domain.grouping import AlertGroup
from tradeflow_notifier.domain.planning import PlannedDelivery

DeliveryStatus = Literal["pending", "delivered", "failed"]
STATUSES: tuple[str, ...] = ("pending", "delivered", "failed")
_ALERT_DECODER = msgspec.msgpack.Decoder(Alert)
_CLAIMED_COLUMNS = ("d.id::text, d.event_id, d.event_kind, d.event_type, d.channel_id, d.title, d.body, d.ts_event, "
                    "d.traceparent, d.alert_on_failure, d.attempts, d.created_at")


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: str
    event_id: str
    event_kind: str
    event_type: str
    channel_id: str
    title: str
    body: str
    ts_event: int
    traceparent: str | None
    alert_on_failure: bool
    attempts: int  # attempts made before this one
    created_at: datetime


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What becomes of a claimed delivery: delivered, failed, or pending again after ``delay_s``.

    ``attempted`` is False for a delivery put back without being sent (its channel paused).
    """

    delivery_id: str
    status: DeliveryStatus
    attempted: bool
    delay_s: float = 0.0
    error: str | None = None
    alert: Alert | None = None


class DeliveryStore:
    def __init__(self, database: Database, outbox: Outbox, alerts_topic: str, alert_key: str) -> None:
        self._database = database
        self._outbox = outbox
        self._alerts_topic = alerts_topic
        self._alert_key = alert_key

    # --- intake (caller's transaction) --------------------------------------------------------

    @staticmethod
    async def take_new(conn: psycopg.AsyncConnection, events: Sequence[tuple[str, str]]) -> set[str]:
        """Record (event id, kind) pairs as seen; the ids that were not seen before."""
        if not events:
            return set()
        rows = await (await conn.execute(
            "INSERT INTO notifier_events (event_id, kind) SELECT * FROM unnest(%b::text[], %b::text[]) "
            "ON CONFLICT DO NOTHING RETURNING event_id",
            ([e[0] for e in events], [e[1] for e in events]))).fetchall()
        return {row[0] for row in rows}

    @staticmethod
    async def insert(conn: psycopg.AsyncConnection, deliveries: Sequence[PlannedDelivery]) -> int:
        """Store planned deliveries as pending (a delivery that exists is left as it is)."""
        if not deliveries:
            return 0
        columns = list(zip(*((d.delivery_id, d.event_id, d.event_kind, d.event_type, d.channel_id, d.title, d.body,
                               d.ts_event, d.traceparent, d.alert_on_failure) for d in deliveries), strict=True))
        cursor = await conn.execute(
            "INSERT INTO notifier_deliveries (id, event_id, event_kind, event_type, channel_id, title, body, ts_event, "
            "traceparent, alert_on_failure) SELECT * FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::text[], "
            "%b::text[], %b::text[], %b::text[], %b::bigint[], %b::text[], %b::boolean[]) "
            "ON CONFLICT (event_id, channel_id) DO NOTHING",
            [list(column) for column in columns])
        return cursor.rowcount

    @staticmethod
    async def lock_groups(conn: psycopg.AsyncConnection, keys: Iterable[str]) -> dict[str, AlertGroup]:
        rows = await (await conn.execute(
            "SELECT group_key, window_start, window_end, suppressed, last_alert, summarized "
            "FROM notifier_alert_groups WHERE group_key = ANY(%s) FOR UPDATE", (sorted(set(keys)),))).fetchall()
        return {row[0]: _group(row) for row in rows}

    @staticmethod
    async def due_groups(conn: psycopg.AsyncConnection, now_ns: int, limit: int = 500) -> list[AlertGroup]:
        rows = await (await conn.execute(
            "SELECT group_key, window_start, window_end, suppressed, last_alert, summarized "
            "FROM notifier_alert_groups WHERE suppressed > 0 AND NOT summarized AND window_end <= %s "
            "ORDER BY window_end LIMIT %s FOR UPDATE SKIP LOCKED", (now_ns, limit))).fetchall()
        return [_group(row) for row in rows]

    @staticmethod
    async def save_groups(conn: psycopg.AsyncConnection, groups: Iterable[AlertGroup]) -> None:
        rows = [(g.key, g.window_start, g.window_end, g.suppressed, encode(g.last), g.summarized) for g in groups]
        if not rows:
            return
        async with conn.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO notifier_alert_groups (group_key, window_start, window_end, suppressed, last_alert, "
                "summarized) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (group_key) DO UPDATE SET "
                "window_start = excluded.window_start, window_end = excluded.window_end, "
                "suppressed = excluded.suppressed, last_alert = excluded.last_alert, summarized = excluded.summarized",
                rows)

    # --- dispatch -----------------------------------------------------------------------------

    async def claim(self, capacity: Mapping[str, int], lease_s: float) -> list[ClaimedDelivery]:
        """Lease up to ``capacity[channel]`` due deliveries per channel, oldest first."""
        wanted = [(channel, cap) for channel, cap in capacity.items() if cap > 0]
        if not wanted:
            return []
        async with self._database.connection() as conn:
            rows = await (await conn.execute(
                f"UPDATE notifier_deliveries d SET lease_until = now() + make_interval(secs => %s) "
                f"FROM (SELECT picked.id FROM unnest(%b::text[], %b::int[]) AS c(channel_id, cap) "
                f"      CROSS JOIN LATERAL (SELECT p.id FROM notifier_deliveries p "
                f"          WHERE p.channel_id = c.channel_id AND p.status = 'pending' AND p.next_attempt_at <= now() "
                f"            AND (p.lease_until IS NULL OR p.lease_until < now()) "
                f"          ORDER BY p.next_attempt_at, p.seq LIMIT c.cap FOR UPDATE SKIP LOCKED) picked) chosen "
                f"WHERE d.id = chosen.id RETURNING {_CLAIMED_COLUMNS}",
                (lease_s, [w[0] for w in wanted], [w[1] for w in wanted]))).fetchall()
        claimed = [ClaimedDelivery(*row) for row in rows]
        claimed.sort(key=lambda d: (d.channel_id, d.created_at))
        return claimed

    async def record(self, outcomes: Sequence[DeliveryOutcome]) -> None:
        """Write outcomes (and the outbox alerts of failed deliveries) in one transaction."""
        if not outcomes:
            return
        async with self._database.transaction() as conn:
            await conn.execute(
                "UPDATE notifier_deliveries d SET status = v.status, attempts = d.attempts + v.attempted::int, "
                "next_attempt_at = now() + make_interval(secs => v.delay), "
                "last_error = COALESCE(v.error, d.last_error), lease_until = NULL, "
                "delivered_at = CASE WHEN v.status = 'delivered' THEN now() ELSE d.delivered_at END, "
                "updated_at = now() "
                "FROM unnest(%b::uuid[], %b::text[], %b::boolean[], %b::float8[], %b::text[]) "
                "AS v(id, status, attempted, delay, error) WHERE d.id = v.id AND d.status = 'pending'",
                ([o.delivery_id for o in outcomes], [o.status for o in outcomes], [o.attempted for o in outcomes],
                 [o.delay_s for o in outcomes], [o.error for o in outcomes]))
            alerts = [(self._alerts_topic, self._alert_key, o.alert) for o in outcomes if o.alert is not None]
            if alerts:
                await self._outbox.put_many(conn, alerts)

    async def release(self, delivery_ids: Sequence[str]) -> None:
        """Give leased deliveries back unsent (at shutdown), so they are claimable at once."""
        if delivery_ids:
            async with self._database.connection() as conn:
                await conn.execute("UPDATE notifier_deliveries SET lease_until = NULL WHERE id = ANY(%b::uuid[]) "
                                   "AND status = 'pending'", (list(delivery_ids),))

    # --- reading and upkeep -------------------------------------------------------------------

    async def list(self, status: str | None, channel_id: str | None, limit: int) -> list[dict]:
        async with self._database.connection() as conn:
            cursor = conn.cursor(row_factory=psycopg.rows.dict_row)
            await cursor.execute(
                "SELECT id::text AS id, event_id, event_kind, event_type, channel_id, status, attempts, last_error, "
                "created_at, updated_at, next_attempt_at, delivered_at FROM notifier_deliveries "
                "WHERE (%(status)s::text IS NULL OR status = %(status)s) "
                "AND (%(channel)s::text IS NULL OR channel_id = %(channel)s) ORDER BY seq DESC LIMIT %(limit)s",
                {"status": status, "channel": channel_id, "limit": limit})
            return await cursor.fetchall()

    async def pending_by_channel(self) -> dict[str, int]:
        async with self._database.connection() as conn:
            rows = await (await conn.execute(
                "SELECT channel_id, count(*) FROM notifier_deliveries WHERE status = 'pending' "
                "GROUP BY channel_id")).fetchall()
        return dict(rows)

    async def fail_orphans(self, known_channels: Sequence[str], older_than_s: float) -> int:
        """Fail pending deliveries of channels nobody knows any more (removed from the configuration)."""
        async with self._database.connection() as conn:
            cursor = await conn.execute(
                "UPDATE notifier_deliveries SET status = 'failed', lease_until = NULL, updated_at = now(), "
                "last_error = 'channel ' || channel_id || ' no longer exists' "
                "WHERE status = 'pending' AND NOT (channel_id = ANY(%s)) "
                "AND created_at < now() - make_interval(secs => %s)", (list(known_channels), older_than_s))
            return cursor.rowcount

    async def purge(self, retention_days: int, now_ns: int) -> int:
        """Drop finished deliveries, seen event ids and closed alert groups older than the retention."""
        async with self._database.connection() as conn:
            removed = 0
            for statement, params in (
                ("DELETE FROM notifier_deliveries WHERE status <> 'pending' "
                 "AND updated_at < now() - make_interval(days => %s)", (retention_days,)),
                ("DELETE FROM notifier_events WHERE received_at < now() - make_interval(days => %s)", (retention_days,)),
                ("DELETE FROM notifier_alert_groups WHERE window_end < %s AND (summarized OR suppressed = 0)",
                 (now_ns - retention_days * 86_400 * 1_000_000_000,)),
            ):
                removed += (await conn.execute(statement, params)).rowcount
        return removed


def _group(row) -> AlertGroup:
    key, start, end, suppressed, last, summarized = row
    return AlertGroup(key, start, end, suppressed, _ALERT_DECODER.decode(bytes(last)), summarized)
