"""The notifier wired by ``build`` on the in-memory bus and a test clock (no broker; the database
pool is built but never opened), and its pipeline (``create_pipeline``: consumer -> intake ->
dispatcher -> sender) on in-memory stand-ins for the database adapters and the sender port.

The stand-in delivery store keeps the due time of a retry on the test clock, where the real
one uses the database's ``now()``: so here the clock drives the dispatcher's polls, its outcome
writes and the backoff between attempts, and nothing waits for wall time.
"""

from __future__ import annotations

import asyncio
import itertools
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from tradeflow.testing import MemoryBus, TestClock
from tradeflow.time import ns_to_datetime
from tradeflow.topics import EXEC_FILLS
from tradeflow_db import Database
from tradeflow_notifier.adapters.delivery_store import ClaimedDelivery
from tradeflow_notifier.bootstrap import build, create_pipeline
from tradeflow_notifier.domain.retry import SendResult
from tradeflow_notifier.settings import NotifierSettings

from services.notifier.tests.unit.notifier_samples import T0, fill

UNOPENED_DATABASE = "postgresql://nobody@127.0.0.1:9/never-opened"
HOOK = {"id": "hook", "kind": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "whsec_0123456789abcdef"}


def settings(**extra) -> NotifierSettings:
    return NotifierSettings(database_url=UNOPENED_DATABASE, channels=[HOOK],
                            routes=[{"channel": "hook", "events": ["fill"]}], report_time="",
                            retry_initial_s=1.0, poll_interval_s=0.5, **extra)


# --- stand-ins for the database adapters and the sender ------------------------------------------


class NoDatabase:
    """The intake's transactions: the stand-in store applies its writes at once."""

    @asynccontextmanager
    async def transaction(self):
        yield None


class NoFacts:
    def __init__(self) -> None:
        self.fills: list = []

    async def add(self, conn, fills, orders) -> None:
        self.fills += fills


@dataclass
class Row:
    seq: int
    delivery: object  # PlannedDelivery
    created_ns: int
    status: str = "pending"
    attempts: int = 0
    due_ns: int = 0
    lease_until_ns: int | None = None
    last_error: str | None = None


@dataclass
class MemoryDeliveryStore:
    """DeliveryStore's semantics (seen ids, one delivery per event and channel, leases, due times)
    with the test clock in place of the database's now()."""

    clock: TestClock
    seen: set[str] = field(default_factory=set)
    rows: dict[str, Row] = field(default_factory=dict)
    _seq: itertools.count = field(default_factory=itertools.count)

    async def take_new(self, conn, events):
        new = {event_id for event_id, _ in events if event_id not in self.seen}
        self.seen |= new
        return new

    async def insert(self, conn, deliveries):
        now = self.clock.now_ns()
        for d in deliveries:
            self.rows.setdefault(d.delivery_id, Row(next(self._seq), d, now, due_ns=now))

    async def lock_groups(self, conn, keys):
        return {}

    async def save_groups(self, conn, groups):
        list(groups)

    async def claim(self, capacity, lease_s):
        now = self.clock.now_ns()
        claimed = []
        for channel_id, cap in capacity.items():
            due = sorted((r for r in self.rows.values() if r.delivery.channel_id == channel_id and r.status == "pending"
                          and r.due_ns <= now and (r.lease_until_ns is None or r.lease_until_ns < now)),
                         key=lambda r: (r.due_ns, r.seq))[:cap]
            for row in due:
                row.lease_until_ns = now + int(lease_s * 1e9)
                d = row.delivery
                claimed.append(ClaimedDelivery(d.delivery_id, d.event_id, d.event_kind, d.event_type, d.channel_id,
                                               d.title, d.body, d.ts_event, d.traceparent, d.alert_on_failure,
                                               row.attempts, ns_to_datetime(row.created_ns)))
        return claimed

    async def record(self, outcomes):
        now = self.clock.now_ns()
        for o in outcomes:
            row = self.rows[o.delivery_id]
            if row.status != "pending":
                continue
            row.status, row.attempts = o.status, row.attempts + int(o.attempted)
            row.due_ns, row.lease_until_ns = now + int(o.delay_s * 1e9), None
            row.last_error = o.error or row.last_error

    async def release(self, delivery_ids):
        for delivery_id in delivery_ids:
            self.rows[delivery_id].lease_until_ns = None


class ScriptedSender:
    """The sender port: answers each attempt with the next scripted result, noting when it came."""

    def __init__(self, clock: TestClock, results: list[SendResult]) -> None:
        self._clock = clock
        self._results = list(results)
        self.attempts: list[tuple[float, str, str, str]] = []  # (monotonic time, channel, delivery id, body)

    async def send(self, channel, *, delivery_id, event_kind, title, body) -> SendResult:
        self.attempts.append((self._clock.monotonic(), channel.id, delivery_id, body))
        return self._results.pop(0)


async def until(predicate, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polls what the tasks under test change
            await asyncio.sleep(0.001)


async def advance(clock: TestClock, seconds: float, step: float = 0.01) -> None:
    """Move the clock in small steps, letting the woken tasks (polls, writes, sends) run between."""
    for _ in range(round(seconds / step)):
        await clock.advance(step)
        for _ in range(5):
            await asyncio.sleep(0)


# --- the tests ------------------------------------------------------------------------------------


def test_build_wires_the_service_on_the_given_bus_without_starting_anything():
    clock = TestClock(start_ns=T0)
    bus = MemoryBus(clock=clock)
    config = settings()
    service = build(config, bus, config.service_database("notifier", required_revision="notifier_0001",
                                                         default_pool_size=6), clock)
    assert isinstance(service.components[1], Database)
    assert service.components[-1] is service.consumer and service.consumer in bus.consumers
    assert not service.consumer.is_ready() and not service.producer.is_connected()
    assert [c.name for c in service.readiness_checks] == ["broker", "database", "consumer:notifier"]
    assert [c.id for c in service.registry.routing.channels.values()] == ["hook"]  # from the settings, unread store


async def test_a_fill_on_the_bus_reaches_the_routed_channel_after_a_retry_the_clock_spaces():
    clock = TestClock(start_ns=T0)
    bus = MemoryBus(clock=clock)
    config = settings()
    service = build(config, bus, config.service_database("notifier", required_revision="notifier_0001",
                                                         default_pool_size=6), clock)
    store, facts = MemoryDeliveryStore(clock), NoFacts()
    sender = ScriptedSender(clock, [SendResult.retry("HTTP 503: Service Unavailable"), SendResult.delivered()])
    producer = bus.producer()
    intake, dispatcher, consumer = create_pipeline(
        config, bus, bus.dead_letters(producer), database=NoDatabase(), deliveries=store, facts=facts,
        registry=service.registry, senders=sender, clock=clock)
    await producer.start()
    await dispatcher.start()
    await consumer.start()
    try:
        async with asyncio.timeout(20):
            feed = bus.producer()
            await feed.start()
            event = fill(fill_id="f-7")
            feed.send(EXEC_FILLS, "alice", event)
            await bus.settle()
            assert facts.fills == [event]
            await until(lambda: len(sender.attempts) == 1)  # woken by the intake: no poll waited for
            (when, channel_id, delivery_id, body), = sender.attempts
            assert (when, channel_id) == (0.0, "hook") and "f-7" in body
            (row,) = store.rows.values()
            await advance(clock, 0.02)  # the outcome is written after the dispatcher's short batching wait
            assert (row.status, row.attempts, row.last_error) == ("pending", 1, "HTTP 503: Service Unavailable")
            backoff_s = (row.due_ns - T0) / 1e9 - 0.01
            assert 0.5 <= backoff_s <= 1.0  # the first retry: between half and all of retry_initial_s

            await advance(clock, 0.45)
            assert len(sender.attempts) == 1  # not before its due time
            await advance(clock, 1.1)  # the next poll after the due time sends it again
            assert len(sender.attempts) == 2
            second_at, _, second_id, _ = sender.attempts[1]
            assert second_id == delivery_id  # the same delivery id: the receiver dedupes by it
            assert backoff_s <= second_at <= backoff_s + config.poll_interval_s + 0.05
            await advance(clock, 0.02)
            assert (row.status, row.attempts) == ("delivered", 2)

            feed.send(EXEC_FILLS, "alice", event)  # redelivered (a rewind): a duplicate, nothing sent
            await bus.settle()
            await advance(clock, 1.0)
            assert len(sender.attempts) == 2 and len(store.rows) == 1
    finally:
        await consumer.stop()
        await stopped(dispatcher.stop(), clock)  # its last outcome write waits on the clock too
        await producer.stop()


async def stopped(stopping, clock: TestClock) -> None:
    task = asyncio.ensure_future(stopping)
    async with asyncio.timeout(5):
        while not task.done():
            await clock.advance(0.01)
            await asyncio.sleep(0.001)
    await task
