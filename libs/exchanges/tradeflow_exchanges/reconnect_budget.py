"""At most N websocket connection attempts per sliding window, per exchange (pure)."""

from __future__ import annotations

from collections import deque


class ReconnectBudget:
    """A flapping connection must not turn into a connection storm (exchanges ban for that).

    ``wait_s`` says how long until one more attempt fits in the window; the feed polls REST
    meanwhile. Times are monotonic seconds.
    """

    def __init__(self, max_attempts: int, window_s: float) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        self._max_attempts = max_attempts
        self._window_s = window_s
        self._attempts: deque[float] = deque()

    def wait_s(self, now: float) -> float:
        self._forget_before(now - self._window_s)
        if len(self._attempts) < self._max_attempts:
            return 0.0
        return self._attempts[0] + self._window_s - now

    def record_attempt(self, now: float) -> None:
        self._forget_before(now - self._window_s)
        self._attempts.append(now)

    def _forget_before(self, cutoff: float) -> None:
        while self._attempts and self._attempts[0] <= cutoff:
            self._attempts.popleft()
