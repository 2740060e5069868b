"""What a send attempt came to, and when to try again.

A sender answers with one :class:`SendResult`:

- ``delivered``: the receiver took it (2xx, SMTP 250).
- ``retry``: a transient failure (5xx, timeouts, refused connections, 429). A 429 or
  ``Retry-After`` gives ``retry_after_s``: the service's own word on when to come back (Telegram's
  ``parameters.retry_after``, Discord's ``retry_after``, the HTTP header), which is honoured as is
  and pauses the whole channel (the limit is the channel's, not one message's).
- ``rejected``: a permanent failure (4xx other than 408/429, SMTP 5xx): retrying cannot help,
  so the delivery fails at once with the receiver's reason.

:class:`RetryPolicy` spaces the retries: exponential backoff with "equal jitter" (half of the
doubled delay fixed, half random), so retries of many deliveries spread out yet always wait at
least half the nominal delay. After ``max_attempts`` attempts the delivery is failed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["delivered", "retry", "rejected"]
RETRYABLE_HTTP_4XX = frozenset({408, 425, 429})
MAX_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    error: str = ""
    retry_after_s: float | None = None

    @classmethod
    def delivered(cls) -> SendResult:
        return cls("delivered")

    @classmethod
    def retry(cls, error: str, retry_after_s: float | None = None) -> SendResult:
        return cls("retry", error[:MAX_ERROR_CHARS], retry_after_s)

    @classmethod
    def rejected(cls, error: str) -> SendResult:
        return cls("rejected", error[:MAX_ERROR_CHARS])


def http_result(status: int, reason: str, retry_after_s: float | None = None) -> SendResult:
    """The result of an HTTP answer (``reason``: the receiver's own words, e.g. Slack's ``channel_not_found``)."""
    if 200 <= status < 300:
        return SendResult.delivered()
    error = f"HTTP {status}: {reason}" if reason else f"HTTP {status}"
    if status >= 500 or status in RETRYABLE_HTTP_4XX:
        return SendResult.retry(error, retry_after_s)
    return SendResult.rejected(error)


def parse_retry_after(value: str | None) -> float | None:
    """An HTTP ``Retry-After`` in seconds (delta-seconds form; an HTTP date is ignored: None)."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    initial_s: float = 1.0
    max_s: float = 300.0

    def nominal_delay(self, attempt: int) -> float:
        """The delay after failed attempt number ``attempt`` (1-based) before jitter."""
        return min(self.max_s, self.initial_s * 2 ** (attempt - 1))

    def delay(self, attempt: int, rng: random.Random | None = None, retry_after_s: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt``: the receiver's ``retry_after_s`` when it
        gave one, else the nominal delay with equal jitter (between half of it and all of it)."""
        if retry_after_s is not None:
            return retry_after_s
        nominal = self.nominal_delay(attempt)
        return nominal / 2 + (rng or random).uniform(0, nominal / 2)

    def is_last(self, attempt: int) -> bool:
        return attempt >= self.max_attempts
