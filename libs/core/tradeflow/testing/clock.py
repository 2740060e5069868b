"""A clock that moves only when the test says so."""

from __future__ import annotations

import asyncio
import heapq
import itertools

NS_PER_S = 1_000_000_000


class TestClock:
    """:class:`tradeflow.clock.Clock` for tests: starts at ``start_ns`` (wall) and 0.0
    (monotonic); :meth:`advance` moves both and wakes the sleepers that are due, in order."""

    __test__ = False  # not a pytest test class

    def __init__(self, start_ns: int = 1_700_000_000 * NS_PER_S) -> None:
        self._wall_ns = start_ns
        self._mono_ns = 0
        self._sleepers: list[tuple[int, int, asyncio.Future]] = []
        self._order = itertools.count()

    def now_ns(self) -> int:
        return self._wall_ns

    def now_ms(self) -> int:
        return self._wall_ns // 1_000_000

    def monotonic(self) -> float:
        return self._mono_ns / NS_PER_S

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono_ns + int(seconds * NS_PER_S), next(self._order), future))
        await future

    def set_wall_ns(self, wall_ns: int) -> None:
        """Step the wall clock (it may go back, like NTP); monotonic time does not move."""
        self._wall_ns = wall_ns

    async def advance(self, seconds: float) -> None:
        """Move time forward; every sleeper due by then wakes (and runs) before this returns."""
        target = self._mono_ns + int(seconds * NS_PER_S)
        while self._sleepers and self._sleepers[0][0] <= target:
            due, _, future = heapq.heappop(self._sleepers)
            self._wall_ns += due - self._mono_ns
            self._mono_ns = due
            if not future.done():
                future.set_result(None)
            for _ in range(10):  # let the woken task run up to its next await
                await asyncio.sleep(0)
        self._wall_ns += target - self._mono_ns
        self._mono_ns = target
        await asyncio.sleep(0)

    @property
    def sleepers(self) -> int:
        return sum(1 for *_, f in self._sleepers if not f.done())
