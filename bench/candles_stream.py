"""Live candle stream fan-out: md.candles.v1 → candle-builder's ``/v1/stream/candles`` → 200 websockets.

On a private loopback broker, the stream part of the candle-builder (its CandleFeed, broadcaster
and websocket router, served by uvicorn in a child process so the clients do not share its
CPU) serves websocket clients that all subscribe to every key. Candles are produced to the
candles topic at 100/s; the latency of each frame is measured from the moment its candle is
handed to the producer (as the pipeline does after its database write) to the moment a client
has it. Same run, same candles: first 1 client (the baseline), then 200 clients.

Prints JSON lines ``{"name", "value", "unit", "baseline"}``. Target: p99 < 50 ms with 200
clients. Run: ``.venv/bin/python bench/candles_stream.py [--clients 200 --rate 100 --seconds 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PrivateTansu, emit, free_port, log  # noqa: E402

MINUTE_NS = 60 * 1_000_000_000
T0_NS = 1_772_445_600 * 1_000_000_000  # 2026-03-02 10:00 UTC
SYMBOLS = [f"S{i:02d}/USDT" for i in range(20)]
EXCHANGE = "bench"


def serve(bootstrap: str, topic: str, port: int, client_queue: int) -> None:
    """Child process: only the stream part of the candle-builder, on loopback."""
    import uvicorn
    from tradeflow.service import create_service_app
    from tradeflow.telemetry import Telemetry
    from tradeflow_candle_builder.bootstrap import create_stream
    from tradeflow_candle_builder.settings import CandleBuilderSettings
    from tradeflow_candle_builder.stream.api import create_stream_router

    settings = CandleBuilderSettings(kafka_bootstrap=bootstrap, candles_topic=topic, stream_client_queue=client_queue)
    telemetry = Telemetry("candle-stream-bench", settings)
    from tradeflow.bus import KafkaBus

    broadcaster, feed = create_stream(settings, KafkaBus(settings, telemetry))

    async def positioned() -> tuple[bool, str]:
        return feed.is_positioned(), "feed"

    app = create_service_app("candle-stream-bench", settings, telemetry, components=[feed],
                             routers=[create_stream_router(broadcaster)], readiness_checks=[positioned])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def wait_ready(port: int, server: subprocess.Popen, timeout_s: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        while True:
            if server.poll() is not None:
                raise RuntimeError("the stream server exited at start")
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the stream server was not ready in time")
            await asyncio.sleep(0.2)


async def run_phase(port: int, producer, topic: str, clients: int, rate: int, seconds: float, phase: int) -> dict:
    """``clients`` websockets subscribed to every key; ``rate`` candles/s for ``seconds``."""
    from tradeflow.messages import Candle
    from tradeflow.topics import market_key
    from websockets.asyncio.client import connect

    keys = ",".join(market_key(EXCHANGE, s) for s in SYMBOLS)
    url = f"ws://127.0.0.1:{port}/v1/stream/candles?keys={keys}&timeframes=1m"
    total = int(rate * seconds)
    sent_at: dict[tuple[str, str], float] = {}
    latencies: list[float] = []
    received = [0] * clients
    closed_codes: list[int] = []

    async def client(i: int, ws) -> None:
        try:
            async for text in ws:
                now = time.perf_counter()
                frame = json.loads(text)
                latencies.append(now - sent_at[(frame["symbol"], frame["ts"])])
                received[i] += 1
                if received[i] == total:
                    return
        finally:
            if ws.close_code is not None and ws.close_code != 1000:
                closed_codes.append(ws.close_code)

    sockets = [await connect(url, max_size=2**20) for _ in range(clients)]
    readers = [asyncio.create_task(client(i, ws)) for i, ws in enumerate(sockets)]
    started = time.perf_counter()
    acks = []
    for n in range(total):
        # Paced on absolute times, so a late wake-up does not slow the rate down.
        delay = started + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        symbol = SYMBOLS[n % len(SYMBOLS)]
        ts_start = T0_NS + (phase * 1_000_000 + n // len(SYMBOLS)) * MINUTE_NS
        candle = Candle(exchange=EXCHANGE, symbol=symbol, timeframe="1m", ts_start=ts_start,
                        ts_end=ts_start + MINUTE_NS, open=1.0, high=2.0, low=0.5, close=1.5, volume=10.0, trades=3)
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts_start // 1_000_000_000))
        sent_at[(symbol, ts)] = time.perf_counter()
        acks.append(producer.send(topic, market_key(EXCHANGE, symbol), candle))
    await asyncio.gather(*acks)
    done, pending = await asyncio.wait(readers, timeout=10)
    for task in pending:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    lat_ms = [x * 1000 for x in latencies]
    return {"p50": percentile(lat_ms, 0.50), "p99": percentile(lat_ms, 0.99), "max": max(lat_ms, default=float("nan")),
            "delivered": sum(received), "expected": total * clients, "dropped": len(closed_codes),
            "elapsed": time.perf_counter() - started}


TOPIC = "md.candles.v1"


async def create_topic(bootstrap: str) -> None:
    from tradeflow.admin import ensure_topics
    from tradeflow.topics import MD_CANDLES

    await ensure_topics(bootstrap, [dataclasses.replace(MD_CANDLES, name=TOPIC)], with_dlq=False)


def start_server(bootstrap: str, port: int, client_queue: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--serve", "--bootstrap", bootstrap, "--port", str(port),
                             "--client-queue", str(client_queue)],
                            stdout=sys.stderr)  # stdout is for result lines only


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


async def bench(bootstrap: str, port: int, server: subprocess.Popen, args: argparse.Namespace) -> None:
    from tradeflow.bus import Producer
    from tradeflow.settings import CommonSettings
    from tradeflow.telemetry import Telemetry

    settings = CommonSettings(kafka_bootstrap=bootstrap)
    producer = Producer(settings, Telemetry("bench", settings), client_id="bench-candles")
    try:
        await wait_ready(port, server)
        await producer.start()
        log(f"1 client, {args.rate} candles/s for {args.seconds}s (baseline)")
        one = await run_phase(port, producer, TOPIC, 1, args.rate, args.seconds, phase=1)
        log(f"1 client: {one}")
        log(f"{args.clients} clients, {args.rate} candles/s for {args.seconds}s")
        many = await run_phase(port, producer, TOPIC, args.clients, args.rate, args.seconds, phase=2)
        log(f"{args.clients} clients: {many}")
    finally:
        await producer.stop()
    n = args.clients
    emit(f"stream_p99_latency_{n}_clients", many["p99"], "ms", one["p99"])
    emit(f"stream_p50_latency_{n}_clients", many["p50"], "ms", one["p50"])
    emit(f"stream_max_latency_{n}_clients", many["max"], "ms", one["max"])
    emit(f"stream_frames_delivered_{n}_clients", many["delivered"], "frames", many["expected"])
    emit(f"stream_clients_dropped_{n}_clients", many["dropped"], "clients", 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rate", type=int, default=100, help="candles per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--client-queue", type=int, default=1000)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.bootstrap, TOPIC, args.port, args.client_queue)
        return 0
    with PrivateTansu() as broker:
        asyncio.run(create_topic(broker.bootstrap))
        port = free_port()
        server = start_server(broker.bootstrap, port, args.client_queue)
        try:
            asyncio.run(bench(broker.bootstrap, port, server, args))
        finally:
            stop_server(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
