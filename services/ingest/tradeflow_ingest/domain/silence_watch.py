"""Which symbols of a live subscription have gone silent for too long (pure)."""

from __future__ import annotations


class SilenceWatch:
    """Per symbol, when the exchange last sent one of its trades (monotonic seconds).

    Only *active* symbols count: those heard from at least once, so a symbol that never
    trades does not make the feed resubscribe forever. A websocket can stay open yet stop
    delivering (a stalled stream); an active symbol silent longer than ``stale_after_s`` says so.
    """

    def __init__(self, stale_after_s: float) -> None:
        if stale_after_s <= 0:
            raise ValueError(f"stale_after_s must be positive, got {stale_after_s}")
        self._stale_after_s = stale_after_s
        self._last_heard: dict[str, float] = {}

    def heard(self, symbol: str, now: float) -> None:
        self._last_heard[symbol] = now

    def forget(self, symbol: str) -> None:
        """``symbol`` is no longer subscribed: its silence means nothing."""
        self._last_heard.pop(symbol, None)

    def restart(self, now: float) -> None:
        """A fresh subscription: every active symbol gets a full ``stale_after_s`` again."""
        self._last_heard = dict.fromkeys(self._last_heard, now)

    def seconds_until_stale(self, now: float) -> float | None:
        """Until the first active symbol goes stale (0 when one is); None when none is active.

        0 exactly when :meth:`stale` names a symbol: both compare ``last heard + stale_after_s``
        with ``now`` (``now - last heard`` may round below ``stale_after_s`` at that very instant).
        A timer set for this many seconds may still fire a hair early (the event loop's clock
        resolution), when :meth:`stale` names none yet: wait again rather than act on nothing.
        """
        if not self._last_heard:
            return None
        return max(0.0, min(self._last_heard.values()) + self._stale_after_s - now)

    def stale(self, now: float) -> list[str]:
        """The active symbols silent for ``stale_after_s`` or longer."""
        return sorted(s for s, t in self._last_heard.items() if t + self._stale_after_s <= now)
