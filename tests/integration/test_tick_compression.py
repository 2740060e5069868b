"""Tick compression setup in the two storage modes that cannot compress (both run here).

The Apache TimescaleDB build and plain PostgreSQL have no compression: the candle-builder's
setup must say so once in the log and change nothing, and ticks keep being written and read.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import psycopg
from tradeflow.messages import Tick
from tradeflow_candle_builder.adapters.candle_store import CandleStore
from tradeflow_candle_builder.tick_compression import TickCompressionSetup
from tradeflow_db.engine import libpq_url

NS = 1_000_000_000
MINUTE_NS = 60 * NS


def compression_state(url: str) -> tuple:
    """What would show compression: settings on ticks, compression jobs, compressed chunks."""
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('timescaledb_information.hypertables')").fetchone()[0] is None:
            return ("no timescaledb",)
        enabled = conn.execute("SELECT compression_enabled FROM timescaledb_information.hypertables "
                               "WHERE hypertable_name = 'ticks'").fetchall()
        jobs = conn.execute("SELECT count(*) FROM timescaledb_information.jobs "
                            "WHERE proc_name = 'policy_compression'").fetchone()
        return enabled, jobs


async def test_without_the_license_compression_is_reported_unavailable_once_and_nothing_changes(
    mode_url, unique_name, caplog
):
    before = compression_state(mode_url)
    with psycopg.connect(mode_url) as conn:
        mode = conn.execute("SELECT storage_mode FROM tradeflow_schema_info").fetchone()[0]
    setup = TickCompressionSetup(libpq_url(mode_url), days=7)
    with caplog.at_level(logging.INFO, logger="tradeflow_candle_builder.tick_compression"):
        await setup.start()
        plan = await setup.wait()
        await setup.stop()
    assert plan is not None and plan.method == "unavailable" and plan.statements == ()
    reports = [r.getMessage() for r in caplog.records if r.name == "tradeflow_candle_builder.tick_compression"]
    assert reports == [f"tick compression is unavailable in storage mode {mode!r}: it needs TimescaleDB under "
                       "the Timescale license (compression and background policies); ticks stay uncompressed"]
    assert compression_state(mode_url) == before
    if before != ("no timescaledb",):
        assert before[0] == [(False,)] and before[1] == (0,)

    # Ticks are written and read as before (a late trade's minute is rebuilt from them).
    store = CandleStore(mode_url)
    await store.start()
    try:
        minute = (int(datetime.now(UTC).timestamp()) // 60 - 60 * 24 * 8) * MINUTE_NS  # 8 days old
        ticks = [Tick(exchange=unique_name, symbol="BTC/USDT", trade_id=str(i), price=100.0 + i, amount=1.0,
                      side="buy", ts_event=minute + i * NS, ts_recv=minute + i * NS) for i in range(3)]
        assert await store.write_ticks(ticks) == 3
        [candle] = await store.recompute_candles_1m([(unique_name, "BTC/USDT", minute)])
        assert (candle.open, candle.close, candle.trades) == (100.0, 102.0, 3)
    finally:
        await store.stop()
