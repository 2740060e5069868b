"""How long to wait before retrying an exchange that refused a request (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER_S = 600.0  # a bogus header must not park the feed for days


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """The ``Retry-After`` header (seconds, or an HTTP date) in seconds; None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(MAX_RETRY_AFTER_S, max(0.0, seconds))


class RequestHold:
    """Until when an exchange must not be asked anything, after it said "too many requests".

    Binance answers 429 (slow down) and then 418 (banned, for longer each time) to a client
    that keeps calling during its Retry-After; so every request to that exchange, REST or a
    new websocket connection, waits for the hold. Times are monotonic seconds.
    """

    def __init__(self) -> None:
        self._until = 0.0

    def hold(self, now: float, seconds: float) -> None:
        """No request before ``now + seconds`` (an earlier, longer hold is kept)."""
        self._until = max(self._until, now + seconds)

    def remaining_s(self, now: float) -> float:
        return max(0.0, self._until - now)
