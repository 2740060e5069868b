"""Retention of raw ticks: how old trades leave the database in each storage mode.

Ticks are only needed to rebuild recent 1m candles (late trades, restarts); candles are kept
forever. What "drop ticks older than N days" means depends on the mode (see docs/adr/0003):

* ``timescaledb`` (Timescale license): a retention policy on the ``ticks`` hypertable; the
  TimescaleDB scheduler drops whole chunks in the background. Applying the plan only makes
  sure the policy exists with the configured age (it is replaced when the age changed); the
  outcome says whether it added or replaced one. Whether the scheduler's runs succeed is
  TimescaleDB's job statistics (see tradeflow_db.jobs).
* ``timescaledb-apache``: no background policies, but ``drop_chunks`` is Apache-licensed, so
  each run drops the chunks (1 day each) that lie entirely before the cutoff.
* ``postgres``: batched ``DELETE`` (short transactions, so writers are never blocked long).

The decision is :func:`plan_tick_retention` (pure, unit-tested); :func:`apply_tick_retention`
carries it out under a PostgreSQL advisory lock so only one replica works at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import psycopg
    from tradeflow_db.capabilities import DatabaseCapabilities

RetentionMethod = Literal["policy", "drop_chunks", "delete"]

# Session-level advisory lock key (per database) held while one replica applies retention.
# Any fixed int8 works; this one spells "tfticks" so it is recognisable in pg_locks.
TICK_RETENTION_LOCK_KEY = int.from_bytes(b"tfticks", "big")
DELETE_BATCH_ROWS = 10_000


@dataclass(frozen=True)
class RetentionPlan:
    """What to run against ``ticks`` to keep ``days`` days of trades."""

    method: RetentionMethod
    days: int
    # Run in order, in one transaction (policy, drop_chunks), or repeated until fewer than
    # ``batch_rows`` rows were deleted (delete; its one parameter is the cutoff).
    statements: tuple[str, ...]
    batch_rows: int = DELETE_BATCH_ROWS


@dataclass(frozen=True)
class RetentionOutcome:
    """What one run did: dropped chunk names (drop_chunks), deleted rows (delete), or whether
    the retention policy was added or replaced (policy)."""

    method: RetentionMethod
    dropped_chunks: tuple[str, ...] = ()
    deleted_rows: int = 0
    policy_changed: bool = False

    @property
    def changed_anything(self) -> bool:
        return bool(self.dropped_chunks or self.deleted_rows or self.policy_changed)


def plan_tick_retention(capabilities: DatabaseCapabilities, days: int) -> RetentionPlan:
    """The statements that keep ``days`` days of ticks in a database with ``capabilities``."""
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"tick retention must be a whole number of days >= 1, got {days!r}")
    age = f"INTERVAL '{days} days'"
    if capabilities.mode == "timescaledb" and capabilities.policies:
        # add_retention_policy(if_not_exists) keeps an existing policy as it is, even with a
        # different age: remove a policy whose age differs first, so a changed setting applies.
        return RetentionPlan("policy", days, (
            "SELECT remove_retention_policy('ticks', if_exists => true) WHERE EXISTS ("
            "SELECT 1 FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention' "
            "AND hypertable_schema = current_schema() AND hypertable_name = 'ticks' "
            f"AND (config->>'drop_after')::interval IS DISTINCT FROM {age})",
            f"SELECT add_retention_policy('ticks', drop_after => {age}, if_not_exists => true)",
        ))
    if capabilities.hypertables:
        return RetentionPlan("drop_chunks", days, (
            f"SELECT drop_chunks('ticks', older_than => now() - {age})::text",
        ))
    # ctid batches: no index leads with ts, so each batch takes the first old rows the scan
    # meets instead of sorting all of them.
    return RetentionPlan("delete", days, (
        "DELETE FROM ticks WHERE ctid = ANY(ARRAY(SELECT ctid FROM ticks WHERE ts < %s LIMIT "
        f"{DELETE_BATCH_ROWS}))",
    ))


async def apply_tick_retention(conn: psycopg.AsyncConnection, plan: RetentionPlan) -> RetentionOutcome | None:
    """Carry out ``plan`` on an autocommit connection; None when another session holds the lock."""
    if not conn.autocommit:
        raise ValueError("apply_tick_retention needs an autocommit connection (it commits per batch)")
    cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (TICK_RETENTION_LOCK_KEY,))
    row = await cursor.fetchone()
    if not row or not row[0]:
        return None
    try:
        if plan.method == "delete":
            return await _delete_in_batches(conn, plan)
        async with conn.transaction():
            results = [await (await conn.execute(statement)).fetchall() for statement in plan.statements]
        if plan.method == "policy":
            removed, added = results
            # The remove returns a row only when it removed a differing policy; the add returns
            # the new job's id, or -1 when an equal policy was already there.
            return RetentionOutcome("policy", policy_changed=bool(removed) or added != [(-1,)])
        return RetentionOutcome(plan.method, dropped_chunks=tuple(name for (name,) in results[0]))
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (TICK_RETENTION_LOCK_KEY,))


async def _delete_in_batches(conn: psycopg.AsyncConnection, plan: RetentionPlan) -> RetentionOutcome:
    # One cutoff for the whole run, so the batches agree on what is old.
    cursor = await conn.execute(f"SELECT now() - INTERVAL '{plan.days} days'")
    (cutoff,) = await cursor.fetchone()
    deleted = 0
    while True:
        cursor = await conn.execute(plan.statements[0], (cutoff,))
        deleted += cursor.rowcount
        if cursor.rowcount < plan.batch_rows:
            return RetentionOutcome("delete", deleted_rows=deleted)
