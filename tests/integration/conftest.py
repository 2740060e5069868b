"""Fixtures shared by the integration tests (the servers themselves come from the root conftest.py)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from psycopg import sql
from tradeflow.admin import TopicsExist
from tradeflow.bus import DeadLetters, Producer
from tradeflow.telemetry import Telemetry
from tradeflow.trades.receive_clock import ReceiveClock
from tradeflow_candle_builder.adapters.candle_store import CandleStore
from tradeflow_db.migrate import upgrade
from tradeflow_exchanges.ccxt_client import ExchangeFeedSettings, create_ccxt_exchange
from tradeflow_ingest.adapters.ccxt_feed import CcxtTradeFeed
from tradeflow_ingest.adapters.tick_publisher import TickPublisher
from tradeflow_ingest.bootstrap import INGEST_TOPICS
from tradeflow_ingest.domain.price_guard import PriceGuard
from tradeflow_ingest.settings import IngestSettings
from tradeflow_ops.infra import LocalInfra
from tradeflow_ops.infra.processes import free_port

from tests.database_modes import LICENSED, available_modes, local_cluster_mode, modes_where
from tests.licensed_timescaledb import PGliteTimescaleDB, unavailable_reason

# Every storage mode that runs here (tests/database_modes.py): the local cluster's build, plain
# PostgreSQL, and the licensed TimescaleDB in PGlite when it is installed.
DATABASE_MODES = available_modes()
TABLE_MODES = modes_where(lambda mode: mode != LICENSED)  # candles_5m .. candles_1w are tables
LICENSED_MODES = modes_where(lambda mode: mode == LICENSED)  # ... continuous aggregates


def _url_of(request) -> str:
    return request.getfixturevalue(request.param.fixture)


@pytest.fixture(params=DATABASE_MODES, ids=[m.id for m in DATABASE_MODES])
def mode_url(request) -> str:
    """The URL of a migrated database in one of the storage modes available here."""
    return _url_of(request)


@pytest.fixture(params=TABLE_MODES, ids=[m.id for m in TABLE_MODES])
def table_mode_url(request) -> str:
    """A migrated database whose higher timeframes are tables kept by CandleStore (docs/adr/0007)."""
    return _url_of(request)


@pytest.fixture(params=LICENSED_MODES, ids=[m.id for m in LICENSED_MODES])
def licensed_mode_url(request) -> str:
    """A migrated database whose higher timeframes are continuous aggregates (no test runs
    when the licensed mode is not available here: see the test report header)."""
    return _url_of(request)


@contextlib.asynccontextmanager
async def started_store(url: str) -> AsyncIterator[CandleStore]:
    candle_store = CandleStore(url)
    await candle_store.start()
    try:
        yield candle_store
    finally:
        await candle_store.stop()


@pytest.fixture
async def store(mode_url):
    """A started CandleStore on ``mode_url``."""
    async with started_store(mode_url) as candle_store:
        yield candle_store


@pytest.fixture(scope="module")
def fresh_licensed_url(local_infra: LocalInfra, request) -> Iterator[str]:
    """A licensed database of its own, migrated, for tests that need continuous aggregates
    nothing has materialized yet (watermarks at the start) or that migrate up and down.

    A new database in the local cluster when its build is licensed, else a PGlite process of the
    module's own (stopped by pid); skipped when neither runs here (the report header says so)."""
    if local_cluster_mode() == LICENSED:
        request.getfixturevalue("database_url")  # the cluster is up
        url = local_infra.create_database(f"licensed_{uuid.uuid4().hex[:10]}")
        upgrade(url)
        yield url
        return
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"no licensed TimescaleDB here: {reason}")
    state_dir = local_infra.state_dir / f"pglite-{uuid.uuid4().hex[:8]}"
    server = PGliteTimescaleDB(free_port(), state_dir)
    url = server.start()
    try:
        assert upgrade(url).mode == LICENSED
        yield url
    finally:
        server.stop()


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
