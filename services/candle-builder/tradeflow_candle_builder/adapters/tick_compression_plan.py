"""Compression of raw ticks where the license has it (mode ``timescaledb``).

Ticks are the biggest table (every trade) but after a few days they are only read to rebuild
a 1m candle for a very late trade. TimescaleDB's native compression stores older chunks in
columnar form, segmented by instrument and ordered by time, which is what such reads filter
on. It needs the Timescale license (see docs/adr/0003): in ``timescaledb-apache`` and
``postgres`` there is nothing to do, and the plan says so (the caller reports it once).

* ``ALTER TABLE ticks SET (timescaledb.compress, ...)`` when compression is not enabled yet
  (running it again on a hypertable with compressed chunks would fail). ``trade_id`` joins
  ``ts`` in the order: the unique key (exchange, symbol, ts, trade_id) can only be enforced
  on compressed chunks when each of its columns is a segmentby or orderby column.
* A compression policy (the TimescaleDB scheduler compresses chunks older than N days in the
  background), replaced when the configured age changed, removed when compression is turned
  off (0 days; chunks already compressed stay so).

The decision is :func:`plan_tick_compression` (pure, unit-tested); :func:`apply_tick_compression`
runs it in one transaction under an advisory lock, so replicas starting together take turns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import psycopg
    from tradeflow_db.capabilities import DatabaseCapabilities

CompressionMethod = Literal["policy", "disabled", "unavailable"]

# Transaction-level advisory lock key while the plan is applied; spells "tfcompr".
TICK_COMPRESSION_LOCK_KEY = int.from_bytes(b"tfcompr", "big")
SEGMENT_BY = "exchange, symbol"
ORDER_BY = "ts, trade_id"

_EXISTING_POLICY = (
    "SELECT 1 FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression' "
    "AND hypertable_schema = current_schema() AND hypertable_name = 'ticks'"
)


@dataclass(frozen=True)
class CompressionPlan:
    """What to run against ``ticks`` to compress chunks older than ``days`` days."""

    method: CompressionMethod
    days: int
    statements: tuple[str, ...]  # run in order, in one transaction
    reason: str = ""  # why nothing is done (method "unavailable")


def plan_tick_compression(capabilities: DatabaseCapabilities, days: int) -> CompressionPlan:
    """The statements that compress ticks older than ``days`` days (0: compression off)."""
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise ValueError(f"tick compression age must be a whole number of days >= 0, got {days!r}")
    if not (capabilities.mode == "timescaledb" and capabilities.compression and capabilities.policies):
        return CompressionPlan("unavailable", days, (), reason=(
            f"tick compression is unavailable in storage mode {capabilities.mode!r}: it needs TimescaleDB "
            "under the Timescale license (compression and background policies); ticks stay uncompressed"))
    if days == 0:
        return CompressionPlan("disabled", 0, (
            f"SELECT remove_compression_policy('ticks', if_exists => true) WHERE EXISTS ({_EXISTING_POLICY})",))
    age = f"INTERVAL '{days} days'"
    return CompressionPlan("policy", days, (
        "DO $$ BEGIN "
        "IF NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_schema = current_schema() "
        "AND hypertable_name = 'ticks' AND compression_enabled) THEN "
        f"ALTER TABLE ticks SET (timescaledb.compress, timescaledb.compress_segmentby = '{SEGMENT_BY}', "
        f"timescaledb.compress_orderby = '{ORDER_BY}'); "
        "END IF; END $$",
        # add_compression_policy(if_not_exists) keeps an existing policy with another age:
        # remove a differing one first so a changed setting applies.
        f"SELECT remove_compression_policy('ticks', if_exists => true) WHERE EXISTS ({_EXISTING_POLICY} "
        f"AND (config->>'compress_after')::interval IS DISTINCT FROM {age})",
        f"SELECT add_compression_policy('ticks', compress_after => {age}, if_not_exists => true)",
    ))


async def apply_tick_compression(conn: psycopg.AsyncConnection, plan: CompressionPlan) -> bool:
    """Carry out ``plan``; False (and no statement sent) when compression is unavailable."""
    if plan.method == "unavailable":
        return False
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (TICK_COMPRESSION_LOCK_KEY,))
        for statement in plan.statements:
            await conn.execute(statement)
    return True
