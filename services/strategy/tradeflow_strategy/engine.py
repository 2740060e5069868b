"""The service layer: every running instance, decided on the candles of this replica's markets.

:class:`StrategyEngine` knows no broker and no database: candles come in as records with a
key, a partition, a decoded :class:`Candle` and headers (:class:`IncomingCandle`); stored
candles, fills, signals and failures go through the small ports below. ``bootstrap.py`` wires
the adapters; the unit tests hand it plain objects.

How a batch of candles is handled (docs/adr/0020):

1. Candles are grouped by market key; a key no running instance trades is skipped (one dict
   lookup).
2. A market an instance has not warmed up on this replica yet (new instance, start, a
   partition just assigned, a resume, new code) warms up on its first candle of the
   instance's timeframe: the stored candles *before* that candle (the candle-builder's
   ``GET /v1/candles``) and the instance's stored fills. The cut is the first delivered candle,
   not "now": candles the stream has still to deliver (a redelivery after a crash, a lagging
   consumer, the bucket still forming) are never part of a warm-up, so each of them is decided
   when it arrives, with the same signal id as before a crash. A store that cannot answer
   fails the batch, which the consumer redelivers.
3. Each instance decides the candles of each of its markets in one call
   (``LiveRunner.on_candles``). Corrections (revision > 0) and redeliveries update the window
   and decide nothing.
4. Intents become ``strategy.signals.v1`` messages (key: account id), each sent inside a span
   that continues the deciding candle's trace. The batch returns once the broker acknowledged
   them all, so the consumer commits past a candle only after its signals are out. If one is
   not acknowledged, the markets of the batch forget their state and the redelivered batch
   warms them up again and decides the same candles again: same signal ids, risk dedupes.
5. A strategy that throws stops its instance (``failed``, with the error, until resumed), on
   every replica through the database, with an alert on ``ops.alerts.v1``; the other
   instances go on and the batch is committed.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind
from tradeflow.clock import SYSTEM_CLOCK, Clock
from tradeflow.messages import Candle, Fill, Signal
from tradeflow.telemetry import Telemetry
from tradeflow_trading.strategy import LiveRunner, Strategy
from tradeflow_trading.strategy.intents import INTENT_KINDS

from tradeflow_strategy.domain.instances import (
    InstanceDefinition,
    InstanceError,
    InstanceRecord,
    check_strategy,
)
from tradeflow_strategy.domain.market_status import (
    FILLING,
    READY,
    WAITING,
    WARMING,
    candle_json,
    iso,
    position_json,
    signal_json,
)

log = logging.getLogger(__name__)

RUNNING, PAUSED, FAILED, UNAVAILABLE = "running", "paused", "failed", "unavailable"
TRACEPARENT = "traceparent"
WARM_UP_ALERT_INTERVAL_NS = 60_000_000_000
HANDLING_BUCKETS = (0.00001, 0.00002, 0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25, 1.0)
ERROR_KINDS = ("strategy", "warm_up", "reload")


# --- ports ------------------------------------------------------------------------------------------


class IncomingCandle(Protocol):
    """A consumed candle: the bus's records have this shape."""

    key: str | None
    partition: int
    value: Candle

    def header(self, name: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class WarmUpCandles:
    """Stored candles for a warm-up: the instance's timeframe (oldest first, from the start of
    the newest bucket of each higher timeframe at the latest) and the closed higher candles."""

    base: list[Candle]
    higher: dict[str, list[Candle]] = field(default_factory=dict)


class CandleHistory(Protocol):
    async def load(self, exchange: str, symbol: str, timeframe: str, count: int, higher: Mapping[str, int],
                   before_ns: int) -> WarmUpCandles:
        """The ``count`` newest candles starting before ``before_ns`` and the higher candles
        closed by then (``higher``: timeframe -> count); raises when the store cannot answer."""
        ...


@dataclass(frozen=True, slots=True)
class StoredFill:
    seq: int  # order in which the service stored it (commit order)
    fill: Fill


MarketOfInstance = tuple[str, str, str]  # (instance id, exchange, symbol)


class FillHistory(Protocol):
    async def fills_of(self, markets: Sequence[MarketOfInstance]) -> dict[MarketOfInstance, list[StoredFill]]:
        """The stored fills of each (instance, exchange, symbol), in store order (one query)."""
        ...


class Outbound(Protocol):
    """Where signals and alerts go (the producer)."""

    def publish(self, signal: Signal) -> Awaitable[object]: ...

    def alert(self, kind: str, severity: str, message: str, labels: dict[str, str]) -> None: ...


class FailureLog(Protocol):
    async def mark_failed(self, instance_id: str, error: str) -> None: ...


class WarmUpError(RuntimeError):
    """The candle or fill store could not answer a warm-up: the batch is redelivered."""


# --- state ------------------------------------------------------------------------------------------


class MarketSlot:
    """One instance on one market of this replica: its runner and what its status shows."""

    __slots__ = ("symbol", "partition", "runner", "runner_type", "state", "warmed", "cut_ns", "fills_seq",
                 "candles", "last_candle", "last_signals", "error", "refused_type", "dirty")

    def __init__(self, symbol: str, partition: int, last_signals: int) -> None:
        self.symbol = symbol
        self.partition = partition
        self.runner: LiveRunner | None = None
        self.runner_type: type[Strategy] | None = None
        self.state = WAITING
        self.warmed = 0
        self.cut_ns = 0
        self.fills_seq = 0
        self.candles = 0
        self.last_candle: dict[str, Any] | None = None
        self.last_signals: deque[dict[str, Any]] = deque(maxlen=last_signals)
        self.error: str | None = None
        self.refused_type: type[Strategy] | None = None  # new code that failed here: not retried
        self.dirty = True

    def forget(self) -> None:
        """Back to waiting: the next candle warms the market up again from the store."""
        self.runner, self.runner_type, self.state, self.dirty = None, None, WAITING, True

    def status(self, replica: str) -> dict[str, Any]:
        runner = self.runner
        return {
            "state": self.state, "replica": replica, "partition": self.partition,
            "warm_up": None if not self.cut_ns else {"candles": self.warmed, "window": runner.window if runner else None,
                                                     "before": iso(self.cut_ns)},
            "candles": self.candles, "last_candle": self.last_candle, "last_signals": list(self.last_signals),
            "position": position_json(runner.position) if runner is not None else None, "error": self.error,
        }


class InstanceRuntime:
    """One instance on this replica: its strategy class, its markets here and its metrics."""

    def __init__(self, record: InstanceRecord, strategy_type: type[Strategy] | None, unavailable: str | None,
                 metrics: _InstanceMetrics) -> None:
        definition = record.definition
        self.record = record
        self.id = definition.id
        self.definition = definition
        self.key_prefix = f"{definition.exchange}:"
        self.strategy_type = strategy_type
        self.unavailable = unavailable  # why the strategy cannot run here (not in this replica's catalog)
        self.code_error: str | None = None  # new code that could not replace the running one
        self.error = record.error
        self.slots: dict[str, MarketSlot] = {}
        self.metrics = metrics
        self.timeframes: frozenset[str] = frozenset()
        if strategy_type is not None:
            self._learn_timeframes(strategy_type)

    @property
    def state(self) -> str:
        if self.error is not None:
            return FAILED
        if not self.definition.enabled:
            return PAUSED
        return UNAVAILABLE if self.strategy_type is None else RUNNING

    def _learn_timeframes(self, strategy_type: type[Strategy]) -> None:
        higher = strategy_type(self.definition.params).higher_timeframes(self.definition.timeframe)
        self.timeframes = frozenset({self.definition.timeframe, *(tf.name for tf in higher)})

    def adopt(self, strategy_type: type[Strategy]) -> None:
        self._learn_timeframes(strategy_type)
        self.strategy_type = strategy_type
        self.unavailable = None
        self.code_error = None


class _InstanceMetrics:
    """The labelled series of one instance (removed with it)."""

    def __init__(self, engine: StrategyEngine, instance_id: str) -> None:
        self._engine = engine
        self.instance_id = instance_id
        self.candles = engine._candles.labels(instance_id)
        self.handling = engine._handling.labels(instance_id)
        self._signals = {kind: engine._signals.labels(instance_id, kind) for kind in INTENT_KINDS}
        self._errors = {kind: engine._errors.labels(instance_id, kind) for kind in ERROR_KINDS}

    def signal(self, intent: str) -> None:
        self._signals[intent].inc()

    def error(self, kind: str) -> None:
        self._errors[kind].inc()

    def remove(self) -> None:
        engine, i = self._engine, self.instance_id
        engine._candles.remove(i)
        engine._handling.remove(i)
        for kind in INTENT_KINDS:
            engine._signals.remove(i, kind)
        for kind in ERROR_KINDS:
            engine._errors.remove(i, kind)


# --- the engine -------------------------------------------------------------------------------------


class StrategyEngine:
    """Runs the instances on this replica's markets (see the module docstring)."""

    def __init__(self, *, strategy_type: Callable[[str], type[Strategy]], history: CandleHistory,
                 fills: FillHistory, outbound: Outbound, failures: FailureLog, telemetry: Telemetry,
                 replica: str, signals_topic: str, last_signals: int = 10, warm_up_concurrency: int = 32,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self._strategy_type = strategy_type
        self._history = history
        self._fills = fills
        self._outbound = outbound
        self._failures = failures
        self._tracer = telemetry.tracer
        self.replica = replica
        self._signals_topic = signals_topic
        self._last_signals = last_signals
        self._warm_up_concurrency = warm_up_concurrency
        self._now_ns = clock.now_ns
        self._monotonic = clock.monotonic
        self.instances: dict[str, InstanceRuntime] = {}
        self._routes: dict[str, tuple[InstanceRuntime, ...]] = {}
        self._last_warm_up_alert = 0
        self._unrecorded: list[tuple[str, str]] = []  # (instance id, error) not yet stored
        self._candles = telemetry.counter(
            "tradeflow_strategy_candles_total", "Candles handed to an instance's strategy", ("instance",))
        self._signals = telemetry.counter(
            "tradeflow_strategy_signals_total", "Signals published, by intent", ("instance", "intent"))
        self._errors = telemetry.counter(
            "tradeflow_strategy_errors_total",
            "Errors: the strategy threw (instance failed), a warm-up could not read the store, new code was refused",
            ("instance", "kind"))
        self._handling = telemetry.histogram(
            "tradeflow_strategy_handling_seconds",
            "Time a strategy took per candle (observed once per market and batch, as the mean of its candles)",
            ("instance",), buckets=HANDLING_BUCKETS)
        self._skipped = telemetry.counter(
            "tradeflow_strategy_candles_skipped_total", "Candles of markets no running instance trades")
        self._instance_states = telemetry.gauge(
            "tradeflow_strategy_instances", "Instances known to this replica, by state", ("state",))

    # --- instances -----------------------------------------------------------------------------

    def apply_instances(self, records: Iterable[InstanceRecord]) -> None:
        """The instances as stored now (every replica applies the same list): new ones start,
        changed ones follow (pause, resume, failed), missing ones stop."""
        seen = set()
        for record in records:
            seen.add(record.id)
            runtime = self.instances.get(record.id)
            if runtime is not None and runtime.record.revision == record.revision:
                continue
            if runtime is None or not runtime.definition.same_binding(record.definition):
                if runtime is not None:
                    runtime.metrics.remove()
                self.instances[record.id] = self._new_runtime(record)
                continue
            was_running = runtime.state == RUNNING
            runtime.record, runtime.definition, runtime.error = record, record.definition, record.error
            if was_running != (runtime.state == RUNNING):
                for slot in runtime.slots.values():  # stopped, or started again: warm up afresh
                    slot.forget()
        for instance_id in set(self.instances) - seen:
            self.instances.pop(instance_id).metrics.remove()
        self._rebuild_routes()

    def _new_runtime(self, record: InstanceRecord) -> InstanceRuntime:
        metrics = _InstanceMetrics(self, record.id)
        try:
            strategy_type = self._strategy_type(record.definition.strategy)
            check_strategy(strategy_type, record.definition.params, record.definition.timeframe)
        except (KeyError, InstanceError) as exc:
            return InstanceRuntime(record, None, f"not runnable on this replica: {exc}", metrics)
        return InstanceRuntime(record, strategy_type, None, metrics)

    def on_catalog_changed(self) -> None:
        """Strategy files were reloaded: an instance whose class changed runs the new one from
        each market's next candle (warmed up afresh); new code that does not load or refuses
        the instance's parameters leaves the running code in place, and the status says why."""
        for runtime in self.instances.values():
            definition = runtime.definition
            try:
                new_type = self._strategy_type(definition.strategy)
            except KeyError as exc:
                if runtime.strategy_type is not None:
                    runtime.code_error = f"kept the running code: {exc}"
                continue
            if new_type is runtime.strategy_type:
                continue
            try:
                check_strategy(new_type, definition.params, definition.timeframe)
                runtime.adopt(new_type)
            except InstanceError as exc:
                runtime.code_error = f"kept the running code: the new code refuses this instance: {exc}"
                runtime.metrics.error("reload")
            for slot in runtime.slots.values():
                slot.dirty = True
        self._rebuild_routes()

    def _rebuild_routes(self) -> None:
        routes: dict[str, list[InstanceRuntime]] = {}
        counts = dict.fromkeys((RUNNING, PAUSED, FAILED, UNAVAILABLE), 0)
        for runtime in self.instances.values():
            counts[runtime.state] += 1
            if runtime.state != RUNNING:
                continue
            for symbol in runtime.definition.symbols:
                routes.setdefault(runtime.key_prefix + symbol, []).append(runtime)
        self._routes = {key: tuple(runtimes) for key, runtimes in routes.items()}
        for state, count in counts.items():
            self._instance_states.labels(state).set(count)

    def on_partitions_revoked(self, partitions: set[int]) -> None:
        """Markets of these candle partitions now run elsewhere: their state here goes."""
        for runtime in self.instances.values():
            for symbol in [s for s, slot in runtime.slots.items() if slot.partition in partitions]:
                del runtime.slots[symbol]

    # --- candles -------------------------------------------------------------------------------

    async def handle_candles(self, records: Sequence[IncomingCandle]) -> None:
        routes = self._routes
        by_market: dict[str, list[IncomingCandle]] = {}
        skipped = 0
        for record in records:
            key = record.key
            if key in routes:
                group = by_market.get(key)
                if group is None:
                    by_market[key] = [record]
                else:
                    group.append(record)
            else:
                skipped += 1
        if skipped:
            self._skipped.inc(skipped)
        if not by_market:
            return
        work: list[tuple[InstanceRuntime, MarketSlot, list[IncomingCandle]]] = []
        warm: list[tuple[InstanceRuntime, MarketSlot, int]] = []
        for key, group in by_market.items():
            first = group[0]
            symbol = first.value.symbol
            for runtime in routes[key]:
                slot = runtime.slots.get(symbol)
                if slot is None:
                    slot = runtime.slots[symbol] = MarketSlot(symbol, first.partition, self._last_signals)
                if slot.runner is None or (slot.runner_type is not runtime.strategy_type
                                           and slot.refused_type is not runtime.strategy_type):
                    cut = next((r.value.ts_start for r in group if r.value.timeframe == runtime.definition.timeframe),
                               None)
                    if cut is not None:
                        warm.append((runtime, slot, cut))
                work.append((runtime, slot, group))
        if warm:
            await self._warm_up_all(warm)
        acks: list[Awaitable[object]] = []
        instances = self.instances
        try:
            for runtime, slot, group in work:
                # Skipped when the instance stopped, changed or went while this batch awaited.
                if slot.runner is not None and runtime.state == RUNNING and instances.get(runtime.id) is runtime:
                    self._decide(runtime, slot, group, acks)
            if acks:
                await asyncio.gather(*acks)
        except BaseException:
            for _, slot, _ in work:  # the redelivered batch decides these candles again, warmed up afresh
                slot.forget()
            raise
        await self.record_failures()

    def _decide(self, runtime: InstanceRuntime, slot: MarketSlot, group: list[IncomingCandle],
                acks: list[Awaitable[object]]) -> None:
        timeframes = runtime.timeframes
        candles = [r.value for r in group if r.value.timeframe in timeframes]
        if not candles:
            return
        started = self._monotonic()
        try:
            intents = slot.runner.on_candles(candles)
        except Exception as exc:  # noqa: BLE001 - a strategy's error stops its instance, nothing else
            self._stop_instance(runtime, f"{_describe(exc)} on {runtime.definition.exchange}:{slot.symbol}")
            return
        metrics = runtime.metrics
        metrics.handling.observe((self._monotonic() - started) / len(candles))
        metrics.candles.inc(len(candles))
        slot.candles += len(candles)
        newest = next((c for c in reversed(candles) if c.timeframe == runtime.definition.timeframe), candles[-1])
        slot.last_candle = candle_json(newest, self._now_ns())
        slot.state = READY if slot.runner.ready else FILLING
        slot.dirty = True
        definition = runtime.definition
        for intent in intents:
            signal = intent.signal(instance_id=runtime.id, account_id=definition.account_id,
                                   exchange=definition.exchange, strategy=definition.strategy)
            with self._tracer.start_as_current_span(
                    "strategy signal", context=_trace_of(group, intent.ts_start, intent.timeframe),
                    kind=SpanKind.PRODUCER,
                    attributes={"messaging.system": "kafka", "messaging.destination.name": self._signals_topic,
                                "tradeflow.strategy.instance": runtime.id, "tradeflow.signal_id": signal.signal_id}):
                acks.append(self._outbound.publish(signal))
            metrics.signal(intent.kind)
            slot.last_signals.append(signal_json(signal))

    # --- warm-up -------------------------------------------------------------------------------

    async def _warm_up_all(self, items: list[tuple[InstanceRuntime, MarketSlot, int]]) -> None:
        gate = asyncio.Semaphore(self._warm_up_concurrency)
        try:
            fills = await self._fills.fills_of([(r.id, r.definition.exchange, s.symbol) for r, s, _ in items])
        except Exception as exc:  # noqa: BLE001 - the same as a store that cannot answer, below
            fills, problems = {}, [exc]
        else:
            async def one(runtime: InstanceRuntime, slot: MarketSlot, cut: int) -> None:
                async with gate:
                    await self._warm_up(runtime, slot, cut, fills.get((runtime.id, runtime.definition.exchange,
                                                                       slot.symbol), []))

            results = await asyncio.gather(*(one(*item) for item in items), return_exceptions=True)
            problems = [r for r in results if isinstance(r, BaseException)]
        if not problems:
            return
        if any(not isinstance(p, Exception) for p in problems):
            raise next(p for p in problems if not isinstance(p, Exception))
        message = f"{len(problems)} market(s) could not warm up: {type(problems[0]).__name__}: {problems[0]}"
        now = self._now_ns()
        if now - self._last_warm_up_alert >= WARM_UP_ALERT_INTERVAL_NS:
            self._last_warm_up_alert = now
            self._outbound.alert("strategy_warm_up_failed", "warning",
                                 f"{message}; the candles are redelivered until the store answers",
                                 {"replica": self.replica})
        raise WarmUpError(message) from problems[0]

    async def _warm_up(self, runtime: InstanceRuntime, slot: MarketSlot, cut: int, fills: list[StoredFill]) -> None:
        definition = runtime.definition
        strategy_type = runtime.strategy_type
        replacing = slot.runner is not None  # new code for a running market
        if not replacing:
            slot.state = WARMING
        try:
            runner = LiveRunner(strategy_type(definition.params), exchange=definition.exchange, symbol=slot.symbol,
                                timeframe=definition.timeframe, account_id=definition.account_id,
                                instance_id=definition.id)
            higher = {tf.name: count for tf, count in runner.strategy.higher_timeframes(definition.timeframe).items()}
        except Exception as exc:  # noqa: BLE001
            self._refuse(runtime, slot, strategy_type, exc, replacing)
            return
        try:
            stored = await self._history.load(definition.exchange, slot.symbol, definition.timeframe, runner.window,
                                              higher, before_ns=cut)
        except Exception as exc:
            runtime.metrics.error("warm_up")
            slot.error = f"warm-up failed: {type(exc).__name__}: {exc}"
            slot.dirty = True
            if not replacing:
                slot.state = WAITING
            raise
        if runtime.state != RUNNING or runtime.strategy_type is not strategy_type:
            if not replacing:  # paused, failed or changed meanwhile: the next candle decides what to do
                slot.state = WAITING
            return
        try:
            runner.warm_up(stored.base, stored.higher)
            for item in fills:
                if item.fill.account_id == definition.account_id:
                    runner.on_fill(item.fill)
        except Exception as exc:  # noqa: BLE001 - the strategy threw while warming up
            self._refuse(runtime, slot, strategy_type, exc, replacing)
            return
        slot.runner, slot.runner_type = runner, strategy_type
        slot.warmed, slot.cut_ns = len(stored.base), cut
        slot.fills_seq = max((item.seq for item in fills), default=0)
        slot.state = READY if runner.ready else FILLING
        slot.error = None
        slot.dirty = True
        log.info("instance %s warmed up on %s:%s with %d candles before %s", definition.id, definition.exchange,
                 slot.symbol, len(stored.base), iso(cut))

    def _refuse(self, runtime: InstanceRuntime, slot: MarketSlot, strategy_type: type[Strategy],
                exc: Exception, replacing: bool) -> None:
        error = _describe(exc)
        if replacing:  # new code that fails to start keeps the running code on this market
            slot.refused_type = strategy_type
            runtime.code_error = f"kept the running code: the new code failed to warm up: {error}"
            runtime.metrics.error("reload")
            slot.dirty = True
            return
        self._stop_instance(runtime, f"{error} while warming up on {runtime.definition.exchange}:{slot.symbol}")

    # --- failures ------------------------------------------------------------------------------

    def _stop_instance(self, runtime: InstanceRuntime, error: str) -> None:
        """Stop it here at once; :meth:`record_failures` stores it for every replica."""
        log.error("strategy instance %s failed: %s", runtime.id, error)
        runtime.error = error
        self._unrecorded.append((runtime.id, error))
        runtime.metrics.error("strategy")
        for slot in runtime.slots.values():
            slot.forget()
        self._rebuild_routes()
        definition = runtime.definition
        self._outbound.alert(
            "strategy_failed", "critical",
            f"strategy instance {runtime.id} ({definition.strategy}) failed and is stopped until resumed "
            f"(POST /v1/strategies/{runtime.id}/resume): {error}",
            {"instance": runtime.id, "strategy": definition.strategy, "account_id": definition.account_id})

    async def record_failures(self) -> None:
        """Store the failures of instances stopped here since the last call."""
        while self._unrecorded:
            instance_id, error = self._unrecorded.pop(0)
            try:
                await self._failures.mark_failed(instance_id, error)
            except Exception:  # noqa: BLE001 - stopped here already; the next sync may run it again
                log.exception("could not store the failure of instance %s", instance_id)

    # --- fills ---------------------------------------------------------------------------------

    def apply_fills(self, fills: Iterable[StoredFill]) -> None:
        """Stored fills (in store order) move the positions of the markets running here (then
        :meth:`record_failures`: an event strategy's ``on_fill`` may throw)."""
        for item in fills:
            fill = item.fill
            runtime = self.instances.get(fill.strategy_id)
            if runtime is None or runtime.state != RUNNING or fill.exchange != runtime.definition.exchange:
                continue
            slot = runtime.slots.get(fill.symbol)
            if slot is None or slot.runner is None or item.seq <= slot.fills_seq:
                continue
            slot.fills_seq = item.seq
            if fill.account_id != runtime.definition.account_id:
                log.warning("fill %s of instance %s is for account %s, not %s: ignored", fill.fill_id, runtime.id,
                            fill.account_id, runtime.definition.account_id)
                continue
            try:
                slot.runner.on_fill(fill)
            except Exception as exc:  # noqa: BLE001 - an event strategy's on_fill threw
                self._stop_instance(runtime, f"{_describe(exc)} on fill {fill.fill_id}")
                continue
            slot.dirty = True

    # --- status --------------------------------------------------------------------------------

    def take_dirty_statuses(self) -> list[tuple[InstanceDefinition, str, dict[str, Any]]]:
        """(instance, symbol, status) of every market whose status changed since the last call."""
        changed = []
        for runtime in self.instances.values():
            for slot in runtime.slots.values():
                if slot.dirty:
                    slot.dirty = False
                    changed.append((runtime.definition, slot.symbol, slot.status(self.replica)))
        return changed

    def code_error(self, instance_id: str) -> str | None:
        runtime = self.instances.get(instance_id)
        if runtime is None:
            return None
        return runtime.code_error or runtime.unavailable


def _trace_of(group: list[IncomingCandle], ts_start: int, timeframe: str) -> Context | None:
    """The trace context of the candle that decided (its ``traceparent`` header), if it has one."""
    for record in group:
        value = record.value
        if value.ts_start == ts_start and value.timeframe == timeframe:
            traceparent = record.header(TRACEPARENT)
            if traceparent:
                return propagate.extract({TRACEPARENT: traceparent})
            return None
    return None


def _describe(exc: BaseException) -> str:
    """The error and where in the strategy's code it happened (the innermost frame)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({Path(frames[-1].filename).name}, line {frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"
