"""Tick compression setup in every storage mode available here.

The Apache TimescaleDB build and plain PostgreSQL have no compression: the candle-builder's
setup must say so once in the log and change nothing, and ticks keep being written and read.
The licensed build (PGlite + TimescaleDB here) gets compression on ``ticks`` and a policy; a
late trade for a compressed chunk is still stored and its minute rebuilt.
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
    table_mode_url, unique_name, caplog
):
    mode_url = table_mode_url
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


async def test_with_the_license_old_ticks_are_compressed_and_a_late_trade_still_rebuilds_its_minute(
        fresh_licensed_url, unique_name):
    url = fresh_licensed_url
    store = CandleStore(url)
    await store.start()
    try:
        minute = (int(datetime.now(UTC).timestamp()) // 60 - 60 * 24 * 9) * MINUTE_NS  # 9 days old
        ticks = [Tick(exchange=unique_name, symbol="BTC/USDT", trade_id=str(i), price=100.0 + i, amount=1.0,
                      side="buy", ts_event=minute + i * NS, ts_recv=minute + i * NS) for i in range(3)]
        assert await store.write_ticks(ticks) == 3
        setup = TickCompressionSetup(libpq_url(url), days=7)
        await setup.start()
        plan = await setup.wait()
        await setup.stop()
        assert plan is not None and plan.method == "policy"
        assert compression_state(url) == ([(True,)], (1,))
        # What the scheduler's compression job does (PGlite has no scheduler): compress the old chunks.
        with psycopg.connect(url, autocommit=True) as conn:
            [(job_id,)] = conn.execute("SELECT job_id FROM timescaledb_information.jobs "
                                       "WHERE proc_name = 'policy_compression'").fetchall()
            conn.execute("CALL run_job(%s)", (job_id,))
            compressed = conn.execute(
                "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'ticks' "
                "AND is_compressed AND range_end <= now() - INTERVAL '7 days'").fetchone()[0]
        assert compressed >= 1

        late = Tick(exchange=unique_name, symbol="BTC/USDT", trade_id="late", price=50.0, amount=2.0, side="sell",
                    ts_event=minute + 30 * NS, ts_recv=minute + 600 * NS)
        assert await store.write_ticks([late]) == 1
        assert await store.write_ticks([late]) == 0  # the unique key holds on compressed chunks
        [candle] = await store.recompute_candles_1m([(unique_name, "BTC/USDT", minute)])
        assert (candle.open, candle.low, candle.close, candle.trades, candle.volume) == (100.0, 50.0, 50.0, 4, 5.0)
        # Setting it up again (another start) changes nothing.
        assert await TickCompressionSetup(libpq_url(url), days=7).run_once() == plan
        assert compression_state(url) == ([(True,)], (1,))
    finally:
        await store.stop()
