"""Exchange ingest throughput: websocket trades of a (fake) Binance → ticks acknowledged on md.ticks.v1.

One ingest process (the real CcxtTradeFeed + TickPublisher + Producer, as the service wires them)
subscribes to 200 symbols of the local fake Binance (tests/fakes/fake_binance.py), which runs in
a child process so it does not share this process's CPU. Once the feed is connected and caught
up, the fake pushes N aggTrade frames as fast as it can, in batches; the figure is N over the
time until the broker (a private Tansu) has acknowledged all N ticks.

The baseline, measured in the same run on the identical frames: ccxt's own handling of them
(the ccxt.pro websocket client's JSON decode + binance ``handle_message`` → ``handle_trade`` →
``parse_ws_trade`` into its trade cache), without any network. The difference of the two per
trade is what ingest adds over ccxt's parsing (tick conversion, dedup, validation, encoding,
producing, acks).

Prints JSON lines ``{"name", "value", "unit", "baseline"}``. Target: at least 20,000 trades/s.
Run: ``make bench`` or ``.venv/bin/python bench/ingest.py [--trades N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO_ROOT))  # for tests.fakes.fake_binance
from _common import PrivateTansu, emit, log  # noqa: E402

SYMBOLS = 200  # ccxt's limit for one watch_trades_for_symbols call; the settings' limit too
PUSH_BATCH = 500  # frames the fake writes before yielding to its event loop
WAIT_LIMIT_S = 60.0
WINDOW_S = 20.0  # the longest the throughput is measured for


def market_ids(symbols: int) -> list[str]:
    return [f"C{i:03d}USDT" for i in range(symbols)]


def unified_symbols(symbols: int) -> list[str]:
    return [f"C{i:03d}/USDT" for i in range(symbols)]


def trade_frames(n: int, symbols: int, t0_ms: int) -> list[str]:
    """n aggTrade websocket frames spread over the symbols, ids 1.. per symbol (deterministic)."""
    rng = random.Random(7)
    ids = market_ids(symbols)
    next_id = [1] * symbols
    prices = [100.0 + i for i in range(symbols)]
    frames = []
    for i in range(n):
        s = i % symbols
        prices[s] *= 1 + rng.gauss(0, 0.0002)
        trade_id = next_id[s]
        next_id[s] += 1
        ts_ms = t0_ms + i // 10  # in the past: no tick is "in the future"
        frames.append(json.dumps({
            "e": "aggTrade", "E": ts_ms, "s": ids[s], "a": trade_id, "p": f"{prices[s]:.2f}",
            "q": f"{rng.uniform(0.001, 2):.5f}", "f": trade_id, "l": trade_id, "T": ts_ms,
            "m": bool(i % 2), "M": True,
        }, separators=(",", ":")))
    return frames


def warm_up_frame(t0_ms: int) -> str:
    """One trade (id 0 of the first symbol) that makes the feed connect and run its REST catch-up."""
    return json.dumps({"e": "aggTrade", "E": t0_ms, "s": market_ids(1)[0], "a": 0, "p": "100.00",
                       "q": "1.00000", "f": 0, "l": 0, "T": t0_ms, "m": False, "M": True})


# --- the fake exchange (child process) ------------------------------------------------------

async def run_fake_exchange(n: int, symbols: int, t0_ms: int) -> None:
    """Child: serve the fake Binance; after "go" on stdin push the frames; exit on EOF.

    Protocol on stdout (one JSON object per line): {"port"} when listening, {"subscribed"} when
    the feed's websocket has subscribed (the warm-up trade is sent then), {"pushed", "pushed_s"}
    after "stop" on stdin (or when all frames are out).
    """
    from tests.fakes.fake_binance import FakeBinance

    fake = FakeBinance({market_id: (market_id[:-4], "USDT") for market_id in market_ids(symbols)})
    frames = trade_frames(n, symbols, t0_ms)
    await fake.start()
    print(json.dumps({"port": fake.port}), flush=True)
    try:
        deadline = time.monotonic() + WAIT_LIMIT_S
        while fake.connected_websockets < 1:
            if time.monotonic() > deadline:
                raise TimeoutError("the feed did not subscribe")
            await asyncio.sleep(0.02)
        await fake.send_raw_frame(warm_up_frame(t0_ms))
        print(json.dumps({"subscribed": True}), flush=True)
        if (await asyncio.to_thread(sys.stdin.readline)).strip() != "go":
            return
        stop = asyncio.ensure_future(asyncio.to_thread(sys.stdin.readline))
        started = time.perf_counter()
        pushed = 0
        while pushed < n and not stop.done():
            for frame in frames[pushed:pushed + PUSH_BATCH]:
                await fake.send_raw_frame(frame)
            pushed = min(n, pushed + PUSH_BATCH)
            await asyncio.sleep(0)
        print(json.dumps({"pushed": pushed, "pushed_s": time.perf_counter() - started}), flush=True)
        await stop  # the parent says "stop" or closes stdin when done
    finally:
        await fake.stop()


# --- the measurements (parent) --------------------------------------------------------------

class FakeExchangeProcess:
    """The child process running the fake Binance, spoken to by lines on stdin/stdout."""

    def __init__(self, n: int, symbols: int, t0_ms: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--fake", json.dumps({"n": n, "symbols": symbols, "t0_ms": t0_ms})],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
        )

    async def read(self, field: str) -> dict:
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), WAIT_LIMIT_S)
        if not line:
            raise RuntimeError(f"the fake exchange exited (code {self.process.poll()}) before sending {field!r}")
        message = json.loads(line)
        if field not in message:
            raise RuntimeError(f"the fake exchange sent {message!r}, expected {field!r}")
        return message

    def tell(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()  # EOF: the child stops its server and exits
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


async def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def ingest_rate(bootstrap: str, n: int, symbols: int, t0_ms: int) -> tuple[float, float, str, object, dict]:
    """(trades/s acknowledged, fake's push rate, websocket URL the feed used, feed settings, markets)."""
    from tradeflow.admin import ensure_topics
    from tradeflow.bus import DeadLetters, Producer
    from tradeflow.telemetry import Telemetry
    from tradeflow.topics import MD_TICKS, OPS_ALERTS
    from tradeflow.trades.receive_clock import ReceiveClock
    from tradeflow_exchanges.ccxt_client import ExchangeFeedSettings, create_ccxt_exchange
    from tradeflow_ingest.adapters.ccxt_feed import CcxtTradeFeed
    from tradeflow_ingest.adapters.tick_publisher import TickPublisher
    from tradeflow_ingest.domain.price_guard import PriceGuard
    from tradeflow_ingest.settings import IngestSettings

    settings = IngestSettings(kafka_bootstrap=bootstrap, log_level="WARNING")
    await ensure_topics(settings, [MD_TICKS, OPS_ALERTS])
    fake = FakeExchangeProcess(n, symbols, t0_ms)
    telemetry = Telemetry("ingest-bench", settings)
    producer = Producer(settings, telemetry, client_id="ingest-bench")
    feed = None
    exchanges = []

    def exchange_without_throttle(feed_settings):
        # The catch-up after connecting makes one REST call per symbol; ccxt's client-side rate
        # limit would spread 200 of them over 10 s against a loopback fake that has no limit.
        exchange = create_ccxt_exchange(feed_settings)
        exchange.enableRateLimit = False
        exchanges.append(exchange)
        return exchange

    try:
        port = (await fake.read("port"))["port"]
        feed_settings = ExchangeFeedSettings(
            id="binance", name="bench", symbols=tuple(unified_symbols(symbols)),
            urls={"public": f"http://127.0.0.1:{port}/api/v3", "ws.spot": f"ws://127.0.0.1:{port}/ws"},
        )
        await producer.start()
        publisher = TickPublisher(producer, DeadLetters(producer, telemetry), telemetry,
                                  price_guard=PriceGuard(settings.max_price_deviation), service_name="ingest-bench")
        feed = CcxtTradeFeed(feed_settings, publisher=publisher, clock=ReceiveClock(), telemetry=telemetry,
                             exchange_factory=exchange_without_throttle)
        await feed.start()
        await fake.read("subscribed")
        await wait_for(lambda: feed.status().published >= 1, "the warm-up trade (connect + REST catch-up)")
        log(f"ingest: feed connected and caught up on {symbols} symbols; pushing {n:,} trades")
        ws_url = next(iter(exchanges[0].clients))
        baseline_published = feed.status().published
        started = time.perf_counter()
        fake.tell("go")
        # Until n ticks are acknowledged, or the measuring window closes: the rate is then what
        # was acknowledged within it (a slow ingest still gets a figure, not a timeout).
        while True:
            if feed.status().published - baseline_published >= n or time.perf_counter() - started >= WINDOW_S:
                break
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - started
        status = feed.status()
        acknowledged = status.published - baseline_published
        if status.rejected:
            raise RuntimeError(f"{status.rejected} ticks rejected; the bench frames should all be valid")
        await feed.stop()  # before the fake stops, so its going away is not logged as a failure
        feed = None
        fake.tell("stop")
        pushed = await fake.read("pushed")
        log(f"ingest: {acknowledged:,} of {n:,} acknowledged in {elapsed:.2f}s; the fake pushed "
            f"{pushed['pushed']:,} frames in {pushed['pushed_s']:.2f}s")
        markets = exchanges[0].markets  # what ccxt loaded from the fake, for the baseline
        return acknowledged / elapsed, pushed["pushed"] / pushed["pushed_s"], ws_url, feed_settings, markets
    finally:
        if feed is not None:
            await feed.stop()
        await producer.stop()
        telemetry.shutdown()
        fake.stop()


async def ccxt_parse_rate(feed_settings, markets: dict, ws_url: str, n: int, symbols: int, t0_ms: int) -> float:
    """ccxt's handling of the same frames: its client's decode + binance handle_message, no network."""
    from tradeflow_exchanges.ccxt_client import create_ccxt_exchange

    exchange = create_ccxt_exchange(feed_settings)
    try:
        exchange.set_markets(list(markets.values()))  # the markets the live feed loaded
        client = exchange.client(ws_url)  # not connected: only its message path is used
        frames = trade_frames(n, symbols, t0_ms)
        for frame in frames[:1000]:  # warm the caches like the live run's warm-up did
            client.handle_text_or_binary_message(frame)
        exchange.trades = {}
        started = time.perf_counter()
        for frame in frames:
            client.handle_text_or_binary_message(frame)
        elapsed = time.perf_counter() - started
        parsed = sum(len(cache) for cache in exchange.trades.values())
        if parsed != min(n, symbols * exchange.safe_integer(exchange.options, "tradesLimit", 1000)):
            raise RuntimeError(f"ccxt kept {parsed} of {n} trades: the frames were not parsed as trades")
        return n / elapsed
    finally:
        await exchange.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=100_000)
    parser.add_argument("--fake", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fake:
        spec = json.loads(args.fake)
        asyncio.run(run_fake_exchange(spec["n"], spec["symbols"], spec["t0_ms"]))
        return 0

    n = args.trades
    t0_ms = time.time_ns() // 1_000_000 - (n // 10) - 60_000  # the last frame is a minute old
    with PrivateTansu() as broker:
        rate, push_rate, ws_url, feed_settings, markets = asyncio.run(ingest_rate(broker.bootstrap, n, SYMBOLS, t0_ms))
    log(f"ingest: {rate:,.0f} trades/s acknowledged (the fake pushed at {push_rate:,.0f} frames/s)")
    baseline = asyncio.run(ccxt_parse_rate(feed_settings, markets, ws_url, n, SYMBOLS, t0_ms))
    log(f"ccxt alone: {baseline:,.0f} trades/s parsed from the same frames")
    log(f"per trade: ingest {1e6 / rate:.1f} us end to end, ccxt's parse alone {1e6 / baseline:.1f} us, "
        f"ingest overhead {1e6 / rate - 1e6 / baseline:.1f} us")
    emit("ingest_ws_200_symbols_trades_per_s", rate, "trades/s", baseline)
    emit("ingest_overhead_over_ccxt_parse", 1e6 / rate - 1e6 / baseline, "us/trade")
    return 0


if __name__ == "__main__":
    sys.exit(main())
