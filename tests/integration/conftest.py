"""Fixtures shared by the integration tests (the servers themselves come from the root conftest.py)."""

from __future__ import annotations

import pytest
from tradeflow_candle_builder.adapters.candle_store import CandleStore

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
