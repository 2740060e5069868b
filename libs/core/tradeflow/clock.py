"""The clock services are given: wall time in nanoseconds, monotonic time, and sleeping.

One protocol for every service, so a unit test can swap in ``tradeflow.testing.TestClock`` and
move time by hand. Components that take a plain callable (``now_ns: Callable[[], int]``, the
older shape) are given ``clock.now_ns``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int:
        """Wall time: nanoseconds since the epoch (UTC)."""
        ...

    def now_ms(self) -> int:
        """Wall time in milliseconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (durations, deadlines)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return after ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """The real clock. ``now_ns`` and ``monotonic`` are the ``time`` functions themselves, so a
    hot path handed ``clock.now_ns`` pays no extra call."""

    now_ns = staticmethod(time.time_ns)
    monotonic = staticmethod(time.monotonic)

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK = SystemClock()
