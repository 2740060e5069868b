"""The subscriptions as the compacted ``ingest.subscriptions.v1`` topic states them (pure).

Every ingest replica reads the whole topic into a :class:`SubscriptionBook`. Which replica
serves a subscription follows from the partition its record lives on: the replicas' consumer
group divides the topic's partitions, and a replica serves exactly the subscriptions on the
partitions assigned to it (:func:`symbols_to_serve`). So no subscription is served twice, and
when a replica dies the group hands its partitions, hence its subscriptions, to the others.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from tradeflow.markets import parse_market_key, spot_pair_problem
from tradeflow.messages import Subscription


def symbol_rejection_reason(symbol: str) -> str | None:
    """Why ``symbol`` cannot be subscribed (ingest serves ccxt's unified spot pairs), or None."""
    return spot_pair_problem(symbol)


@dataclass(frozen=True, slots=True)
class BookEntry:
    subscription: Subscription
    partition: int


class SubscriptionBook:
    """Newest state per ``exchange:symbol`` key, with the partition that holds it."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], BookEntry] = {}

    def apply(self, partition: int, subscription: Subscription | None, key: tuple[str, str]) -> bool:
        """Record the topic's newest value of ``key`` (None: a tombstone). True when it changed
        what is subscribed (a re-asserted identical subscription changes nothing)."""
        before = self._entries.get(key)
        if subscription is None:
            return self._entries.pop(key, None) is not None
        self._entries[key] = BookEntry(subscription, partition)
        return before is None or before.partition != partition

    def get(self, exchange: str, symbol: str) -> Subscription | None:
        entry = self._entries.get((exchange, symbol))
        return None if entry is None else entry.subscription

    def partition_of(self, exchange: str, symbol: str) -> int | None:
        entry = self._entries.get((exchange, symbol))
        return None if entry is None else entry.partition

    def subscriptions(self) -> list[Subscription]:
        return [self._entries[key].subscription for key in sorted(self._entries)]

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> Iterable[BookEntry]:
        return self._entries.values()


def symbols_to_serve(
    book: SubscriptionBook, partitions: Collection[int], exchanges: Iterable[str]
) -> dict[str, tuple[str, ...]]:
    """Per configured exchange, the symbols this replica serves: those on its ``partitions``.

    Every configured exchange is in the result (an empty tuple stops its feed's symbols);
    subscriptions of exchanges this replica has no feed for are not served (the API refuses
    to create them, so only a configuration change between replicas produces them).
    """
    wanted: dict[str, list[str]] = {exchange: [] for exchange in exchanges}
    for entry in book.entries():
        symbols = wanted.get(entry.subscription.exchange)
        if symbols is not None and entry.partition in partitions:
            symbols.append(entry.subscription.symbol)
    return {exchange: tuple(sorted(symbols)) for exchange, symbols in wanted.items()}


def parse_key(key: bytes | None) -> tuple[str, str] | None:
    """``b'binance:BTC/USDT'`` -> ``('binance', 'BTC/USDT')``; None for a key of another form."""
    return parse_market_key(key)
