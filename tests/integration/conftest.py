"""Fixtures shared by the integration tests (the servers themselves come from tests/conftest.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
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
