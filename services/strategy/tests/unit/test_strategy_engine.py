"""The strategy service layer without a broker or a database: candles in, signals out.

The engine gets plain records (key, partition, candle, headers) and in-memory stand-ins for
its ports: the candle-builder's API (which holds every candle, as the real one does, the
"future" ones included), the stored fills, the outbound producer and the failure log. The
expected signals are the whole-history decisions of the same strategy (the backtest's), with
design.md's ids.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
import pytest
from msgspec.structs import replace
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tradeflow.clients.candles import CandleApiError, StoredCandle
from tradeflow.messages import Candle, Fill, Signal
from tradeflow.settings import CommonSettings
from tradeflow.telemetry import Telemetry
from tradeflow_strategy.adapters.candle_history import CandleBuilderHistory
from tradeflow_strategy.domain.instances import InstanceDefinition, InstanceRecord
from tradeflow_strategy.engine import FAILED, RUNNING, StoredFill, StrategyEngine, WarmUpError
from tradeflow_trading.strategies.sma_cross import SmaCross
from tradeflow_trading.strategy import Decisions, EventStrategy, IntParam, VectorStrategy
from tradeflow_trading.strategy.parity import frame_candles, history_intents

from tests.strategy_candles import MINUTE, random_walk

EXCHANGE = "paper"
A, B = "BTC/USDT", "ETH/USDT"
START = 150  # the stream starts at this candle; the store holds every candle of the frames


# --- stand-ins for the ports -------------------------------------------------------------------


class MemoryCandleApi:
    """The candle-builder's GET /v1/candles semantics (latest before an end, a range) over lists."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str], list[StoredCandle]] = defaultdict(list)
        self.error: Exception | None = None
        self.requests = 0

    def store(self, candles: list[Candle]) -> None:
        for c in candles:
            rows = self.rows[(c.exchange, c.symbol, c.timeframe)]
            rows[:] = [r for r in rows if r.ts != c.ts_start]
            rows.append(StoredCandle(c.ts_start, c.open, c.high, c.low, c.close, c.volume, c.trades))
            rows.sort(key=lambda r: r.ts)

    async def latest(self, exchange, symbol, timeframe, count, *, end_ns=None):
        self._answer()
        rows = [r for r in self.rows[(exchange, symbol, timeframe)] if end_ns is None or r.ts < end_ns]
        return rows[-count:]

    async def history(self, exchange, symbol, timeframe, start_ns, end_ns):
        self._answer()
        return [r for r in self.rows[(exchange, symbol, timeframe)] if start_ns <= r.ts < end_ns]

    def _answer(self) -> None:
        self.requests += 1
        if self.error is not None:
            raise self.error


class Sent:
    """The producer: signals (with the trace they were sent in) and alerts; can refuse a send."""

    def __init__(self) -> None:
        self.signals: list[Signal] = []
        self.trace_ids: list[int] = []
        self.alerts: list[tuple[str, str, str, dict]] = []
        self.refuse: Exception | None = None

    def publish(self, signal: Signal):
        future = asyncio.get_running_loop().create_future()
        if self.refuse is not None:
            future.set_exception(self.refuse)
            return future
        self.signals.append(signal)
        self.trace_ids.append(trace.get_current_span().get_span_context().trace_id)
        future.set_result(None)
        return future

    def alert(self, kind, severity, message, labels):
        self.alerts.append((kind, severity, message, labels))


@dataclass
class Failures:
    failed: dict[str, str] = field(default_factory=dict)

    async def mark_failed(self, instance_id: str, error: str) -> None:
        self.failed[instance_id] = error


@dataclass
class Fills:
    stored: list[StoredFill] = field(default_factory=list)

    async def fills_of(self, markets):
        return {m: [f for f in self.stored if (f.fill.strategy_id, f.fill.exchange, f.fill.symbol) == m]
                for m in markets}


@dataclass
class Rec:
    """A consumed record as the bus hands it over."""

    key: str
    partition: int
    value: Candle
    headers: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


class Boom(VectorStrategy):
    """Throws on a close above ``limit``."""

    name = "boom"
    limit = IntParam(105, low=1, high=10_000)

    def decide(self, data):
        if data.close[-1] > self.params.limit:
            raise RuntimeError(f"close {data.close[-1]} is too high")
        return Decisions(enter_long=np.zeros(len(data), bool), exit=np.zeros(len(data), bool))


class SlowBoot(EventStrategy):
    """New code for sma_cross that throws while warming up."""

    name = "sma_cross"
    fast = IntParam(3, low=1, high=100)
    slow = IntParam(8, low=2, high=100)

    def on_candle(self, ctx):
        raise ValueError("not today")


CATALOG = {"sma_cross": SmaCross, "boom": Boom}


class World:
    """An engine with its stand-ins, the candles of two markets stored, and the expected signals."""

    def __init__(self, catalog: dict | None = None, **engine_options) -> None:
        self.catalog = dict(catalog or CATALOG)
        self.api = MemoryCandleApi()
        self.sent = Sent()
        self.failures = Failures()
        self.fills = Fills()
        self.telemetry = Telemetry("strategy-test", CommonSettings())
        self.spans = InMemorySpanExporter()
        self.telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.frames = {A: random_walk(400, seed=1), B: random_walk(400, seed=2)}
        self.candles = {s: frame_candles(f, EXCHANGE, s) for s, f in self.frames.items()}
        for candles in self.candles.values():
            self.api.store(candles)
        self.engine = self.new_engine(**engine_options)

    def new_engine(self, **options) -> StrategyEngine:
        """Another process on the same stores (a restart)."""
        return StrategyEngine(strategy_type=self._lookup, history=CandleBuilderHistory(self.api), fills=self.fills,
                              outbound=self.sent, failures=self.failures, telemetry=self.telemetry, replica="test",
                              signals_topic="strategy.signals.v1", **options)

    def _lookup(self, name: str):
        return self.catalog[name]

    def stream(self, start: int = START, stop: int = 400) -> list[Rec]:
        """The candles of both markets from ``start`` in time order (each market on its partition)."""
        return [Rec(f"{EXCHANGE}:{s}", p, self.candles[s][i]) for i in range(start, stop) for p, s in enumerate((A, B))]

    def expected(self, definition: InstanceDefinition, start: int = START) -> list[Signal]:
        signals = []
        for symbol in definition.symbols:
            first = self.candles[symbol][start].ts_start
            intents = history_intents(SmaCross(definition.params), self.frames[symbol], symbol)
            signals += [i.signal(instance_id=definition.id, account_id=definition.account_id, exchange=EXCHANGE,
                                 strategy="sma_cross") for i in intents if i.ts_start >= first]
        return signals


def instance(instance_id: str, symbols: tuple[str, ...], *, strategy: str = "sma_cross", params=None,
             account: str = "acct-1", enabled: bool = True) -> InstanceDefinition:
    params = {"fast": 3, "slow": 8} if params is None and strategy == "sma_cross" else (params or {})
    return InstanceDefinition(instance_id, strategy, account, EXCHANGE, symbols, "1m", params, enabled)


def stored(*definitions: InstanceDefinition, revision: int = 1) -> list[InstanceRecord]:
    return [InstanceRecord(d, revision) for d in definitions]


async def handle_in_batches(engine: StrategyEngine, records: list[Rec], sizes=(7, 1, 40, 3, 120)) -> None:
    start, turn = 0, 0
    while start < len(records):
        size = sizes[turn % len(sizes)]
        await engine.handle_candles(records[start:start + size])
        start, turn = start + size, turn + 1


def by_id(signals: list[Signal]) -> dict[str, Signal]:
    ids = [s.signal_id for s in signals]
    assert len(ids) == len(set(ids)), "a signal was published twice"
    return dict(zip(ids, signals, strict=True))


# --- the tests ----------------------------------------------------------------------------------


async def test_two_instances_on_two_markets_publish_exactly_the_backtest_signals_once():
    world = World()
    one = instance("one", (A, B))
    two = instance("two", (B,), params={"fast": 5, "slow": 13}, account="acct-2")
    world.engine.apply_instances(stored(one, two))
    await handle_in_batches(world.engine, world.stream())
    expected = world.expected(one) + world.expected(two)
    assert len(expected) > 20
    assert by_id(world.sent.signals) == by_id(expected)
    signal = world.sent.signals[0]
    assert signal.signal_id.startswith(f"{signal.strategy_id}:paper:{signal.symbol}:1m:")
    candle = next(c for c in world.candles[signal.symbol] if c.ts_start // 1_000_000 == int(signal.signal_id.split(":")[4]))
    assert signal.ts_event == candle.ts_end and signal.price == Decimal(repr(candle.close))
    # Warm-up: one load per instance and market, cut at the first candle the stream delivered.
    status = {(d.id, symbol): s for d, symbol, s in world.engine.take_dirty_statuses()}
    assert status[("one", A)]["state"] == "ready" and status[("one", A)]["warm_up"]["candles"] == 9
    assert status[("two", B)]["warm_up"]["before"] == "2026-01-05T02:30:00+00:00"
    assert status[("one", B)]["candles"] == 250 and status[("one", B)]["last_candle"]["ts"] == "2026-01-05T06:39:00+00:00"
    assert world.telemetry.registry.get_sample_value("tradeflow_strategy_candles_total", {"instance": "one"}) == 500
    assert world.telemetry.registry.get_sample_value(
        "tradeflow_strategy_signals_total", {"instance": "two", "intent": "enter_long"}) == len(
        [s for s in world.expected(two) if s.intent == "enter_long"])


async def test_a_replayed_history_is_decided_whatever_its_time_and_warm_up_candles_say_nothing():
    """The stream starts at candle 20 although the store holds 400: the instance warms up on
    the 20 before it (fewer than its window: it decides as the window fills) and decides every
    candle from 20 on, as the backtest from the start does."""
    world = World()
    one = instance("one", (A,))
    world.engine.apply_instances(stored(one))
    await handle_in_batches(world.engine, [r for r in world.stream(20) if r.value.symbol == A])
    assert by_id(world.sent.signals) == by_id(world.expected(one, start=20))


async def test_a_restart_between_handling_and_commit_publishes_the_same_signals_again():
    """Batches up to the crash were handled and published; the offsets were committed only up
    to an earlier batch. A new engine (warm-up from the store, which holds every candle) gets
    the candles again from the committed one: it publishes the same ids with the same content
    for them, and then exactly what an uninterrupted run publishes."""
    world = World()
    one, two = instance("one", (A, B)), instance("two", (B,), params={"fast": 5, "slow": 13})
    records = world.stream()
    committed, crashed = 180, 330  # record indexes
    world.engine.apply_instances(stored(one, two))
    await handle_in_batches(world.engine, records[:crashed])
    before_crash = list(world.sent.signals)
    world.sent.signals.clear()

    restarted = world.new_engine()
    restarted.apply_instances(stored(one, two))
    await handle_in_batches(restarted, records[committed:], sizes=(13, 2, 60))
    again = by_id(world.sent.signals)
    first = by_id(before_crash)
    assert {i: s for i, s in again.items() if i in first} == {i: first[i] for i in again if i in first}
    assert len([i for i in again if i in first]) > 3  # the redelivered candles did decide again
    assert first | again == by_id(world.expected(one) + world.expected(two))


async def test_a_redelivered_batch_and_a_corrected_candle_publish_nothing_new():
    world = World()
    one = instance("one", (A,))
    world.engine.apply_instances(stored(one))
    records = [r for r in world.stream() if r.value.symbol == A]
    await world.engine.handle_candles(records[:200])
    published = len(world.sent.signals)
    assert published > 3
    await world.engine.handle_candles(records[150:200])  # redelivered
    signal = world.sent.signals[-1]
    deciding = next(r.value for r in records if r.value.ts_end == signal.ts_event)
    correction = replace(deciding, close=deciding.close * 0.9, low=deciding.close * 0.9, revision=1)
    await world.engine.handle_candles([Rec(records[0].key, 0, correction)])
    assert len(world.sent.signals) == published


async def test_a_strategy_that_throws_stops_its_instance_only_and_the_batch_goes_through():
    world = World()
    bad = instance("bad", (A,), strategy="boom", params={"limit": 93})
    good = instance("good", (A, B))
    world.engine.apply_instances(stored(bad, good))
    await handle_in_batches(world.engine, world.stream())  # never raises
    assert world.engine.instances["bad"].state == FAILED
    assert "RuntimeError: close" in world.failures.failed["bad"] and "test_strategy_engine.py, line" in \
        world.failures.failed["bad"] and "on paper:BTC/USDT" in world.failures.failed["bad"]
    ((kind, severity, message, labels),) = world.sent.alerts
    assert (kind, severity, labels["instance"]) == ("strategy_failed", "critical", "bad")
    assert "stopped until resumed" in message
    assert by_id(world.sent.signals) == by_id(world.expected(good))
    assert world.telemetry.registry.get_sample_value(
        "tradeflow_strategy_errors_total", {"instance": "bad", "kind": "strategy"}) == 1
    # Resumed (the stored record without the error): it warms up again and runs.
    world.engine.apply_instances([InstanceRecord(bad, 2), InstanceRecord(good, 1)])
    assert world.engine.instances["bad"].state == RUNNING


async def test_a_candle_no_instance_trades_is_skipped_without_any_lookup():
    world = World()
    world.engine.apply_instances(stored(instance("one", (A,))))
    await world.engine.handle_candles([Rec("paper:DOGE/USDT", 3, replace(world.candles[A][200], symbol="DOGE/USDT")),
                                       Rec("other:BTC/USDT", 3, replace(world.candles[A][200], exchange="other"))])
    assert world.api.requests == 0 and world.sent.signals == []
    assert world.telemetry.registry.get_sample_value("tradeflow_strategy_candles_skipped_total") == 2


async def test_an_unacknowledged_signal_fails_the_batch_and_its_redelivery_publishes_it():
    world = World()
    one = instance("one", (A,))
    world.engine.apply_instances(stored(one))
    records = [r for r in world.stream() if r.value.symbol == A]
    world.sent.refuse = RuntimeError("broker away")
    with pytest.raises(RuntimeError, match="broker away"):
        await world.engine.handle_candles(records)
    world.sent.refuse = None
    await world.engine.handle_candles(records)  # the consumer redelivers the batch
    assert by_id(world.sent.signals) == by_id(world.expected(one))


async def test_a_store_that_cannot_answer_a_warm_up_fails_the_batch_until_it_answers():
    world = World()
    one = instance("one", (A,))
    world.engine.apply_instances(stored(one))
    records = [r for r in world.stream() if r.value.symbol == A]
    world.api.error = CandleApiError("candle-builder at http://cb unreachable")
    for _ in range(2):
        with pytest.raises(WarmUpError, match="unreachable"):
            await world.engine.handle_candles(records)
    assert [a[:2] for a in world.sent.alerts] == [("strategy_warm_up_failed", "warning")]  # once a minute
    world.api.error = None
    await world.engine.handle_candles(records)
    assert by_id(world.sent.signals) == by_id(world.expected(one))


async def test_paused_candles_decide_nothing_and_a_resume_warms_up_again():
    world = World()
    one = instance("one", (A,))
    records = [r for r in world.stream() if r.value.symbol == A]
    world.engine.apply_instances(stored(one))
    await world.engine.handle_candles(records[:100])
    world.engine.apply_instances([InstanceRecord(replace_definition(one, enabled=False), 2)])
    await world.engine.handle_candles(records[100:180])
    requests = world.api.requests
    world.engine.apply_instances([InstanceRecord(one, 3)])
    await world.engine.handle_candles(records[180:])
    assert world.api.requests == requests + 1  # warmed up again, on the candles stored meanwhile
    paused = {r.value.ts_start for r in records[100:180]}
    assert by_id(world.sent.signals) == by_id([s for s in world.expected(one) if s.ts_event - MINUTE not in paused])
    world.engine.apply_instances([])  # deleted
    await world.engine.handle_candles(records[-5:])
    assert "one" not in world.engine.instances


def replace_definition(definition: InstanceDefinition, **changes) -> InstanceDefinition:
    from dataclasses import replace as replace_dataclass

    return replace_dataclass(definition, **changes)


async def test_new_code_runs_from_the_next_candle_and_code_that_fails_keeps_the_old_one():
    world = World()
    one = instance("one", (A,))
    records = [r for r in world.stream() if r.value.symbol == A]
    world.engine.apply_instances(stored(one))
    await world.engine.handle_candles(records[:50])

    world.catalog["sma_cross"] = SlowBoot  # new code that throws while warming up
    world.engine.on_catalog_changed()
    await world.engine.handle_candles(records[50:])
    assert "kept the running code: the new code failed to warm up: ValueError: not today" in \
        world.engine.code_error("one")
    assert world.engine.instances["one"].state == RUNNING
    assert by_id(world.sent.signals) == by_id(world.expected(one))  # the old code decided everything

    class Faster(SmaCross):
        name = "sma_cross"

    world.sent.signals.clear()
    world.catalog["sma_cross"] = Faster
    world.engine.on_catalog_changed()
    assert world.engine.code_error("one") is None
    replay = [Rec(r.key, r.partition, replace(r.value, ts_start=r.value.ts_start + 400 * MINUTE,
                                              ts_end=r.value.ts_end + 400 * MINUTE)) for r in records]
    world.api.store([r.value for r in replay])
    await world.engine.handle_candles(replay)
    slot = world.engine.instances["one"].slots[A]
    assert slot.runner_type is Faster and type(slot.runner.strategy) is Faster and world.sent.signals


async def test_fills_move_the_position_live_and_from_the_store_at_warm_up():
    world = World()
    one = instance("one", (A,))
    records = [r for r in world.stream() if r.value.symbol == A]

    def fill(n: int, side: str, quantity: str) -> Fill:
        return Fill(fill_id=f"f{n}", client_order_id=f"c{n}", account_id="acct-1", exchange=EXCHANGE, symbol=A,
                    side=side, quantity=Decimal(quantity), price=Decimal("100"), fee=Decimal("0.1"),
                    fee_currency="USDT", strategy_id="one", ts_event=n)

    world.fills.stored.append(StoredFill(1, fill(1, "buy", "2")))
    world.engine.apply_instances(stored(one))
    await world.engine.handle_candles(records[:10])
    world.engine.apply_fills([StoredFill(1, fill(1, "buy", "2")), StoredFill(2, fill(2, "sell", "0.5"))])
    world.engine.apply_fills([StoredFill(2, fill(2, "sell", "0.5"))])  # seen already
    ((_, _, status),) = world.engine.take_dirty_statuses()
    assert status["position"]["quantity"] == "1.5" and status["position"]["fills"] == 2


async def test_a_revoked_partition_forgets_its_markets_and_they_warm_up_again_where_they_land():
    world = World()
    world.engine.apply_instances(stored(instance("one", (A, B))))
    records = world.stream()
    await world.engine.handle_candles(records[:20])
    world.engine.on_partitions_revoked({0})  # A's partition
    assert set(world.engine.instances["one"].slots) == {B}
    requests = world.api.requests
    await world.engine.handle_candles(records[20:40])
    assert world.api.requests == requests + 1


async def test_the_signal_continues_the_trace_of_the_candle_that_decided_it():
    world = World()
    one = instance("one", (A,))
    world.engine.apply_instances(stored(one))
    trace_id = 0x0AF7651916CD43DD8448EB211C80319C
    records = [Rec(r.key, r.partition, r.value, {"traceparent": f"00-{trace_id:032x}-{i + 1:016x}-01"})
               for i, r in enumerate(r for r in world.stream() if r.value.symbol == A)]
    await world.engine.handle_candles(records)
    assert world.sent.trace_ids and set(world.sent.trace_ids) == {trace_id}
    spans = [s for s in world.spans.get_finished_spans() if s.name == "strategy signal"]
    assert len(spans) == len(world.sent.signals)
    signal = world.sent.signals[0]
    deciding = next(i for i, r in enumerate(records) if r.value.ts_end == signal.ts_event)
    assert spans[0].parent.span_id == deciding + 1  # the deciding candle's span, not the batch's
    assert spans[0].attributes["tradeflow.signal_id"] == signal.signal_id
