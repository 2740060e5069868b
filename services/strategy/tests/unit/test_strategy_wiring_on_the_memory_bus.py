"""The strategy service wired by ``build`` on the in-memory bus and a test clock (no broker; the
database pool is built but never opened).

The engine's ports that hold state (instances, stored fills, the candle-builder's history) are
the database and the candle-builder; ``create_engine`` is the part of ``build`` over those
ports, so here it runs on in-memory ones: candles go in on md.candles.v1 of the memory bus,
signals come out on strategy.signals.v1, with the instances given in memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from decimal import Decimal

from tradeflow.clients.candles import StoredCandle
from tradeflow.messages import Candle, Fill, Signal
from tradeflow.testing import MemoryBus, TestClock
from tradeflow.topics import EXEC_FILLS, MD_CANDLES, STRATEGY_SIGNALS
from tradeflow_strategy.adapters.candle_history import CandleBuilderHistory
from tradeflow_strategy.bootstrap import build, create_engine, topic_specs
from tradeflow_strategy.code_reload import CodeReloader
from tradeflow_strategy.domain.instances import InstanceDefinition, InstanceRecord
from tradeflow_strategy.engine import StoredFill
from tradeflow_strategy.settings import StrategySettings
from tradeflow_trading.strategies.sma_cross import SmaCross
from tradeflow_trading.strategy.parity import frame_candles, history_intents

from tests.strategy_candles import T0, random_walk

UNOPENED_DATABASE = "postgresql://nobody@127.0.0.1:9/never-opened"
EXCHANGE = "paper"
SYMBOL = "BTC/USDT"
START = 150  # the stream starts at this candle; the candle store holds every candle


def settings() -> StrategySettings:
    return StrategySettings(database_url=UNOPENED_DATABASE, candle_builder_url="http://127.0.0.1:9")


class MemoryCandleApi:
    """The candle-builder's GET /v1/candles semantics (latest before an end, a range) over a list."""

    def __init__(self, candles: list[Candle]) -> None:
        self.rows: dict[tuple[str, str, str], list[StoredCandle]] = defaultdict(list)
        for c in candles:
            self.rows[(c.exchange, c.symbol, c.timeframe)].append(
                StoredCandle(c.ts_start, c.open, c.high, c.low, c.close, c.volume, c.trades))

    async def latest(self, exchange, symbol, timeframe, count, *, end_ns=None):
        rows = [r for r in self.rows[(exchange, symbol, timeframe)] if end_ns is None or r.ts < end_ns]
        return rows[-count:]

    async def history(self, exchange, symbol, timeframe, start_ns, end_ns):
        return [r for r in self.rows[(exchange, symbol, timeframe)] if start_ns <= r.ts < end_ns]


class MemoryFills:
    """The fill store: consumed fills stored in order, read back per instance and market."""

    def __init__(self) -> None:
        self.stored: list[StoredFill] = []

    async def add(self, fills) -> None:
        self.stored += [StoredFill(len(self.stored) + 1, f) for f in fills]

    async def fills_of(self, markets):
        return {m: [f for f in self.stored if (f.fill.strategy_id, f.fill.exchange, f.fill.symbol) == m]
                for m in markets}


class Failures:
    def __init__(self) -> None:
        self.failed: dict[str, str] = {}

    async def mark_failed(self, instance_id: str, error: str) -> None:
        self.failed[instance_id] = error


def test_build_wires_the_service_on_the_given_bus_without_starting_anything():
    clock = TestClock(start_ns=T0)
    bus = MemoryBus(clock=clock)
    service = build(settings(), bus, settings().service_database("strategy", required_revision="strategy_0001",
                                                                  default_pool_size=4), clock)
    assert service.components[-1] is service.consumer  # taken in last, after the instance sync ran
    assert service.components.index(service.sync) < len(service.components) - 1
    assert service.consumer in bus.consumers and not service.consumer.is_ready()
    assert not service.producer.is_connected()
    assert [check.name for check in service.readiness_checks] == ["broker", "database", "consumer:strategy"]
    assert bus.broker.records(MD_CANDLES.name) == []


async def test_the_periodic_tasks_run_on_the_injected_clock():
    clock = TestClock(start_ns=T0)
    service = build(settings(), MemoryBus(clock=clock), settings().service_database(
        "strategy", required_revision="strategy_0001", default_pool_size=4), clock)
    reloader = next(c for c in service.components if isinstance(c, CodeReloader))
    interval = settings().reload_interval_s
    await reloader.start()
    try:
        await sleeping(clock)
        assert reloader.runs == 0
        await clock.advance(interval)
        await sleeping(clock)
        assert reloader.runs == 1  # no wall time passed: the test clock drove the wait
        for _ in range(3):
            await clock.advance(interval)
            await sleeping(clock)
        assert reloader.runs == 4
    finally:
        await reloader.stop()
    assert clock.sleepers == 0


async def sleeping(clock: TestClock) -> None:
    """Until the task waits on the clock again."""
    async with asyncio.timeout(5):
        while clock.sleepers == 0:  # noqa: ASYNC110 - polls what the task under test changes
            await asyncio.sleep(0.001)


async def test_candles_on_the_memory_bus_give_the_backtest_signals_and_consumed_fills_are_stored():
    clock = TestClock(start_ns=T0 + 500 * 60_000_000_000)
    bus = MemoryBus(clock=clock)
    config = settings()
    candles = frame_candles(random_walk(300, seed=1), EXCHANGE, SYMBOL)
    fills, failures, woken = MemoryFills(), Failures(), []
    producer = bus.producer()
    engine, consumer = create_engine(
        config, bus, producer, bus.dead_letters(producer), strategy_type={"sma_cross": SmaCross}.__getitem__,
        history=CandleBuilderHistory(MemoryCandleApi(candles)), fills=fills, failures=failures,
        on_fills=lambda: woken.append(True), replica="unit", clock=clock)
    definition = InstanceDefinition("one", "sma_cross", "acct-1", EXCHANGE, (SYMBOL,), "1m", {"fast": 3, "slow": 8})
    engine.apply_instances([InstanceRecord(definition, 1)])
    await producer.start()
    await consumer.start()
    try:
        feed = bus.producer()
        await feed.start()
        for candle in candles[START:]:
            feed.send(MD_CANDLES, f"{EXCHANGE}:{SYMBOL}", candle)
        await bus.settle()

        signals = bus.broker.values(dataclasses.replace(STRATEGY_SIGNALS, name=topic_specs(config)[2].name))
        first = candles[START].ts_start
        expected = [i.signal(instance_id="one", account_id="acct-1", exchange=EXCHANGE, strategy="sma_cross")
                    for i in history_intents(SmaCross(definition.params), random_walk(300, seed=1), SYMBOL)
                    if i.ts_start >= first]
        assert len(expected) > 5
        assert [s.signal_id for s in signals] == [s.signal_id for s in expected]
        assert all(isinstance(s, Signal) and s.account_id == "acct-1" for s in signals)
        assert [r.key for r in bus.broker.records(STRATEGY_SIGNALS.name)] == [b"acct-1"] * len(signals)
        (_, _, status), = engine.take_dirty_statuses()
        assert status["last_candle"]["received_at"] == "2026-01-05T08:20:00+00:00"  # the test clock's time
        assert failures.failed == {}

        fill = Fill(fill_id="f-1", client_order_id="c-1", account_id="acct-1", exchange=EXCHANGE, symbol=SYMBOL,
                    side="buy", quantity=Decimal("0.5"), price=signals[0].price, fee=Decimal("0.01"),
                    fee_currency="USDT", liquidity="taker", ts_event=T0, strategy_id="one")
        feed.send(EXEC_FILLS, "acct-1", fill)
        await bus.settle()
        assert [f.fill for f in fills.stored] == [fill] and woken == [True]
        # Redelivered candles (a rewind) decide nothing new: the window has them already.
        for candle in candles[-3:]:
            feed.send(MD_CANDLES, f"{EXCHANGE}:{SYMBOL}", candle)
        await bus.settle()
        assert len(bus.broker.values(dataclasses.replace(STRATEGY_SIGNALS, name=config.topic_signals))) == len(signals)
    finally:
        await consumer.stop()
        await producer.stop()
