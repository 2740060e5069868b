"""Trading hours: is an instrument's market open at an instant (its market calendar's sessions).

A :class:`SessionCalendar` is the sorted list of a calendar's open intervals [open, close) in
UTC nanoseconds (a lunch break splits a session in two); the adapter builds it from
exchange_calendars. An order at exactly the close is refused: a market order would wait for the
next session's open (risk does not let it cross the night gap unasked).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence


class SessionCalendar:
    """Open intervals of one market calendar; ``is_open`` in O(log n)."""

    def __init__(self, name: str, intervals: Sequence[tuple[int, int]]) -> None:
        ordered = sorted(intervals)
        self.name = name
        self._starts = [start for start, _ in ordered]
        self._ends = [end for _, end in ordered]
        if ordered:
            self.first, self.last = self._starts[0], self._ends[-1]
        else:
            self.first = self.last = 0

    def is_open(self, ts_ns: int) -> bool:
        i = bisect.bisect_right(self._starts, ts_ns) - 1
        return i >= 0 and ts_ns < self._ends[i]

    def covers(self, ts_ns: int) -> bool:
        """Whether ``ts_ns`` lies within the loaded range (outside it nothing is known)."""
        return self.first <= ts_ns <= self.last
