"""Fixtures shared by the integration tests (the servers themselves come from tests/conftest.py)."""

from __future__ import annotations

import pytest
from tradeflow_candle_builder.adapters.candle_store import CandleStore

from tests.database_modes import LICENSED, available_modes, modes_where

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


@pytest.fixture
async def store(mode_url):
    """A started CandleStore on ``mode_url``."""
    candle_store = CandleStore(mode_url)
    await candle_store.start()
    try:
        yield candle_store
    finally:
        await candle_store.stop()
