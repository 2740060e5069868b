"""The trading path exactly once through crashes (issue 14, "Exactly once").

Every trading service runs as a process (`tradeflow run`) on a real broker and database: a
generated day of trades of three symbols is replayed in four parts (`tradeflow replay`, ingest's
replay) through the candle-builder, the strategy service (`sma_cross` and `rsi` on 5m candles,
one paper account per strategy and symbol), risk and execution (paper). The day runs twice, each
run on a fresh broker and a fresh database (same names, ids and accounts, so the two runs must
give the same client order ids): once undisturbed, then with strategy, risk and execution each
SIGKILLed at a seeded random moment while a part is being handled, and started again.

Both runs give the same orders (client order ids, sides, quantities, their transitions) and the
same fills (ids, quantities, prices, fees); a message published again after a crash is identical
to the first; execution's positions are the fold of the fills. The undisturbed run's candles
then go through `tradeflow backtest`, which must give the same trades (tests/e2e/trading_parity.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal as D
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from tradeflow.messages import Candle, Fill, Order, OrderEvent, Signal
from tradeflow.topics import EXEC_FILLS, EXEC_ORDERS, MD_CANDLES, RISK_ORDERS, STRATEGY_SIGNALS
from tradeflow_trading.positions import Position

from tests.e2e.service_process import BIN, ServiceProcess, free_port
from tests.e2e.trading_day import trading_day, write_parts
from tests.risk_support import decoded, read_all
from tests.trading_topics import checked_by_key

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

EXCHANGE = "replaydex"
SYMBOLS = {"BTC/USDT": 64000.0, "ETH/USDT": 3100.0, "SOL/USDT": 140.0}
TIMEFRAME = "5m"
STRATEGIES = {"sma": ("sma_cross", {"fast": 4, "slow": 12}),
              "rsi": ("rsi", {"period": 7, "lower": 35.0, "upper": 65.0})}
CASH, FEE, SLIPPAGE_BPS = "10000", "0.001", "2"
PARTS = 4
KILL_SEED = 14
VICTIMS = ("strategy", "risk", "execution")
SERVICES = ("candle-builder", *VICTIMS)


def account_of(tag: str, symbol: str) -> str:
    return f"{tag}-{symbol.split('/')[0].lower()}"


def instances() -> list[dict]:
    """One instance per strategy and symbol, each on its own account: an account's signals then
    come from one market partition in candle order, so its decisions cannot depend on how the
    strategy service interleaves the symbols."""
    return [{"id": account_of(tag, symbol), "strategy": strategy, "account_id": account_of(tag, symbol),
             "exchange": EXCHANGE, "symbols": [symbol], "timeframe": TIMEFRAME, "params": params}
            for tag, (strategy, params) in STRATEGIES.items() for symbol in SYMBOLS]


def accounts() -> list[dict]:
    return [{"id": i["account_id"], "exchange": EXCHANGE, "mode": "paper", "balances": {"USDT": CASH},
             "fees": {"maker": FEE, "taker": FEE}, "slippage_bps": SLIPPAGE_BPS} for i in instances()]


@dataclass
class RunResult:
    orders: dict[str, Order]  # risk.orders.v1 by client order id
    transitions: dict[str, list[str]]  # exec.orders.v1: the statuses of each order, in seq order
    fills: dict[str, Fill]  # exec.fills.v1 by fill id
    api_orders: dict[str, str]  # GET /v1/orders: status by client order id
    positions: dict[tuple[str, str], tuple[D, D, D]]  # GET /v1/positions: (quantity, average, realized)
    signals: int
    candles: list = field(default_factory=list)  # md.candles.v1 (the parity test's input)
    killed: list[tuple[str, int]] = field(default_factory=list)  # (service, exec.orders.v1 messages at the kill)
    events: int = 0  # exec.orders.v1 messages at the end
    flow: list[float] = field(default_factory=list)  # when exec.orders.v1 grew, seconds after the replay began
    reasons: dict[str, str] = field(default_factory=dict)  # the last transition's reason, by client order id


class Pipeline:
    """The four services of one run on one broker and database, each restartable."""

    def __init__(self, bootstrap: str, database_url: str, api_key: str, logs: Path) -> None:
        self.bootstrap, self.logs = bootstrap, logs
        logs.mkdir(parents=True, exist_ok=True)
        self.ports = {name: free_port() for name in SERVICES}
        common = {**os.environ, "TRADEFLOW_ENVIRONMENT": "test", "TRADEFLOW_API_KEYS": api_key,
                  "TRADEFLOW_KAFKA_BOOTSTRAP": bootstrap, "TRADEFLOW_DATABASE_URL": database_url,
                  "TRADEFLOW_CONSUMER_SESSION_TIMEOUT_MS": "6000", "TRADEFLOW_LOG_FORMAT": "text",
                  "TRADEFLOW_ACCOUNTS": json.dumps(accounts())}
        own = {
            "candle-builder": {"TRADEFLOW_CANDLE_BUILDER_TICK_RETENTION_DAYS": "36500"},
            "strategy": {"TRADEFLOW_STRATEGY_INSTANCES": json.dumps(instances()),
                         "TRADEFLOW_CANDLE_BUILDER_URL": f"http://127.0.0.1:{self.ports['candle-builder']}"},
            "risk": {"TRADEFLOW_INSTANCE_ID": "risk-0"},
            "execution": {},
        }
        self.env = {name: {**common, **own[name], "TRADEFLOW_HTTP_PORT": str(self.ports[name])} for name in SERVICES}
        self.processes: dict[str, ServiceProcess] = {}
        self.lives = dict.fromkeys(SERVICES, 0)

    def start(self, name: str) -> ServiceProcess:
        self.lives[name] += 1
        process = ServiceProcess(name, self.env[name], self.ports[name], self.logs / f"{name}-{self.lives[name]}.log")
        process.start()
        self.processes[name] = process
        return process

    async def start_all(self, client: httpx.AsyncClient) -> None:
        self.start("candle-builder")
        await self.processes["candle-builder"].wait_ready(client, 90)  # the strategy service warms up from it
        for name in VICTIMS:
            self.start(name)
        await asyncio.gather(*(self.processes[n].wait_ready(client, 90) for n in VICTIMS))

    def stop_all(self) -> dict[str, int]:
        return {name: process.stop() for name, process in self.processes.items()}


async def replay(path: Path, bootstrap: str) -> None:
    done = await asyncio.to_thread(subprocess.run, [str(BIN / "tradeflow"), "replay", str(path)],
                                   env={**os.environ, "TRADEFLOW_KAFKA_BOOTSTRAP": bootstrap},
                                   capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


async def end_offsets(bootstrap: str, topics: list[str]) -> dict[str, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        out = {}
        for topic in topics:
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            out[topic] = sum((await consumer.end_offsets(tps)).values()) if tps else 0
        return out
    finally:
        await consumer.stop()


async def until_quiet(bootstrap: str, idle_s: float, timeout_s: float, done=lambda: True) -> None:
    """Until ``done()`` holds and the trading topics have not grown for ``idle_s``."""
    topics = [MD_CANDLES.name, STRATEGY_SIGNALS.name, RISK_ORDERS.name, EXEC_ORDERS.name, EXEC_FILLS.name]
    deadline = time.monotonic() + timeout_s
    last, since = None, time.monotonic()
    while True:
        now = await end_offsets(bootstrap, topics)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= idle_s and await done():
            return
        assert time.monotonic() < deadline, f"the trading topics did not settle: {now}"
        await asyncio.sleep(0.5)


async def collect(pipeline: Pipeline, client: httpx.AsyncClient) -> RunResult:
    bootstrap = pipeline.bootstrap
    orders = checked_by_key(decoded(await read_all(bootstrap, RISK_ORDERS.name), Order), lambda o: o.client_order_id)
    events = checked_by_key(decoded(await read_all(bootstrap, EXEC_ORDERS.name), OrderEvent),
                            lambda e: (e.client_order_id, e.seq))
    fills = checked_by_key(decoded(await read_all(bootstrap, EXEC_FILLS.name), Fill), lambda f: f.fill_id)
    signals = checked_by_key(decoded(await read_all(bootstrap, STRATEGY_SIGNALS.name), Signal), lambda s: s.signal_id)
    transitions: dict[str, list[str]] = {}
    reasons: dict[str, str] = {}
    for (cid, seq), event in sorted(events.items()):
        transitions.setdefault(cid, []).append(event.status)
        reasons[cid] = event.reason
        assert len(transitions[cid]) == seq, f"{cid}: transition {seq} without the ones before"
    base = pipeline.processes["execution"].base
    api_orders = {o["client_order_id"]: o["status"]
                  for o in (await client.get(f"{base}/v1/orders", params={"limit": 1000})).json()}
    positions = {}
    for account in accounts():
        for p in (await client.get(f"{base}/v1/positions", params={"account_id": account["id"]})).json():
            positions[(p["account_id"], p["symbol"])] = (D(p["quantity"]), D(p["average_price"]), D(p["realized_pnl"]))
    return RunResult(orders, transitions, fills, api_orders, positions, len(signals), reasons=reasons)


async def order_flow(bootstrap: str, started: float, seen: list[float]) -> None:
    """Record when exec.orders.v1 grows (seconds since ``started``) until cancelled."""
    last = 0
    while True:
        now = (await end_offsets(bootstrap, [EXEC_ORDERS.name]))[EXEC_ORDERS.name]
        if now != last:
            last = now
            seen.append(time.monotonic() - started)
        await asyncio.sleep(0.25)


async def run_day(parts: list[Path], bootstrap: str, database_url: str, api_key: str, logs: Path, *,
                  kill_at: dict[str, int] | None = None) -> RunResult:
    """The day through the pipeline; with ``kill_at``, each service SIGKILLed once that many
    order transitions are on exec.orders.v1 (so mid-stream however loaded the machine is), and
    started again at once."""
    pipeline = Pipeline(bootstrap, database_url, api_key, logs)
    killed: list[tuple[str, int]] = []
    flow: list[float] = []
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            await pipeline.start_all(client)
            started = time.monotonic()
            watching = asyncio.create_task(order_flow(bootstrap, started, flow))

            async def replay_day() -> None:
                for part in parts:
                    await replay(part, bootstrap)

            async def kill_and_restart(victim: str, at_events: int) -> None:
                # The broker tells nobody when a topic grows: ask it.
                while (await end_offsets(bootstrap, [EXEC_ORDERS.name]))[EXEC_ORDERS.name] < at_events:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)
                pipeline.processes[victim].kill()
                assert pipeline.processes[victim].proc.returncode == -signal.SIGKILL
                killed.append((victim, (await end_offsets(bootstrap, [EXEC_ORDERS.name]))[EXEC_ORDERS.name]))
                await pipeline.start(victim).wait_ready(client, 90)

            await asyncio.gather(replay_day(), *(kill_and_restart(v, at) for v, at in (kill_at or {}).items()))

            async def every_service_up() -> bool:
                return all(p.proc.poll() is None for p in pipeline.processes.values())

            await until_quiet(bootstrap, idle_s=10, timeout_s=240, done=every_service_up)
            watching.cancel()
            result = await collect(pipeline, client)
            result.killed, result.flow = killed, flow
            result.events = (await end_offsets(bootstrap, [EXEC_ORDERS.name]))[EXEC_ORDERS.name]
            result.candles = decoded(await read_all(bootstrap, MD_CANDLES.name), Candle)
    finally:
        codes = pipeline.stop_all()
    for name, code in codes.items():
        assert code in (0, -signal.SIGTERM), f"{name} did not stop cleanly:\n{pipeline.processes[name].log_tail()}"
    return result


def fresh_database(local_infra, run: str) -> str:
    from tradeflow_db.migrate import upgrade

    url = local_infra.create_database(f"exactly_once_{run}_{uuid.uuid4().hex[:8]}")
    upgrade(url)
    return url


def fresh_broker(private_broker) -> str:
    """The private broker restarted: no topics, records or committed offsets."""
    private_broker.down(components=["kafka"])
    private_broker.up(postgres=False)
    return private_broker.kafka_bootstrap


def assert_consistent(run: RunResult, label: str) -> None:
    """Inside one run: every approved order reached execution, every fill belongs to an order of
    its run and filled it, the API agrees with the topics, the positions are the fold of the fills."""
    assert set(run.transitions) == set(run.orders), f"{label}: orders approved by risk and seen by execution differ"
    assert run.api_orders == {cid: statuses[-1] for cid, statuses in run.transitions.items()}, label
    for fill in run.fills.values():
        assert fill.client_order_id in run.orders, f"{label}: fill {fill.fill_id} of an unknown order"
        assert run.transitions[fill.client_order_id][-1] in ("filled", "partially_filled"), fill.fill_id
    for account in accounts():
        for symbol in SYMBOLS:
            mine = [f for f in run.fills.values() if (f.account_id, f.symbol) == (account["id"], symbol)]
            folded = Position.fold(account["id"], EXCHANGE, symbol, mine)
            got = run.positions.get((account["id"], symbol), (D(0), D(0), D(0)))
            assert (got[0], got[2]) == (folded.quantity, folded.realized_pnl), (label, account["id"], symbol)
            if folded.quantity:
                assert got[1] == folded.average_price, (label, account["id"], symbol)


def orders_view(run: RunResult) -> dict:
    return {cid: (o.account_id, o.symbol, o.side, o.order_type, o.quantity, o.quote_quantity, run.transitions[cid])
            for cid, o in run.orders.items()}


def fills_view(run: RunResult) -> dict:
    return {i: (f.client_order_id, f.quantity, f.price, f.fee, f.fee_currency, f.liquidity)
            for i, f in run.fills.items()}


UNDISTURBED: dict[str, RunResult] = {}  # the first test's undisturbed run, for the parity test


@pytest.fixture(scope="module")
def day_files(tmp_path_factory) -> list[Path]:
    return write_parts(trading_day(SYMBOLS, seed=20260302), EXCHANGE, tmp_path_factory.mktemp("day"), PARTS)


async def test_the_same_orders_and_fills_with_strategy_risk_and_execution_killed_at_random_moments(
        day_files, database_url, local_infra, private_broker, api_key, tmp_path):
    undisturbed = await run_day(day_files, fresh_broker(private_broker), fresh_database(local_infra, "calm"), api_key,
                                tmp_path / "calm")
    assert_consistent(undisturbed, "undisturbed")
    UNDISTURBED["run"] = undisturbed
    filled = [cid for cid, statuses in undisturbed.transitions.items() if statuses[-1] == "filled"]
    assert len(filled) >= 20, f"too few orders to show anything: {len(filled)} filled of {len(undisturbed.orders)}"
    for tag in STRATEGIES:  # both strategies traded
        assert any(o.account_id.startswith(f"{tag}-") for o in undisturbed.orders.values()), tag

    # Random moments while orders flow: each victim dies once a seeded number of the order
    # transitions the undisturbed run made are on the topic (a count, not a time: a loaded
    # machine shifts times, not counts).
    first, last = undisturbed.flow[0], undisturbed.flow[-1]
    rng = random.Random(KILL_SEED)
    kill_at = {victim: rng.randint(1, max(1, int(0.7 * undisturbed.events))) for victim in VICTIMS}
    crashed = await run_day(day_files, fresh_broker(private_broker), fresh_database(local_infra, "crash"), api_key,
                            tmp_path / "crash", kill_at=kill_at)
    assert sorted(victim for victim, _ in crashed.killed) == sorted(VICTIMS)
    # Each kill came while orders were still flowing: some before it, more after it.
    assert all(0 < at_kill < crashed.events for _, at_kill in crashed.killed), crashed.killed
    ended = Counter(f"{t[-1]} {undisturbed.reasons[cid]}".strip() for cid, t in undisturbed.transitions.items())
    print(f"orders {len(undisturbed.orders)} ({ended}), fills {len(undisturbed.fills)}, "
          f"signals {undisturbed.signals}; orders flowed {first:.1f}-{last:.1f} s; kills (service, exec.orders.v1 "
          f"messages then): {crashed.killed} of {crashed.events}")
    assert_consistent(crashed, "with crashes")
    assert orders_view(crashed) == orders_view(undisturbed)
    assert fills_view(crashed) == fills_view(undisturbed)
    assert crashed.positions == undisturbed.positions


def candles_file(run: RunResult, symbol: str, path: Path) -> tuple[int, int]:
    """The run's TIMEFRAME candles of ``symbol`` (latest revision of each) as a backtest CSV;
    (first start, last end) in ms."""
    latest = {}
    for c in run.candles:
        if (c.exchange, c.symbol, c.timeframe) == (EXCHANGE, symbol, TIMEFRAME):
            if c.ts_start not in latest or latest[c.ts_start].revision < c.revision:
                latest[c.ts_start] = c
    rows = [latest[ts] for ts in sorted(latest)]
    with path.open("w") as out:
        out.write("ts,open,high,low,close,volume\n")
        for c in rows:
            out.write(f"{c.ts_start // 1_000_000},{c.open!r},{c.high!r},{c.low!r},{c.close!r},{c.volume!r}\n")
    return rows[0].ts_start // 1_000_000, rows[-1].ts_end // 1_000_000


def paper_trades(run: RunResult, account_id: str) -> tuple[list[tuple], list[Fill]]:
    """The account's fills paired into round trips (entry, exit): (entry price, exit price,
    quantity, fees) per closed trade, and the fills of a position still open."""
    fills = sorted((f for f in run.fills.values() if f.account_id == account_id), key=lambda f: f.ts_event)
    trades, open_fills = [], []
    for fill in fills:
        if fill.side == "buy":
            assert not open_fills, f"{account_id}: a second entry while holding"
            open_fills = [fill]
        else:
            (entry,) = open_fills
            assert fill.quantity == entry.quantity, f"{account_id}: an exit of another quantity"
            trades.append((entry.price, fill.price, entry.quantity, entry.fee + fill.fee))
            open_fills = []
    return trades, open_fills


async def test_the_paper_run_and_tradeflow_backtest_on_its_candles_give_the_same_trades(
        day_files, database_url, local_infra, private_broker, api_key, tmp_path):
    run = UNDISTURBED.get("run") or await run_day(
        day_files, fresh_broker(private_broker), fresh_database(local_infra, "parity"), api_key, tmp_path / "run")
    compared = 0
    for instance in instances():
        (symbol,) = instance["symbols"]
        since, until = candles_file(run, symbol, tmp_path / f"{instance['id']}.csv")
        done = await asyncio.to_thread(subprocess.run, [
            str(BIN / "tradeflow"), "backtest", "--strategy", instance["strategy"],
            "--params", json.dumps(instance["params"]), "--exchange", EXCHANGE, "--symbol", symbol,
            "--timeframe", TIMEFRAME, "--since", str(since), "--until", str(until),
            "--candles", str(tmp_path / f"{instance['id']}.csv"), "--cash", CASH,
            "--fee-bps", str(D(FEE) * 10_000), "--slippage-bps", SLIPPAGE_BPS,
            "--json", "--no-store", "--no-progress"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        backtest = [(D(t["entry_price"]), D(t["exit_price"]), D(t["quantity"]), D(t["fees"]))
                    for t in json.loads(done.stdout)["trades"]]
        paper, still_open = paper_trades(run, instance["account_id"])
        assert paper == backtest, instance["id"]
        compared += len(paper)
    assert compared >= 10, f"only {compared} closed trades compared"
