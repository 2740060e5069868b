"""The receive clock: ``ts_recv`` values that strictly increase within one process."""

from __future__ import annotations

import time
from collections.abc import Callable


class ReceiveClock:
    """Hands out receive timestamps (ns since the epoch, UTC) that never repeat or go back.

    Downstream, trades with the same event time keep their *arrival* order, which is defined
    by ``ts_recv``. Wall-clock reads can repeat (coarse clocks, bursts) or step back (NTP), so
    each stamp is ``max(now, previous + 1)``. One instance per process, shared by every source
    of that process (the service creates it in its app factory; a replay creates its own).
    """

    __slots__ = ("_now_ns", "_last")

    def __init__(self, now_ns: Callable[[], int] = time.time_ns) -> None:
        self._now_ns = now_ns
        self._last = 0

    def next(self) -> int:
        stamp = self._now_ns()
        if stamp <= self._last:
            stamp = self._last + 1
        self._last = stamp
        return stamp
