"""The candle-builder across restarts (real broker and database; docs/adr/0005): what it emitted
before stays emitted once, what it had not emitted yet is emitted, and trades it has already
stored change nothing, session-aligned bars included.

The end-to-end replay test (tests/e2e/test_replay_to_candles.py) restarts the process and the
broker; here the service runs in the test process, so the test can wait for its writer to finish
instead of waiting for quiet.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime

import psycopg
import pytest
from tradeflow.bus import Producer
from tradeflow.messages import Tick
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry
from tradeflow.topics import market_key
from tradeflow_candle_builder.settings import CandleBuilderSettings

from tests.candle_oracle import as_values, expected_candles
from tests.e2e.candles_topic import emitted_candles
from tests.integration.candle_builder_app import running_candle_builder, written_through

pytestmark = pytest.mark.integration

S = 1_000_000_000
MINUTE = 60 * S


def ns(moment: datetime) -> int:
    return int(moment.timestamp()) * S


def settings_for(kafka_bootstrap: str, database_url: str, name: str) -> CandleBuilderSettings:
    return CandleBuilderSettings(
        kafka_bootstrap=kafka_bootstrap, database_url=database_url, environment="test", api_keys="restart-test-key",
        ticks_topic=f"ticks-{name}", candles_topic=f"candles-{name}", consumer_group=f"cb-{name}",
        consumer_session_timeout_ms=6000, candle_grace_ms=2000, idle_close_ms=60_000,
        # The trades are months old and late trades are rebuilt from them: keep them all.
        tick_retention_days=36_500)


async def send(settings: CandleBuilderSettings, ticks: list[Tick]) -> None:
    producer_settings = CommonSettings(kafka_bootstrap=settings.kafka_bootstrap)
    producer = Producer(producer_settings, Telemetry("test-feed", producer_settings), client_id="test-feed")
    await producer.start()
    try:
        await producer.send_many(settings.ticks_topic, [(market_key(t.exchange, t.symbol), t) for t in ticks])
    finally:
        await producer.stop()


def trades(exchange: str, symbol: str, first: int, count: int, every_s: int, *, stragglers: bool = False) -> list[Tick]:
    """``count`` trades from ``first`` in arrival order; amounts and prices are quarters, so sums
    are exact in any order. With ``stragglers``, a trade of the previous minute arrives right
    after each minute's first trade (within the grace period)."""
    ticks: list[Tick] = []
    for i in range(count):
        event = first + i * every_s * S
        ticks.append(Tick(exchange=exchange, symbol=symbol, trade_id=f"t{i}", price=100 + (i % 7) / 4,
                          amount=0.25 * (1 + i % 4), side="buy", ts_event=event, ts_recv=event))
        if stragglers and i and event % MINUTE == 0:
            ticks.append(Tick(exchange=exchange, symbol=symbol, trade_id=f"s{i}", price=99.5, amount=0.5,
                              side="sell", ts_event=event - S // 2, ts_recv=event + 1))
    return ticks


async def late_ticks(client) -> float:
    found = re.search(r"^tradeflow_candles_late_ticks_total (\S+)$", (await client.get("/metrics")).text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_a_restarted_candle_builder_emits_every_candle_once_and_a_minute_without_new_trades_too(
        kafka_bootstrap, database_url, unique_name):
    """The first run stops while 10:03 is open with all its trades stored; after the restart it
    gets no new trade, yet it closes and must be emitted (it never was), with the values and
    revision stored. The re-read stragglers of 10:02 (emitted before) must change nothing."""
    settings = settings_for(kafka_bootstrap, database_url, unique_name)
    exchange, symbol = f"rs{unique_name[-8:]}", "BTC/USDT"
    t0 = ns(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
    first_part = trades(exchange, symbol, t0, 48, 5, stragglers=True)  # 10:00:00 .. 10:03:55
    closing = trades(exchange, symbol, t0 + 10 * MINUTE, 1, 1)  # closes 10:03 and 10:00-10:05

    async with running_candle_builder(settings) as (_, pipeline):
        await send(settings, first_part)
        await written_through(pipeline, len(first_part))
    before_restart = await emitted_candles(kafka_bootstrap, {exchange}, topic=settings.candles_topic, idle_s=1)
    assert sorted((c.timeframe, c.ts_start) for c in before_restart) == [
        ("1m", t0), ("1m", t0 + MINUTE), ("1m", t0 + 2 * MINUTE)]

    async with running_candle_builder(settings) as (client, pipeline):
        await send(settings, closing)
        await written_through(pipeline, len(first_part) + len(closing))
        late_after_restart = await late_ticks(client)
    emitted = await emitted_candles(kafka_bootstrap, {exchange}, topic=settings.candles_topic, idle_s=1)

    everything = first_part + closing
    want = {("1m", t0 + m * MINUTE) for m in range(4)} | {("5m", t0)}
    counts = Counter((c.timeframe, c.ts_start) for c in emitted)
    assert counts == Counter(want), "each closed candle exactly once"
    for c in emitted:
        assert as_values(c) == expected_candles(everything, c.timeframe)[(exchange, symbol, c.ts_start)]
        assert c.revision == 0, c  # stored once, never changed
    with psycopg.connect(settings.libpq_url) as conn:
        revisions = conn.execute("SELECT revision FROM candles_1m WHERE exchange = %s", (exchange,)).fetchall()
    assert sorted(revisions) == [(0,)] * 5
    # It did re-read trades of minutes emitted before the restart: they were late, and changed nothing.
    assert late_after_restart >= 1


def _stored(database_url: str, exchange: str) -> dict[tuple, tuple]:
    """Every stored candle of the exchange: 1m rows, UTC relations and session-aligned rows (with revisions)."""
    found: dict[tuple, tuple] = {}
    with psycopg.connect(database_url) as conn:
        for relation in ("candles_1m", "candles_5m", "candles_15m", "candles_1h", "candles_4h", "candles_1d",
                         "candles_1w"):
            revision = ", revision" if relation == "candles_1m" else ""
            for row in conn.execute(f"SELECT symbol, ts, open, high, low, close, volume, trades{revision} "
                                    f"FROM {relation} WHERE exchange = %s", (exchange,)):
                found[(relation, *row[:2])] = row[2:]
        for row in conn.execute("SELECT symbol, timeframe, ts, ts_end, open, high, low, close, volume, trades, "
                                "revision FROM session_candles WHERE exchange = %s", (exchange,)):
            found[("session_candles", *row[:3])] = row[3:]
    return found


async def test_trades_already_stored_change_nothing_after_a_restart_session_bars_included(
        kafka_bootstrap, mode_url, unique_name):
    """A stock on the XNYS calendar (session bars from 14:30 UTC in November) and a 24/7 market.
    The second run reads the same trades from a new topic in a new consumer group (what a
    restarted broker, which keeps nothing, gives): no stored candle may change and nothing may
    be emitted."""
    first = settings_for(kafka_bootstrap, mode_url, unique_name)
    again = settings_for(kafka_bootstrap, mode_url, f"{unique_name}-again")
    exchange = f"ss{unique_name[-8:]}"
    open_ = ns(datetime(2025, 11, 25, 14, 30, tzinfo=UTC))  # a Tuesday, the session's open
    stock = trades(exchange, "AAPL", open_ - 2 * MINUTE, 140, 10)  # 14:28 .. 14:51 (before the open: no candle)
    crypto = trades(exchange, "BTC/USDT", open_ - 2 * MINUTE, 140, 10)
    ticks = sorted(stock + crypto, key=lambda t: t.ts_recv)

    async with running_candle_builder(first) as (client, pipeline):
        resp = await client.post("/v1/instruments", json={"exchange": exchange, "symbol": "AAPL", "calendar": "XNYS"})
        assert resp.status_code == 201, resp.text
        await send(first, ticks)
        await written_through(pipeline, len(ticks))
    emitted = await emitted_candles(kafka_bootstrap, {exchange}, topic=first.candles_topic, idle_s=1)
    # The scenario has what it claims: closed session bars (5m from the open, 15m 14:30-14:45).
    session_bars = {(c.timeframe, c.ts_start) for c in emitted if c.symbol == "AAPL" and c.timeframe != "1m"}
    assert session_bars == {("5m", open_ + m * 5 * MINUTE) for m in range(4)} | {("15m", open_)}
    assert min(c.ts_start for c in emitted if c.symbol == "AAPL") == open_
    stored = _stored(mode_url, exchange)
    assert sum(1 for key in stored if key[0] == "session_candles") == 5

    async with running_candle_builder(again) as (client, pipeline):
        await send(again, ticks)
        await written_through(pipeline, len(ticks))
        late_again = await late_ticks(client)
    assert _stored(mode_url, exchange) == stored
    assert await emitted_candles(kafka_bootstrap, {exchange}, topic=again.candles_topic, idle_s=1) == []
    assert late_again > 0  # the trades of bars emitted before were late ones
