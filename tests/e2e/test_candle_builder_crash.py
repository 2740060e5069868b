"""End to end: the candle-builder process is killed (SIGKILL, no graceful shutdown) in the
middle of a minute, started again in the same consumer group, and the rest of the trades are
sent. The candles on the candles topic (last revision of each) and every candle ``/v1/candles``
returns must equal an independent computation from all the trades, and every candle an
uninterrupted run would emit must be there.

What makes the crash hard: at the kill, 1m buckets are open (their trades consumed, their
forming state stored, nothing emitted), and the committed offset lies before trades of buckets
that had already closed (out-of-order trades across a minute boundary). The new process
re-reads from that offset and must neither emit those re-read fragments as candles nor lose
the trades of the open buckets.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from tradeflow.bus import Producer
from tradeflow.codec import decode
from tradeflow.messages import Candle, Tick
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry
from tradeflow.topics import market_key

from tests.candle_oracle import TF_SECONDS, as_values, expected_candles
from tests.e2e.service_process import ServiceProcess, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday, months ago (not "future" trades)
S = 1_000_000_000
MINUTE = 60 * S
T0 = int(START.timestamp()) * S
GRACE = 2 * S  # the service's default candle grace period
KILL_AT = T0 + 6 * MINUTE + 30 * S  # the crash comes half-way through the 10:06 minute
TRAILING_AT = T0 + 90 * MINUTE  # one trade per market at 11:30 closes everything of 10:00-11:00


def make_trades(exchange_prefix: str) -> list[Tick]:
    """12 minutes of interleaved trades for three markets in arrival order: event times up to
    1.5 s before arrival (out of order within the grace period), a straggler of the previous
    minute after the first trade of each minute, and some equal event times (arrival order
    decides)."""
    rng = random.Random(11)
    markets = [(f"{exchange_prefix}-a", "BTC/USDT"), (f"{exchange_prefix}-a", "ETH/USDT"),
               (f"{exchange_prefix}-b", "BTC/USDT")]
    ticks: list[Tick] = []
    for m, (exchange, symbol) in enumerate(markets):
        arrival = T0 + m * 137_000_000
        previous_event = None
        n = 0
        minute = T0
        while arrival < T0 + 12 * MINUTE:
            n += 1
            event = max(T0, arrival - rng.randint(0, 1500) * 1_000_000)
            if n % 13 == 0 and previous_event is not None:
                event = previous_event
            straggler = None
            if arrival - arrival % MINUTE > minute:
                # First trade of a new minute: on time in it, followed by a straggler of the
                # previous minute (arriving within the grace period, after the new one opened).
                minute = arrival - arrival % MINUTE
                event = max(event, minute)
                straggler = minute - 400_000_000
            ticks.append(Tick(exchange=exchange, symbol=symbol, trade_id=str(n), price=round(rng.uniform(90, 110), 2),
                              amount=round(rng.uniform(0.01, 2), 4), side=rng.choice(["buy", "sell"]),
                              ts_event=event, ts_recv=arrival + m))
            previous_event = event
            if straggler is not None:
                n += 1
                ticks.append(Tick(exchange=exchange, symbol=symbol, trade_id=str(n),
                                  price=round(rng.uniform(90, 110), 2), amount=round(rng.uniform(0.01, 2), 4),
                                  side=rng.choice(["buy", "sell"]), ts_event=straggler,
                                  ts_recv=arrival + 100_000_000 + m))
            arrival += rng.randint(150, 1500) * 1_000_000
    ticks.sort(key=lambda t: t.ts_recv)
    return ticks



def closed_by(ticks: list[Tick], timeframe: str) -> set[tuple[str, str, int]]:
    """Buckets an uninterrupted run closes (and emits): their end + grace is at or before the
    newest event time of their market (each market has its own partition key)."""
    length = TF_SECONDS[timeframe] * S
    newest: dict[tuple[str, str], int] = {}
    for t in ticks:
        newest[(t.exchange, t.symbol)] = max(newest.get((t.exchange, t.symbol), t.ts_event), t.ts_event)
    return {k for k in expected_candles(ticks, timeframe) if k[2] + length + GRACE <= newest[k[:2]]}


async def processed_ticks(client: httpx.AsyncClient, base: str) -> float:
    metrics = (await client.get(f"{base}/metrics", timeout=5)).text
    found = re.search(r"^tradeflow_candles_ticks_processed_total (\S+)$", metrics, re.M)
    return float(found.group(1)) if found else 0.0


async def api_candles(client: httpx.AsyncClient, base: str, exchange: str, symbol: str,
                      timeframe: str) -> dict[tuple[str, str, int], tuple]:
    resp = await client.get(f"{base}/v1/candles", params={
        "exchange": exchange, "symbol": symbol, "timeframe": timeframe, "limit": 10_000,
        "start": (START - timedelta(hours=1)).isoformat(), "end": (START + timedelta(hours=3)).isoformat()},
        timeout=10)
    assert resp.status_code == 200, resp.text
    return {(exchange, symbol, int(datetime.fromisoformat(r["ts"].replace("Z", "+00:00")).timestamp()) * S):
            (r["open"], r["high"], r["low"], r["close"], round(r["volume"], 6), r["trades"]) for r in resp.json()}


async def read_candles(bootstrap: str, topic: str, until, timeout_s: float) -> dict[tuple, Candle]:
    """Last revision of every candle on ``topic`` (from the beginning) once ``until(latest)`` holds.
    Equal revisions: the later record wins, as it would for any consumer of the topic."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    latest: dict[tuple, Candle] = {}
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        while not until(latest):
            assert time.monotonic() < deadline, f"timed out reading {topic}: have {len(latest)} candles"
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                for r in batch:
                    c = decode(Candle, r.value)
                    key = (c.timeframe, c.exchange, c.symbol, c.ts_start)
                    if key not in latest or latest[key].revision <= c.revision:
                        latest[key] = c
        return latest
    finally:
        await consumer.stop()


async def test_a_killed_candle_builder_restarted_mid_minute_still_gives_the_exact_candles(
        service_env, kafka_bootstrap, unique_name, tmp_path):
    trades = make_trades(f"k{unique_name[-8:]}")
    markets = sorted({(t.exchange, t.symbol) for t in trades})
    split = next(i for i, t in enumerate(trades) if t.ts_recv >= KILL_AT)
    before, after = trades[:split], trades[split:]
    recv = trades[-1].ts_recv
    trailing = [Tick(exchange=e, symbol=s, trade_id="trail", price=100.0, amount=1.0, side="buy",
                     ts_event=TRAILING_AT, ts_recv=recv + i + 1) for i, (e, s) in enumerate(markets)]
    # Out-of-order trades of the 10:05 minute arrive after the 10:06 minute opened: a restart
    # from the commit point (10:06's first offset) re-reads them although 10:05 had closed.
    for market in markets:
        mine = [t for t in before if (t.exchange, t.symbol) == market]
        opened = next(i for i, t in enumerate(mine) if t.ts_event >= T0 + 6 * MINUTE)
        assert any(t.ts_event < T0 + 6 * MINUTE for t in mine[opened:]), market

    ticks_topic, candles_topic = f"ticks-{unique_name}", f"candles-{unique_name}"
    port = free_port()
    env = {**os.environ, **service_env,
           "TRADEFLOW_HTTP_PORT": str(port),
           "TRADEFLOW_CANDLE_BUILDER_TICKS_TOPIC": ticks_topic,
           "TRADEFLOW_CANDLE_BUILDER_CANDLES_TOPIC": candles_topic,
           "TRADEFLOW_CANDLE_BUILDER_CONSUMER_GROUP": f"cb-{unique_name}",
           "TRADEFLOW_CONSUMER_SESSION_TIMEOUT_MS": "6000",
           "TRADEFLOW_LOG_FORMAT": "text",
           # The trades are months old: tick retention must not drop them mid-test.
           "TRADEFLOW_CANDLE_BUILDER_TICK_RETENTION_DAYS": "36500"}
    service = ServiceProcess("candle-builder", env, port, tmp_path / "candle-builder.log")
    producer_settings = CommonSettings(kafka_bootstrap=kafka_bootstrap)
    producer = Producer(producer_settings, Telemetry("test-feed", producer_settings), client_id="test-feed")

    async def send(ticks: list[Tick]) -> None:
        await producer.send_many(ticks_topic, [(market_key(t.exchange, t.symbol), t) for t in ticks])

    service.start()
    restarted: ServiceProcess | None = None
    try:
        async with httpx.AsyncClient() as client:
            await service.wait_ready(client, timeout_s=60)
            await producer.start()

            # --- first life: consume and store the trades up to 10:06:30, then die --------------
            await send(before)
            deadline = time.monotonic() + 30
            while (done := await processed_ticks(client, service.base)) < len(before):
                assert time.monotonic() < deadline, f"processed {done} of {len(before)}:\n{service.log_tail()}"
                await asyncio.sleep(0.2)
            # Written: the stored 1m candles, the forming 10:06 one included, are those of the
            # trades so far.
            partial = expected_candles(before, "1m")
            deadline = time.monotonic() + 20
            for exchange, symbol in markets:
                want = {k: v for k, v in partial.items() if k[:2] == (exchange, symbol)}
                while (got := await api_candles(client, service.base, exchange, symbol, "1m")) != want:
                    assert time.monotonic() < deadline, (exchange, symbol, sorted(set(got.items()) ^ set(want.items())))
                    await asyncio.sleep(0.2)
            # The closed minutes were emitted; the 10:06 minutes are still open (not emitted).
            closed_1m = {("1m", *k) for k in closed_by(before, "1m")}
            emitted = await read_candles(kafka_bootstrap, candles_topic, lambda got: closed_1m <= set(got), 20)
            assert not [k for k in emitted if k[0] == "1m" and k[3] == T0 + 6 * MINUTE]
            await asyncio.sleep(1.5)  # let a periodic offset commit happen (commit interval: 1 s)
            service.kill()
            assert service.proc.returncode == -signal.SIGKILL

            # --- second life: same group; re-reads from the committed offset --------------------
            # Tansu keeps the dead member until its 6 s session times out: the join takes longer.
            restarted = ServiceProcess("candle-builder", env, port, tmp_path / "candle-builder-restarted.log")
            restarted.start()
            await restarted.wait_ready(client, timeout_s=60)
            await send(after + trailing)

            # Every candle an uninterrupted run emits: the 1m ones of 10:00-10:11, the 5m, 15m
            # and 1h ones of 10:00-11:00 (the 11:30 trades close them) - with the right values.
            everything = trades + trailing
            want = {tf: expected_candles(everything, tf) for tf in TF_SECONDS}
            required = {(tf, *k) for tf in TF_SECONDS for k in closed_by(everything, tf)}
            assert len(required) == 3 * (12 + 3 + 1 + 1)
            emitted = await read_candles(kafka_bootstrap, candles_topic, lambda got: required <= set(got), 60)
            # Give re-emissions (corrections) that might still follow a moment to arrive.
            await asyncio.sleep(2)
            emitted = await read_candles(kafka_bootstrap, candles_topic, lambda got: required <= set(got), 30)
            wrong = {key: (as_values(c), want[key[0]].get(key[1:])) for key, c in emitted.items()
                     if as_values(c) != want[key[0]].get(key[1:])}
            assert not wrong, f"candles on the topic differ (got, expected): {wrong}"

            # The database, through the API: every candle equals the computation, the forming
            # 11:30 ones included (stored as they form).
            deadline = time.monotonic() + 30
            for exchange, symbol in markets:
                while (T0 + 90 * MINUTE) // MINUTE * MINUTE not in {
                        k[2] for k in await api_candles(client, restarted.base, exchange, symbol, "1m")}:
                    assert time.monotonic() < deadline, f"database did not catch up:\n{restarted.log_tail()}"
                    await asyncio.sleep(0.2)
            for exchange, symbol in markets:
                for tf in TF_SECONDS:
                    got = await api_candles(client, restarted.base, exchange, symbol, tf)
                    expected = {k: v for k, v in want[tf].items() if k[:2] == (exchange, symbol)}
                    assert got == expected, (exchange, symbol, tf, sorted(set(got.items()) ^ set(expected.items())))
    finally:
        await producer.stop()
        if service.proc is not None and service.proc.poll() is None:
            service.proc.kill()
            service.proc.wait()
        if restarted is not None:
            code = restarted.stop()
            # uvicorn re-raises SIGTERM after its graceful shutdown, so -15 is a clean stop too.
            assert code in (0, -15), f"the restarted candle-builder did not stop cleanly:\n{restarted.log_tail()}"
