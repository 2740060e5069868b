"""The test clock moves only when told, and wakes its sleepers in order of their deadlines."""

from __future__ import annotations

import asyncio
import time

from tradeflow.clock import SYSTEM_CLOCK, Clock
from tradeflow.testing import TestClock


async def test_sleepers_wake_in_deadline_order_at_their_time_and_only_when_time_is_advanced():
    clock = TestClock(start_ns=1_000_000_000_000)
    woke: list[tuple[str, float, int]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic(), clock.now_ns()))

    tasks = [asyncio.create_task(sleeper("late", 5)), asyncio.create_task(sleeper("early", 1))]
    await asyncio.sleep(0)
    await asyncio.sleep(0.01)  # real time passing moves nothing
    assert woke == [] and clock.sleepers == 2
    await clock.advance(2)
    assert woke == [("early", 1.0, 1_001_000_000_000)]
    await clock.advance(3)
    assert [w[0] for w in woke] == ["early", "late"] and woke[1][1] == 5.0
    assert clock.monotonic() == 5.0 and clock.now_ms() == 1_005_000
    await asyncio.gather(*tasks)


async def test_the_wall_clock_may_step_back_while_monotonic_time_does_not():
    clock = TestClock(start_ns=10_000)
    clock.set_wall_ns(5_000)
    assert clock.now_ns() == 5_000 and clock.monotonic() == 0.0
    await clock.advance(0.5)
    assert clock.now_ns() == 5_000 + 500_000_000 and clock.monotonic() == 0.5


def test_both_clocks_fulfil_the_protocol():
    clocks: list[Clock] = [SYSTEM_CLOCK, TestClock()]
    assert abs(clocks[0].now_ns() - time.time_ns()) < 1_000_000_000
    assert all(callable(c.now_ms) and callable(c.sleep) for c in clocks)
