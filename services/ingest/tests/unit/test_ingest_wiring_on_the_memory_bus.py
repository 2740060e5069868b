"""Ingest's service layers wired by ``build`` on the in-memory bus and a test clock (no broker):
subscriptions, their ownership across replicas with takeover resume points, and tick publishing."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from tradeflow.codec import HEADER_ERROR_REASON
from tradeflow.messages import Alert, Tick
from tradeflow.testing import MemoryBroker, MemoryBus, TestClock
from tradeflow.topics import INGEST_SUBSCRIPTIONS, MD_TICKS, OPS_ALERTS
from tradeflow_exchanges.ccxt_client import ExchangeFeedSettings
from tradeflow_ingest.bootstrap import Ingest, build
from tradeflow_ingest.domain.resume_point import ResumePoint
from tradeflow_ingest.domain.sources import SourceStatus
from tradeflow_ingest.settings import IngestSettings
from tradeflow_ingest.subscriptions import SubscriptionRejected

NS_PER_MS = 1_000_000


class RecordingFeed:
    """An exchange feed as the subscriptions see it (the SubscribableFeed port): it records
    which symbols it is told to serve, and from where."""

    def __init__(self, settings: ExchangeFeedSettings, markets: frozenset[str] | None = None) -> None:
        self.exchange_name = settings.exchange_name
        self._symbols: tuple[str, ...] = ()
        self._markets = markets
        self.resumes: list[Mapping[str, ResumePoint]] = []

    @property
    def symbols(self) -> tuple[str, ...]:
        return self._symbols

    def set_symbols(self, symbols, resume=None) -> None:
        self._symbols = tuple(symbols)
        if resume:
            self.resumes.append(dict(resume))

    async def symbols_applied(self) -> None:
        return None

    def known_symbol(self, symbol: str) -> bool | None:
        return None if self._markets is None else symbol in self._markets

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def status(self) -> SourceStatus:
        return SourceStatus("recording", self.exchange_name, self._symbols, None, 0, 0, None, True)


def settings(**fields) -> IngestSettings:
    fields.setdefault("exchanges", [ExchangeFeedSettings(id="binance", symbols=("BTC/USDT",))])
    return IngestSettings(takeover_lookback_s=60, **fields)


def replica(broker: MemoryBroker, clock: TestClock, markets=frozenset({"BTC/USDT", "ETH/USDT", "SOL/USDT"})) -> Ingest:
    bus = MemoryBus(clock=clock, broker=broker)
    return build(settings(), bus, clock, feed_factory=lambda feed, publisher, receive_clock: RecordingFeed(feed, markets))


async def start(ingest: Ingest) -> None:
    for component in ingest.components:
        await component.start()


async def stop(ingest: Ingest) -> None:
    for component in reversed(ingest.components):
        await component.stop()


async def test_the_configured_symbol_is_stored_and_served_and_api_changes_reach_the_feed():
    clock = TestClock()
    broker = MemoryBroker(clock)
    ingest = replica(broker, clock)
    await start(ingest)
    try:
        feed = ingest.feeds["binance"]
        assert feed.symbols == ("BTC/USDT",)
        [stored] = broker.values(INGEST_SUBSCRIPTIONS)
        assert (stored.exchange, stored.symbol, stored.source, stored.ts_created) == (
            "binance", "BTC/USDT", "config", clock.now_ns())

        subscription, new = await ingest.subscriptions.add("binance", "ETH/USDT")
        assert new and subscription.source == "api"
        assert set(feed.symbols) == {"BTC/USDT", "ETH/USDT"}  # read back before add returned
        assert (await ingest.subscriptions.add("binance", "ETH/USDT"))[1] is False  # repeated: nothing new
        assert len(broker.records(INGEST_SUBSCRIPTIONS.name)) == 2

        await ingest.subscriptions.remove("binance", "ETH/USDT")
        assert feed.symbols == ("BTC/USDT",)
        eth = [r for r in broker.records(INGEST_SUBSCRIPTIONS.name) if r.key == b"binance:ETH/USDT"]
        assert [r.value is None for r in eth] == [False, True]  # stored, then a tombstone
    finally:
        await stop(ingest)


@pytest.mark.parametrize(("exchange", "symbol", "status", "text"), [
    ("kraken", "BTC/USD", 422, "not configured"),
    ("binance", "btc-usdt", 422, ""),
    ("binance", "DOGE/USDT", 422, "has no market"),
])
async def test_a_subscription_the_feed_cannot_serve_is_refused_with_a_reason(exchange, symbol, status, text):
    clock = TestClock()
    ingest = replica(MemoryBroker(clock), clock)
    await start(ingest)
    try:
        with pytest.raises(SubscriptionRejected) as refused:
            await ingest.subscriptions.add(exchange, symbol)
        assert refused.value.status == status and text in refused.value.message
        with pytest.raises(SubscriptionRejected) as configured:
            await ingest.subscriptions.remove("binance", "BTC/USDT")
        assert configured.value.status == 409
    finally:
        await stop(ingest)


async def test_a_restarted_replica_reads_the_book_back_and_serves_what_was_subscribed():
    clock = TestClock()
    broker = MemoryBroker(clock)
    first = replica(broker, clock)
    await start(first)
    await first.subscriptions.add("binance", "SOL/USDT")
    await stop(first)
    again = replica(broker, clock)
    await start(again)
    try:
        assert set(again.feeds["binance"].symbols) == {"BTC/USDT", "SOL/USDT"}
        assert sorted(v.subscription.symbol for v in again.subscriptions.list()) == ["BTC/USDT", "SOL/USDT"]
    finally:
        await stop(again)


async def test_replicas_split_the_subscriptions_and_a_takeover_resumes_after_the_last_published_trade():
    clock = TestClock()
    broker = MemoryBroker(clock, default_partitions=12)
    a = replica(broker, clock)
    b = replica(broker, clock)
    await start(a)
    for symbol in ("ETH/USDT", "SOL/USDT"):
        await a.subscriptions.add("binance", symbol)
    await start(b)
    served_a, served_b = set(a.feeds["binance"].symbols), set(b.feeds["binance"].symbols)
    assert served_a and served_b
    assert served_a | served_b == {"BTC/USDT", "ETH/USDT", "SOL/USDT"} and not served_a & served_b
    assert a.ownership.partitions | b.ownership.partitions == set(range(12))

    # A publishes trades of its symbols, then leaves: B takes them over from the last one.
    published_at = clock.now_ns()
    for n, symbol in enumerate(sorted(served_a)):
        ticks = [Tick(exchange="binance", symbol=symbol, trade_id=f"{symbol}-{i}", price=100.0 + i, amount=1.0,
                      side="buy", ts_event=published_at - (10 - i) * 1_000 * NS_PER_MS + n,
                      ts_recv=published_at) for i in range(3)]
        outcome = await a.publisher.publish(ticks)
        assert outcome.published == 3
    await clock.advance(5)
    await stop(a)
    assert set(b.feeds["binance"].symbols) == {"BTC/USDT", "ETH/USDT", "SOL/USDT"}
    # The rebalance is eager (B gave up its own partitions too), so every symbol resumes: A's
    # after their last published trade, skipping the published ids; the others from the window.
    resume = b.feeds["binance"].resumes[-1]
    assert set(resume) == {"BTC/USDT", "ETH/USDT", "SOL/USDT"}
    for n, symbol in enumerate(sorted(served_a)):
        assert resume[symbol].published_ids == {f"{symbol}-{i}" for i in range(3)}
        assert resume[symbol].since_ms == (published_at - 8_000 * NS_PER_MS + n) // NS_PER_MS
    for symbol in served_b:
        assert resume[symbol] == ResumePoint(since_ms=clock.now_ms() - 60_000, published_ids=frozenset())
    await stop(b)


def tick(symbol: str, trade_id: str, price: float, ts_recv: int, **changes) -> Tick:
    fields = dict(exchange="binance", symbol=symbol, trade_id=trade_id, price=price, amount=0.5, side="sell",
                  ts_event=ts_recv - 1_000_000, ts_recv=ts_recv)
    fields.update(changes)
    return Tick(**fields)


async def test_ticks_are_published_in_order_and_bad_ones_go_to_the_dlq_with_their_reason():
    clock = TestClock()
    bus = MemoryBus(clock=clock)
    ingest = build(settings(exchanges=[]), bus, clock)
    await ingest.producer.start()
    now = clock.now_ns()
    outcome = await ingest.publisher.publish([
        tick("BTC/USDT", "1", 100.0, now),
        tick("BTC/USDT", "2", -1.0, now),  # invalid
        tick("BTC/USDT", "3", 101.0, now),
        tick("BTC/USDT", "4", 1000.0, now),  # 10x the last accepted price: held back by the guard
        tick("BTC/USDT", "5", 102.0, now, side="hold"),  # invalid side
    ])
    assert (outcome.published, outcome.rejected, outcome.failed) == (2, 3, 0)
    assert [t.trade_id for t in bus.broker.values(MD_TICKS)] == ["1", "3"]
    assert {r.key for r in bus.broker.records(MD_TICKS.name)} == {b"binance:BTC/USDT"}
    dlq = bus.broker.records(MD_TICKS.dlq)
    assert [r.header("schema") for r in dlq] == ["Tick/1"] * 3
    reasons = [r.header(HEADER_ERROR_REASON).split(":")[0] for r in dlq]
    assert reasons[0] == "invalid_price" and reasons[2] == "invalid_side" and reasons[1] not in reasons[::2]
    [alert] = bus.broker.values(OPS_ALERTS)
    assert isinstance(alert, Alert) and alert.labels["trade_id"] == "4" and alert.service == "ingest"


async def test_a_broker_that_refuses_the_ticks_is_counted_not_raised():
    clock = TestClock()
    bus = MemoryBus(clock=clock)
    ingest = build(settings(exchanges=[]), bus, clock)
    await ingest.producer.start()
    bus.broker.fail_sends(MD_TICKS.name, ConnectionError("broker away"))
    outcome = await ingest.publisher.publish([tick("ETH/USDT", "1", 10.0, clock.now_ns())])
    assert (outcome.published, outcome.failed) == (0, 1) and isinstance(outcome.first_error, ConnectionError)
    bus.broker.fail_sends(MD_TICKS.name, None)
    outcome = await ingest.publisher.publish([tick("ETH/USDT", "1", 10.0, clock.now_ns())])
    assert outcome.published == 1 and outcome.last_event_ns == clock.now_ns() - 1_000_000


def test_build_starts_nothing_and_names_every_readiness_check():
    clock = TestClock()
    bus = MemoryBus(clock=clock)
    ingest = build(settings(synthetic_symbols=3), bus, clock,
                   feed_factory=lambda feed, publisher, receive_clock: RecordingFeed(feed))
    assert bus.broker.records(MD_TICKS.name) == [] and bus.readers != [] and not any(r.following for r in bus.readers)
    assert [check.name for check in ingest.readiness_checks] == ["broker", "subscription-log", "subscription-ownership"]
    assert [source.status().kind for source in ingest.sources] == ["synthetic", "recording"]
