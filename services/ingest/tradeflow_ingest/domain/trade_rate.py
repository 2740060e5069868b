"""Trades per second over a recent window (pure; the caller passes monotonic seconds)."""

from __future__ import annotations

from collections import deque

DEFAULT_WINDOW_S = 60.0


class RecentTradeRate:
    """How many trades per second arrived over the last ``window_s`` (or since the first one,
    when that is more recent, so a feed that just started does not read as slow)."""

    def __init__(self, window_s: float = DEFAULT_WINDOW_S) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        self._window_s = window_s
        self._counts: deque[tuple[float, int]] = deque()
        self._first: float | None = None

    def add(self, now: float, count: int) -> None:
        if self._first is None:
            self._first = now
        second = float(int(now))  # one entry per second, however many trades arrive in it
        if self._counts and self._counts[-1][0] == second:
            self._counts[-1] = (second, self._counts[-1][1] + count)
        else:
            self._counts.append((second, count))
        self._forget_before(now - self._window_s)

    def per_second(self, now: float) -> float:
        self._forget_before(now - self._window_s)
        if self._first is None:
            return 0.0
        span = max(1.0, min(self._window_s, now - self._first))
        return sum(count for _, count in self._counts) / span

    def _forget_before(self, cutoff: float) -> None:
        while self._counts and self._counts[0][0] < cutoff:
            self._counts.popleft()
