"""The ccxt feed's REST catch-up after a stalled websocket, against real-format fakes of Kraken,
Binance and OKX and the real broker: a symbol that trades more than two REST pages during the
stall, and keeps trading while the feed catches up, reaches md.ticks.v1 whole, once, in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from tradeflow_ingest.domain.resume_point import ResumePoint

from tests.fakes.fake_binance import FakeBinance
from tests.fakes.fake_kraken import FakeKraken
from tests.fakes.fake_okx import FakeOkx
from tests.integration.test_ingest_ccxt_feed import alerts_about, published, wait_until

pytestmark = pytest.mark.integration


@dataclass
class Venue:
    """A started fake exchange as the scenario drives it."""

    id: str
    fake: Any
    settings: dict[str, Any]  # ExchangeFeedSettings fields that point the feed at the fake
    symbols: tuple[str, str]  # the busy one, the quiet one (unified)
    page: int  # trades per REST page the feed asks for
    make_trade: Callable[[str, int], Awaitable[Any]]  # (unified symbol, n-th trade of it)


def side(n: int) -> str:
    return "sell" if n % 3 == 0 else "buy"


async def kraken() -> Venue:
    fake = FakeKraken()
    await fake.start()
    return Venue("kraken", fake, {"urls": {"public": fake.rest_url, "ws.publicV2": fake.ws_url}},
                 ("BTC/USD", "ETH/USD"), 1000,
                 lambda symbol, n: fake.make_trade(symbol, 30_000 + n % 100, 0.1, taker_side=side(n)))


async def binance() -> Venue:
    fake = FakeBinance()
    await fake.start()
    return Venue("binance", fake, {"urls": {"public": fake.rest_url, "ws.spot": fake.ws_url}},
                 ("BTC/USDT", "ETH/USDT"), 1000,
                 lambda symbol, n: fake.make_trade(symbol.replace("/", ""), 30_000 + n % 100, 0.1, taker_side=side(n)))


async def okx() -> Venue:
    fake = FakeOkx()
    await fake.start()
    return Venue("okx", fake, {"urls": {"rest": fake.rest_url, "ws": fake.ws_url}},
                 ("BTC/USDT", "ETH/USDT"), 500,
                 lambda symbol, n: fake.make_trade(symbol.replace("/", "-"), 30_000 + n % 100, 0.1, taker_side=side(n)))


async def settled(condition: Callable[[], bool], timeout_s: float) -> None:
    """Return once ``condition`` holds or ``timeout_s`` passed (the assertions after it say what is wrong)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return
        await asyncio.sleep(0.05)


@pytest.fixture(params=[kraken, binance, okx], ids=["kraken", "binance", "okx"])
async def venue(request):
    started = await request.param()
    yield started
    await started.fake.stop()


async def test_a_stall_while_one_symbol_trades_more_than_two_rest_pages_loses_nothing(
    kafka_bootstrap, venue, ccxt_feed_of, unique_name
):
    busy, quiet = venue.symbols
    feed = await ccxt_feed_of(id=venue.id, name=f"{venue.id}-{unique_name}", symbols=venue.symbols,
                              stale_after_s=1.0, **venue.settings)
    made = dict.fromkeys(venue.symbols, 0)

    async def trade(symbol: str) -> None:
        made[symbol] += 1
        await venue.make_trade(symbol, made[symbol])

    await wait_until(lambda: venue.fake.connected_websockets == 1, 20, "the websocket subscription")
    for _ in range(3):
        await trade(busy)
        await trade(quiet)
    await wait_until(lambda: feed.status().published == 6, 20, "the trades before the stall")

    venue.fake.stall_websockets = True  # connected and subscribed, but nothing comes
    subscribes = len(venue.fake.subscriptions)
    for _ in range(venue.page * 5 // 2):  # more than two REST pages, within well under a second
        await trade(busy)
    await trade(quiet)
    await wait_until(lambda: len(venue.fake.subscriptions) > subscribes, 20, "the resubscription of the stale feed")
    venue.fake.stall_websockets = False

    # Both keep trading while the feed catches up (REST and websocket overlap), until the feed is
    # on the websocket again and has published all that was made before the last round.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        before_round = sum(made.values())
        for _ in range(5):
            await trade(busy)
        await trade(quiet)
        await asyncio.sleep(0.02)
        if feed.status().kind == "ccxt-ws" and feed.status().published >= before_round:
            break
    await settled(lambda: feed.status().published == sum(made.values()), 20)
    await asyncio.sleep(0.5)  # nothing more (no duplicates) arrives afterwards

    exchange = feed.status().exchange
    ticks = await published(kafka_bootstrap, exchange)
    assert made[busy] > 2 * venue.page
    assert [trade_id for trade_id, _, _ in ticks[busy]] == [str(n) for n in range(1, made[busy] + 1)]
    assert [side_ for _, _, side_ in ticks[busy]] == [side(n) for n in range(1, made[busy] + 1)]
    assert [trade_id for trade_id, _, _ in ticks[quiet]] == [str(n) for n in range(1, made[quiet] + 1)]
    assert feed.status().published == sum(made.values()) and feed.status().rejected == 0
    alerts = [alert for _, alert in await alerts_about(kafka_bootstrap, exchange)]
    assert "feed_catch_up_incomplete" not in {alert.kind for alert in alerts}
    stale = [alert for alert in alerts if alert.kind == "feed_stale_resubscribed"]
    assert stale and all(busy in alert.labels["symbols"].split(",") for alert in stale)
    if venue.id == "kraken":  # asked from the cursor in Kraken's nanoseconds, never ccxt's whole seconds
        sinces = [parse_qs(urlsplit(r.split()[1]).query).get("since", [""])[0]
                  for r in venue.fake.requests if "/0/public/Trades" in r]
        assert sinces and all(len(since) == 19 for since in sinces), sinces


@pytest.mark.parametrize("venue", [binance], ids=["binance"], indirect=True)
async def test_a_binance_symbol_resumed_from_hours_ago_gets_the_trades_after_its_first_hour_too(
    kafka_bootstrap, venue, ccxt_feed_of, unique_name
):
    # Binance answers a time query within one hour (ccxt asks startTime..startTime + 1 h): a short
    # first page of a long-past hour is no sign that nothing came later.
    fake = venue.fake
    feed = await ccxt_feed_of(id="binance", name=f"bn-{unique_name}", symbols=("BTC/USDT",), **venue.settings)
    await wait_until(lambda: fake.connected_websockets == 1, 20, "the websocket subscription")
    now_ms = int(time.time() * 1000)
    resume_from = now_ms - 2 * 3_600_000
    fake.record_trades("ETHUSDT", [(resume_from + 600_000 + i, 2_000 + i, 1.0, "buy") for i in range(3)]
                       + [(now_ms - 1_800_000 + i, 2_100 + i, 1.0, "sell") for i in range(5)])
    feed.set_symbols(["BTC/USDT", "ETH/USDT"], resume={"ETH/USDT": ResumePoint(resume_from, frozenset())})
    await wait_until(lambda: ["btcusdt@aggTrade", "ethusdt@aggTrade"] in fake.subscriptions, 20,
                     "the subscription with ETH")
    await fake.make_trade("BTCUSDT", 30_000, 0.1)  # the first websocket batch: the catch-up runs
    await settled(lambda: feed.status().published == 1 + 8, 20)
    await asyncio.sleep(0.5)  # nothing more (no duplicates) arrives afterwards

    ticks = await published(kafka_bootstrap, feed.status().exchange)
    assert [trade_id for trade_id, _, _ in ticks["ETH/USDT"]] == [str(n) for n in range(1, 9)]
    assert [trade_id for trade_id, _, _ in ticks["BTC/USDT"]] == ["1"]
    eth_pages = [r for r in fake.requests if "aggTrades" in r and "ETHUSDT" in r]
    assert "startTime" in eth_pages[0] and "fromId=4" in eth_pages[1]  # the hour, then on by id
