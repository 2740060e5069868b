"""Which trades were already published, per symbol, within a bounded window (pure)."""

from __future__ import annotations

from collections import OrderedDict

DEFAULT_CAPACITY = 10_000  # per symbol: far more than one reconnect's overlap of REST and websocket


class RecentTradeIds:
    """The last ``capacity`` trade ids of each symbol, oldest forgotten first.

    A websocket batch, a REST catch-up page and the next websocket batch overlap; an id seen in
    the window is a duplicate. Memory stays bounded however long the feed runs.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._capacity = capacity
        self._ids: dict[str, OrderedDict[str, None]] = {}

    def add(self, symbol: str, trade_id: str) -> bool:
        """Remember ``trade_id``; True when it is new, False when it is a duplicate."""
        ids = self._ids.get(symbol)
        if ids is None:
            ids = self._ids[symbol] = OrderedDict()
        elif trade_id in ids:
            return False
        ids[trade_id] = None
        if len(ids) > self._capacity:
            ids.popitem(last=False)
        return True

    def discard(self, symbol: str, trade_id: str) -> None:
        """Forget ``trade_id`` (its publication failed; a later fetch may bring it again)."""
        self._ids.get(symbol, OrderedDict()).pop(trade_id, None)

    def forget_symbol(self, symbol: str) -> None:
        """Drop every id of ``symbol`` (it is no longer followed)."""
        self._ids.pop(symbol, None)

    def __contains__(self, key: tuple[str, str]) -> bool:
        symbol, trade_id = key
        return trade_id in self._ids.get(symbol, ())
