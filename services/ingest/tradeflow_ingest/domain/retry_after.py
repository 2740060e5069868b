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


def wait_before_retry(backoff_delay_s: float, retry_after_s: float | None) -> float:
    """The backoff delay, or the exchange's Retry-After when that is longer (it is a ban otherwise)."""
    return backoff_delay_s if retry_after_s is None else max(backoff_delay_s, retry_after_s)
