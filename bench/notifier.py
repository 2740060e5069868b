"""Notifier throughput and latency: fills on the topic -> signed webhook deliveries, acknowledged
by a loopback receiver and recorded in the database.

On a private broker and database (tradeflow_ops.infra.LocalInfra in a temp dir, free loopback
ports) this script runs, in the same run:

* a webhook receiver in a child process (aiohttp: verifies every signature, notes each
  delivery id's arrival time);
* the baseline: this process posting signed requests to that receiver with aiohttp (the
  notifier's client), 16 at a time (its default webhook concurrency): the receiver's own rate;
* the notifier as a process (``tradeflow run notifier``): N fills produced at once to its fills
  topic; the figure is N over the time from the first send to the last delivery's arrival
  (each delivery rendered, signed, stored before sending and recorded after);
* then a steady load (``--rate`` fills/s for ``--seconds``), each fill's ``ts_event`` its send
  time: the p50/p99 from the event on the topic to its arrival at the receiver.

Prints JSON lines ``{"name", "value", "unit", "baseline"}``. Target (issue 16): at least 1,000
deliveries/s on one process. Run: ``make bench`` or ``.venv/bin/python bench/notifier.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, free_port, log  # noqa: E402

SECRET = "whsec_bench_0123456789abcdef"
CHANNEL = "bench-hook"
CONCURRENCY = 16


# --- the receiver (child process) -----------------------------------------------------------

def run_receiver(port: int) -> None:
    from aiohttp import web
    from tradeflow_notifier.domain.signing import DELIVERY_HEADER, SIGNATURE_HEADER, BadSignature, verify

    arrivals: dict[str, int] = {}
    bad = [0]

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify(SECRET, request.headers.get(SIGNATURE_HEADER, ""), body, now=time.time())
        except BadSignature:
            bad[0] += 1
            return web.Response(status=401)
        arrivals.setdefault(request.headers[DELIVERY_HEADER], time.time_ns())
        return web.Response(status=204)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"arrivals": arrivals, "bad_signatures": bad[0]})

    async def reset(request: web.Request) -> web.Response:
        arrivals.clear()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# --- the parent ---------------------------------------------------------------------------------

async def wait_http(url: str, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(url, timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} not ready after {timeout_s}s")
            await asyncio.sleep(0.2)


async def receiver_rate(base: str, n: int) -> float:
    """The receiver's own rate: signed POSTs from aiohttp, CONCURRENCY at a time."""
    import aiohttp
    from tradeflow_notifier.domain.signing import (
        DELIVERY_HEADER,
        EVENT_HEADER,
        SIGNATURE_HEADER,
        signature_header,
    )

    body = json.dumps({"id": "fill:x", "kind": "fill", "text": "x" * 300}).encode()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:
        async def worker(start: int) -> None:
            for i in range(start, n, CONCURRENCY):
                async with session.post(f"{base}/hook", data=body, headers={
                        "Content-Type": "application/json", EVENT_HEADER: "fill", DELIVERY_HEADER: f"baseline-{i}",
                        SIGNATURE_HEADER: signature_header(SECRET, int(time.time()), body)}) as response:
                    response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
        await session.post(f"{base}/reset")
    return n / elapsed


def fill(n: int, ts_event: int):
    from tradeflow.messages import Fill

    return Fill(fill_id=f"bench-{n}", client_order_id=f"o-{n}", account_id=f"acct-{n % 50}", exchange="binance",
                symbol="BTC/USDT", side="buy" if n % 2 else "sell", quantity=Decimal("0.0015"),
                price=Decimal("64000.10"), fee=Decimal("0.09600015"), fee_currency="USDT", ts_event=ts_event)


async def arrivals(base: str) -> dict[str, int]:
    import httpx

    async with httpx.AsyncClient() as client:
        answer = (await client.get(f"{base}/stats", timeout=30)).json()
    if answer["bad_signatures"]:
        raise AssertionError(f"{answer['bad_signatures']} deliveries with a bad signature")
    return answer["arrivals"]


async def wait_arrivals(base: str, expected: set[str], timeout_s: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    while True:
        got = await arrivals(base)
        if expected <= set(got):
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(expected - set(got))} of {len(expected)} deliveries missing")
        await asyncio.sleep(0.5)


async def measure(bootstrap: str, topic: str, receiver: str, n: int, rate: float, seconds: float) -> dict:
    from tradeflow.bus import Producer
    from tradeflow.settings import CommonSettings
    from tradeflow.telemetry import Telemetry
    from tradeflow_notifier.domain.planning import delivery_id

    settings = CommonSettings(kafka_bootstrap=bootstrap)
    producer = Producer(settings, Telemetry("bench", settings), client_id="bench-notifier")
    await producer.start()
    try:
        # Throughput: n fills at once.
        started_ns = time.time_ns()
        await producer.send_many(topic, [(f"acct-{i % 50}", fill(i, started_ns)) for i in range(n)])
        expected = {delivery_id(f"fill:bench-{i}", CHANNEL) for i in range(n)}
        got = await wait_arrivals(receiver, expected, 600)
        throughput = n / ((max(got[d] for d in expected) - started_ns) / 1e9)
        log(f"throughput: {n} deliveries at {throughput:,.0f}/s")
        # Latency: a steady load, each event stamped with its send time.
        sent: dict[str, int] = {}
        count = int(rate * seconds)
        begin = time.perf_counter()
        for i in range(n, n + count):
            delay = begin + (i - n) / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.time_ns()
            producer.send(topic, f"acct-{i % 50}", fill(i, now))
            sent[delivery_id(f"fill:bench-{i}", CHANNEL)] = now
        got = await wait_arrivals(receiver, set(sent), 120)
        latencies = sorted((got[d] - t) / 1e6 for d, t in sent.items())
    finally:
        await producer.stop()
    return {"throughput": throughput, "p50": latencies[len(latencies) // 2],
            "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], "count": count}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=200.0, help="fills per second of the latency phase")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver:
        run_receiver(args.receiver)
        return 0

    from tradeflow.admin import ensure_topics
    from tradeflow.topics import EXEC_FILLS
    from tradeflow_db.migrate import upgrade
    from tradeflow_ops.infra import LocalInfra

    receiver_port, notifier_port = free_port(), free_port()
    receiver_base = f"http://127.0.0.1:{receiver_port}"
    receiver = subprocess.Popen([sys.executable, __file__, "--receiver", str(receiver_port)], start_new_session=True)
    notifier = None
    with tempfile.TemporaryDirectory(prefix="tradeflow-bench-") as tmp:
        Path(tmp).chmod(0o755)  # the database runs as the postgres user when we are root
        infra = LocalInfra(Path(tmp), kafka_port=free_port(), db_port=free_port())
        try:
            infra.up()
            upgrade(infra.database_url)
            asyncio.run(wait_http(f"{receiver_base}/stats", 30))
            baseline = asyncio.run(receiver_rate(receiver_base, 10_000))
            log(f"receiver alone: {baseline:,.0f} requests/s")
            topic = "bench.fills"
            import dataclasses

            asyncio.run(ensure_topics(infra.kafka_bootstrap, [dataclasses.replace(EXEC_FILLS, name=topic)]))
            env = {**os.environ, "TRADEFLOW_ENVIRONMENT": "test", "TRADEFLOW_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
                   "TRADEFLOW_DATABASE_URL": infra.database_url, "TRADEFLOW_HTTP_PORT": str(notifier_port),
                   "TRADEFLOW_CONSUMER_SESSION_TIMEOUT_MS": "6000", "TRADEFLOW_LOG_LEVEL": "WARNING",
                   "TRADEFLOW_NOTIFIER_FILLS_TOPIC": topic, "TRADEFLOW_NOTIFIER_REPORT_TIME": "",
                   "TRADEFLOW_NOTIFIER_CHANNELS": json.dumps([{"id": CHANNEL, "kind": "webhook",
                                                              "url": f"{receiver_base}/hook", "secret": SECRET}]),
                   "TRADEFLOW_NOTIFIER_ROUTES": json.dumps([{"channel": CHANNEL, "events": ["fill"]}])}
            notifier = subprocess.Popen([str(Path(sys.executable).parent / "tradeflow"), "run", "notifier"], env=env,
                                        stdout=subprocess.DEVNULL, start_new_session=True)
            asyncio.run(wait_http(f"http://127.0.0.1:{notifier_port}/readyz", 60))
            result = asyncio.run(measure(infra.kafka_bootstrap, topic, receiver_base, args.deliveries, args.rate,
                                         args.seconds))
            emit("notifier_webhook_deliveries", result["throughput"], "deliveries/s", baseline)
            emit("notifier_event_to_delivery_p50", result["p50"], "ms")
            emit(f"notifier_event_to_delivery_p99_at_{args.rate:g}_per_s", result["p99"], "ms")
        finally:
            for process in (notifier, receiver):
                if process is not None and process.poll() is None:
                    os.kill(process.pid, signal.SIGTERM)
                    try:
                        process.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        os.kill(process.pid, signal.SIGKILL)
                        process.wait()
            infra.down(purge=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
