"""A token bucket per channel: at most ``rate_per_minute`` messages a minute, small bursts allowed.

The bucket holds up to ``burst`` tokens (a twentieth of the minute's rate, at least one) and
refills continuously. The dispatcher takes one token per delivery it claims for the channel, so
a channel that is rate limited leaves its deliveries stored and pending (they are not attempts).
"""

from __future__ import annotations

import math


class TokenBucket:
    def __init__(self, rate_per_minute: float, now: float, burst: float | None = None) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive (no bucket means no limit)")
        self.rate_per_s = rate_per_minute / 60.0
        self.burst = burst if burst is not None else max(1.0, rate_per_minute / 20.0)
        self._tokens = self.burst
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate_per_s)
            self._at = now

    def available(self, now: float) -> int:
        """Whole messages that may go now."""
        self._refill(now)
        return math.floor(self._tokens + 1e-9)

    def take(self, count: int, now: float) -> None:
        self._refill(now)
        self._tokens -= count

    def wait_s(self, now: float) -> float:
        """Seconds until the next message may go (0 when one may go now)."""
        self._refill(now)
        return 0.0 if self._tokens >= 1 - 1e-9 else (1 - self._tokens) / self.rate_per_s
