"""Fixtures shared by the integration tests (the servers themselves come from tests/conftest.py)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from tradeflow.db.migrate import upgrade
from tradeflow.infra import LocalInfra
from tradeflow.infra.processes import free_port
from tradeflow_candle_builder.adapters.candle_store import CandleStore

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
