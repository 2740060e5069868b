"""A live account's own trades are read completely at Bybit, OKX and Kraken (ADR 0022, amendment).

The live broker is made by execution's own wiring from a ``TRADEFLOW_EXCHANGES`` entry whose
URLs point ccxt at a loopback fake of the exchange's private trade history (its formats, page
sizes, cursors and time windows: a window longer than the exchange allows is refused in the
exchange's error format). Each test reads what a reconciliation after an outage reads: the
trades since the last known fill, many pages over more than one window, and the trades of an
order with more than one page. Every trade is read once, in order, none missing, none doubled;
trades of other symbols and from before the last known fill are not.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncIterator
from decimal import Decimal as D

import pytest
from tradeflow.telemetry import Telemetry
from tradeflow_execution.adapters.live_broker import LiveBroker
from tradeflow_execution.live_wiring import create_live_brokers
from tradeflow_execution.settings import ExecutionSettings

from tests.fakes.fake_account_trades import (
    BYBIT_WINDOW_MS,
    DAY_MS,
    AccountTrade,
    FakeBybitAccount,
    FakeKrakenAccount,
    FakeOkxAccount,
)

pytestmark = pytest.mark.integration

KRAKEN_SECRET = base64.b64encode(b"kraken-fake-secret-of-some-length").decode()  # ccxt decodes it


def now_ms() -> int:
    return int(time.time() * 1000)


def spread(count: int, first_ms: int, last_ms: int) -> list[int]:
    """``count`` times from ``first_ms`` to ``last_ms``, evenly."""
    return [first_ms + (last_ms - first_ms) * i // (count - 1) for i in range(count)]


async def live_broker(exchange: str, symbol: str, entry: dict) -> LiveBroker:
    settings = ExecutionSettings(
        environment="test",
        accounts=[{"id": "live-paging", "exchange": exchange, "mode": "live", "balances": {"USDT": "10000"}}],
        exchanges=[{"id": exchange, "symbols": [symbol], "api_key": "fake-key", **entry}])
    (broker,) = create_live_brokers(settings, Telemetry("test-paging", settings)).values()
    return broker


def ids(trades: list[dict]) -> list[str]:
    return [str(t["id"]) for t in trades]


def assert_read_as_made(trades: list[dict], made: list[AccountTrade], symbol: str) -> None:
    """Each made trade once, in the order made, with its order, quantity, price and fee."""
    assert ids(trades) == [m.trade_id for m in made], (
        f"{len(trades)} read of {len(made)}; missing {sorted(set(m.trade_id for m in made) - set(ids(trades)))[:5]}")
    for trade, m in zip(trades, made, strict=True):
        assert (trade["symbol"], str(trade["order"]), trade["timestamp"]) == (symbol, m.order_id, m.ts_ms)
        assert (D(str(trade["amount"])), D(str(trade["price"])), D(str(trade["fee"]["cost"]))) == (
            D(m.quantity), D(m.price), D(m.fee))


# --- Bybit -----------------------------------------------------------------------------------------------

@pytest.fixture
async def bybit() -> AsyncIterator[FakeBybitAccount]:
    fake = FakeBybitAccount()
    await fake.start()
    yield fake
    await fake.stop()


async def bybit_broker(fake: FakeBybitAccount) -> LiveBroker:
    return await live_broker("bybit", "BTC/USDT", {"secret": "fake-secret", "urls": {"public": fake.url,
                                                                                     "private": fake.url}})


def bybit_windows(fake: FakeBybitAccount) -> list[tuple[int | None, int | None]]:
    found = []
    for line in fake.requests:
        if "/v5/execution/list" in line:
            start, end = re.search(r"startTime=(\d+)", line), re.search(r"endTime=(\d+)", line)
            found.append((int(start[1]) if start else None, int(end[1]) if end else None))
    return found


async def test_bybit_reads_ten_days_of_trades_since_the_last_fill_through_7_day_windows_and_cursors(bybit):
    now = now_ms()
    since = now - 10 * DAY_MS
    bybit.add_trade("BTCUSDT", "before", since - 1)  # before the last known fill: read already
    made = []
    for i, ts in enumerate(spread(450, since, now - 1000)):
        made.append(bybit.add_trade("BTCUSDT", f"o{i // 9}", ts, price=f"{100 + i}.5", quantity=f"0.0{i % 9 + 1}",
                                    fee=f"0.000{i % 7 + 1}", side="buy" if i % 2 else "sell"))
        if i % 3 == 0:
            bybit.add_trade("ETHUSDT", f"e{i}", ts)  # another symbol of the account
    broker = await bybit_broker(bybit)
    try:
        trades = await broker._fetch_trades("BTC/USDT", since)
    finally:
        await broker.stop()
    assert_read_as_made(trades, made, "BTC/USDT")
    # 450 trades over 10 days: two windows (7 days, then the rest), 100 a page.
    windows = bybit_windows(bybit)
    assert {w for w in windows} == {(since, since + BYBIT_WINDOW_MS - 1), (since + BYBIT_WINDOW_MS, None)}
    assert len(windows) >= 5


async def test_bybit_reads_every_trade_of_an_order_with_several_pages_recent_or_older_than_7_days(bybit):
    now = now_ms()
    recent = [bybit.add_trade("BTCUSDT", "big", ts, quantity="0.002") for ts in spread(250, now - 2 * DAY_MS, now - 5)]
    for ts in spread(40, now - 2 * DAY_MS + 7, now - 9):
        bybit.add_trade("BTCUSDT", "other", ts)
    # A resting order placed 9 days ago that filled over those days.
    old = [bybit.add_trade("BTCUSDT", "old", ts) for ts in spread(130, now - 9 * DAY_MS, now - 3)]
    broker = await bybit_broker(bybit)
    try:
        assert_read_as_made(await broker._order_trades("BTC/USDT", "big", now - 2 * DAY_MS - 60_000), recent,
                            "BTC/USDT")
        assert_read_as_made(await broker._order_trades("BTC/USDT", "old", now - 9 * DAY_MS - 60_000), old,
                            "BTC/USDT")
    finally:
        await broker.stop()


async def test_the_fake_bybit_refuses_a_window_longer_than_7_days_as_bybit_does(bybit):
    broker = await bybit_broker(bybit)
    try:
        await broker._exchange.load_markets()
        with pytest.raises(Exception, match="cannot exceed 7 days") as refused:
            await broker._exchange.privateGetV5ExecutionList(
                {"category": "spot", "startTime": 0, "endTime": BYBIT_WINDOW_MS + 1})
        assert type(refused.value).__name__ == "BadRequest"  # ccxt's reading of retCode 10001
    finally:
        await broker.stop()


# --- OKX -------------------------------------------------------------------------------------------------

@pytest.fixture
async def okx() -> AsyncIterator[FakeOkxAccount]:
    fake = FakeOkxAccount()
    await fake.start()
    yield fake
    await fake.stop()


async def okx_broker(fake: FakeOkxAccount) -> LiveBroker:
    return await live_broker("okx", "BTC/USDT", {"secret": "fake-secret", "password": "fake-passphrase",
                                                 "urls": {"rest": fake.rest_url}})


async def test_okx_reads_four_days_of_trades_since_the_last_fill_back_through_fills_history(okx):
    now = now_ms()
    since = now - 4 * DAY_MS  # older than trade/fills keeps (3 days)
    okx.add_trade("BTC-USDT", "before", since - 1)
    made = []
    for i, ts in enumerate(spread(350, since, now - 1000)):
        # Six trades in one millisecond across the boundary of the first two pages (newest first):
        # ccxt's own paginate (until = the oldest trade's ms - 1) skips the rest of that millisecond.
        for _ in range(6 if i == 253 else 1):
            made.append(okx.add_trade("BTC-USDT", f"{9000 + i // 5}", ts, price=f"{200 + i}.1",
                                      quantity=f"0.{i % 9 + 1}", fee=f"0.00{i % 5 + 1}", side="sell" if i % 3 else "buy"))
        if i % 2:
            okx.add_trade("ETH-USDT", f"{5000 + i}", ts)
    broker = await okx_broker(okx)
    try:
        trades = await broker._fetch_trades("BTC/USDT", since)
    finally:
        await broker.stop()
    assert_read_as_made(trades, made, "BTC/USDT")
    pages = [line for line in okx.requests if "/trade/fills-history" in line]
    assert len(pages) == 4 and all("limit=100" in line for line in pages)


async def test_okx_reads_every_trade_of_an_order_with_several_pages(okx):
    now = now_ms()
    made = []
    for i, ts in enumerate(spread(230, now - 5 * DAY_MS, now - 10)):
        made.append(okx.add_trade("BTC-USDT", "777", ts))
        if i % 4 == 0:
            okx.add_trade("BTC-USDT", "778", ts + 1)
    broker = await okx_broker(okx)
    try:
        assert_read_as_made(await broker._order_trades("BTC/USDT", "777", now - 5 * DAY_MS - 60_000), made, "BTC/USDT")
    finally:
        await broker.stop()


# --- Kraken ----------------------------------------------------------------------------------------------

@pytest.fixture
async def kraken() -> AsyncIterator[FakeKrakenAccount]:
    fake = FakeKrakenAccount()
    await fake.start()
    yield fake
    await fake.stop()


async def kraken_broker(fake: FakeKrakenAccount) -> LiveBroker:
    return await live_broker("kraken", "BTC/USD", {"secret": KRAKEN_SECRET, "urls": {"public": fake.rest_url,
                                                                                     "private": fake.rest_url}})


async def test_kraken_reads_ten_days_of_trades_since_the_last_fill_by_offset_also_while_trading_goes_on(kraken):
    now = now_ms()
    since = now - 10 * DAY_MS
    kraken.add_trade("XXBTZUSD", "OBEFORE-AAAAA-BBBBBB", since - 1)  # the same second as the fill: read already
    made = []
    for i, ts in enumerate(spread(180, since, now - 1000)):
        made.append(kraken.add_trade("XXBTZUSD", f"O{i // 4:05d}-QCCPM-FDN5GG", ts, price=f"{30000 + i}.5",
                                     quantity=f"0.00{i % 9 + 1}", fee=f"0.0{i % 7 + 1}"))
        if i % 3 != 1:
            kraken.add_trade("XETHZUSD", f"E{i:05d}-QCCPM-FDN5GG", ts)  # TradesHistory has every pair
    newer: list[AccountTrade] = []

    def trade_meanwhile(line: str) -> None:
        # A fill during the read, after its second page: every older trade moves one place back.
        if "TradesHistory" in line and "'ofs', '50'" in line and not newer:
            newer.append(kraken.add_trade("XXBTZUSD", "ONEWER-QCCPM-FDN5GG", now_ms()))

    kraken.on_request = trade_meanwhile
    broker = await kraken_broker(kraken)
    try:
        trades = await broker._fetch_trades("BTC/USD", since)
    finally:
        await broker.stop()
    assert newer, "the read did not page"
    # The trade made during the read may be read or not (the next read has it); the others once each.
    assert_read_as_made([t for t in trades if t["id"] != newer[0].trade_id], made, "BTC/USD")
    pages = [line for line in kraken.requests if "TradesHistory" in line]
    assert len(pages) >= 6  # about 300 trades of both pairs, 50 a page


async def test_kraken_reads_every_trade_of_an_order_in_batches_of_20_even_a_multiple_of_20(kraken):
    now = now_ms()
    forty = [kraken.add_trade("XXBTZUSD", "OFORTY-QCCPM-FDN5GG", ts) for ts in spread(40, now - DAY_MS, now - 50)]
    odd = [kraken.add_trade("XXBTZUSD", "OODD01-QCCPM-FDN5GG", ts) for ts in spread(45, now - DAY_MS + 3, now - 7)]
    broker = await kraken_broker(kraken)
    try:
        assert_read_as_made(await broker._order_trades("BTC/USD", "OFORTY-QCCPM-FDN5GG", now - DAY_MS), forty, "BTC/USD")
        assert_read_as_made(await broker._order_trades("BTC/USD", "OODD01-QCCPM-FDN5GG", now - DAY_MS), odd, "BTC/USD")
    finally:
        await broker.stop()
    batches = [line for line in kraken.requests if "QueryTrades" in line]
    assert len(batches) == 2 + 3


async def test_kraken_trades_are_read_from_the_millisecond_of_the_last_fill_not_the_second(kraken):
    now = now_ms()
    second = (now - DAY_MS) // 1000 * 1000
    kraken.add_trade("XXBTZUSD", "OEARLY-QCCPM-FDN5GG", second + 100)
    later = [kraken.add_trade("XXBTZUSD", "OLATER-QCCPM-FDN5GG", second + 600 + i) for i in range(3)]
    broker = await kraken_broker(kraken)
    try:
        assert_read_as_made(await broker._fetch_trades("BTC/USD", second + 600), later, "BTC/USD")
    finally:
        await broker.stop()
