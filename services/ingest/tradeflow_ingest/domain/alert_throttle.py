"""At most one alert per key and interval, the ones held back counted into the next (pure)."""

from __future__ import annotations

from collections.abc import Hashable


class AlertThrottle:
    """A flapping connection must not flood ops.alerts.v1: per key (e.g. exchange and kind), an
    alert goes out only if the previous one that went out is ``interval_s`` old; the alerts
    suppressed meanwhile are counted and reported by the next one. Times are monotonic seconds.
    """

    def __init__(self, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self._interval_s = interval_s
        self._state: dict[Hashable, tuple[float, int]] = {}  # key -> (last sent at, suppressed since)

    def admit(self, key: Hashable, now: float) -> int | None:
        """None when the alert is to be suppressed; else how many were suppressed before it."""
        state = self._state.get(key)
        if state is not None and now - state[0] < self._interval_s:
            self._state[key] = (state[0], state[1] + 1)
            return None
        self._state[key] = (now, 0)
        return 0 if state is None else state[1]
