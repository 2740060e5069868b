"""The instance sync under a stream of fills: fills are applied at once, the instance rows are read
on their interval (or an explicit refresh), not again for every batch of fills."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from tradeflow.testing import TestClock
from tradeflow_strategy.instance_sync import InstanceSync


@dataclass(frozen=True)
class StoredFill:
    seq: int


class Instances:
    def __init__(self) -> None:
        self.reads = 0

    async def list(self) -> list:
        self.reads += 1
        return []


class Fills:
    def __init__(self) -> None:
        self.stored: list[StoredFill] = []

    async def newest(self) -> int:
        return self.stored[-1].seq if self.stored else 0

    async def after(self, seq: int) -> list[StoredFill]:
        return [f for f in self.stored if f.seq > seq]

    def store(self) -> None:
        self.stored.append(StoredFill(len(self.stored) + 1))


class Engine:
    def __init__(self) -> None:
        self.fills: list[int] = []

    def apply_instances(self, instances: list) -> None:
        pass

    def apply_fills(self, batch: list[StoredFill]) -> None:
        self.fills += [f.seq for f in batch]

    async def record_failures(self) -> None:
        pass


async def settle(predicate) -> None:
    for _ in range(200):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("the sync did not get there")


async def test_fills_are_applied_at_once_and_the_instances_are_read_only_on_their_interval():
    clock, instances, fills, engine = TestClock(), Instances(), Fills(), Engine()
    sync = InstanceSync(engine, instances, fills, interval_s=2.0, clock=clock)
    await sync.start()
    try:
        assert instances.reads == 1
        for expected in range(1, 6):  # five batches of fills within the interval
            fills.store()
            sync.wake_for_fills()
            await settle(lambda e=expected: engine.fills == list(range(1, e + 1)))
        assert instances.reads == 1

        await clock.advance(2.5)  # the interval is over: the next wake reads the instances too
        fills.store()
        sync.wake_for_fills()
        await settle(lambda: instances.reads >= 2 and engine.fills[-1] == 6)

        await sync.refresh()  # a change served here (API) reads them at once
        assert instances.reads >= 3
    finally:
        await sync.stop()
