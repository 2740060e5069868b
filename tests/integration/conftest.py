"""Fixtures shared by the integration tests (the servers themselves come from tests/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from tradeflow.admin import TopicsExist
from tradeflow.bus import DeadLetters, Producer
from tradeflow.telemetry import Telemetry
from tradeflow.trades.receive_clock import ReceiveClock
from tradeflow_candle_builder.adapters.candle_store import CandleStore
from tradeflow_exchanges.ccxt_client import ExchangeFeedSettings, create_ccxt_exchange
from tradeflow_ingest.adapters.ccxt_feed import CcxtTradeFeed
from tradeflow_ingest.adapters.tick_publisher import TickPublisher
from tradeflow_ingest.bootstrap import INGEST_TOPICS
from tradeflow_ingest.domain.price_guard import PriceGuard
from tradeflow_ingest.settings import IngestSettings

# The two storage modes that run here: Apache TimescaleDB and plain PostgreSQL.
DATABASE_MODES = ["database_url", "plain_postgres_url"]


@pytest.fixture(params=DATABASE_MODES)
def mode_url(request) -> str:
    """The URL of a migrated database in one of the two local storage modes."""
    return request.getfixturevalue(request.param)


@pytest.fixture
async def store(mode_url):
    """A started CandleStore on ``mode_url``."""
    candle_store = CandleStore(mode_url)
    await candle_store.start()
    try:
        yield candle_store
    finally:
        await candle_store.stop()


@pytest.fixture
async def ccxt_feed_of(kafka_bootstrap, unique_name):
    """Starts ccxt exchange feeds publishing to the real broker, as the ingest service wires them:
    ``await ccxt_feed_of(id=..., name=..., symbols=..., urls=..., exchange_factory=...)`` (any
    ExchangeFeedSettings field; REST polled every 0.2 s unless given). All are stopped after the
    test; ``ccxt_feed_of.telemetry`` is the registry behind their metrics."""
    settings = IngestSettings(kafka_bootstrap=kafka_bootstrap)
    await TopicsExist(settings, INGEST_TOPICS).start()
    telemetry = Telemetry("ingest-test", settings)
    producer = Producer(settings, telemetry, client_id=f"test-{unique_name}")
    await producer.start()
    feeds: list[CcxtTradeFeed] = []

    async def start_feed(exchange_factory=create_ccxt_exchange, **fields) -> CcxtTradeFeed:
        feed_settings = ExchangeFeedSettings(**{"poll_interval_s": 0.2, **fields})
        publisher = TickPublisher(producer, DeadLetters(producer, telemetry), telemetry,
                                  price_guard=PriceGuard(0.5), service_name="ingest-test")
        feed = CcxtTradeFeed(feed_settings, publisher=publisher, clock=ReceiveClock(), telemetry=telemetry,
                             exchange_factory=exchange_factory)
        await feed.start()
        feeds.append(feed)
        return feed

    start_feed.telemetry = telemetry
    yield start_feed
    for feed in feeds:
        await feed.stop()
    await producer.stop()
    telemetry.shutdown()


def _with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def fresh_database_url(database_url: str) -> Iterator[str]:
    """An empty database in the session cluster (the shared ones stay migrated)."""
    name = f"migrations_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_database(database_url, name)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
