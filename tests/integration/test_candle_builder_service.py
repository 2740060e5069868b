"""The running candle-builder against the real broker and database.

Trades (several instruments, out of order within the grace period, equal event times, a late
trade, an invalid trade and undecodable bytes) go to a test-owned ticks topic; the candles on
the candles topic, the rows behind ``/v1/candles`` and the DLQ must equal what an independent
computation from the trades says.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import SecretStr
from tradeflow.bus import Producer
from tradeflow.codec import decode, header_value
from tradeflow.messages import Candle, Tick
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry
from tradeflow.topics import market_key
from tradeflow_candle_builder.bootstrap import SERVICE
from tradeflow_candle_builder.domain.timeframes import ns_to_datetime
from tradeflow_candle_builder.settings import CandleBuilderSettings

from tests.candle_oracle import ALL_TIMEFRAMES, TF_SECONDS, as_values, bucket_start_ns, expected_candles
from tests.integration.candle_builder_app import wait_ready
from tests.integration.conftest import started_store

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday (well in the past: not "future" trades)
T0 = int(START.timestamp()) * 1_000_000_000
S = 1_000_000_000
MINUTE = 60 * S



def make_trades(exchange_prefix: str) -> list[Tick]:
    """20 minutes of trades for three instruments in arrival order, out of order within 1.5 s."""
    rng = random.Random(5)
    markets = [(f"{exchange_prefix}-a", "BTC/USDT"), (f"{exchange_prefix}-a", "ETH/USDT"),
               (f"{exchange_prefix}-b", "BTC/USDT")]
    ticks = []
    recv = T0
    for m, (exchange, symbol) in enumerate(markets):
        ts = T0 + m * S
        n = 0
        while ts < T0 + 20 * MINUTE:
            n += 1
            recv += 1_000
            event = ts - rng.randint(0, 1500) * 1_000_000
            if n % 17 == 0:
                event = ticks[-1].ts_event  # equal event time: arrival order decides
            ticks.append(Tick(exchange=exchange, symbol=symbol, trade_id=f"{n}", price=round(rng.uniform(90, 110), 2),
                              amount=round(rng.uniform(0.01, 2), 4), side=rng.choice(["buy", "sell"]),
                              ts_event=event, ts_recv=recv))
            ts += rng.randint(200, 4000) * 1_000_000
    ticks.sort(key=lambda t: t.ts_recv)
    return ticks


async def consume(bootstrap: str, topic: str, until, timeout_s: float) -> list:
    """Records of ``topic`` from the beginning until ``until(records)`` holds."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list = []
        deadline = time.monotonic() + timeout_s
        while not until(records):
            assert time.monotonic() < deadline, f"timed out reading {topic}: {len(records)} records"
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


def last_revisions(records) -> dict[tuple[str, str, str, int], Candle]:
    latest: dict[tuple[str, str, str, int], Candle] = {}
    for r in records:
        c = decode(Candle, r.value)
        key = (c.timeframe, c.exchange, c.symbol, c.ts_start)
        if key not in latest or latest[key].revision <= c.revision:
            latest[key] = c
    return latest


@pytest.fixture
def settings(kafka_bootstrap, database_url, unique_name) -> CandleBuilderSettings:
    return CandleBuilderSettings(
        kafka_bootstrap=kafka_bootstrap, database_url=database_url, environment="test",
        ticks_topic=f"ticks-{unique_name}", candles_topic=f"candles-{unique_name}",
        consumer_group=f"cb-{unique_name}", consumer_session_timeout_ms=6000,
        candle_grace_ms=2000, idle_close_ms=60_000,
        # The trades are months old and late trades are rebuilt from them: keep them all.
        tick_retention_days=36_500)


async def test_trades_become_the_independently_computed_candles_on_the_stream_and_in_the_database(
        settings, unique_name):
    exchange_prefix = f"x{unique_name[-8:]}"
    trades = make_trades(exchange_prefix)
    markets = sorted({(t.exchange, t.symbol) for t in trades})
    recv = trades[-1].ts_recv
    # One trade per market at 11:30 moves each partition's stream time past 10:00-11:00 + grace;
    # its own buckets stay open.
    trailing = []
    for i, (exchange, symbol) in enumerate(markets):
        recv += 1_000
        trailing.append(Tick(exchange=exchange, symbol=symbol, trade_id=f"trail-{i}", price=100.0, amount=1.0,
                             side="buy", ts_event=T0 + 90 * MINUTE, ts_recv=recv))
    bad_exchange, bad_symbol = markets[0]
    invalid = Tick(exchange=bad_exchange, symbol=bad_symbol, trade_id="bad-price", price=-5.0, amount=1.0, side="buy",
                   ts_event=T0 + 5 * MINUTE, ts_recv=recv + 1)

    app = SERVICE.create_app(settings)
    producer_settings = CommonSettings(kafka_bootstrap=settings.kafka_bootstrap)
    producer = Producer(producer_settings, Telemetry("test-feed", producer_settings), client_id="test-feed")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cb") as client:
        async with app.router.lifespan_context(app):
            await wait_ready(client)
            await producer.start()
            try:
                futures = [producer.send(settings.ticks_topic, market_key(t.exchange, t.symbol), t)
                           for t in trades[:1000]]
                futures.append(producer.send(settings.ticks_topic, market_key(bad_exchange, bad_symbol), invalid))
                futures.append(producer.send_raw(settings.ticks_topic, market_key(bad_exchange, bad_symbol).encode(),
                                                 b"\xc1 not msgpack", [("schema", b"Tick/1")]))
                futures += [producer.send(settings.ticks_topic, market_key(t.exchange, t.symbol), t)
                            for t in trades[1000:] + trailing]
                await asyncio.gather(*futures)

                # 1m candles of 10:00-10:19 and the 5m, 15m and 1h candles of 10:00-11:00 close.
                want = {tf: expected_candles(trades, tf) for tf in TF_SECONDS}
                expected_count = sum(len(v) for v in want.values())
                records = await consume(settings.kafka_bootstrap, settings.candles_topic,
                                        lambda rs: len(rs) >= expected_count, timeout_s=60)
                emitted = last_revisions(records)
                for tf, candles in want.items():
                    got = {(c.exchange, c.symbol, c.ts_start): as_values(c) for c in emitted.values() if c.timeframe == tf}
                    assert got == candles, tf
                assert {c.revision for c in emitted.values()} == {0}
                for r in records:
                    c = decode(Candle, r.value)
                    assert r.key.decode() == market_key(c.exchange, c.symbol)

                # The database (through the API) holds the same, plus the forming 11:30 candle.
                async def api(exchange, symbol, tf):
                    resp = await client.get("/v1/candles", params={
                        "exchange": exchange, "symbol": symbol, "timeframe": tf,
                        "start": (START - timedelta(hours=1)).isoformat(), "end": (START + timedelta(hours=2)).isoformat()})
                    assert resp.status_code == 200, resp.text
                    return resp.json()

                async def database_caught_up():
                    rows = await api(*markets[-1], "1m")
                    return rows and rows[-1]["ts"] == "2026-03-02T11:30:00Z"
                deadline = time.monotonic() + 20
                while not await database_caught_up():
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.2)
                for exchange, symbol in markets:
                    for tf in ("1m", "5m", "1h"):
                        rows = await api(exchange, symbol, tf)
                        got = [(r["ts"], r["open"], r["high"], r["low"], r["close"], round(r["volume"], 6), r["trades"])
                               for r in rows if r["ts"] < "2026-03-02T11:00"]
                        expected = [
                            (datetime.fromtimestamp(k[2] / S, UTC).isoformat().replace("+00:00", "Z"), *v)
                            for k, v in sorted(want[tf].items()) if k[:2] == (exchange, symbol)]
                        assert got == expected, (exchange, symbol, tf)
                    # `start` inside a bucket: the candle covering it is included (overlap).
                    resp = await client.get("/v1/candles", params={
                        "exchange": exchange, "symbol": symbol, "timeframe": "5m", "start": "2026-03-02T10:07:30Z",
                        "end": "1772446200000", "limit": 2})
                    assert [r["ts"] for r in resp.json()] == ["2026-03-02T10:05:00Z"], resp.text
                    forming = (await api(exchange, symbol, "1m"))[-1]
                    assert (forming["ts"], forming["trades"], forming["close"]) == ("2026-03-02T11:30:00Z", 1, 100.0)

                # The invalid trade and the undecodable bytes are in the DLQ with their reasons.
                dlq = await consume(settings.kafka_bootstrap, settings.ticks_topic + ".dlq",
                                    lambda rs: len(rs) >= 2, timeout_s=20)
                by_reason = {header_value(r.headers, "error-reason").split(":")[0]: r for r in dlq}
                assert sorted(by_reason) == ["invalid_price", "undecodable"], by_reason
                assert decode(Tick, by_reason["invalid_price"].value) == invalid
                assert by_reason["undecodable"].value == b"\xc1 not msgpack"
                metrics = (await client.get("/metrics")).text
                assert 'tradeflow_candles_ticks_rejected_total{reason="invalid_price"} 1.0' in metrics
                processed = re.search(r"^tradeflow_candles_ticks_processed_total (\S+)$", metrics, re.M)
                assert processed and float(processed.group(1)) == len(trades) + len(trailing)
                # The store's pool and the readiness checks, as the alert rules read them.
                assert re.search(r'^tradeflow_db_pool_connections\{pool="candle-builder"\} [1-9]', metrics, re.M)
                assert 'tradeflow_readiness_check{check="database"} 1.0' in metrics

                # A late trade for 10:05 (closed long ago): the 1m candle and the 5m/15m/1h
                # candles holding it are emitted again, corrected, with a higher revision.
                exchange, symbol = markets[1]
                late = Tick(exchange=exchange, symbol=symbol, trade_id="late-1", price=500.0, amount=3.0, side="buy",
                            ts_event=T0 + 5 * MINUTE + 30 * S, ts_recv=recv + 10)
                await producer.send(settings.ticks_topic, market_key(exchange, symbol), late)
                corrected = {tf: expected_candles(trades + [late], tf) for tf in TF_SECONDS}

                keys = [(tf, exchange, symbol, T0 + 5 * MINUTE - (5 * MINUTE) % (TF_SECONDS[tf] * S))
                        for tf in TF_SECONDS]

                def has_corrections(rs):
                    latest = last_revisions(rs)
                    return all(k in latest and latest[k].revision >= 1 for k in keys)
                records = await consume(settings.kafka_bootstrap, settings.candles_topic, has_corrections, timeout_s=30)
                latest = last_revisions(records)
                for tf, _, _, bucket in keys:
                    assert as_values(latest[(tf, exchange, symbol, bucket)]) == corrected[tf][(exchange, symbol, bucket)]
                    assert corrected[tf][(exchange, symbol, bucket)][1] == 500.0  # the late trade's price is the high
                rows = await api(exchange, symbol, "1m")
                row = next(r for r in rows if r["ts"] == "2026-03-02T10:05:00Z")
                assert (row["high"], row["trades"]) == (500.0, corrected["1m"][(exchange, symbol, T0 + 5 * MINUTE)][5])
                metrics = (await client.get("/metrics")).text
                assert re.search(r"^tradeflow_candles_late_ticks_total 1\.0$", metrics, re.M)
            finally:
                await producer.stop()


async def test_candles_api_rejects_bad_parameters_naming_them(settings):
    app = SERVICE.create_app(settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cb") as client:
        async with app.router.lifespan_context(app):
            base = {"exchange": "binance", "symbol": "BTC/USDT"}
            cases = [
                ({"timeframe": "2m"}, "timeframe: unknown timeframe '2m'"),
                ({"start": "yesterday"}, "start: 'yesterday' is neither ISO 8601"),
                ({"end": "-5"}, "end: '-5' is neither ISO 8601 nor epoch milliseconds"),
                ({"start": "2026-03-02T11:00:00Z", "end": "2026-03-02T10:00:00Z"}, "start: 2026-03-02T11:00:00Z is after end"),
                ({"limit": "0"}, "limit: must be between 1 and 10000, got 0"),
                ({"limit": "10001"}, "limit: must be between 1 and 10000, got 10001"),
                ({"limit": "many"}, "limit: 'many' is not an integer"),
                ({"start": "2026-03-02T10:00:00 00:00"}, "URL-encoded as %2B"),
            ]
            for params, message in cases:
                resp = await client.get("/v1/candles", params={**base, **params})
                assert resp.status_code == 422, (params, resp.text)
                assert message in resp.json()["detail"], (params, resp.text)
            resp = await client.get("/v1/candles", params={"symbol": "BTC/USDT"})
            assert resp.status_code == 422 and "exchange" in resp.text
            # Good requests: epoch milliseconds and ISO 8601 both work; nothing stored -> [].
            resp = await client.get("/v1/candles", params={**base, "timeframe": "1w", "start": "1772445600000",
                                                           "end": "2026-03-03T00:00:00+00:00", "limit": "10"})
            assert resp.status_code == 200 and resp.json() == []


async def test_a_restart_in_the_middle_of_the_stream_still_gives_the_exact_candles(settings, unique_name):
    """Stop after the first half of the trades, start a new instance (same group), send the rest:
    the candles (last revision of each) and the stored rows equal the computation from all trades.

    The second instance re-reads from the committed offset, which lies before trades of 1m
    buckets that had already closed (out-of-order trades): those must not become partial candles.
    """
    trades = make_trades(f"r{unique_name[-8:]}")
    markets = sorted({(t.exchange, t.symbol) for t in trades})
    recv = trades[-1].ts_recv
    trailing = [Tick(exchange=e, symbol=s, trade_id="trail", price=100.0, amount=1.0, side="buy",
                     ts_event=T0 + 90 * MINUTE, ts_recv=recv + i + 1) for i, (e, s) in enumerate(markets)]
    half = len(trades) // 2
    producer_settings = CommonSettings(kafka_bootstrap=settings.kafka_bootstrap)
    producer = Producer(producer_settings, Telemetry("test-feed", producer_settings), client_id="test-feed")
    await producer.start()
    sent = 0
    try:
        for part in (trades[:half], trades[half:] + trailing):
            app = SERVICE.create_app(settings)
            pipeline = next(c for c in app.state.runtime.components if type(c).__name__ == "CandlePipeline")
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cb") as client:
                async with app.router.lifespan_context(app):
                    await wait_ready(client)
                    await asyncio.gather(*(producer.send(settings.ticks_topic, market_key(t.exchange, t.symbol), t)
                                           for t in part))
                    sent += len(part)
                    # Offsets are per partition from the topic's start: caught up when they sum to `sent`.
                    deadline = time.monotonic() + 30
                    while sum(pipeline.writer.written_offsets.values()) < sent:
                        assert time.monotonic() < deadline, "the instance did not catch up"
                        await asyncio.sleep(0.1)
                    if part[-1] is trailing[-1]:
                        for exchange, symbol in markets:
                            resp = await client.get("/v1/candles", params={
                                "exchange": exchange, "symbol": symbol, "timeframe": "1m",
                                "start": "2026-03-02T09:00:00Z", "end": "2026-03-02T11:00:00Z"})
                            got = {(exchange, symbol, T0 + (datetime.fromisoformat(r["ts"]) - START)
                                    // timedelta(seconds=1) * S):
                                   (r["open"], r["high"], r["low"], r["close"], round(r["volume"], 6), r["trades"])
                                   for r in resp.json()}
                            want_1m = {k: v for k, v in expected_candles(trades, "1m").items() if k[:2] == (exchange, symbol)}
                            assert got == want_1m, (exchange, symbol)
        want = {tf: expected_candles(trades, tf) for tf in TF_SECONDS}
        keys = {(tf, *k) for tf, candles in want.items() for k in candles}
        records = await consume(settings.kafka_bootstrap, settings.candles_topic,
                                lambda rs: keys <= set(last_revisions(rs)), timeout_s=60)
        emitted = last_revisions(records)
        for tf, candles in want.items():
            got = {(c.exchange, c.symbol, c.ts_start): as_values(c) for c in emitted.values() if c.timeframe == tf}
            assert got == candles, tf
    finally:
        await producer.stop()


async def test_a_late_trade_older_than_the_tick_retention_leaves_the_stored_candle_alone(
        settings, unique_name):
    """Its minute's trades may already be dropped by retention: a recompute would corrupt the
    candle, so the trade goes to the DLQ with the reason and the candle stays as it was."""
    settings = settings.model_copy(update={"tick_retention_days": 1})
    exchange, symbol = f"old{unique_name[-8:]}", "BTC/USDT"
    start = (time.time_ns() - 3 * 86_400 * S) // MINUTE * MINUTE  # a minute three days ago
    trades = [Tick(exchange=exchange, symbol=symbol, trade_id=str(i), price=100.0 + i, amount=1.0, side="buy",
                   ts_event=start + i * 10 * S, ts_recv=start + i) for i in range(12)]  # two minutes
    closer = Tick(exchange=exchange, symbol=symbol, trade_id="closer", price=99.0, amount=1.0, side="sell",
                  ts_event=start + 10 * MINUTE, ts_recv=start + 100)
    late = Tick(exchange=exchange, symbol=symbol, trade_id="late", price=500.0, amount=9.0, side="buy",
                ts_event=start + 30 * S, ts_recv=start + 101)
    key = market_key(exchange, symbol)
    bucket = datetime.fromtimestamp(start / S, UTC).isoformat().replace("+00:00", "Z")

    async with running_candle_builder(settings) as (client, producer):
        await producer.send_many(settings.ticks_topic, [(key, t) for t in trades + [closer]])

        async def first_minute():
            resp = await client.get("/v1/candles", params={
                "exchange": exchange, "symbol": symbol, "timeframe": "1m", "limit": 1,
                "start": bucket})
            rows = resp.json()
            return rows[0] if rows and rows[0]["ts"] == bucket else None
        deadline = time.monotonic() + 20
        while (before := await first_minute()) is None or before["trades"] != 6:
            assert time.monotonic() < deadline, before
            await asyncio.sleep(0.2)

        await producer.send_many(settings.ticks_topic, [(key, late)])
        dlq = await consume(settings.kafka_bootstrap, settings.ticks_topic + ".dlq",
                            lambda rs: len(rs) >= 1, timeout_s=20)
        assert header_value(dlq[0].headers, "error-reason").startswith("beyond_tick_retention:")
        assert decode(Tick, dlq[0].value) == late
        assert await first_minute() == before  # not recomputed from the few ticks left



@contextlib.asynccontextmanager
async def running_candle_builder(settings: CandleBuilderSettings) -> AsyncIterator[tuple[httpx.AsyncClient, Producer]]:
    """The service, ready, with an API client and a started producer for its ticks topic."""
    app = SERVICE.create_app(settings)
    producer_settings = CommonSettings(kafka_bootstrap=settings.kafka_bootstrap)
    producer = Producer(producer_settings, Telemetry("test-feed", producer_settings), client_id="test-feed")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cb") as client:
        async with app.router.lifespan_context(app):
            await wait_ready(client)
            await producer.start()
            try:
                yield client, producer
            finally:
                await producer.stop()


@pytest.fixture
def mode_settings(settings, mode_url) -> CandleBuilderSettings:
    """``settings`` on the database of each available storage mode."""
    return settings.model_copy(update={"database_url": SecretStr(mode_url)})


async def test_a_late_trade_is_emitted_with_its_corrected_values_on_every_timeframe(mode_settings, unique_name):
    """Every closed candle holding a late trade's minute is emitted again with a higher revision
    and the values that include the trade, on every timeframe up to 1w, and the API serves them.

    With continuous aggregates the buckets are materialized first (as the refresh policies or a
    backfill leave them): the late trade lies below every watermark, where only an explicit
    refresh makes an aggregate see it (issue 10: without one, 5m..1d were re-emitted with the old
    values and 1w left the trade out for good)."""
    settings = mode_settings
    exchange, symbol = f"l{unique_name[-8:]}", "BTC/USDT"
    key = market_key(exchange, symbol)
    monday = int(datetime(2026, 3, 9, tzinfo=UTC).timestamp()) * S
    trades = [Tick(exchange=exchange, symbol=symbol, trade_id=f"t{i}", price=100.0 + i % 5, amount=1.0 + i % 3,
                   side="buy", ts_event=monday + 10 * 3600 * S + i * 20 * S, ts_recv=monday + i) for i in range(30)]
    # Eight days later in stream time: every bucket of the trades' week has closed.
    closer = Tick(exchange=exchange, symbol=symbol, trade_id="closer", price=100.0, amount=1.0, side="buy",
                  ts_event=monday + 8 * 86_400 * S, ts_recv=monday + 100)
    late = Tick(exchange=exchange, symbol=symbol, trade_id="late", price=123.0, amount=7.0, side="sell",
                ts_event=monday + 10 * 3600 * S + 65 * S, ts_recv=monday + 101)
    want = {tf: expected_candles(trades, tf) for tf in ALL_TIMEFRAMES}
    corrected = {tf: expected_candles(trades + [late], tf) for tf in ALL_TIMEFRAMES}
    late_keys = {(tf, exchange, symbol, bucket_start_ns(late.ts_event, tf)) for tf in ALL_TIMEFRAMES}

    async with running_candle_builder(settings) as (_client, producer):
        await producer.send_many(settings.ticks_topic, [(key, t) for t in trades + [closer]])
        first = {(tf, *k) for tf, candles in want.items() for k in candles}
        records = await consume(settings.kafka_bootstrap, settings.candles_topic,
                                lambda rs: first <= set(last_revisions(rs)), timeout_s=60)
        assert {k: as_values(c) for k, c in last_revisions(records).items() if k in first} == {
            (tf, *k): v for tf, candles in want.items() for k, v in candles.items()}

        async with started_store(settings.libpq_url) as store:
            # Whatever a refresh policy or a backfill would have materialized by now.
            await store.refresh_higher_timeframes(exchange, symbol, monday, monday + 7 * 86_400 * S)
            await producer.send_many(settings.ticks_topic, [(key, late)])
            records = await consume(
                settings.kafka_bootstrap, settings.candles_topic,
                lambda rs: all(k in (lr := last_revisions(rs)) and lr[k].revision >= 1 for k in late_keys),
                timeout_s=60)
            latest = last_revisions(records)
            for tf, _, _, bucket in sorted(late_keys):
                assert as_values(latest[(tf, exchange, symbol, bucket)]) == \
                    corrected[tf][(exchange, symbol, bucket)], tf
                served = await store.fetch_candles(exchange, symbol, tf, ns_to_datetime(bucket),
                                                   ns_to_datetime(bucket + 1000), 1)
                assert [(r.open, r.high, r.low, r.close, round(r.volume, 6), r.trades) for r in served] == \
                    [corrected[tf][(exchange, symbol, bucket)]], tf
        week = corrected["1w"][(exchange, symbol, bucket_start_ns(late.ts_event, "1w"))]
        assert (week[3], week[5]) == (100.0 + 29 % 5, 31)  # the close is still the last trade's

