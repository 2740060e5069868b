"""The webhook signature of design.md, as Stripe and GitHub receivers know it.

``X-Tradeflow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`` under the
channel's secret. The timestamp is part of what is signed, so a receiver that also checks it is
recent (``tolerance_s``) refuses replays of an old delivery; the body is signed as sent (bytes),
never re-serialized. A new timestamp (and signature) is computed on every attempt; the body and
``X-Tradeflow-Delivery`` stay the same, so the receiver dedupes retries by that id.
"""

from __future__ import annotations

import hashlib
import hmac
import re

SIGNATURE_HEADER = "X-Tradeflow-Signature"
EVENT_HEADER = "X-Tradeflow-Event"
DELIVERY_HEADER = "X-Tradeflow-Delivery"
DEFAULT_TOLERANCE_S = 300
_SIGNATURE = re.compile(r"^t=(\d{1,12}),v1=([0-9a-f]{64})$")


class BadSignature(ValueError):
    """A signature header that does not verify; the text says why."""


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"``."""
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance_s: float = DEFAULT_TOLERANCE_S) -> int:
    """Check a received signature (what a receiver does); the signed timestamp, or :class:`BadSignature`."""
    match = _SIGNATURE.match(header.strip())
    if match is None:
        raise BadSignature("expected 't=<unix seconds>,v1=<64 hex digits>'")
    timestamp, received = int(match.group(1)), match.group(2)
    if not hmac.compare_digest(received, signature(secret, timestamp, body)):
        raise BadSignature("the signature does not match the body under this secret")
    if abs(now - timestamp) > tolerance_s:
        raise BadSignature(f"the timestamp is {abs(now - timestamp):.0f}s away from now (tolerance {tolerance_s}s)")
    return timestamp
