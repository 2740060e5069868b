"""End to end: two ingest processes share the subscriptions of one exchange; one is killed.

What a user notices: every subscription (configured or added through the API) is served by
exactly one replica; after SIGKILL of one replica the other serves all of them within 30 s;
every trade the exchange made reaches md.ticks.v1 exactly once and in order per symbol, the
ones made while nobody served the symbol included; a restarted replica gets its share back and
the API shows the subscriptions it was given before it died.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from tradeflow.codec import decode
from tradeflow.messages import Tick

from tests.e2e.service_process import ServiceProcess, free_port
from tests.fakes.fake_binance import FakeBinance

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

MARKETS = {f"C{i}USDT": (f"C{i}", "USDT") for i in range(8)}
CONFIGURED = ["C0/USDT", "C1/USDT", "C2/USDT", "C3/USDT", "C4/USDT"]
ADDED = ["C5/USDT", "C6/USDT"]


async def served(client: httpx.AsyncClient, replica: ServiceProcess) -> set[str]:
    response = await client.get(f"{replica.base}/v1/subscriptions", timeout=5)
    assert response.status_code == 200, response.text
    return {s["symbol"] for s in response.json() if s["served_here"]}


async def feed_symbols(client: httpx.AsyncClient, replica: ServiceProcess) -> set[str]:
    (feed,) = (await client.get(f"{replica.base}/v1/feeds", timeout=5)).json()
    return {s["symbol"] for s in feed["symbols"]}


async def eventually(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.3)


async def read_ticks(bootstrap: str, exchange: str, expected: int, timeout_s: float) -> list[Tick]:
    """Every tick of ``exchange`` on md.ticks.v1, in partition order, once ``expected`` arrived
    (then 2 s more, so that a duplicate arriving late is seen)."""
    consumer = AIOKafkaConsumer("md.ticks.v1", bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    ticks: list[Tick] = []
    try:
        deadline = time.monotonic() + timeout_s
        settle_until = None
        while time.monotonic() < deadline and (settle_until is None or time.monotonic() < settle_until):
            for records in (await consumer.getmany(timeout_ms=300)).values():
                for record in records:
                    if record.key.decode().startswith(f"{exchange}:"):
                        ticks.append(decode(Tick, record.value))
            if settle_until is None and len(ticks) >= expected:
                settle_until = time.monotonic() + 2
    finally:
        await consumer.stop()
    return ticks


async def test_two_replicas_share_subscriptions_and_a_killed_one_is_taken_over_without_loss(
        service_env, kafka_bootstrap, unique_name, tmp_path, api_key):
    fake = FakeBinance(MARKETS)
    await fake.start()
    exchange = f"bn-{unique_name}"[:60]
    env = {**os.environ, **service_env,
           "TRADEFLOW_INGEST_SUBSCRIPTIONS_GROUP": f"ingest-{unique_name}",
           "TRADEFLOW_CONSUMER_SESSION_TIMEOUT_MS": "6000",
           "TRADEFLOW_EXCHANGES": json.dumps([{
               "id": "binance", "name": exchange, "symbols": CONFIGURED, "poll_interval_s": 0.3,
               "urls": {"public": fake.rest_url, "ws.spot": fake.ws_url}}])}
    replicas = [ServiceProcess("ingest", {**env, "TRADEFLOW_HTTP_PORT": str(port)}, port, tmp_path / f"ingest-{n}.log")
                for n, port in enumerate((free_port(), free_port()))]
    a, b = replicas
    trading = True
    made: dict[str, list[str]] = {s: [] for s in CONFIGURED + ADDED}

    async def trade_forever():
        price = 100.0
        while trading:
            for symbol in list(made):
                price += 0.01
                trade = await fake.make_trade(symbol.replace("/", ""), price, 1.0)
                made[symbol].append(str(trade.trade_id))
            await asyncio.sleep(0.05)

    trader = None
    try:
        for replica in replicas:
            replica.start()
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {api_key}"}) as client:
            for replica in replicas:
                await replica.wait_ready(client, 60)

            # Subscriptions through the API, with the refusals a user can make.
            for symbol in ADDED:
                r = await client.post(f"{a.base}/v1/subscriptions", json={"exchange": exchange, "symbol": symbol})
                assert r.status_code == 201, r.text
            again = await client.post(f"{b.base}/v1/subscriptions", json={"exchange": exchange, "symbol": ADDED[0]})
            assert again.status_code == 200 and again.json()["source"] == "api"
            unknown = await client.post(f"{a.base}/v1/subscriptions", json={"exchange": exchange, "symbol": "NOPE/USDT"})
            assert unknown.status_code == 422 and "NOPE/USDT" in unknown.json()["detail"]
            unconfigured = await client.post(f"{a.base}/v1/subscriptions", json={"exchange": "kraken", "symbol": "BTC/USD"})
            assert unconfigured.status_code == 422 and "TRADEFLOW_EXCHANGES" in unconfigured.json()["detail"]
            configured = await client.delete(f"{a.base}/v1/subscriptions", params={"exchange": exchange, "symbol": "C0/USDT"})
            assert configured.status_code == 409
            missing = await client.delete(f"{a.base}/v1/subscriptions", params={"exchange": exchange, "symbol": "C7/USDT"})
            assert missing.status_code == 404

            everything = set(CONFIGURED + ADDED)

            async def shared_once():
                on_a, on_b = await served(client, a), await served(client, b)
                feeds_a, feeds_b = await feed_symbols(client, a), await feed_symbols(client, b)
                return (on_a | on_b == everything and not on_a & on_b
                        and feeds_a == on_a and feeds_b == on_b and on_a and on_b)
            await eventually(shared_once, 30, "both replicas to share the subscriptions, each once")

            trader = asyncio.create_task(trade_forever())
            await asyncio.sleep(3)
            a.kill()
            # The promise: a dead replica's subscriptions are served again within 30 s.
            await eventually(lambda: _serves_all(client, b, everything), 30, "the survivor to serve everything")
            await asyncio.sleep(3)

            # The killed replica comes back: the subscriptions are still there and it gets a share.
            a.start()
            await a.wait_ready(client, 60)
            await eventually(shared_once, 40, "the restarted replica to get its share back")
            assert {s["symbol"] for s in (await client.get(f"{a.base}/v1/subscriptions")).json()} == everything
            await asyncio.sleep(2)
            trading = False
            await trader

            # Removing a subscription stops its trades.
            r = await client.delete(f"{b.base}/v1/subscriptions", params={"exchange": exchange, "symbol": ADDED[1]})
            assert r.status_code == 204
            await eventually(lambda: _serves_nothing_of(client, replicas, ADDED[1]), 20, "the removal")
            final_feeds = [(await client.get(f"{r.base}/v1/feeds")).json() for r in replicas]

        expected = sum(len(ids) for ids in made.values())
        ticks = await read_ticks(kafka_bootstrap, exchange, expected, timeout_s=60)
        published = {s: [t.trade_id for t in ticks if t.symbol == s] for s in made}
        # What a failure message needs: counts, repeated and missing trade ids, what each feed shows.
        summary = {s: (len(published[s]), len(set(published[s])), len(ids)) for s, ids in made.items()}
        repeated = {s: sorted({int(i) for i in p if p.count(i) > 1}) for s, p in published.items()}
        summary["repeated"] = {s: (r[0], r[-1], len(r)) for s, r in repeated.items() if r}
        summary["missing"] = {s: sorted(set(map(int, ids)) - set(map(int, published[s])))[:3] for s, ids in made.items()}
        summary["feeds"] = final_feeds
        for symbol, ids in made.items():
            assert published[symbol] == ids, f"(published, distinct, made) per symbol: {summary}"
    finally:
        trading = False
        if trader is not None:
            await asyncio.gather(trader, return_exceptions=True)
        for replica in replicas:
            if replica.proc is not None and replica.proc.poll() is None:
                assert replica.stop() in (0, -signal.SIGTERM), replica.log_tail()
        await fake.stop()


async def _serves_all(client, replica, symbols) -> bool:
    return await served(client, replica) == symbols and await feed_symbols(client, replica) == symbols


async def _serves_nothing_of(client, replicas, symbol) -> bool:
    for replica in replicas:
        if symbol in await feed_symbols(client, replica):
            return False
    return True
