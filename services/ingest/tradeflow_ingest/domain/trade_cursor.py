"""Where a feed resumes after a gap: the event time of the last published trade per symbol (pure)."""

from __future__ import annotations


class TradeCursor:
    """Per symbol, the ms timestamp from which missed trades are fetched after a reconnect.

    Starts at the time the feed started (trades before that are not this feed's to publish)
    and moves to each published trade's timestamp. Fetching *from* that timestamp (inclusive)
    re-reads trades of the same millisecond; the dedup window drops them.
    """

    def __init__(self, symbols: list[str] | tuple[str, ...] = (), start_ms: int = 0) -> None:
        self._since = dict.fromkeys(symbols, start_ms)

    def add(self, symbol: str, start_ms: int) -> None:
        """Follow ``symbol`` from ``start_ms`` (a symbol subscribed while running starts then)."""
        self._since.setdefault(symbol, start_ms)

    def remove(self, symbol: str) -> None:
        self._since.pop(symbol, None)

    def __contains__(self, symbol: str) -> bool:
        return symbol in self._since

    def since_ms(self, symbol: str) -> int:
        return self._since[symbol]

    def advance(self, symbol: str, ts_ms: int) -> None:
        """Move to ``ts_ms`` unless it is older (a late trade does not rewind the cursor); a symbol
        no longer followed is ignored."""
        since = self._since.get(symbol)
        if since is not None and ts_ms > since:
            self._since[symbol] = ts_ms
