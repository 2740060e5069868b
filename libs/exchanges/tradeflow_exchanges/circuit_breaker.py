"""A circuit breaker for the calls to one exchange (pure; the caller passes monotonic seconds)."""

from __future__ import annotations

from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"  # calls go through
    OPEN = "open"  # calls wait for the cool-down
    HALF_OPEN = "half_open"  # one probe call is under way; its outcome closes or reopens


class CircuitBreaker:
    """Closed → open after ``failure_threshold`` consecutive failures → half-open (a single
    probe) once ``cool_down_s`` has passed → closed when the probe succeeds, open again when
    it fails. An exchange that keeps failing is then asked once per cool-down instead of once
    per backoff step, which is what exchanges ban accounts for.
    """

    def __init__(self, failure_threshold: int, cool_down_s: float) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {failure_threshold}")
        if cool_down_s <= 0:
            raise ValueError(f"cool_down_s must be positive, got {cool_down_s}")
        self._threshold = failure_threshold
        self._cool_down_s = cool_down_s
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0

    @property
    def state(self) -> BreakerState:
        return self._state

    def wait_s(self, now: float) -> float:
        """How long until a call may be tried: 0 when closed or the cool-down is over."""
        if self._state is BreakerState.OPEN:
            return max(0.0, self._opened_at + self._cool_down_s - now)
        return 0.0

    def try_acquire(self, now: float) -> bool:
        """May a call start now? After the cool-down, the first caller becomes the only probe."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN and self.wait_s(now) == 0.0:
            self._state = BreakerState.HALF_OPEN
            return True
        return False  # open and cooling down, or a probe is already under way

    def record_success(self) -> None:
        self._state = BreakerState.CLOSED
        self._failures = 0

    def record_failure(self, now: float) -> None:
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or self._failures >= self._threshold:
            self._state = BreakerState.OPEN
            self._opened_at = now
